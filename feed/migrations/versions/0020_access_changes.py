"""What a resuming stream's replay cannot show: changes of access while it was away.

A stream resuming with ``Last-Event-ID`` is replayed with the channels and its
reader's memberships as they are now. A channel made private since leaves its posts
on the page; one made public, or given to the reader, brings its new events but not
its older posts; one taken from the reader leaves its posts too. No event the
stream may read says so. So:

- ``channels.privacy_event``: the event that last made the channel private or public
  (NULL: never since this revision);
- ``membership_changes``: for each identity, the log's newest event id when it was
  last given or refused a channel.

A stream resuming from before either is told to re-fetch its list (resume.py).

Revision ID: 0020_access_changes
Revises: 0019_personal_events_index
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_access_changes"
down_revision = "0019_personal_events_index"
branch_labels = None
depends_on = None

# Written out, not imported: a revision stays as it was when the models change.
EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # A plain ADD COLUMN, which SQLite supports: a batch copy of the table would trip
    # the foreign keys that posts and events hold on it.
    op.add_column("channels", sa.Column("privacy_event", EVENT_ID, nullable=True))
    op.create_table(
        "membership_changes",
        sa.Column("name", sa.String(length=80), primary_key=True),
        sa.Column("event_id", EVENT_ID, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("membership_changes")
    # Plain too (SQLite has had DROP COLUMN since 3.35), for the same reason.
    op.execute("ALTER TABLE channels DROP COLUMN privacy_event")
