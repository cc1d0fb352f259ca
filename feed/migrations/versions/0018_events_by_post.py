"""An index of events by post: ``ix_events_post_id``.

Every dashboard, and every page of older posts, asks for the event that made each
post it shows and for that of its newest reply (storage/reading.py, on a page's
posts' events). Without an index on ``events.post_id`` each of those read the whole
events table: 40 ms for one page at 330,000 events on SQLite, and more with every
post. With it, each is a lookup per post. The price is one more index entry per
event written, below the noise of the write benchmarks (docs/benchmarks.md, on the
index of events by post).

Revision ID: 0018_events_by_post
Revises: 0017_one_thread_index
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0018_events_by_post"
down_revision = "0017_one_thread_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_post_id", "events", ["post_id"])


def downgrade() -> None:
    op.drop_index("ix_events_post_id", "events")
