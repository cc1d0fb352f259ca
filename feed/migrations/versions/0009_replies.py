"""Replies: a post may answer another (``posts.parent_id``), and a channel may keep
its readers from replying (``channels.replies``).

Existing posts are top-level (no parent) and existing channels take replies.

Revision ID: 0009_replies
Revises: 0008_reactions
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_replies"
down_revision = "0008_reactions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs, which SQLite does in place: a batch copy of ``posts`` or
    # ``channels`` would drop a table that ``events`` still refers to.
    if op.get_bind().dialect.name == "sqlite":
        # SQLite takes a reference only inside the column's own definition.
        op.execute("ALTER TABLE posts ADD COLUMN parent_id INTEGER REFERENCES posts (id)")
    else:
        op.add_column("posts", sa.Column("parent_id", sa.Integer(), nullable=True))
        op.create_foreign_key("posts_parent_id_fkey", "posts", "posts", ["parent_id"], ["id"])
    op.create_index("ix_posts_parent_id", "posts", ["parent_id"])
    op.add_column(
        "channels", sa.Column("replies", sa.Boolean(), nullable=False, server_default=sa.true())
    )


def downgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("replies")
    op.drop_index("ix_posts_parent_id", "posts")
    with op.batch_alter_table("posts") as batch:
        batch.drop_column("parent_id")
