"""The index of personal events holds personal events only.

``ix_events_recipient`` (migration 0011_read_state) indexed ``events.recipient`` for
every event, though it is NULL for every event that is for everyone, nearly all of
them. Every new post wrote an entry there, one more page for each commit to sync,
and on SQLite a person's replay read the index twice, for the NULLs and for the
person, then sorted everything after the position before its limit could stop it: a
count and a replay from 300,000 events back took 53 and 105 ms. As a partial index
(``WHERE recipient IS NOT NULL``) it holds only the personal events, the lookups of
a person's events use it as before, and a person's replay reads the log in order
(docs/benchmarks.md, on the index of personal events).

Revision ID: 0019_personal_events_index
Revises: 0018_events_by_post
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_personal_events_index"
down_revision = "0018_events_by_post"
branch_labels = None
depends_on = None

# Written out, not imported: a revision stays as it was when the models change.
PERSONAL = "recipient IS NOT NULL"


def upgrade() -> None:
    op.drop_index("ix_events_recipient", "events")
    op.create_index(
        "ix_events_recipient",
        "events",
        ["recipient"],
        sqlite_where=sa.text(PERSONAL),
        postgresql_where=sa.text(PERSONAL),
    )


def downgrade() -> None:
    op.drop_index("ix_events_recipient", "events")
    op.create_index("ix_events_recipient", "events", ["recipient"])
