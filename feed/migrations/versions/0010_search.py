"""Full-text search over every post (storage/search.py).

SQLite: an FTS5 table over ``posts`` (external content: the text is kept once, in
``posts``), kept in step by triggers, so its entry changes in the very transaction
that writes the post; a tombstone's empty body leaves no entry. PostgreSQL: the
body's ``tsvector`` as a stored generated column with a GIN index, which the database
keeps up to date in the same way (stored, so that neither a search's filter nor its
ranking splits a body again). Both
are built here for the posts already written. The words are split without stemming
or diacritic folding on both (search.py, on words).

Revision ID: 0010_search
Revises: 0009_replies
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0010_search"
down_revision = "0009_replies"
branch_labels = None
depends_on = None

SQLITE = [
    """CREATE VIRTUAL TABLE posts_search USING fts5(
        body, content='posts', content_rowid='id',
        tokenize='unicode61 remove_diacritics 0')""",
    """CREATE TRIGGER posts_search_insert AFTER INSERT ON posts BEGIN
        INSERT INTO posts_search(rowid, body) VALUES (new.id, new.body);
    END""",
    """CREATE TRIGGER posts_search_delete AFTER DELETE ON posts BEGIN
        INSERT INTO posts_search(posts_search, rowid, body) VALUES ('delete', old.id, old.body);
    END""",
    """CREATE TRIGGER posts_search_update AFTER UPDATE OF body ON posts BEGIN
        INSERT INTO posts_search(posts_search, rowid, body) VALUES ('delete', old.id, old.body);
        INSERT INTO posts_search(rowid, body) VALUES (new.id, new.body);
    END""",
    "INSERT INTO posts_search(posts_search) VALUES ('rebuild')",
]
UNDO_SQLITE = [
    "DROP TRIGGER posts_search_update",
    "DROP TRIGGER posts_search_delete",
    "DROP TRIGGER posts_search_insert",
    "DROP TABLE posts_search",
]
POSTGRESQL = [
    """ALTER TABLE posts ADD COLUMN posts_search_vector tsvector
        GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, body)) STORED""",
    "CREATE INDEX posts_search ON posts USING gin (posts_search_vector)",
]
UNDO_POSTGRESQL = ["DROP INDEX posts_search", "ALTER TABLE posts DROP COLUMN posts_search_vector"]


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE if sqlite else POSTGRESQL:
        op.execute(statement)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in UNDO_SQLITE if sqlite else UNDO_POSTGRESQL:
        op.execute(statement)
