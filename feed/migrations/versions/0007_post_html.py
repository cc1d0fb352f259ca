"""Each post keeps its body as sanitised HTML, made once when it is written.

Posts written before get theirs here, so that no read renders Markdown
(markdown.py). A post that still has none (written by a copy of feed from before
this revision while the upgrade ran) is rendered when read.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from feed import markdown

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BATCH = 500


def upgrade() -> None:
    op.add_column("posts", sa.Column("html", sa.String(), nullable=True))
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
            .where(posts.c.id > after, posts.c.html.is_(None))
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
    with op.batch_alter_table("posts") as batch:
        batch.drop_column("html")
