"""Reactions: who reacted to which post with what, each post's reaction window, and
the toggles each ``post-reactions`` event reports (storage/reactions.py).

Revision ID: 0008_reactions
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_reactions"
down_revision = "0007"
branch_labels = None
depends_on = None

EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "reactions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("post_id", sa.Integer(), sa.ForeignKey("posts.id"), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("reaction", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("post_id", "name", "reaction"),
    )
    op.create_index("ix_reactions_post_id", "reactions", ["post_id"])
    op.create_table(
        "reaction_windows",
        sa.Column("post_id", sa.Integer(), sa.ForeignKey("posts.id"), primary_key=True),
        sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("changes", sa.String(), nullable=False),
        sa.Column("more", sa.Integer(), nullable=False),
    )
    op.create_index("ix_reaction_windows_pending", "reaction_windows", ["pending"])
    op.create_table(
        "reaction_news",
        sa.Column("event_id", EVENT_ID, primary_key=True, autoincrement=False),
        sa.Column("changes", sa.String(), nullable=False),
        sa.Column("more", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("reaction_news")
    op.drop_index("ix_reaction_windows_pending", "reaction_windows")
    op.drop_table("reaction_windows")
    op.drop_index("ix_reactions_post_id", "reactions")
    op.drop_table("reactions")
