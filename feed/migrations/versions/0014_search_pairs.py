"""An index of the word pairs each post holds, for phrases on PostgreSQL
(storage/search.py, on phrases by their word pairs).

PostgreSQL's GIN index of ``tsvector`` keeps which posts hold a word, not where, so a
phrase of two common words was found by reading, from the table, every post that holds
both words to look at their positions: thousands of rows for a phrase whose words seldom
stand together. This index keeps, for each post, every pair of words that stand one
after the other (``'fe pu'``, a lexeme with a space, which no word can hold), taken
from the post's own ``tsvector`` and its positions, so a two-word phrase is one lookup
and a longer one the posts that hold all of its pairs. It is an index of an expression,
not a stored column: nothing is added to the table's rows, and it is built here for the
posts already written. SQLite's FTS5 keeps positions in its own index and needs none.

Revision ID: 0014_search_pairs
Revises: 0013_search_by_group
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0014_search_pairs"
down_revision = "0013_search_by_group"
branch_labels = None
depends_on = None

# Every pair (word at position p, word at p + 1) of a tsvector, as a tsvector of its
# own (which keeps each once). A join, not a walk in position order: two words may
# share a position (past the last one a tsvector counts), and each pair the phrase
# operator could find must be here. PL/pgSQL keeps the query's plan for the session,
# where a SQL function's was made again for each post written.
POSTGRESQL = [
    """CREATE FUNCTION feed_word_pairs(words tsvector) RETURNS tsvector
        LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
        BEGIN
            RETURN (
                SELECT coalesce(array_to_tsvector(array_agg(a.lexeme || ' ' || b.lexeme)),
                                ''::tsvector)
                FROM (SELECT lexeme, unnest(positions) AS at FROM unnest(words)) AS a
                JOIN (SELECT lexeme, unnest(positions) AS at FROM unnest(words)) AS b
                  ON b.at = a.at + 1
            );
        END
    $$""",
    """CREATE INDEX posts_search_pairs ON posts
        USING gin (feed_word_pairs(posts_search_vector))""",
]
UNDO_POSTGRESQL = ["DROP INDEX posts_search_pairs", "DROP FUNCTION feed_word_pairs(tsvector)"]


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        for statement in POSTGRESQL:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        for statement in UNDO_POSTGRESQL:
            op.execute(statement)
