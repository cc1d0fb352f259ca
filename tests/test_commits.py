"""Group commit: what arrives while a write runs is written together, answered one by one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from feed.commits import GroupCommit


class Recorder:
    """A ``write`` that records its batches; "bad" requests get their own error."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.fail_with: Exception | None = None
        self.started = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()

    async def write(self, batch: Sequence[str]) -> list[str | Exception]:
        self.batches.append(list(batch))
        self.started.set()
        await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return [ValueError(r) if r.startswith("bad") else r.upper() for r in batch]


def test_requests_that_arrive_together_are_one_write_each_with_its_own_answer() -> None:
    async def main() -> None:
        rec = Recorder()
        group = GroupCommit(rec.write)
        results = await asyncio.gather(
            group.submit("a"), group.submit("bad"), group.submit("b"), return_exceptions=True
        )
        assert results[0] == "A" and results[2] == "B"
        assert isinstance(results[1], ValueError) and str(results[1]) == "bad"
        assert rec.batches == [["a", "bad", "b"]]
        # One after another: a write each.
        assert await group.submit("c") == "C"
        assert await group.submit("d") == "D"
        assert rec.batches[1:] == [["c"], ["d"]]

    asyncio.run(main())


def test_what_arrives_during_a_write_goes_in_the_next_one_in_order() -> None:
    async def main() -> None:
        rec = Recorder()
        rec.gate.clear()
        group = GroupCommit(rec.write, limit=2)
        first = asyncio.ensure_future(group.submit("1"))
        async with asyncio.timeout(5):
            await rec.started.wait()
        later = [asyncio.ensure_future(group.submit(str(n))) for n in range(2, 7)]
        # Callbacks run in the order they were queued: the tasks above submit first.
        asyncio.get_running_loop().call_soon(rec.gate.set)
        assert await asyncio.gather(first, *later) == ["1", "2", "3", "4", "5", "6"]
        # The first alone; then the waiting ones, at most ``limit`` a write.
        assert rec.batches == [["1"], ["2", "3"], ["4", "5"], ["6"]]

    asyncio.run(main())


def test_a_failed_write_fails_its_whole_batch_and_only_that_batch() -> None:
    async def main() -> None:
        rec = Recorder()
        group = GroupCommit(rec.write)
        rec.fail_with = OSError("disk full")
        results = await asyncio.gather(group.submit("a"), group.submit("b"), return_exceptions=True)
        assert all(isinstance(r, OSError) and str(r) == "disk full" for r in results)
        rec.fail_with = None
        assert await group.submit("c") == "C"

    asyncio.run(main())


def test_what_arrived_while_a_write_failed_gets_its_error_without_a_second_try() -> None:
    async def main() -> None:
        rec = Recorder()
        rec.gate.clear()
        rec.fail_with = TimeoutError("database locked")
        group = GroupCommit(rec.write)
        first = asyncio.ensure_future(group.submit("a"))
        async with asyncio.timeout(5):
            await rec.started.wait()
        during = asyncio.ensure_future(group.submit("b"))
        # Callbacks run in the order they were queued: the task above submits first.
        asyncio.get_running_loop().call_soon(rec.gate.set)
        results = await asyncio.gather(first, during, return_exceptions=True)
        assert all(isinstance(r, TimeoutError) for r in results)
        assert rec.batches == [["a"]]  # "b" waited as long already: not tried again
        rec.fail_with = None
        assert await group.submit("c") == "C"
        assert rec.batches == [["a"], ["c"]]

    asyncio.run(main())


def test_a_caller_that_goes_away_does_not_cancel_the_write() -> None:
    async def main() -> None:
        rec = Recorder()
        rec.gate.clear()
        group = GroupCommit(rec.write)
        gone = asyncio.ensure_future(group.submit("gone"))
        staying = asyncio.ensure_future(group.submit("staying"))
        async with asyncio.timeout(5):
            await rec.started.wait()
        gone.cancel()
        rec.gate.set()
        assert await staying == "STAYING"
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert rec.batches == [["gone", "staying"]]

    asyncio.run(main())


def test_a_write_that_answers_the_wrong_number_of_results_fails_loudly() -> None:
    async def short(batch: Sequence[str]) -> list[str | Exception]:
        return []

    async def main() -> None:
        group: GroupCommit[str, str] = GroupCommit(short)
        with pytest.raises(RuntimeError, match="0 results for 1 requests"):
            await group.submit("a")

    asyncio.run(main())


class Poisoned(Recorder):
    """A ``write`` that fails as a whole whenever its batch holds a "poison" request,
    as a database insert does for a value its driver cannot take."""

    def __init__(self) -> None:
        super().__init__()
        self.failed: list[list[str]] = []

    async def write(self, batch: Sequence[str]) -> list[str | Exception]:
        if any(r.startswith("poison") for r in batch):
            self.failed.append(list(batch))
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        return await super().write(batch)


def test_a_request_that_fails_its_whole_write_fails_alone() -> None:
    async def main() -> None:
        rec = Poisoned()
        group = GroupCommit(rec.write, isolate=lambda exc: isinstance(exc, UnicodeEncodeError))
        requests = ["a", "b", "poison", "c", "d", "e"]
        results = await asyncio.gather(*(group.submit(r) for r in requests), return_exceptions=True)
        assert [r if isinstance(r, str) else type(r) for r in results] == [
            "A",
            "B",
            UnicodeEncodeError,
            "C",
            "D",
            "E",
        ]
        # Split until the poison stood alone; everyone else was written, in order.
        assert [r for batch in rec.batches for r in batch] == ["a", "b", "c", "d", "e"]
        assert rec.failed[0] == requests and rec.failed[-1] == ["poison"]
        # An error of the write as a whole still fails everyone in the batch at once.
        rec.fail_with = TimeoutError("database locked")
        failed = await asyncio.gather(group.submit("f"), group.submit("g"), return_exceptions=True)
        assert all(isinstance(r, TimeoutError) for r in failed)

    asyncio.run(main())


def test_requests_submitted_together_are_answered_in_order_each_its_own() -> None:
    async def main() -> None:
        rec = Poisoned()
        rec.gate.clear()
        group = GroupCommit(
            rec.write, limit=3, isolate=lambda exc: isinstance(exc, UnicodeEncodeError)
        )
        first = asyncio.ensure_future(group.submit("x"))
        async with asyncio.timeout(5):
            await rec.started.wait()
        together = asyncio.ensure_future(group.submit_all(["a", "bad", "b", "c", "poison", "d"]))
        gone = asyncio.ensure_future(group.submit_all(["gone", "bad gone"]))
        after = asyncio.ensure_future(group.submit("y"))
        # Callbacks run in the order they were queued: the tasks above submit first.
        loop = asyncio.get_running_loop()
        loop.call_soon(gone.cancel)
        loop.call_soon(rec.gate.set)
        async with asyncio.timeout(5):
            results = await together
            assert [await first, await after] == ["X", "Y"]
        assert [r if isinstance(r, str) else (type(r), str(r)) for r in results] == [
            "A",
            (ValueError, "bad"),
            "B",
            "C",
            (UnicodeEncodeError, str(rec_error())),
            "D",
        ]
        # Written in the order submitted, a limit's worth at a time, the cancelled
        # caller's requests too; the poison alone refused.
        assert rec.batches[:3] == [["x"], ["a", "bad", "b"], ["c"]]
        assert [r for batch in rec.batches for r in batch] == [
            "x", "a", "bad", "b", "c", "d", "gone", "bad gone", "y",
        ]  # fmt: skip
        with pytest.raises(asyncio.CancelledError):
            await gone
        # An error of the write as a whole is every request's, each its own.
        rec.fail_with = TimeoutError("database locked")
        failed = await group.submit_all(["e", "f"])
        assert [type(r) for r in failed] == [TimeoutError, TimeoutError]
        rec.fail_with = None
        assert await group.submit_all(["g"]) == ["G"]
        async with asyncio.timeout(5):
            assert await group.submit_all([]) == []

    asyncio.run(main())


def rec_error() -> UnicodeEncodeError:
    return UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")


class Stepper:
    """A ``write`` that records its batches and holds each until the test lets it go."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.writing = asyncio.Queue[int]()
        self.release = asyncio.Queue[None]()

    async def write(self, batch: Sequence[str]) -> list[str]:
        self.batches.append(list(batch))
        self.writing.put_nowait(len(self.batches))
        await self.release.get()
        return list(batch)

    async def next_write(self) -> int:
        """The number of the write that starts next (1 for the first)."""
        async with asyncio.timeout(5):
            return await self.writing.get()


async def _a_burst(step: Stepper, group: GroupCommit[str, str]) -> list[asyncio.Task[str]]:
    """Write "0" alone; queue four behind it and write them (a burst); hold that write."""
    held = [asyncio.create_task(group.submit("0"))]
    assert await step.next_write() == 1
    held += [asyncio.create_task(group.submit(str(n))) for n in range(1, 5)]
    step.release.put_nowait(None)
    assert await step.next_write() == 2
    assert step.batches == [["0"], ["1", "2", "3", "4"]]
    return held


def test_a_lone_request_never_waits_to_gather() -> None:
    async def main() -> None:
        rec = Recorder()
        # A gathering writer would hold these for a minute each: the timeout says it didn't.
        group = GroupCommit(rec.write, gather_s=60)
        async with asyncio.timeout(5):
            for n in range(5):
                assert await group.submit(str(n)) == str(n).upper()
        assert rec.batches == [[str(n)] for n in range(5)]

    asyncio.run(main())


def test_after_a_burst_the_next_write_waits_until_enough_have_gathered() -> None:
    async def main() -> None:
        step = Stepper()
        group = GroupCommit(step.write, burst=4, gather_s=60, gather_full=6)
        held = await _a_burst(step, group)
        # Two arrive during the burst's write; it ends, and the next write gathers.
        more = [asyncio.ensure_future(group.submit(str(n))) for n in (5, 6)]
        step.release.put_nowait(None)
        assert await asyncio.gather(*held) == ["0", "1", "2", "3", "4"]
        for n in (7, 8, 9):
            more.append(asyncio.ensure_future(group.submit(str(n))))
            for _ in range(3):
                await asyncio.sleep(0)
            assert step.writing.empty(), f"a write started with {n} waiting"
        # The sixth starts it at once, not a minute later.
        more.append(asyncio.ensure_future(group.submit("10")))
        assert await step.next_write() == 3
        step.release.put_nowait(None)
        async with asyncio.timeout(5):
            assert await asyncio.gather(*more) == ["5", "6", "7", "8", "9", "10"]
        assert step.batches[2] == ["5", "6", "7", "8", "9", "10"]

    asyncio.run(main())


def test_a_gathering_write_starts_when_its_time_is_up_with_what_came() -> None:
    async def main() -> None:
        step = Stepper()
        group = GroupCommit(step.write, burst=4, gather_s=0.05, gather_full=100)
        held = await _a_burst(step, group)
        more = asyncio.gather(group.submit("5"), group.submit("6"))
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        began = loop.time()
        step.release.put_nowait(None)
        assert await step.next_write() == 3
        assert loop.time() - began >= 0.05  # it gathered for its time; no more came
        step.release.put_nowait(None)
        assert await asyncio.gather(*held) == ["0", "1", "2", "3", "4"]
        assert list(await more) == ["5", "6"]
        # That write was two: the burst is over, and the next request goes at once.
        last = asyncio.ensure_future(group.submit("7"))
        async with asyncio.timeout(0.04):
            assert await step.next_write() == 4
        step.release.put_nowait(None)
        assert await last == "7"
        assert step.batches[2:] == [["5", "6"], ["7"]]

    asyncio.run(main())


def test_what_a_full_write_left_behind_is_written_without_waiting() -> None:
    async def main() -> None:
        rec = Recorder()
        group = GroupCommit(rec.write, limit=10, burst=4, gather_s=60, gather_full=8)
        posts = [str(n) for n in range(25)]
        async with asyncio.timeout(5):
            assert await group.submit_all(posts) == posts
        assert rec.batches == [posts[:10], posts[10:20], posts[20:]]

    asyncio.run(main())


def test_a_request_left_waiting_by_a_loop_that_ended_does_not_fail_the_next_ones() -> None:
    # A stepper for each loop, since its queues belong to the loop that first waits on them.
    steps = [Stepper()]

    async def write(batch: Sequence[str]) -> list[str]:
        return await steps[-1].write(batch)

    group = GroupCommit(write, burst=2, gather_s=60, gather_full=16)

    async def first() -> None:
        step = steps[-1]
        held = [asyncio.ensure_future(group.submit(r)) for r in ("a", "b")]
        assert await step.next_write() == 1
        # Its caller leaves it behind; it arrived during a burst's write, so it gathers.
        left = asyncio.ensure_future(group.submit("c"))
        await asyncio.sleep(0)
        step.release.put_nowait(None)
        assert await asyncio.gather(*held) == ["a", "b"]
        # The writer went on from answering them to gathering, before they heard.
        assert group._gathering is not None and not left.done()
        # The loop ends here, and cancels the gathering writer.

    async def second() -> None:
        steps.append(step := Stepper())
        later = asyncio.ensure_future(group.submit("d"))
        await step.next_write()
        step.release.put_nowait(None)
        async with asyncio.timeout(5):
            # "d" is written: its answer must be its own, not the gone loop's error.
            assert await later == "d"

    asyncio.run(first())
    asyncio.run(second())


def test_a_lone_request_during_one_batchs_write_does_not_wait_to_gather() -> None:
    async def main() -> None:
        step = Stepper()
        group = GroupCommit(step.write, burst=4, gather_s=60, gather_full=16)
        # A quiet feed: one client's batch of four, and one post from somebody else.
        batch = asyncio.ensure_future(group.submit_all(["1", "2", "3", "4"]))
        assert await step.next_write() == 1
        lone = asyncio.ensure_future(group.submit("5"))
        await asyncio.sleep(0)
        step.release.put_nowait(None)
        assert await batch == ["1", "2", "3", "4"]
        # The lone post's write starts at once, not a minute later.
        assert await step.next_write() == 2
        step.release.put_nowait(None)
        assert await lone == "5"

    asyncio.run(main())


def test_a_writer_cancelled_while_it_gathers_answers_what_waits_as_not_stored() -> None:
    async def main() -> None:
        step = Stepper()
        group = GroupCommit(
            step.write, burst=2, gather_s=60, gather_full=16, unwritten=lambda: OSError("gone")
        )
        held = [asyncio.ensure_future(group.submit(r)) for r in ("a", "b")]
        assert await step.next_write() == 1
        waiting = asyncio.ensure_future(group.submit("c"))
        await asyncio.sleep(0)
        step.release.put_nowait(None)
        assert await asyncio.gather(*held) == ["a", "b"]
        assert group._gathering is not None
        writer = group._writer
        assert writer is not None
        writer.cancel()  # as the end of the loop does
        async with asyncio.timeout(5):
            with pytest.raises(OSError, match="gone"):
                await waiting
        assert step.batches == [["a", "b"]]  # "c" was never written

    asyncio.run(main())
