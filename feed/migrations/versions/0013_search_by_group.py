"""New posts indexed for search by their group, not by a trigger per row
(storage/search.py, on the index following the posts).

SQLite: the FTS5 index took a new post's entry from a trigger run once for each row,
which cost three times what one statement for the group's rows costs; the group
commit now adds its posts' entries itself, in the transaction that writes them. The
triggers for edits and deletes stay: those write one row at a time anyway.
PostgreSQL: nothing changes; its ``tsvector`` column is computed by the insert itself.

Revision ID: 0013_search_by_group
Revises: 0012_search_indexes
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0013_search_by_group"
down_revision = "0012_search_indexes"
branch_labels = None
depends_on = None

# As migration 0010_search made it.
INSERT_TRIGGER = """CREATE TRIGGER posts_search_insert AFTER INSERT ON posts BEGIN
    INSERT INTO posts_search(rowid, body) VALUES (new.id, new.body);
END"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER posts_search_insert")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(INSERT_TRIGGER)
