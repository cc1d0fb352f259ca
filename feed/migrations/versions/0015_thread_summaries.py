"""An index of each thread's live replies in id order, for its summary
(storage/threads.py, on summaries of long threads).

A thread's summary counts its live replies and names the authors of its newest ones.
``ix_posts_parent_id`` finds a thread's replies, but whether each is deleted is in
the table's row: counting them read every reply's row, and the newest live ones
could not be walked in order. This index holds the thread, whether the reply is
deleted, and its id, so the count reads index entries only and the newest live
replies are its last entries under (thread, not deleted).

Revision ID: 0015_thread_summaries
Revises: 0014_search_pairs
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0015_thread_summaries"
down_revision = "0014_search_pairs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_posts_parent_id_deleted_id", "posts", ["parent_id", "deleted", "id"])


def downgrade() -> None:
    op.drop_index("ix_posts_parent_id_deleted_id", "posts")
