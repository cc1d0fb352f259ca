"""Reactions as reads carry them: each post's counts and first names, a reader's own
reactions, and what a ``post-reactions`` event reports.

Every read of posts or events goes through here before it leaves the store, in the
session that read them, so a post carries its reactions as they are in that very
snapshot (log.py, on the current state; on one snapshot). The counts are the same for
every reader; a reader's own reactions are asked for apart (``mine``), never mixed into
what is shared.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import replace

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from feed.models import EventKind, Reaction, ReactionNews, ReactionWindow
from feed.values import FeedEvent, PostView, ReactionChange, ReactionCount

# Names each reaction carries on every post: a chip says "ada, bo, cy and 9 others".
FIRST_NAMES = 3


def counts(session: Session, post_ids: Collection[int]) -> dict[int, tuple[ReactionCount, ...]]:
    """Each post's reactions, in the order they were first made, with their first
    ``FIRST_NAMES`` names; posts without any are left out."""
    if not post_ids:
        return {}
    ids = sorted(set(post_ids))
    totals = session.exec(
        select(Reaction.post_id, Reaction.reaction, func.count(), func.min(Reaction.id))
        .where(col(Reaction.post_id).in_(ids))
        .group_by(col(Reaction.post_id), col(Reaction.reaction))
    ).all()
    place = (
        func.row_number()
        .over(
            partition_by=(col(Reaction.post_id), col(Reaction.reaction)), order_by=col(Reaction.id)
        )
        .label("place")
    )
    ranked = (
        select(Reaction.post_id, Reaction.reaction, Reaction.name, place)
        .where(col(Reaction.post_id).in_(ids))
        .subquery()
    )
    firsts = session.exec(
        select(ranked.c.post_id, ranked.c.reaction, ranked.c.name)
        .where(ranked.c.place <= FIRST_NAMES)
        .order_by(ranked.c.post_id, ranked.c.reaction, ranked.c.place)
    ).all()
    names: dict[tuple[int, str], list[str]] = defaultdict(list)
    for post_id, reaction, name in firsts:
        names[post_id, reaction].append(name)
    found: dict[int, list[tuple[int, ReactionCount]]] = defaultdict(list)
    for post_id, reaction, count, first in totals:
        shown = ReactionCount(reaction, count, tuple(names[post_id, reaction]))
        found[post_id].append((first or 0, shown))
    return {post_id: tuple(c for _, c in sorted(rows)) for post_id, rows in found.items()}


def with_counts(session: Session, posts: Sequence[PostView]) -> list[PostView]:
    """``posts``, each carrying its reactions now."""
    known = counts(session, [p.id for p in posts if not p.deleted])
    return [replace(p, reactions=known[p.id]) if p.id in known else p for p in posts]


def on_events(session: Session, events: Sequence[FeedEvent]) -> list[FeedEvent]:
    """``events``, each post carrying its reactions now, and each ``post-reactions``
    event the toggles it reports."""
    posts = [e.post.id for e in events if e.post is not None and not e.post.deleted]
    known = counts(session, posts)
    news = _news(session, [e.id for e in events if e.kind is EventKind.POST_REACTIONS])
    done = []
    for event in events:
        post = event.post
        if post is not None and post.id in known:
            event = replace(event, post=replace(post, reactions=known[post.id]))
        if event.id in news:
            changes, more = news[event.id]
            event = replace(event, changes=changes, more=more)
        done.append(event)
    return done


def _news(
    session: Session, event_ids: Sequence[int]
) -> dict[int, tuple[tuple[ReactionChange, ...], int]]:
    if not event_ids:
        return {}
    rows = session.exec(
        select(ReactionNews).where(col(ReactionNews.event_id).in_(sorted(event_ids)))
    ).all()
    return {row.event_id: (parse_changes(row.changes), row.more) for row in rows}


def parse_changes(stored: str) -> tuple[ReactionChange, ...]:
    return tuple(
        ReactionChange(name, reaction, bool(on)) for name, reaction, on in json.loads(stored)
    )


def dump_changes(changes: Sequence[ReactionChange]) -> str:
    return json.dumps([[c.name, c.reaction, c.reacted] for c in changes], ensure_ascii=False)


def mine(
    session: Session, name: str | None, post_ids: Collection[int]
) -> dict[int, tuple[str, ...]]:
    """The reactions ``name`` has made to each of ``post_ids`` (none for nobody)."""
    if name is None or not post_ids:
        return {}
    rows = session.exec(
        select(Reaction.post_id, Reaction.reaction)
        .where(col(Reaction.name) == name, col(Reaction.post_id).in_(sorted(set(post_ids))))
        .order_by(col(Reaction.id))
    ).all()
    found: dict[int, list[str]] = defaultdict(list)
    for post_id, reaction in rows:
        found[post_id].append(reaction)
    return {post_id: tuple(r) for post_id, r in found.items()}


def mine_of(
    session: Session, asked: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], tuple[str, ...]]:
    """For each (name, post id) asked, the reactions that name has made to that post."""
    if not asked:
        return {}
    names, posts = sorted({n for n, _ in asked}), sorted({p for _, p in asked})
    rows = session.exec(
        select(Reaction.name, Reaction.post_id, Reaction.reaction)
        .where(col(Reaction.name).in_(names), col(Reaction.post_id).in_(posts))
        .order_by(col(Reaction.id))
    ).all()
    found: dict[tuple[str, int], list[str]] = defaultdict(list)
    for name, post_id, reaction in rows:
        found[name, post_id].append(reaction)
    return {pair: tuple(found[pair]) for pair in set(asked) if pair in found}


def forget(session: Session, post_id: int) -> None:
    """A deleted post's reactions go with its body (reactions.py, on deleted posts)."""
    session.execute(delete(Reaction).where(col(Reaction.post_id) == post_id))
    session.execute(delete(ReactionWindow).where(col(ReactionWindow.post_id) == post_id))
