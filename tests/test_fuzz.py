"""Schemathesis against ``/openapi.json`` on a real server: every documented operation
gets generated requests, valid and not; no answer is a 5xx, every status is one the
document lists, and an operation the fuzzer never reached fails the test. Bounded in
examples per operation and in time overall.

Shapes the generator does not make (nesting a thousand deep, integers past Python's
digit limit, NaN, lone surrogates) are sent to every operation the document lists
that takes a JSON body, or an integer in its path or query.

A batch of posts may also come as NDJSON, which the fuzzer cannot encode by itself: the
strings it makes for that media type are sent as they are, lines and all.

A valid ``GET /events`` opens an endless stream, which the fuzzer's client would wait
on for ever: its cases are sent by a client that reads the status line and headers,
checks them the same way, and hangs up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance
from starlette.testclient import TestClient

from tests.conftest import Server

EXAMPLES = 60  # per operation
BUDGET_SECONDS = 75.0  # 50 s was the budget of 18 operations; reactions add three
STREAMS = ("/events",)  # answered with a stream that does not end
CHECKS = [not_a_server_error, status_code_conformance]


@schemathesis.serializer("application/x-ndjson")
def ndjson(_context: Any, value: Any) -> bytes:
    """The body of a batch sent as NDJSON: a generated string, as it is."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text.encode("utf-8", "surrogatepass")


def fuzz(operation: Any, base_url: str) -> int:
    """Up to EXAMPLES generated requests for one operation, checked as they are answered;
    returns how many were sent."""
    sent = 0

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        nonlocal sent
        case = data.draw(operation.as_strategy())
        sent += 1
        if operation.path in STREAMS:
            check_stream_head(case, base_url)
        else:
            case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=10)

    run()
    return sent


def check_stream_head(case: Any, base_url: str) -> None:
    """CHECKS for a stream: its status, read without waiting for a body that never ends."""
    sent = case.as_transport_kwargs(base_url=base_url)
    with httpx.stream(
        sent["method"],
        sent["url"],
        params=sent["params"],
        headers=sent["headers"],
        cookies=sent["cookies"],
        timeout=10,
    ) as response:
        status = response.status_code
    assert status < 500, f"{status} from {case.as_curl_command(base_url=base_url)}"
    documented = case.operation.definition.raw["responses"]
    assert str(status) in documented, f"{status} is not documented for {case.operation.label}"


def test_generated_requests_get_no_5xx_and_only_documented_statuses(
    make_server: Callable[..., Server],
) -> None:
    # A high post rate, so the fuzzer reaches the code behind the limit as well.
    server = make_server(post_rate=100_000)
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13
    deadline = time.monotonic() + BUDGET_SECONDS
    failures: dict[str, str] = {}
    sent: dict[str, int] = {}
    for operation in operations:
        if time.monotonic() > deadline:
            break
        try:
            sent[operation.label] = fuzz(operation, server.url)
        except Exception as exc:  # collected, so one report names every failing operation
            failures[operation.label] = str(exc)[:2000]
    assert failures == {}
    documented = {
        f"{method.upper()} {path}"
        for path, methods in schema.raw_schema["paths"].items()
        for method in methods
    }
    assert {label for label, count in sent.items() if count > 0} == documented
    assert time.monotonic() < deadline + 15, "the fuzzing budget was overrun"


# -- shapes the generator does not make ------------------------------------------------

DEEP = 1000
HOSTILE_BODIES = {
    "arrays nested a thousand deep": b"[" * DEEP + b"]" * DEEP,
    "objects nested a thousand deep": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "a field nested a thousand deep": b'{"body":' + b"[" * DEEP + b"]" * DEEP + b"}",
    "a field nested past the limit": b'{"body":' + b"[" * 40 + b"]" * 40 + b"}",
    "nesting deeper than the body limit allows parsing": b"[" * 30_000 + b"]" * 30_000,
    "an integer of 5000 digits": b'{"body":' + b"7" * 5000 + b"}",
    "an integer of 5000 digits nested": b'{"author":[' + b"7" * 5000 + b"]}",
    "a float beyond double range": b'{"body":"x","author":1e999}',
    "NaN": b'{"body":"x","author":NaN}',
    "Infinity": b'{"body":"x","private":-Infinity}',
    "a lone high surrogate in a value": b'{"body":"x","author":"\\ud800"}',
    "a lone low surrogate in a field name": b'{"body":"x","\\udc00":true}',
    "a lone surrogate deep inside": b'{"author":[{"x":["\\udbff"]}]}',
}
PATH_VALUES = {"channel": "general", "post_id": "1", "name": "ada", "reaction": "\U0001f44d"}
TOO_LONG_NUMBER = "9" * 5000


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def test_hostile_json_shapes_get_a_4xx_from_every_json_operation(client: TestClient) -> None:
    assert client.post("/api/channels/general/posts", json={"body": "first"}).status_code == 201
    document = client.get("/openapi.json").json()
    with_bodies = [
        (method, path.format(**PATH_VALUES), operation)
        for method, path, operation in _operations(document)
        if "requestBody" in operation
    ]
    assert len(with_bodies) >= 5
    answers = {}
    for method, path, operation in with_bodies:
        for shape, body in HOSTILE_BODIES.items():
            response = client.request(
                method,
                path,
                content=body,
                headers={"content-type": "application/json", "Idempotency-Key": "k"},
            )
            answers[method, path, shape] = response.status_code
            assert str(response.status_code) in operation["responses"], (shape, response.text)
            assert response.json()["error"]
    assert {code for code in answers.values()} <= {400, 422}, answers
    # Nothing was written, and the server goes on serving.
    posts = client.get("/api/channels/general/posts").json()["posts"]
    assert [p["body"] for p in posts] == ["first"]
    assert client.post("/api/channels/general/posts", json={"body": "next"}).status_code == 201


def test_numbers_too_long_for_python_in_paths_and_queries_get_a_4xx(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    asked = 0
    for method, path, operation in _operations(document):
        integers = [
            p
            for p in operation.get("parameters", [])
            if p["in"] in ("path", "query") and p["schema"].get("type") == "integer"
        ]
        for parameter in integers:
            values = {**PATH_VALUES, parameter["name"]: TOO_LONG_NUMBER}
            url = path.format(**values)
            if parameter["in"] == "query":
                url += f"?{parameter['name']}={TOO_LONG_NUMBER}"
            response = client.request(method, url)
            asked += 1
            assert response.status_code in (400, 404), (method, url[:80], response.text)
            assert str(response.status_code) in operation["responses"]
    assert asked >= 8
