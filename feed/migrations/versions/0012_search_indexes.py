"""Indexes for a channel's and an author's newest posts (storage/search.py, on filters).

A search by author alone (``feed search --author``, ``/api/search?author=``) had no
index: PostgreSQL either walked the posts newest first until it had a page, or read
the whole table and sorted it, depending on how common it guessed the author was.
``(author, id)`` and ``(channel_id, id)`` give both the newest first from the index;
the second replaces the index on ``channel_id`` alone, which it covers.

Revision ID: 0012_search_indexes
Revises: 0011_read_state
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0012_search_indexes"
down_revision = "0011_read_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_posts_channel_id_id", "posts", ["channel_id", "id"])
    op.drop_index("ix_posts_channel_id", "posts")
    op.create_index("ix_posts_author_id", "posts", ["author", "id"])


def downgrade() -> None:
    op.drop_index("ix_posts_author_id", "posts")
    op.create_index("ix_posts_channel_id", "posts", ["channel_id"])
    op.drop_index("ix_posts_channel_id_id", "posts")
