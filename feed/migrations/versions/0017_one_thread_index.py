"""One index of a post's replies: ``ix_posts_parent_id`` goes.

Its one column, ``parent_id``, leads ``ix_posts_parent_id_deleted_id`` (migration
0015_thread_summaries), so every lookup of a thread's replies that could use it
can use that index instead, on SQLite and PostgreSQL alike; each new post still
paid to keep both. No post is ever removed from the table, so no foreign-key check
of a parent's deletion looks replies up either.

The index that stays keeps a thread's replies in id order only under one value of
``deleted``, so a query must compare it by equality: ``IS 0`` (what the ORM writes for
``is_(False)`` on SQLite) or ``= false``. SQLite's ``IS FALSE`` is a truth test it
cannot look up, and would sort the whole thread; PostgreSQL 18 looks ``IS false`` up as
``= false``, the column being NOT NULL (docs/benchmarks.md, on one index of replies).

Revision ID: 0017_one_thread_index
Revises: 0016_reply_counts
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0017_one_thread_index"
down_revision = "0016_reply_counts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_posts_parent_id", "posts")


def downgrade() -> None:
    op.create_index("ix_posts_parent_id", "posts", ["parent_id"])
