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
   the account: nothing of that batch was written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from feed.client import Client
from feed.client_failures import MAX_RETRY_AFTER, Failure, Refused, Unreachable
from feed.post_lines import Account, Line

MAX_ATTEMPTS = 5  # sends of one batch that got no answer (1)
FIRST_BACKOFF = 0.5  # seconds before the second; doubling, 7.5 s in all (1)
MAX_RATE_WAIT = 300.0  # seconds spent waiting out the rate limit for one batch (2)
RATE_LIMITED = 429


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

    def send(self, batch: list[Line]) -> list[tuple[Line, dict[str, Any]]]:
        """Each line of ``batch`` with its result, in order; a Failure, with the
        account of the run in its message, if the batch cannot be answered (1, 3)."""
        self.account.sent = (batch[0].number, batch[-1].number)
        results: dict[int, dict[str, Any]] = {}
        pending, attempts, rate_waited = batch, 0, 0.0
        while pending:  # bounded by MAX_ATTEMPTS and MAX_RATE_WAIT
            try:
                answered = self.client.post_batch(pending, minimal=self.minimal)
            except Failure as failure:
                if failure.status == RATE_LIMITED and rate_waited < MAX_RATE_WAIT:
                    rate_waited += self._wait_rate(failure.retry_after, pending, rate_waited)
                    continue
                attempts += 1
                if not isinstance(failure, Unreachable) or attempts >= MAX_ATTEMPTS:
                    raise self._stopped(failure, attempts) from None
                wait = max(FIRST_BACKOFF * 2 ** (attempts - 1), failure.retry_after or 0.0)
                self._say(
                    f"{_sentence(failure)}; sending lines {_span(pending)} again in {wait:g} s"
                )
                self._sleep(wait)
                continue
            limited: list[Line] = []
            seconds = 0.0
            for line, (_, result) in zip(pending, answered, strict=True):
                if result["status"] == RATE_LIMITED and rate_waited < MAX_RATE_WAIT:
                    limited.append(line)
                    seconds = max(seconds, _retry_after(result))
                else:
                    results[line.number] = result
            if limited:
                rate_waited += self._wait_rate(seconds, limited, rate_waited)
            pending = limited
        self.account.answered, self.account.sent = batch[-1].number, None
        return [(line, results[line.number]) for line in batch]

    def _wait_rate(self, seconds: float | None, lines: list[Line], waited: float) -> float:
        """Wait out the rate limit before sending ``lines`` again (2); the seconds waited."""
        wait = min(max(seconds or 1.0, 0.1), MAX_RATE_WAIT - waited)
        if not waited:
            self._say(f"the server's rate limit: waiting to send lines {_span(lines)}")
        self._sleep(wait)
        return wait

    def _stopped(self, failure: Failure, attempts: int) -> Failure:
        """``failure``, its message followed by what became of the lines (1, 3)."""
        if isinstance(failure, Refused):
            self.account.sent = None  # refused whole: none of it was written (3)
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


def _span(lines: list[Line]) -> str:
    first, last = lines[0].number, lines[-1].number
    return str(first) if first == last else f"{first} to {last}"
