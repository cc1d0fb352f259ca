"""A long randomised soak: an open kiosk and an open dashboard converge to the
database through restarts, outages and every kind of write.

One server is restarted ``RESTARTS`` times on the same port, by SIGTERM or SIGKILL
at random. While it is down, this test writes straight to the database through the
store, as a second process would; while it is up, it writes through the API and,
now and then, through the store again (the server finds those by polling). Writes
create, edit, delete, pin and unpin posts, aimed at the edges of what the pages
show: the kiosk's last posts and the first it hides, the dashboard's floor and its
last pinned post. Some outages are longer than the replay limit, so the pages also
resync.

Whenever a page has caught up (``window.feedStream.lastApplied`` is the log's newest
event), it must show exactly what its rule makes of the database's posts:
``lists.kiosk_window`` for the kiosk, ``lists.dashboard_window`` for the dashboard:
ids, order, pinned state, the edited tag, channel and body text, each post once.
The dashboard's floor is read from the page: its list sets it, when loaded or
re-fetched, and "Older posts", which the soak clicks now and then, lowers it.

The random choices come from one seed, printed with any failure; set ``SOAK_SEED``
to replay a failure or to try another seed.
"""

from __future__ import annotations

import os
import random
import signal
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Response

from feed.kiosk import KIOSK_POSTS
from feed.lists import dashboard_window, kiosk_window
from feed.values import PostView
from tests.browser import (
    SCREEN,
    Database,
    Problems,
    browser,
    database,
    new_context,
    ok,
    open_live,
    problems,
    wait_applied,
)
from tests.conftest import Server

pytestmark = pytest.mark.browser
__all__ = ["browser", "database", "problems"]  # fixtures

SEED = int(os.environ.get("SOAK_SEED", "1306"))
RESTARTS = 12
PAGE_SIZE = 12  # small, so the dashboard's floor and pinned limit are reached
REPLAY_LIMIT = 30
LONG_OUTAGES = (3, 8)  # rounds whose outage writes more than the replay limit
BURSTS = (3, 5)  # bursts of writes between restarts, each followed by a check
WRITES = (1, 5)  # writes in a burst
MIN_POSTS = 40  # below this, the next write is a create: the kiosk's 30 stay full
MAX_PINNED = 16  # above the dashboard's pinned limit, below the kiosk's window
CATCH_UP_MS = 15_000  # a restart, the browser's reconnect and a replay or a re-fetch
SETTINGS = {
    "heartbeat": 0.5,
    "retry_ms": 300,
    "poll_interval": 0.2,
    "page_size": PAGE_SIZE,
    "replay_limit": REPLAY_LIMIT,
    "shutdown_timeout": 1,
}
OUTAGE = ("htmx:sseError", "[object Event]", "ERR_CONNECTION_REFUSED", "ERR_EMPTY_RESPONSE")

# One evaluation, so the applied id and the posts are read at the same moment.
SHOWN = """() => {
  const older = document.querySelector('#posts > .older');
  return {
    applied: window.feedStream.lastApplied,
    floor: older ? Number(older.dataset.floor) : 0,
    elements: document.querySelectorAll('[id^="post-"]').length,
    posts: [...document.querySelectorAll('#posts > .post')].map(el => [
      Number(el.id.slice('post-'.length)),
      el.classList.contains('pinned'),
      el.querySelector('.tag.pin') !== null,
      el.querySelector('.tag.edited') !== null,
      el.dataset.channel,
      el.querySelector('.body').textContent.trim(),
    ]),
  };
}"""

Row = tuple[int, bool, bool, bool, str, str]


def row(post: PostView) -> Row:
    # Bodies are plain words and *emphasis*, so their text is the body without stars.
    text = post.body.replace("*", "")
    return (post.id, post.pinned, post.pinned, post.edited_at is not None, post.channel, text)


@dataclass
class Soak:
    """The writes, the server and the pages of one soak, and its checks."""

    rng: random.Random
    db: Database
    server: Server
    pages: dict[str, Page]
    history: deque[str] = field(default_factory=lambda: deque(maxlen=30))
    kinds: Counter[str] = field(default_factory=Counter)
    refetches: Counter[str] = field(default_factory=Counter)
    older_pages: int = 0
    checks: int = 0
    where: str = "start"

    def __post_init__(self) -> None:
        for name, page in self.pages.items():
            page.on("response", self._watcher(name))

    def _watcher(self, name: str) -> Callable[[Response], None]:
        return lambda response: self._saw(name, response)

    def _saw(self, name: str, response: Response) -> None:
        # A whole list re-fetched: after a resync, or for a post the page was never sent.
        if "x-feed-last-event-id" in response.headers and "/partials/" in response.url:
            self.refetches[name] += 1
            self.history.append(
                f"the {name} re-fetched its list up to event "
                f"{response.headers['x-feed-last-event-id']}"
            )

    # -- writes ----------------------------------------------------------------------

    def write(self, via: str) -> None:
        """One random write, through the API (``via="api"``) or the store."""
        posts = self.db.posts()
        kind, target = self._pick(posts)
        if kind == "pin+create":  # a pin and, right behind it, a create
            self._do("pin", target, via)
            kind, target = "create", None
        self._do(kind, target, via)

    def _pick(self, posts: list[PostView]) -> tuple[str, int | None]:
        rng = self.rng
        pinned = [p.id for p in posts if p.pinned]
        unpinned = [p.id for p in posts if not p.pinned]
        shown = [p.id for p in kiosk_window(posts, KIOSK_POSTS)]
        room = KIOSK_POSTS - min(len(pinned), KIOSK_POSTS)
        # The kiosk's oldest unpinned posts and the newest it leaves out; the
        # dashboard's floor and the posts around it.
        edge = unpinned[max(0, room - 3) : room + 3]
        floor = self._floor()
        if floor:
            at = _rank(unpinned, floor)
            edge += unpinned[max(0, at - 2) : at + 3]
        roll = rng.random()
        if len(posts) < MIN_POSTS or roll < 0.28:
            return "create", None
        if roll < 0.42:
            return "edit", rng.choice(shown if rng.random() < 0.7 else unpinned + pinned)
        if roll < 0.57:
            pool = edge if rng.random() < 0.5 else shown if rng.random() < 0.6 else unpinned
            return "delete", rng.choice(pool or shown)
        if roll < 0.92 and (roll >= 0.77 or len(pinned) >= MAX_PINNED) and pinned:
            # The oldest pinned posts half the time: unpinned, they leave the window.
            return "unpin", rng.choice(pinned[-3:] if rng.random() < 0.5 else pinned)
        if roll < 0.92:
            return "pin", rng.choice(edge if rng.random() < 0.7 else unpinned)
        return "pin+create", rng.choice(edge)

    def _do(self, kind: str, target: int | None, via: str) -> None:
        n = sum(self.kinds.values())
        channel = self.rng.choice(["general", "general", "announcements"])
        if kind == "create":
            body = f"post {n} in *{channel}*"
        else:
            body = f"post {target} edited at write {n}"
        self.kinds[kind] += 1
        if via == "store":
            change = {
                "create": lambda: self.db.post(body, channel),
                "edit": lambda: self.db.edit(target or 0, body),
                "delete": lambda: self.db.delete(target or 0),
                "pin": lambda: self.db.pin(target or 0, True),
                "unpin": lambda: self.db.pin(target or 0, False),
            }[kind]()
            event, made = change.event_id, change.post.id
        else:
            answer = self._api(kind, target, body, channel)
            event, made = answer["event_id"], answer["post"]["id"]
        self.history.append(f"{kind} {made} via {via}: event {event}")

    def _api(self, kind: str, target: int | None, body: str, channel: str) -> dict[str, Any]:
        client = self.server.client
        if kind == "create":
            return self.server.post(body, channel=channel)
        if kind == "edit":
            return ok(client.patch(f"/api/posts/{target}", json={"body": body}))
        if kind == "delete":
            return ok(client.delete(f"/api/posts/{target}"))
        return ok(client.post(f"/api/posts/{target}/{kind}"))

    def _floor(self) -> int:
        floor: int = self.pages["dashboard"].evaluate(SHOWN)["floor"]
        return floor

    def older(self) -> None:
        """Click the dashboard's "Older posts", if it has one; the writes that follow
        race the page it loads."""
        button = self.pages["dashboard"].locator("#posts > .older button")
        if button.count():
            button.click()
            self.older_pages += 1
            self.history.append(f"clicked Older posts under {self._floor()}")

    # -- restarts --------------------------------------------------------------------

    def restart(self, make_server: Callable[..., Server], outage_writes: int) -> None:
        how = self.rng.choice([signal.SIGTERM, signal.SIGKILL])
        self.server.stop(how)
        self.history.append(f"stopped by {signal.Signals(how).name}")
        for _ in range(outage_writes):
            self.write(via="store")
        self.server = make_server(database=self.server.database, port=self.server.port, **SETTINGS)
        self.history.append("restarted")

    # -- checks ----------------------------------------------------------------------

    def check(self, where: str) -> None:
        """Wait until both pages have caught up with the log, then compare each with
        what its rule makes of the database."""
        self.where = where
        newest = self.db.latest()
        posts = self.db.posts()
        for name, page in self.pages.items():
            try:
                wait_applied(page, newest, timeout=CATCH_UP_MS)
            except AssertionError:
                self.fail(name, f"did not catch up with event {newest}", page.evaluate(SHOWN))
            shown = page.evaluate(SHOWN)
            if shown["applied"] != newest:
                self.fail(name, f"applied {shown['applied']}, the log ends at {newest}", shown)
            if name == "kiosk":
                expected = kiosk_window(posts, KIOSK_POSTS)
            else:
                expected = dashboard_window(posts, PAGE_SIZE, shown["floor"])
            rows = [tuple(r) for r in shown["posts"]]
            if rows != [row(p) for p in expected] or shown["elements"] != len(rows):
                self.fail(name, "differs from the database", shown, [row(p) for p in expected])
        self.checks += 1

    def fail(
        self, name: str, problem: str, shown: dict[str, Any], expected: list[Row] | None = None
    ) -> None:
        rows = [tuple(r) for r in shown["posts"]]
        lines = [
            f"soak seed {SEED} (replay: SOAK_SEED={SEED}), {self.where}, check {self.checks}:",
            f"the {name} {problem}.",
        ]
        if expected is not None:
            ids, want = [r[0] for r in rows], [r[0] for r in expected]
            lines += [
                f"  shown    ({len(ids)}): {ids}",
                f"  expected ({len(want)}): {want}",
                f"  missing: {sorted(set(want) - set(ids))}, extra: {sorted(set(ids) - set(want))}",
                f"  elements with a post id: {shown['elements']}, floor: {shown['floor']}",
            ]
            by_id = {r[0]: r for r in expected}
            lines += [
                f"  post {r[0]}: shown {r[1:]}, expected {by_id[r[0]][1:]}"
                for r in rows
                if r[0] in by_id and r != by_id[r[0]]
            ]
        lines.append("last writes: " + "; ".join(self.history))
        pytest.fail("\n".join(lines), pytrace=False)


def _rank(ids: list[int], floor: int) -> int:
    """Where ``floor`` falls among ``ids`` (newest first)."""
    return next((n for n, i in enumerate(ids) if i <= floor), len(ids))


def test_kiosk_and_dashboard_converge_to_the_database_through_restarts_and_outages(
    make_server: Callable[..., Server],
    browser: Browser,
    problems: Problems,
    database: Database,
    record_property: Callable[[str, object], None],
) -> None:
    problems.allow(*OUTAGE)
    rng = random.Random(SEED)
    print(f"\nsoak seed {SEED}")
    server = make_server(**SETTINGS)
    for n in range(MIN_POSTS + 5):
        database.post(f"post {n} before the pages opened", rng.choice(["general", "announcements"]))
    for post in rng.sample(database.posts()[20:40], 6):
        database.pin(post.id)
    context = new_context(browser, problems, viewport=SCREEN)
    try:
        pages = {
            "kiosk": open_live(context, f"{server.url}/kiosk"),
            "dashboard": open_live(context, server.url),
        }
        soak = Soak(rng, database, server, pages)
        soak.check("when the pages opened")
        for round_ in range(RESTARTS):
            for burst in range(rng.randint(*BURSTS)):
                if rng.random() < 0.2:
                    soak.older()
                for _ in range(rng.randint(*WRITES)):
                    soak.write(via="store" if rng.random() < 0.2 else "api")
                soak.check(f"round {round_}, burst {burst}")
            long = round_ in LONG_OUTAGES
            soak.restart(make_server, REPLAY_LIMIT + 5 if long else rng.randint(2, 8))
            soak.check(f"round {round_}, after restart {round_ + 1}")
        soak.server.stop()
    finally:
        context.close()
    summary = {
        "writes": dict(soak.kinds),
        "checks": soak.checks,
        "refetches": dict(soak.refetches),
        "older pages": soak.older_pages,
    }
    record_property("soak", {"seed": SEED, **summary})
    print(f"soak: {summary}")
    # The soak went where it was aimed: every kind of write, and both pages re-fetched
    # their lists (at least after each long outage).
    assert min(soak.kinds[k] for k in ("create", "edit", "delete", "pin", "unpin")) >= 20
    assert soak.older_pages >= 3, soak.older_pages
    assert soak.refetches["kiosk"] >= len(LONG_OUTAGES) + 10, soak.refetches
    assert soak.refetches["dashboard"] >= len(LONG_OUTAGES), soak.refetches
    problems.assert_none()
