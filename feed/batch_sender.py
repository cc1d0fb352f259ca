"""Sending ``feed post --ndjson``'s batches until each has its answer, or saying, when
it cannot, which lines may or may not have been posted.

Rationale:

1. A batch that got no answer (the connection failed or broke, or the server failed
   with a 5xx) is sent again, the same batch with the same keys, up to
   ``MAX_ATTEMPTS`` times, waiting ``FIRST_BACKOFF`` and then twice as long each time
   (or the server's ``Retry-After``, if longer). Its items' keys (post_lines.py) make
   the server answer an item it has already written with that same answer, so a
   batch written but whose answer was lost is posted once, not twice, and not lost.
   Seven and a half seconds in all rides out a restart or a proxy's hiccup; a server
   that is gone for longer is reported, with the account of the lines
   (``post_lines.Account``), and the command exits 1.
2. The server's rate limit refuses the items past it with 429 and says when to try
   again (batch.py, on rates); those items, and a batch refused whole with 429 (a
   proxy's), are sent again once that time has passed, as ``feed tail`` waits out a
   429, until ``MAX_RATE_WAIT`` has been spent on one batch: a long input at more
   than the rate is posted at the rate, not reported refused. What is still refused
   then is reported as refused.
3. Any other refusal of the whole batch (a token revoked: 401) stops the run, with
   the account (5): what of the batch was answered before is reported, the lines of
   the refused request were not written by it, and a line sent earlier in a request
   whose answer never came is still unconfirmed (it may have been written then).
4. A batch refused whole for its size (413) or for what it holds (422: more JSON
   values than a batch may have, batch_input.py) is not the fault of every line in
   it: it is sent again in halves, and halves of those, down to a single line, whose
   refusal is that line's own result. The server's byte limit is 64 of its body
   limit (``FEED_MAX_BODY_BYTES``), which the command cannot know; a 413 teaches it
   instead: the next batches are made no larger than half the one refused
   (``batch_bytes``, which ``post_lines.batches`` reads), so one 413 costs one more
   request, not one for every batch of the run.
5. Results are given as soon as a line and those before it have one: the lines
   written before the rest of their batch waits out the rate are reported then, not
   minutes later. The account (``post_lines.Account``) keeps what is known, so a run
   that stops reports every line answered, even past one still unanswered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from feed.client import Client
from feed.client_failures import MAX_RETRY_AFTER, Failure, Refused, Unreachable
from feed.post_lines import BATCH_BYTES, Account, Line

MAX_ATTEMPTS = 5  # sends of one batch that got no answer (1)
FIRST_BACKOFF = 0.5  # seconds before the second; doubling, 7.5 s in all (1)
MAX_RATE_WAIT = 300.0  # seconds spent waiting out the rate limit for one batch (2)
RATE_LIMITED = 429
TOO_LARGE = (413, 422)  # a batch refused whole for its bytes or its values (4)

Result = tuple[Line, dict[str, Any]]


class BatchSender:
    """Sends batches to ``client``, keeping ``account`` of their lines."""

    def __init__(
        self,
        client: Client,
        account: Account,
        *,
        minimal: bool,
        say: Callable[[str], None],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client, self.account, self.minimal = client, account, minimal
        self._say, self._sleep = say, sleep
        # The bytes a batch may hold, made smaller when the server refuses one (4).
        self.batch_bytes = BATCH_BYTES

    def send(self, batch: list[Line]) -> Iterator[Result]:
        """Each line of ``batch`` with its result, in order, as soon as it and those
        before it have one (5); a Failure, with the account of the run in its message,
        if the batch cannot be answered (1, 3). The results known when it stops are
        the account's to report (``Account.to_report``)."""
        account = self.account
        account.begin(batch)
        yield from account.to_report()
        unanswered = account.unanswered()
        parts = [unanswered] if unanswered else []  # to send in turn, the first first (4)
        attempts, rate_waited = 0, 0.0
        while parts:  # bounded by MAX_ATTEMPTS, MAX_RATE_WAIT and halving (4)
            part = parts.pop(0)
            account.in_flight = part
            try:
                answered = self.client.post_batch(part, minimal=self.minimal)
            except Failure as failure:
                account.in_flight = []
                if failure.status == RATE_LIMITED and rate_waited < MAX_RATE_WAIT:
                    rate_waited += self._wait_rate(failure.retry_after, part, rate_waited)
                    parts.insert(0, part)
                    continue
                if isinstance(failure, Refused) and failure.status in TOO_LARGE:
                    parts[:0] = self._smaller(part, failure)
                    yield from account.to_report()
                    continue
                attempts += 1
                if not isinstance(failure, Refused):  # no answer: it may have been written
                    account.lost.update(line.number for line in part)
                if not isinstance(failure, Unreachable) or attempts >= MAX_ATTEMPTS:
                    raise self._stopped(failure, attempts) from None
                wait = max(FIRST_BACKOFF * 2 ** (attempts - 1), failure.retry_after or 0.0)
                self._say(f"{_sentence(failure)}; sending {_named(part)} again in {wait:g} s")
                self._sleep(wait)
                parts.insert(0, part)
                continue
            account.in_flight, attempts = [], 0
            limited: list[Line] = []
            seconds = 0.0
            for line, (_, result) in zip(part, answered, strict=True):
                if result["status"] == RATE_LIMITED and rate_waited < MAX_RATE_WAIT:
                    limited.append(line)
                    seconds = max(seconds, _retry_after(result))
                else:
                    account.answer(line, result)
            yield from account.to_report()
            if limited:
                rate_waited += self._wait_rate(seconds, limited, rate_waited)
                parts.insert(0, limited)

    def _smaller(self, part: list[Line], failure: Failure) -> list[list[Line]]:
        """A batch refused whole for its size or its values (4), in halves to send
        instead; a single line's refusal is its own result."""
        if len(part) == 1:
            said = str(failure).removeprefix(f"the server answered {failure.status}: ")
            self.account.answer(part[0], {"status": failure.status, "error": said, "detail": None})
            return []
        if failure.status == 413:  # the next batches are made to fit as well
            size = sum(len(json.dumps(line.item)) + 1 for line in part)
            self.batch_bytes = max(min(self.batch_bytes, size // 2), 1)
        half = len(part) // 2
        return [part[:half], part[half:]]

    def _wait_rate(self, seconds: float | None, lines: list[Line], waited: float) -> float:
        """Wait out the rate limit before sending ``lines`` again (2); the seconds waited."""
        wait = min(max(seconds or 1.0, 0.1), MAX_RATE_WAIT - waited)
        if not waited:
            self._say(f"the server's rate limit: waiting to send {_named(lines)}")
        self._sleep(wait)
        return wait

    def _stopped(self, failure: Failure, attempts: int) -> Failure:
        """``failure``, its message followed by what became of the lines (3, 5)."""
        tries = f" (sent {attempts} times)" if attempts > 1 else ""
        stopped = type(failure)(f"{_sentence(failure)}{tries}; {self.account.summary()}")
        stopped.status, stopped.retry_after = failure.status, failure.retry_after
        return stopped


def _retry_after(result: dict[str, Any]) -> float:
    """The seconds a refused item's answer says to wait (security.py, on rates)."""
    detail = result.get("detail")
    seconds = detail.get("retry_after") if isinstance(detail, dict) else None
    if isinstance(seconds, int | float) and not isinstance(seconds, bool):
        return min(float(seconds), MAX_RETRY_AFTER)
    return 1.0


def _sentence(failure: Failure) -> str:
    """A failure's message, to go on with more after it."""
    return str(failure).rstrip(".")


def _named(lines: list[Line]) -> str:
    first, last = lines[0].number, lines[-1].number
    return f"line {first}" if first == last else f"lines {first} to {last}"
