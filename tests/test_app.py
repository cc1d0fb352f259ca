"""The app outside ``feed serve``: any ASGI server can build it from the environment."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import httpx
import pytest
from starlette.routing import Match, Route
from starlette.testclient import TestClient

from feed.app import DIRECT, create_app
from feed.runtime import runtime_of
from feed.settings import Settings
from tests.auth import ADMIN, ensure_admin
from tests.conftest import Server, free_port
from tests.sse import SSEClient

RETRY_MS = 7654  # not the default


def test_uvicorn_serves_streams_and_posts_from_the_app_factory(
    make_server: Callable[..., Server],
) -> None:
    port = free_port()
    uvicorn = ("-m", "uvicorn", "--factory", "feed.app:from_env", "--port", str(port))
    command = (*uvicorn, "--timeout-graceful-shutdown", "1")
    server = make_server(port=port, command=command, retry_ms=RETRY_MS)
    with SSEClient(port, params={"format": "json"}) as stream:
        assert stream.status == 200
        posted = server.post("served by uvicorn alone")
        [event] = stream.wait_events(1)
    assert (event.event, event.id) == ("post-created", str(posted["event_id"]))
    assert json.loads(event.data)["post"]["body"] == "served by uvicorn alone"
    # The settings are the FEED_* variables': the retry hint is FEED_RETRY_MS's.
    [retry] = [m.retry for m in stream.messages if m.retry is not None]
    assert RETRY_MS <= retry <= RETRY_MS * 1.5


# -- the path of a post (app.FeedApp, on posts served directly) --------------------------


def _functions_entered(client: TestClient, request: Callable[[], object]) -> set[str]:
    """Every Python function the app's thread entered while ``request()`` ran."""
    entered: set[str] = set()
    recording = threading.Event()

    def profile(frame: FrameType, event: str, _arg: object) -> None:
        if event == "call" and recording.is_set():
            code = frame.f_code
            entered.add(f"{code.co_filename}:{code.co_qualname}")

    # The test client runs the app in a thread of its own, started on entering it.
    threading.setprofile(profile)
    try:
        with client:
            recording.set()
            request()
            recording.clear()
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]
    return entered


def _through_starlette(entered: set[str]) -> list[str]:
    return sorted(
        name
        for name in entered
        if "starlette/middleware/" in name
        or name.endswith(("routing.py:Router.app", "_exception_handler.py:wrapped_app"))
    )


def test_a_post_reaches_its_endpoint_without_starlettes_middleware_or_router(
    settings: Settings,
) -> None:
    ensure_admin(settings.database_url)
    post = TestClient(create_app(settings), headers=ADMIN)
    answers: list[httpx.Response] = []

    def posting() -> None:
        answers.append(post.post("/api/channels/general/posts", json={"body": "direct"}))
        answers.append(post.post("/api/channels/general/posts", json={}))

    assert _through_starlette(_functions_entered(post, posting)) == []
    assert [a.status_code for a in answers] == [201, 422]
    # The control: any other request does go through them, which the probe sees.
    other = TestClient(create_app(settings), headers=ADMIN)
    assert _through_starlette(_functions_entered(other, lambda: other.get("/api/channels")))


def test_a_posts_answers_carry_what_every_answer_carries(client: TestClient) -> None:
    url = "/api/channels/general/posts"
    created = client.post(url, json={"body": "with headers"}, headers={"X-Request-ID": "p-1"})
    refused = client.post(url, json={"bodee": "x"}, headers={"X-Request-ID": "p-2"})
    anonymous = client.post(url, json={"body": "x"}, headers={"Authorization": ""})
    assert (created.status_code, refused.status_code, anonymous.status_code) == (201, 422, 401)
    assert refused.json() == {"error": "Unknown field 'bodee'.", "detail": ["bodee"]}
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    for answer, rid in ((created, "p-1"), (refused, "p-2"), (anonymous, None)):
        assert answer.headers["x-request-id"] == rid or (
            rid is None and answer.headers["x-request-id"]
        )
        assert answer.headers["cache-control"] == "private, no-store"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "same-origin"
        assert answer.headers["content-security-policy"].startswith("default-src 'self'")
        assert answer.headers["content-type"] == "application/json"
    assert created.headers["location"] == f"/api/posts/{created.json()['post']['id']}"


def test_no_route_before_a_direct_one_takes_its_requests(settings: Settings) -> None:
    """Served before the router, a direct route must be the one the router would choose."""
    app = create_app(settings)
    assert DIRECT
    for route in DIRECT:
        path = route.path.replace("{channel}", "general")
        for method in sorted(route.methods or ()):
            scope = {"type": "http", "method": method, "path": path, "root_path": ""}
            chosen = next(
                r for r in app.starlette.router.routes if r.matches(scope)[0] is Match.FULL
            )
            assert chosen is route, (method, path)


def test_an_unexpected_error_in_a_post_is_a_logged_500_with_its_request_id(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ensure_admin(settings.database_url)
    app = create_app(settings)
    with TestClient(app, headers=ADMIN, raise_server_exceptions=False) as client:
        store = runtime_of(client.app_state).store

        async def broken(*_args: object, **_kwargs: object) -> None:
            raise RuntimeError("the disk caught fire")

        monkeypatch.setattr(store, "create_post", broken)  # a fault, in the real store
        url = "/api/channels/general/posts"
        answer = client.post(url, json={"body": "x"}, headers={"X-Request-ID": "boom-1"})
    assert answer.status_code == 500
    assert answer.json() == {"error": "Internal error; it has been logged.", "detail": None}
    assert answer.headers["x-request-id"] == "boom-1"
    logged = [r for r in caplog.records if r.name == "feed.errors"]
    assert [r.getMessage() for r in logged] == ["unhandled error"]
    assert "the disk caught fire" in str(logged[0].exc_info[1] if logged[0].exc_info else "")


def test_an_unexpected_error_on_any_route_is_a_500_with_every_answers_headers(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starlette answers an unhandled error outside its own middleware: the headers
    every answer carries must be added outside it too."""
    ensure_admin(settings.database_url)
    app = create_app(settings)
    with TestClient(app, headers=ADMIN, raise_server_exceptions=False) as client:
        access = runtime_of(client.app_state).access

        async def broken(*_args: object, **_kwargs: object) -> None:
            raise RuntimeError("the disk caught fire")

        monkeypatch.setattr(access, "channels", broken)  # a fault, in the real gate
        answer = client.get("/api/channels", headers={"X-Request-ID": "boom-2"})
        fine = client.get("/healthz")
    assert answer.status_code == 500
    assert answer.json() == {"error": "Internal error; it has been logged.", "detail": None}
    assert answer.headers["x-request-id"] == "boom-2"
    assert answer.headers["cache-control"] == "private, no-store"
    for name in ("content-security-policy", "x-content-type-options", "referrer-policy"):
        assert answer.headers[name] == fine.headers[name], name


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: "1" if m.group(0) == "{post_id}" else "general", path)


def test_a_405_lists_every_method_its_path_takes(settings: Settings) -> None:
    """Routes that share a path each know only their own methods; the answer must name
    them all, whichever route the router tried first."""
    ensure_admin(settings.database_url)
    app = create_app(settings)
    takes: dict[str, set[str]] = {}
    for route in app.starlette.routes:
        if isinstance(route, Route):
            takes.setdefault(_concrete(route.path), set()).update(route.methods or ())
    assert takes["/api/channels/general/posts"] == {"GET", "HEAD", "POST"}
    takes["/static/feed.css"] = {"GET", "HEAD"}
    with TestClient(app, headers=ADMIN) as client:
        for path, methods in sorted(takes.items()):
            for method in ("OPTIONS", "TRACE", *({"PUT", "DELETE"} - methods)):
                answer = client.request(method, path)
                assert answer.status_code == 405, (method, path, answer.text)
                assert answer.headers["allow"] == ", ".join(sorted(methods)), (method, path)
                assert answer.json() == {"error": "Method not allowed.", "detail": None}


def test_cors_preflights_still_answer_where_a_path_has_several_routes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    ensure_admin(url)
    app = create_app(Settings(database_url=url, cors_origins="https://app.example"))
    path = "/api/channels/general/posts"
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    with TestClient(app, headers=ADMIN) as client:
        allowed = client.options(path, headers=preflight)
        plain = client.options(path)
    assert allowed.status_code == 200
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert (plain.status_code, plain.headers["allow"]) == (405, "GET, HEAD, POST")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/posts/1/"),
        ("GET", "/api/channels/"),
        ("GET", "/events/"),
        ("PATCH", "/api/channels/general/"),
        ("GET", "/kiosk/"),
    ],
)
def test_a_path_with_a_trailing_slash_is_a_404_not_a_redirect_to_the_host_it_named(
    settings: Settings, method: str, path: str
) -> None:
    """No route ends in a slash. A redirect to the same path without it was built from
    the request's Host header (a poisoned cache could send readers elsewhere), and
    kept a PATCH's method: the answer is the 404 of any unknown path, JSON under
    /api."""
    ensure_admin(settings.database_url)
    app = create_app(settings)
    with TestClient(app, headers=ADMIN) as client:
        answer = client.request(
            method, path, headers={"Host": "evil.example"}, follow_redirects=False
        )
    assert answer.status_code == 404, answer.headers
    assert "location" not in answer.headers
    if path.startswith("/api"):
        assert "error" in answer.json()
