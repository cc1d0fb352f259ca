"""Event ids as 64-bit numbers, so that they can start past any id ever handed out.

Each start raises the next event id to at least the time in microseconds
(storage/log.py, on ids never reused, even after a restore): that needs 64 bits.
SQLite's INTEGER already is; PostgreSQL's is not.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.alter_column("events", "id", type_=sa.BigInteger(), existing_nullable=False)
    op.execute("ALTER SEQUENCE events_id_seq AS BIGINT")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER SEQUENCE events_id_seq AS INTEGER")
    op.alter_column("events", "id", type_=sa.Integer(), existing_nullable=False)
