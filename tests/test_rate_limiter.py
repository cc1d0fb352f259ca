"""The rate per key that counts posts (rate_limiter.py, used by security.py): a token
bucket per key, bounded."""

from __future__ import annotations

import pytest

from feed.rate_limiter import RateLimiter


def test_the_rate_limiter_refills_and_says_how_long_to_wait() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=2, clock=lambda: now[0])
    assert [limiter.take("a"), limiter.take("a")] == [0.0, 0.0]
    assert limiter.take("a") == pytest.approx(30.0)  # one token every 30 s
    assert limiter.take("b") == 0.0  # another client has its own bucket
    now[0] = 31.0
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0


def test_the_rate_limiter_takes_several_turns_as_one_by_one_and_takes_back_the_unused() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=5, clock=lambda: now[0])
    assert limiter.take_up_to("a", 3) == 3
    assert limiter.take_up_to("a", 10) == 2  # what is left of the five, no more
    assert limiter.take_up_to("a", 1) == 0 and limiter.take("a") == pytest.approx(12.0)
    limiter.give_back("a", 2)
    assert [limiter.take("a"), limiter.take("a")] == [0.0, 0.0]
    assert limiter.take("a") > 0
    now[0] = 24.0  # two turns refilled (one every 12 s), and ten given back:
    limiter.give_back("a", 10)  # never more than the capacity
    assert limiter.take_up_to("a", 10) == 5


def test_the_rate_limiter_forgets_full_buckets_and_stays_bounded() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=60, max_keys=100, clock=lambda: now[0])
    for n in range(10_000):
        limiter.take(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter) <= 100
    now[0] = 61.0  # every bucket has refilled: none is worth keeping
    limiter.take("fresh")
    assert len(limiter) == 1
