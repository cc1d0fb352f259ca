"""When each identity's memberships last changed.

A stream resuming with ``Last-Event-ID`` is replayed with its reader's channels as
they are now: a private channel given to the reader while the stream was away brings
its new events but not its older posts, and one taken away leaves its posts on the
page. The log holds no event for a membership, so each identity's last change is
kept here, as the log's newest event id at that moment, and a stream resuming from
before it is told to re-fetch its list (storage/grants.py, on memberships changed
while away).

Revision ID: 0020_membership_changes
Revises: 0019_personal_events_index
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_membership_changes"
down_revision = "0019_personal_events_index"
branch_labels = None
depends_on = None

# Written out, not imported: a revision stays as it was when the models change.
EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "membership_changes",
        sa.Column("name", sa.String(length=80), primary_key=True),
        sa.Column("event_id", EVENT_ID, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("membership_changes")
