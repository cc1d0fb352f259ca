"""Channels can be archived: they keep their posts and take no new ones.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN, which SQLite supports: a batch copy of the table would trip
    # the foreign keys that posts and events hold on it.
    op.add_column(
        "channels",
        sa.Column("archived", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        batch.drop_column("archived")
