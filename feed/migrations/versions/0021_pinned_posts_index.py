"""An index of the pinned posts.

A list's pinned section (its newest pinned posts) and its cut (the oldest of a full
section, which every "Older posts" page reads) were found by walking the live
top-level posts newest first, keeping the pinned ones: with few pinned posts, and
those old, every dashboard and every page of older posts read nearly every post. A
partial index of the pinned posts (live top-level ones all: a tombstone is unpinned,
a reply never pinned), by channel and id, holds only them, so the section is read
from a handful of entries (storage/lists.py, on reading the pinned section;
docs/benchmarks.md, on the index of pinned posts).

Revision ID: 0021_pinned_posts_index
Revises: 0020_access_changes
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021_pinned_posts_index"
down_revision = "0020_access_changes"
branch_labels = None
depends_on = None

# Written out, not imported: a revision stays as it was when the models change. Each
# in the words of that database's reads, which it must match to the index's.
PINNED_SQLITE = "pinned IS 1"
PINNED_POSTGRESQL = "pinned IS true"


def upgrade() -> None:
    op.create_index(
        "ix_posts_pinned",
        "posts",
        ["channel_id", "id"],
        sqlite_where=sa.text(PINNED_SQLITE),
        postgresql_where=sa.text(PINNED_POSTGRESQL),
    )


def downgrade() -> None:
    op.drop_index("ix_posts_pinned", "posts")
