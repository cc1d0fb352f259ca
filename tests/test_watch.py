"""The recheck of open streams (feed/watch.py): against a real server, every long-lived
response, ``/events`` and ``/admin/stream`` alike, ends within ``FEED_ACCESS_RECHECK``
once the session behind it is revoked, signed out of, or expired; in-process, any
stream that registers is rechecked by the same rules."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from feed.access import SESSION_COOKIE, SESSION_SALT, Access
from feed.identity import ANONYMOUS, Identity, Role, Via
from feed.permissions import Permissions
from feed.settings import Settings
from feed.sse import Format
from feed.store import Store, StoreUnavailable
from feed.subscribers import Subscriber
from feed.watch import Watch
from tests.auth import make_token
from tests.conftest import Server
from tests.sse import SSEClient
from tests.test_access import csrf_of
from tests.test_cli import run_feed
from tests.waiting import until_async

RECHECK = 0.2
SECRET = "tests-session-signing-key-which-is-not-a-secret"
# How long after the recheck should have ended a stream we still allow, on a busy machine.
SLACK = 3.0


@pytest.fixture
def server(make_server: Callable[..., Server]) -> Server:
    """A server that rechecks often, signs with a known key, and has a private #board."""
    server = make_server(access_recheck=RECHECK, heartbeat=0.5, secret_key=SECRET, session_days=1)
    made = server.client.post(
        "/api/channels", json={"name": "board", "title": "B", "private": True}
    )
    assert made.status_code == 201, made.text
    return server


def admin_session(server: Server) -> tuple[str, int]:
    """A browser session of a new admin: its cookie, and the id of the token behind it."""
    token, token_id = make_token(server.database, "root", "admin")
    browser = httpx.Client(base_url=server.url)
    answer = browser.post("/signin", data={"token": token, "next": "/admin"})
    assert answer.status_code == 303, answer.text
    return browser.cookies[SESSION_COOKIE], token_id


@contextmanager
def open_streams(server: Server, cookie: str) -> Iterator[tuple[SSEClient, SSEClient]]:
    """An admin stream and a private channel's stream, both opened with ``cookie`` and
    both carrying #board's text."""
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
    params = {"format": "json", "channel": "board"}
    with (
        SSEClient(server.port, "/admin/stream", headers=headers) as admin,
        SSEClient(server.port, params=params, headers=headers) as events,
    ):
        assert (admin.status, events.status) == (200, 200)
        server.post("board only", channel="board")
        events.wait_for(lambda s: any("board only" in m.data for m in s.events()))
        admin.wait_for(lambda s: any("board only" in m.data for m in s.events()))
        yield admin, events


def wait_ended(*streams: SSEClient, within: float) -> float:
    """Wait until every stream has ended; returns when the last one did (time.time)."""
    for stream in streams:
        stream.wait_closed(timeout=within)
    return time.time()


def test_revoking_the_token_behind_a_session_ends_its_admin_and_event_streams(
    server: Server,
) -> None:
    cookie, token_id = admin_session(server)
    with open_streams(server, cookie) as (admin, events):
        revoked = run_feed("token", "revoke", str(token_id), FEED_DATABASE_URL=server.database)
        assert revoked.returncode == 0, revoked.stderr
        started = time.time()
        ended = wait_ended(admin, events, within=RECHECK + SLACK)
    assert ended - started < RECHECK + SLACK
    assert admin.graceful and events.graceful
    again = SSEClient(server.port, "/admin/stream", headers={"Cookie": f"feed_session={cookie}"})
    with again:
        assert again.status == 303


def test_signing_out_ends_the_sessions_admin_and_event_streams(server: Server) -> None:
    cookie, _ = admin_session(server)
    browser = httpx.Client(base_url=server.url, cookies={SESSION_COOKIE: cookie})
    with open_streams(server, cookie) as (admin, events):
        token = csrf_of(browser.get("/").text)
        assert browser.post("/signout", data={"csrf_token": token}).status_code == 303
        started = time.time()
        ended = wait_ended(admin, events, within=RECHECK + SLACK)
    assert ended - started < RECHECK + SLACK
    assert admin.graceful and events.graceful


def old_session(server: Server, name: str, token_id: int, expires_in: int) -> tuple[str, float]:
    """A session cookie signed with the server's key long enough ago that it expires
    ``expires_in`` seconds from now (FEED_SESSION_DAYS=1); and when that is."""
    signed_at = int(time.time()) - 86400 + expires_in

    class Then(TimestampSigner):
        def get_timestamp(self) -> int:
            return signed_at

    sessions = URLSafeTimedSerializer(SECRET, salt=SESSION_SALT, signer=Then)
    data = {"n": name, "r": "admin", "t": token_id, "s": None, "x": secrets.token_urlsafe(24)}
    return sessions.dumps(data), signed_at + 86400


def test_a_session_that_expires_ends_its_admin_and_event_streams(server: Server) -> None:
    _, token_id = admin_session(server)
    cookie, expires_at = old_session(server, "root", token_id, expires_in=4)
    with open_streams(server, cookie) as (admin, events):
        assert time.time() < expires_at, "the streams opened too late to see the expiry"
        ended = wait_ended(admin, events, within=expires_at - time.time() + RECHECK + SLACK)
    # Not before the session's end...
    assert ended >= expires_at
    # ...and within the recheck interval of it.
    assert ended - expires_at < RECHECK + SLACK
    assert admin.graceful and events.graceful
    # The cookie is no one's now: #board does not exist for it.
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
    with SSEClient(server.port, params={"channel": "board"}, headers=headers) as refused:
        assert refused.status == 404
        assert json.loads(refused.read_body())["error"] == "There is no channel named 'board'."


# -- the mechanism, in-process ----------------------------------------------------------


class Tab:
    """A long-lived response of a kind the Watch has never heard of."""

    def __init__(self, who: Identity) -> None:
        self.who = who
        self.closed = False
        self.why: str | None = None

    def end(self, why: str) -> None:
        self.closed, self.why = True, why


def test_any_stream_registered_is_rechecked_and_one_with_nothing_to_lose_is_not_kept(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        store = Store.from_url(f"sqlite:///{tmp_path / 'feed.db'}")
        await store.create_schema()
        try:
            access = Access(Settings(database_url="sqlite://"), store)
            watch = Watch(access, interval=60)
            kept = await store.add_token("kim", "writer", "api", None, "0" * 64)
            gone = await store.add_token("rev", "writer", "api", None, "1" * 64)
            await store.revoke_token(gone.id)
            now = time.time()
            tabs = {
                "revoked": Tab(Identity("rev", Role.WRITER, Via.TOKEN, credential=gone.id)),
                "valid": Tab(Identity("kim", Role.WRITER, Via.TOKEN, credential=kept.id)),
                "expired": Tab(Identity("ann", Role.WRITER, Via.SESSION, expires_at=now - 1)),
                "current": Tab(Identity("bob", Role.WRITER, Via.SESSION, expires_at=now + 60)),
            }
            anonymous = Tab(ANONYMOUS)
            for tab in [*tabs.values(), anonymous]:
                watch.add(tab)
            assert len(watch) == len(tabs)  # nothing can be taken from an anonymous reader
            assert await watch.recheck() == 2
            assert {name for name, tab in tabs.items() if tab.closed} == {"revoked", "expired"}
            # Each is told why, so that its reader need not guess.
            assert "revoked" in (tabs["revoked"].why or "")
            assert "expired" in (tabs["expired"].why or "")
            for tab in tabs.values():
                watch.discard(tab)
            assert len(watch) == 0
        finally:
            store.close()

    asyncio.run(scenario())


class HeldAccess(Access):
    """Access whose permission reads, while ``hold`` is on, wait after reading until
    ``release``: a recheck that read before a change and finishes after it."""

    def __init__(self, settings: Settings, store: Store) -> None:
        super().__init__(settings, store)
        self.hold = False
        self.read = asyncio.Event()
        self.release = asyncio.Event()

    async def permissions_of(
        self, whos: Iterable[Identity], *, fresh: bool = False
    ) -> dict[Identity, Permissions]:
        found = await super().permissions_of(whos, fresh=fresh)
        if self.hold:
            self.read.set()
            await self.release.wait()
        return found


async def kims_stream(store: Store) -> tuple[HeldAccess, Watch, Subscriber]:
    """A Watch over HeldAccess, keeping one open stream of kim's (a writer's token)."""
    kim = await store.add_token("kim", "writer", "api", None, "0" * 64)
    access = HeldAccess(Settings(database_url="sqlite://"), store)
    watch = Watch(access, interval=60)
    sub = Subscriber(Format.JSON, None, last_id=0, limit=100_000)
    sub.who = Identity("kim", Role.WRITER, Via.TOKEN, credential=kim.id)
    watch.add(sub)
    return access, watch, sub


def test_a_recheck_that_read_before_a_membership_was_taken_away_never_gives_it_back(
    tmp_path: Path,
) -> None:
    # The periodic recheck and one after a change may overlap; the older read must not
    # be the last one applied.
    async def scenario() -> None:
        store = Store.from_url(f"sqlite:///{tmp_path / 'feed.db'}")
        await store.create_schema()
        try:
            await store.create_channel("board", "Board", "", private=True)
            await store.set_member("board", "kim", may_post=False)
            access, watch, sub = await kims_stream(store)
            await watch.recheck()
            assert sub.private == frozenset({"board"})
            access.hold = True
            periodic = asyncio.ensure_future(watch.recheck())
            await asyncio.wait_for(access.read.wait(), 10)
            access.hold = False
            assert await store.remove_member("board", "kim")
            followed = asyncio.ensure_future(watch.recheck())
            # Overlapping, the later recheck would be done, its newer grants applied;
            # one at a time, it waits for the earlier one's turn.
            await until_async(lambda: followed.done() or watch.waiting == 1, seconds=10)
            access.release.set()
            await asyncio.wait_for(asyncio.gather(periodic, followed), 10)
            assert sub.private == frozenset()
            # A recheck asked for while one waits its turn is served by that one.
            calls: list[int] = []
            real = access.permissions_of

            async def counted(whos: Iterable[Identity], *, fresh: bool = False) -> dict:  # type: ignore[type-arg]
                calls.append(1)
                return await real(whos, fresh=fresh)

            access.permissions_of = counted  # type: ignore[method-assign]
            await asyncio.gather(*(watch.recheck() for _ in range(5)))
            assert len(calls) == 2
        finally:
            store.close()

    asyncio.run(scenario())


def test_a_recheck_that_fails_leaves_those_it_served_to_try_again(tmp_path: Path) -> None:
    # Rechecks asked for while one waits are served by the next to begin; if that one
    # fails, each must run itself: a change followed must not be taken as applied.
    async def scenario() -> None:
        store = Store.from_url(f"sqlite:///{tmp_path / 'feed.db'}")
        await store.create_schema()
        try:
            access, watch, _ = await kims_stream(store)
            access.hold = True
            first = asyncio.ensure_future(watch.recheck())
            await asyncio.wait_for(access.read.wait(), 10)
            access.hold = False
            failing = asyncio.ensure_future(watch.recheck())
            await until_async(lambda: watch.waiting == 1, seconds=10)
            served = asyncio.ensure_future(watch.recheck())
            await until_async(lambda: watch.waiting == 2, seconds=10)
            reads: list[str] = []
            real = access.permissions_of

            async def once_down(whos: Iterable[Identity], *, fresh: bool = False) -> dict:  # type: ignore[type-arg]
                reads.append("failed" if not reads else "read")
                if len(reads) == 1:
                    raise StoreUnavailable("the database is away")
                return await real(whos, fresh=fresh)

            access.permissions_of = once_down  # type: ignore[method-assign]
            access.release.set()
            await asyncio.wait_for(first, 10)
            with pytest.raises(StoreUnavailable):
                await asyncio.wait_for(failing, 10)
            await asyncio.wait_for(served, 10)
            assert reads == ["failed", "read"]
        finally:
            store.close()

    asyncio.run(scenario())
