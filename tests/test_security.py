"""Browser hygiene and per-client limits: security headers on every answer (streams
included), CORS only when configured, posts per minute and open streams per client,
and the pages working in a real Chromium under the Content-Security-Policy."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from feed.app import create_app
from feed.runtime import runtime_of
from feed.settings import Settings
from tests.auth import ADMIN, ADMIN_TOKEN, ensure_admin
from tests.browser import LIVE_MS, browser, context, open_live, post_el, problems, sign_in
from tests.conftest import Server
from tests.sse import SSEClient

__all__ = ["browser", "context", "problems"]  # fixtures shared with the browser tests

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
APP = "https://app.example"


def app_client(tmp_path: Path, **settings: object) -> TestClient:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    ensure_admin(url)
    return TestClient(
        create_app(Settings(database_url=url, **settings)),  # type: ignore[arg-type]
        headers=ADMIN,
    )


@pytest.fixture
def cors_client(tmp_path: Path) -> Iterator[TestClient]:
    with app_client(tmp_path, cors_origins=f"{APP}, http://other.example:8080") as client:
        yield client


@pytest.mark.parametrize("path", ["/", "/kiosk", "/api/channels", "/static/feed.css", "/nothing"])
def test_every_answer_carries_the_security_headers(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"


def test_frame_ancestors_follow_the_setting(tmp_path: Path) -> None:
    with app_client(tmp_path, frame_ancestors="'self' https://portal.example") as client:
        policy = client.get("/kiosk").headers["content-security-policy"]
    assert policy.endswith("; frame-ancestors 'self' https://portal.example")


def test_no_cors_headers_unless_origins_are_configured(client: TestClient) -> None:
    response = client.get("/api/channels", headers={"Origin": APP})
    assert response.status_code == 200
    assert not [h for h in response.headers if h.startswith("access-control-")]


def test_configured_origins_may_call_the_api_and_read_its_headers(
    cors_client: TestClient,
) -> None:
    preflight = cors_client.options(
        "/api/channels/general/posts",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == APP
    assert "POST" in preflight.headers["access-control-allow-methods"]
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "idempotency-key" in allowed and "authorization" in allowed

    created = cors_client.post(
        "/api/channels/general/posts", json={"body": "b"}, headers={"Origin": APP}
    )
    assert created.status_code == 201
    assert created.headers["access-control-allow-origin"] == APP
    exposed = created.headers["access-control-expose-headers"]
    assert {"Location", "Retry-After", "Idempotent-Replayed"} <= set(exposed.split(", "))

    stranger = cors_client.get("/api/channels", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in stranger.headers


@pytest.mark.parametrize("path", ["/api/channels", "/api/channels/general/posts"])
def test_a_500_is_readable_by_an_allowed_origin_with_its_request_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """Starlette answers an unhandled error outside its CORS middleware: a script on an
    allowed origin must still read the 500's sentence and its request id."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    ensure_admin(url)
    app = create_app(Settings(database_url=url, cors_origins=APP))
    with TestClient(app, headers=ADMIN, raise_server_exceptions=False) as client:
        rt = runtime_of(client.app_state)

        async def broken(*_args: object, **_kwargs: object) -> None:
            raise RuntimeError("the disk caught fire")

        monkeypatch.setattr(rt.access, "channels", broken)  # a fault, in the real gate
        monkeypatch.setattr(rt.store, "create_post", broken)
        headers = {"Origin": APP, "X-Request-ID": "boom-3"}
        if path.endswith("/posts"):
            answer = client.post(path, json={"body": "x"}, headers=headers)
        else:
            answer = client.get(path, headers=headers)
        stranger = client.get("/api/channels", headers={"Origin": "https://evil.example"})
    assert answer.status_code == 500
    assert answer.json() == {"error": "Internal error; it has been logged.", "detail": None}
    assert answer.headers["access-control-allow-origin"] == APP
    assert "X-Request-Id" in answer.headers["access-control-expose-headers"].split(", ")
    assert answer.headers["x-request-id"] == "boom-3"
    assert answer.headers["vary"] == "Origin"
    assert stranger.status_code == 500
    assert "access-control-allow-origin" not in stranger.headers


def test_a_stream_starts_with_nosniff_and_cors_headers(make_server: Callable[..., Server]) -> None:
    server = make_server(cors_origins=APP)
    with SSEClient(server.port, params={"format": "json"}, headers={"Origin": APP}) as stream:
        assert stream.status == 200
        assert stream.headers["x-content-type-options"] == "nosniff"
        assert stream.headers["access-control-allow-origin"] == APP
        assert "Retry-After" in stream.headers["access-control-expose-headers"]
    with SSEClient(server.port, headers={"Origin": "https://evil.example"}) as stranger:
        assert stranger.status == 200 and "access-control-allow-origin" not in stranger.headers
    # A refused stream is readable by the allowed origin too.
    bad = SSEClient(server.port, params={"format": "xml"}, headers={"Origin": APP})
    with bad:
        assert bad.status == 400 and bad.headers["access-control-allow-origin"] == APP


# -- caching ------------------------------------------------------------------------

# What answers the same whoever asks; everything else is private to its asker.
SHARED = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/static"}
ROUTE_VALUES = {"channel": "general", "post_id": "1", "name": "ada", "reaction": "👍"}


def _every_route() -> list[tuple[str, str]]:
    """A request for each method of each route in the app's table, statics included."""
    app = create_app(Settings(database_url="sqlite://"))
    asked = []
    for route in app.starlette.routes:
        if isinstance(route, Mount):
            asked.append(("GET", f"{route.path}/feed.css"))
            continue
        assert isinstance(route, Route)
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: ROUTE_VALUES[m.group(1)], route.path)
        asked += [(method, path) for method in sorted((route.methods or set()) - {"HEAD"})]
    return asked


def test_answers_that_depend_on_the_asker_are_never_stored_by_caches(
    make_server: Callable[..., Server],
) -> None:
    server = make_server()
    server.post("first")
    asked = _every_route()
    assert len(asked) >= 36 and ("GET", "/events") in asked and ("GET", "/admin/stream") in asked
    seen: dict[tuple[str, str], tuple[int, str | None]] = {}
    with httpx.Client(base_url=server.url, headers=ADMIN, timeout=10) as http:
        for method, path in [*asked, ("GET", "/nothing/here")]:
            # Streams are endless: the head is all this needs.
            with http.stream(method, path) as answer:
                seen[method, path] = (answer.status_code, answer.headers.get("cache-control"))
    shared = {key for key in seen if any(key[1].startswith(p) for p in SHARED)}
    assert {path for _, path in shared} == {*SHARED - {"/static"}, "/static/feed.css"}
    for key, (status, cache) in seen.items():
        if key in shared:
            assert cache is None or "private" not in cache, (key, status, cache)
        else:
            assert cache == "private, no-store", (key, status, cache)
    # Refused streams too, in and out of the per-client limit.
    with SSEClient(server.port, params={"format": "xml"}) as refused:
        assert refused.status == 400 and refused.headers["cache-control"] == "private, no-store"


# -- rate of posts ------------------------------------------------------------------


def _post_as(
    server: Server, address: str, who: str | None = None
) -> tuple[int, dict[str, str], dict[str, object]]:
    # uvicorn takes the client address from X-Forwarded-For when the peer is a trusted
    # proxy (FORWARDED_ALLOW_IPS, 127.0.0.1 by default), as behind a local nginx.
    headers = {"X-Forwarded-For": address}
    if who is not None:
        headers["Authorization"] = f"Bearer {server.token(who)}"
    response = server.client.post(
        "/api/channels/general/posts", json={"body": f"from {address}"}, headers=headers
    )
    return response.status_code, dict(response.headers), response.json()


def test_too_many_posts_from_one_identity_get_429_with_retry_after(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(post_rate=2)
    assert [_post_as(server, "203.0.113.7")[0] for _ in range(2)] == [201, 201]
    # The rate is the identity's: another address does not reset it.
    status, headers, body = _post_as(server, "203.0.113.8")
    assert status == 429
    assert 1 <= int(headers["retry-after"]) <= 30
    assert str(body["error"]).startswith(
        "Too many posts from you: at most 2 posts and changes a minute."
    )
    # Someone else at the same address, and reading, are not affected.
    assert _post_as(server, "203.0.113.7", who="ben")[0] == 201
    posts = server.client.get("/api/channels/general/posts").json()["posts"]
    assert [(p["author"], p["body"]) for p in posts] == [
        ("ben", "from 203.0.113.7"),
        ("tester", "from 203.0.113.7"),
        ("tester", "from 203.0.113.7"),
    ]


# -- open streams per client ----------------------------------------------------------


def _stream_as(server: Server, address: str) -> SSEClient:
    return SSEClient(server.port, params={"format": "json"}, headers={"X-Forwarded-For": address})


def test_streams_beyond_the_per_client_limit_get_429_before_streaming(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(max_streams_per_client=2)
    first, second = _stream_as(server, "198.51.100.1"), _stream_as(server, "198.51.100.1")
    assert (first.status, second.status) == (200, 200)
    refused = _stream_as(server, "198.51.100.1")
    assert refused.status == 429
    assert refused.headers["content-type"] == "application/json"
    assert refused.headers["retry-after"] == "10"
    error = json.loads(refused.read_body())
    assert error["error"].startswith("Too many open streams from this address (at most 2)")
    refused.close()
    other = _stream_as(server, "198.51.100.2")
    assert other.status == 200
    # A closed stream frees its place (the server notices the disconnect).
    first.close()
    deadline = time.monotonic() + 10
    while True:
        again = _stream_as(server, "198.51.100.1")
        if again.status == 200 or time.monotonic() > deadline:
            break
        again.close()
    assert again.status == 200
    for stream in (second, other, again):
        stream.close()


def test_the_admin_stream_counts_against_the_same_per_address_limit(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(max_streams_per_client=2)
    address = {"X-Forwarded-For": "198.51.100.7"}
    admin = SSEClient(server.port, "/admin/stream", headers=ADMIN | address)
    events = _stream_as(server, "198.51.100.7")
    over_admin = SSEClient(server.port, "/admin/stream", headers=ADMIN | address)
    over_events = _stream_as(server, "198.51.100.7")
    try:
        assert [s.status for s in (admin, events, over_admin, over_events)] == [200, 200, 429, 429]
        assert over_admin.headers["retry-after"] == "10"
        # The admin's own headers, as its other answers carry them, each once.
        assert over_admin.headers["x-robots-tag"] == "noindex"
        assert over_admin.headers["x-content-type-options"] == "nosniff"
        error = json.loads(over_admin.read_body())
        assert error["error"].startswith("Too many open streams from this address (at most 2)")
    finally:
        for stream in (admin, events, over_admin, over_events):
            stream.close()


def test_a_refused_admin_stream_says_vary_origin_once_under_cors(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(max_streams_per_client=1, cors_origins=APP)
    asked = ADMIN | {"Origin": APP}
    admin = SSEClient(server.port, "/admin/stream", headers=asked)
    over = SSEClient(server.port, "/admin/stream", headers=asked)
    try:
        assert [s.status for s in (admin, over)] == [200, 429]
        said = over.header_lines
        assert [value for name, value in said if name == "vary"] == ["Origin"]
        assert [value for name, value in said if name == "access-control-allow-origin"] == [APP]
    finally:
        for stream in (admin, over):
            stream.close()


# -- the pages under the CSP, in Chromium ---------------------------------------------

WATCH_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e =>
    window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


def _violations(page: Page) -> list[str]:
    found: list[str] = page.evaluate("window.__csp")
    return found


@pytest.mark.browser
@pytest.mark.parametrize("path", ["/", "/kiosk"])
def test_pages_work_live_under_the_csp_without_violations(
    server: Server, context: BrowserContext, path: str
) -> None:
    console: list[str] = []
    context.add_init_script(WATCH_CSP)
    context.on("console", lambda m: console.append(m.text))
    page = open_live(context, f"{server.url}{path}")
    response = page.request.get(f"{server.url}{path}")
    assert response.headers["content-security-policy"] == CSP
    post_id = server.post("Live under the **CSP** [docs](https://example.com)")["post"]["id"]
    arrived = post_el(page, post_id)
    expect(arrived.locator(".body strong")).to_have_text("CSP", timeout=LIVE_MS)
    expect(arrived.locator(".body a")).to_have_attribute("rel", "noopener noreferrer")
    # htmx injected no <style> (includeIndicatorStyles is off) and nothing was blocked.
    assert page.evaluate("document.querySelectorAll('style').length") == 0
    assert _violations(page) == []
    assert not [m for m in console if "Content Security Policy" in m]


@pytest.mark.browser
def test_signing_in_posting_and_admin_work_under_the_csp_without_violations(
    server: Server, context: BrowserContext
) -> None:
    """The sign-in form, a signed-in page's htmx post (its CSRF header comes from the
    body's hx-headers, which htmx must read without eval) and the admin page."""
    console: list[str] = []
    context.add_init_script(WATCH_CSP)
    context.on("console", lambda m: console.append(m.text))
    signin = context.new_page()
    answer = signin.goto(f"{server.url}/signin")
    assert answer is not None and answer.headers["content-security-policy"] == CSP
    assert _violations(signin) == []
    signin.close()

    page = sign_in(context, server, server.token("Ada", "writer"))
    assert page.locator("body").get_attribute("hx-headers") is not None
    form = page.locator("#compose")
    form.get_by_label("Post").fill("Posted under the **CSP**")
    form.get_by_role("button", name="Post").click()
    expect(page.locator("#posts .post .body strong")).to_have_text("CSP", timeout=LIVE_MS)
    expect(page.locator("#posts .post .author")).to_have_text("Ada")
    assert _violations(page) == []
    page.close()

    admin = sign_in(context, server, ADMIN_TOKEN, "/admin")
    expect(admin.locator("#admin-events > li")).to_have_count(1)
    assert admin.evaluate("document.querySelectorAll('style').length") == 0
    assert _violations(admin) == []
    assert not [m for m in console if "Content Security Policy" in m]


def test_changes_count_against_the_post_rate_as_posts_do(
    make_server: Callable[..., Server],
) -> None:
    """Each edit, pin or delete reaches every open screen (and on a full kiosk an unpin
    makes it re-fetch its list), so they count against ``FEED_POST_RATE`` with posts:
    one token cannot flood every screen at the speed of the write lock."""
    server = make_server(post_rate=5)
    mallory = {"Authorization": f"Bearer {server.token('mallory')}"}
    url = "/api/channels/general/posts"
    own = server.client.post(url, json={"body": "mine"}, headers=mallory).json()["post"]["id"]
    answers = [
        server.client.post(
            f"/api/posts/{own}/{'pin' if n % 2 == 0 else 'unpin'}", headers=mallory
        ).status_code
        for n in range(20)
    ]
    # One post and four changes: the bucket of five is empty, and stays so.
    assert answers[:4] == [200] * 4 and set(answers[4:]) == {429}
    edit = server.client.patch(f"/api/posts/{own}", json={"body": "x"}, headers=mallory)
    assert edit.status_code == 429 and edit.headers["retry-after"]
    assert "posts and changes a minute" in edit.json()["error"]
