"""Each top-level post's count of live replies, stored with it (storage/threads.py, on
the stored count).

Counting a thread's live replies read every one of them, even from the index of
migration 0015_thread_summaries, and a reply's write counted them with the writers'
lock held. The count is now a column of ``posts`` that the writes of replies keep;
existing posts get theirs counted here, once: a reply's ``posts.reply_count`` is 0,
as is a deleted post's, whose replies went with it.

Revision ID: 0016_reply_counts
Revises: 0015_thread_summaries
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_reply_counts"
down_revision = "0015_thread_summaries"
branch_labels = None
depends_on = None

# Every thread's live replies, counted down the index of 0015 and written to its post
# in one statement (``UPDATE ... FROM``: SQLite 3.33 on); posts without live replies
# keep the column's default.
FILL = """
UPDATE posts SET reply_count = counted.replies
FROM (
    SELECT parent_id, count(*) AS replies FROM posts
    WHERE parent_id IS NOT NULL AND deleted = false
    GROUP BY parent_id
) AS counted
WHERE posts.id = counted.parent_id
"""


def upgrade() -> None:
    # A plain ADD COLUMN, which SQLite does in place: a batch copy of ``posts`` would
    # drop a table that ``events`` still refers to.
    op.add_column(
        "posts", sa.Column("reply_count", sa.Integer(), nullable=False, server_default="0")
    )
    op.execute(FILL)


def downgrade() -> None:
    # SQLite (3.35 on) drops a column that no index or constraint names in place, too.
    op.drop_column("posts", "reply_count")
