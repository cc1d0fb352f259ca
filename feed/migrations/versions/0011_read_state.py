"""Read state and mentions: each identity's read position per channel, and events
addressed to one identity (personal events: feed/reading.py).

Posts whose body may mention someone get their HTML again, with the mention marked
(markdown.py, on changing the allow-list).

Revision ID: 0011_read_state
Revises: 0010_search
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from feed import markdown

revision = "0011_read_state"
down_revision = "0010_search"
branch_labels = None
depends_on = None

BATCH = 500
EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("recipient", sa.String(length=80), nullable=True))
        batch.create_index("ix_events_recipient", ["recipient"])
    op.create_table(
        "read_positions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("channel_id", sa.Integer(), sa.ForeignKey("channels.id"), nullable=False),
        sa.Column("event_id", EVENT_ID, nullable=False),
        sa.UniqueConstraint("name", "channel_id"),
    )
    op.create_index("ix_read_positions_name", "read_positions", ["name"])
    op.create_index("ix_read_positions_channel_id", "read_positions", ["channel_id"])
    _render_mentions()


def _render_mentions() -> None:
    posts = sa.table(
        "posts",
        sa.column("id", sa.Integer),
        sa.column("body", sa.String),
        sa.column("html", sa.String),
    )
    bind = op.get_bind()
    after = 0
    while True:
        rows = bind.execute(
            sa.select(posts.c.id, posts.c.body)
            .where(posts.c.id > after, posts.c.body.contains("@"))
            .order_by(posts.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        bind.execute(
            posts.update().where(posts.c.id == sa.bindparam("post_id")),
            [{"post_id": row.id, "html": markdown.to_html(row.body)} for row in rows],
        )
        after = rows[-1].id


def downgrade() -> None:
    op.drop_index("ix_read_positions_channel_id", "read_positions")
    op.drop_index("ix_read_positions_name", "read_positions")
    op.drop_table("read_positions")
    with op.batch_alter_table("events") as batch:
        batch.drop_index("ix_events_recipient")
        batch.drop_column("recipient")
