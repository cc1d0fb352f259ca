"""Access: tokens and kiosk links, channel memberships, private and
announcement-only channels, and shared secrets.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs, as in 0002: existing channels stay public and open to writers.
    for column in ("private", "announcement_only"):
        op.add_column(
            "channels",
            sa.Column(column, sa.Boolean(), nullable=False, server_default=sa.false()),
        )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("channels", sa.String(length=4000), nullable=True),
        sa.Column("digest", sa.String(length=64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_tokens_name", "tokens", ["name"])
    op.create_table(
        "members",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("channel_id", sa.Integer(), sa.ForeignKey("channels.id"), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("may_post", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("channel_id", "name"),
    )
    op.create_index("ix_members_channel_id", "members", ["channel_id"])
    op.create_index("ix_members_name", "members", ["name"])
    op.create_table(
        "secrets",
        sa.Column("name", sa.String(length=64), primary_key=True),
        sa.Column("value", sa.String(length=200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("secrets")
    op.drop_table("members")
    op.drop_table("tokens")
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("announcement_only")
        batch.drop_column("private")
