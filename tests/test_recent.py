"""The gate's recent answers on a post's path (access.py, on recent answers): read
again ahead of time, so steady requests never wait for the database, and never kept
when a change of access came while they were read."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

from feed import access as access_module
from feed import recent
from feed.access import Access
from feed.errors import ClientError
from feed.permissions import Permissions
from feed.settings import Settings
from feed.store import Store, StoreUnavailable
from feed.values import ChannelView, MemberView, TokenView
from tests.auth import make_token

DEADLINE = 5.0
T = TypeVar("T")


class Clock:
    """The gate's monotonic clock, moved by the test: answers age without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    moved = Clock()
    monkeypatch.setattr(recent, "time", moved)
    monkeypatch.setattr(access_module, "time", moved)
    yield moved


class Gated(Store):
    """A store whose reads behind permission checks are counted and, once read, wait
    for ``gate`` when one is set."""

    gate: asyncio.Event | None = None
    loads = 0  # reads made
    reading = 0  # reads begun and not yet returned
    most_reading = 0

    async def _held(self, read: Awaitable[T]) -> T:
        self.reading += 1
        self.most_reading = max(self.most_reading, self.reading)
        try:
            found = await read
            self.loads += 1
            if self.gate is not None:
                await self.gate.wait()
            return found
        finally:
            self.reading -= 1

    async def token_by_digest(self, digest: str) -> TokenView | None:
        return await self._held(super().token_by_digest(digest))

    async def list_channels(self, *, archived: bool = True) -> list[ChannelView]:
        return await self._held(super().list_channels(archived=archived))

    async def members(
        self, *, channel: str | None = None, names: Sequence[str] | None = None
    ) -> list[MemberView]:
        return await self._held(super().members(channel=channel, names=names))


async def check(gate: Access, token: str) -> Permissions:
    """What a post with ``token`` asks of the gate."""
    return await gate.permissions(await gate.from_token(token))


async def settled(store: Gated) -> None:
    """Until the reads the gate began (or has just scheduled) have returned."""
    await asyncio.sleep(0)  # a task the check scheduled makes its read in this turn
    await soon(lambda: store.reading == 0, "the gate's reads did not end")


async def soon(condition: Callable[[], bool], what: str) -> None:
    """Until ``condition()`` holds, or fail after the deadline (the loop keeps running
    the gate's own tasks meanwhile)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not condition():
        assert loop.time() < deadline, what
        await asyncio.sleep(0.01)  # polling a count the gate's tasks move, with a deadline


def run(tmp_path: Path, body: Callable[[Gated, Access], Awaitable[None]]) -> None:
    async def main() -> None:
        store = Gated.from_url(f"sqlite:///{tmp_path / 'feed.db'}")
        try:
            gate = Access(Settings(database_url="sqlite://"), store)
            store.on_commit(lambda commit: gate.changed(commit.access))
            await gate.start()
            await body(store, gate)
        finally:
            store.close()

    asyncio.run(main())


def test_steady_posts_never_wait_for_the_gate_to_read_its_answers_again(
    tmp_path: Path, clock: Clock
) -> None:
    """A script posting every 0.3 s: its token, the channels and its memberships are
    read again while the answers kept are still recent, not on a post's path once
    they are too old, and one at a time, not in three worker threads at once. Each
    post's check finds the reads it would wait for held."""
    url = f"sqlite:///{tmp_path / 'feed.db'}"
    token, _ = make_token(url, "ada")

    async def body(store: Gated, gate: Access) -> None:
        assert (await check(gate, token)).may_post("general")
        for _ in range(8):  # 2.4 s of the clock, past the recent answers' age twice
            clock.now += 0.3
            store.gate = asyncio.Event()  # any read from now on waits for the test
            try:
                async with asyncio.timeout(DEADLINE):
                    perms = await check(gate, token)
            except TimeoutError:
                raise AssertionError(
                    f"a post waited for a read at +{clock.now - 1000:.1f} s"
                ) from None
            assert perms.may_post("general") and perms.identity.name == "ada"
            store.gate.set()
            store.gate = None
            await settled(store)  # what was read ahead of time is kept before the next post
        assert store.most_reading == 1

    run(tmp_path, body)


def test_a_token_revoked_while_it_was_read_is_not_kept_as_it_was_read(
    tmp_path: Path, clock: Clock
) -> None:
    """A read of a token that began before its revocation ends after the revocation's
    announcement: the next post must not be let in by what that read found."""
    url = f"sqlite:///{tmp_path / 'feed.db'}"
    token, token_id = make_token(url, "ada")

    async def body(store: Gated, gate: Access) -> None:
        await check(gate, token)
        clock.now += 2 * recent.RECENT_TTL  # every answer too old: read on the post's path
        store.gate = asyncio.Event()
        reads = store.loads
        first = asyncio.ensure_future(check(gate, token))
        await soon(lambda: store.loads > reads, "the token was not read")
        await store.revoke_token(token_id)  # announced to the gate (``changed``)
        store.gate.set()
        store.gate = None
        async with asyncio.timeout(DEADLINE):
            await first  # it came before the revocation: let in
            with pytest.raises(ClientError, match="revoked"):
                await check(gate, token)

    run(tmp_path, body)


def test_a_read_ahead_that_fails_leaves_the_answer_to_age_and_be_read_by_a_post(
    tmp_path: Path, clock: Clock
) -> None:
    """The database is briefly unavailable during a read ahead: nothing is logged as
    unhandled, the recent answer is used while it is recent, and read again after."""
    url = f"sqlite:///{tmp_path / 'feed.db'}"
    token, _ = make_token(url, "ada")
    failures: list[str] = []

    async def body(store: Gated, gate: Access) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: failures.append(context["message"]))
        await check(gate, token)
        real = store.token_by_digest

        async def unavailable(digest: str) -> TokenView | None:
            raise StoreUnavailable()

        store.token_by_digest = unavailable  # type: ignore[method-assign]
        clock.now += 0.7 * recent.RECENT_TTL
        assert (await check(gate, token)).may_post("general")
        await settled(store)
        store.token_by_digest = real  # type: ignore[method-assign]
        clock.now += 0.7 * recent.RECENT_TTL
        assert (await check(gate, token)).may_post("general")

    run(tmp_path, body)
    assert failures == []


def test_a_read_ahead_in_flight_is_ended_when_the_app_stops(settings: Settings) -> None:
    """The app stops while the gate reads an answer again ahead of time: the read's
    task is ended before the store closes, not left pending on a closed store."""
    from feed.app import create_app
    from feed.runtime import runtime_of

    app = create_app(settings)
    held = asyncio.Event()  # never set: the read ahead waits until it is ended
    began = asyncio.Event()

    async def read() -> None:
        began.set()
        await held.wait()

    async def main() -> None:
        async with app.starlette.router.lifespan_context(app.starlette) as state:
            assert state is not None
            gate = runtime_of(state).access
            gate._ahead.start("held", read)
            (task,) = gate._ahead._tasks.values()
            async with asyncio.timeout(DEADLINE):
                await began.wait()
        # Checked on the loop that ran the app, before its end cancels what is left.
        assert task.done(), "the read ahead was still pending after the app stopped"

    asyncio.run(main())


def test_reads_ahead_queued_are_bounded_and_those_past_it_are_left_to_their_requests() -> None:
    """Reads ahead go one at a time (recent.py, on reading again ahead of time): many
    answers aging together must not queue a task each, to run long after they could
    help."""

    async def main() -> tuple[int, int]:
        ahead = recent.ReadsAhead()
        release = asyncio.Event()
        ran = 0

        async def read() -> None:
            nonlocal ran
            ran += 1
            await release.wait()

        for key in range(recent.READS_AHEAD_MOST * 5):
            ahead.start(key, read)
        queued = len(ahead._tasks)
        release.set()
        await asyncio.wait_for(ahead.close(), DEADLINE)
        return queued, ran

    queued, ran = asyncio.run(main())
    assert queued == recent.READS_AHEAD_MOST
    assert ran <= recent.READS_AHEAD_MOST


def test_reads_ahead_a_request_asks_for_start_once_it_is_answered(
    tmp_path: Path, clock: Clock
) -> None:
    """Aging answers asked for while a request is answered are read again once its
    answer begins, not beside it (recent.py, on after the answer); a task the request
    left behind that asks later, or a request whose answer has begun, starts its read
    at once."""
    url = f"sqlite:///{tmp_path / 'feed.db'}"
    token, _ = make_token(url, "ada")

    async def body(store: Gated, gate: Access) -> None:
        assert (await check(gate, token)).may_post("general")
        await settled(store)
        before = store.loads
        clock.now += 0.6  # past the age at which answers are read again, still recent
        with recent.after_answer():
            assert (await check(gate, token)).may_post("general")
            for _ in range(5):  # turns in which a started read would have begun
                await asyncio.sleep(0)
            assert store.loads == before and store.reading == 0
            later = asyncio.get_running_loop().create_future()
        await soon(lambda: store.loads > before, "the reads ahead never started")
        await settled(store)
        # Token, channels, memberships: read once each after the answer.
        assert store.loads == before + 3

        # A task started inside a request that asks once the request has ended.
        async def left_behind() -> None:
            await later
            assert (await check(gate, token)).may_post("general")

        clock.now += 0.6
        with recent.after_answer():
            task = asyncio.ensure_future(left_behind())
        read = store.loads
        later.set_result(None)
        await task
        await soon(lambda: store.loads > read, "a late ask never read ahead")
        await settled(store)

        # A long-lived answer (the admin stream): once it has begun, what is asked for
        # while it lasts starts at once, not when it ends.
        clock.now += 0.6
        with recent.after_answer() as answered:
            answered()
            read = store.loads
            assert (await check(gate, token)).may_post("general")
            await soon(lambda: store.loads > read, "a read asked for mid-answer was held")

    run(tmp_path, body)
