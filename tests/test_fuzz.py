"""Schemathesis against ``/openapi.json`` on a real server: every documented operation
gets generated requests, valid and not; no answer is a 5xx and every status is one the
document lists. Bounded in examples per operation and in time overall.

``GET /events`` is left out: a valid request opens an endless stream, which the
fuzzer's client would wait on for ever. Its refusals are covered in test_api.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from tests.conftest import Server

EXAMPLES = 60  # per operation
BUDGET_SECONDS = 50.0
LEFT_OUT = ("/events",)
CHECKS = [not_a_server_error, status_code_conformance]


def fuzz(operation: Any, base_url: str) -> None:
    """Up to EXAMPLES generated requests for one operation, checked as they are answered."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy())
        case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=10)

    run()


def test_generated_requests_get_no_5xx_and_only_documented_statuses(
    make_server: Callable[..., Server],
) -> None:
    # A high post rate, so the fuzzer reaches the code behind the limit as well.
    server = make_server(post_rate=100_000)
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [
        result.ok() for result in schema.get_all_operations() if result.ok().path not in LEFT_OUT
    ]
    assert len(operations) >= 12
    deadline = time.monotonic() + BUDGET_SECONDS
    failures: dict[str, str] = {}
    for operation in operations:
        if time.monotonic() > deadline:
            break
        try:
            fuzz(operation, server.url)
        except Exception as exc:  # collected, so one report names every failing operation
            failures[operation.label] = str(exc)[:2000]
    assert failures == {}
    assert time.monotonic() < deadline + 15, "the fuzzing budget was overrun"
