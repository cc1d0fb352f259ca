"""Text that cannot be stored or shown is refused where it comes in, on every surface
that takes text (the API, the forms, the proxy's user header, the CLI), with a clear
4xx or exit code, and one writer's such text never fails another writer's post."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.testclient import TestClient

from feed.app import create_app
from feed.settings import Settings
from tests.auth import ADMIN, ADMIN_TOKEN, ensure_admin
from tests.conftest import Server
from tests.test_cli import run_feed

JSON = {"content-type": "application/json"}

# Text no field may hold: lone surrogates (JSON's "\ud800" escapes, which Python's
# parser accepts), NUL, C0 controls (ESC), DEL and C1 controls (CSI).
NOT_TEXT = {
    "high surrogate": "a\ud800b",
    "low surrogate": "a\udfffb",
}
CONTROLS = {
    "NUL": "a\x00b",
    "ESC": "red \x1b[31m alert",
    "BEL": "a\x07b",
    "DEL": "a\x7fb",
    "C1 CSI": "a\x9b31mb",
    "C1 NEL": "a\x85b",
}
# One-line text (titles, names) holds no line break or tab either.
LINE_BREAKS = {"line feed": "a\nb", "tab": "a\tb", "carriage return": "a\rb", "LS": "a\u2028b"}
# Nor a bidirectional override, embedding or isolate: "Safe <RLO>elif.exe" reads as
# "Safe exe.file".
OVERRIDES = {"RLO": "Safe \u202eelif.exe", "RLE": "a\u202bb", "LRI": "a\u2066b"}
HOSTILE = {**NOT_TEXT, **CONTROLS}
ONE_LINE_HOSTILE = {**HOSTILE, **LINE_BREAKS, **OVERRIDES}
# Right-to-left text, with what it may need in a post: marks, embeddings, isolates.
RIGHT_TO_LEFT = "\u05e9\u05dc\u05d5\u05dd \u202bquoted\u202c \u2067\u05d0\u2069 1\u200f."


def encoded(payload: dict[str, Any]) -> bytes:
    """JSON with every character escaped, as a client sends a lone surrogate."""
    return json.dumps(payload, ensure_ascii=True).encode()


def assert_refused(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    for word in words:
        assert word in error, error


def code_point(value: str) -> str:
    """The first character the rule refuses, as the refusal names it."""
    bad = next(c for c in value if not (c.isalnum() or c in " [];"))
    return f"U+{ord(bad):04X}"


# -- the JSON API ----------------------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_post_bodies_and_edits_refuse_what_is_not_text(client: TestClient, value: str) -> None:
    created = client.post("/api/channels/general/posts", json={"body": "fine"})
    assert created.status_code == 201
    for method, path in (("POST", "/api/channels/general/posts"), ("PATCH", "/api/posts/1")):
        answer = client.request(method, path, content=encoded({"body": value}), headers=JSON)
        assert_refused(answer, 422, "'body'", code_point(value))
    posts = client.get("/api/channels/general/posts").json()["posts"]
    assert [p["body"] for p in posts] == ["fine"]


@pytest.mark.parametrize(
    "keeps", ["a\nb", "a\r\nb", "a\tb", "caf\u00e9 \u2014 \U0001f600", RIGHT_TO_LEFT]
)
def test_bodies_and_descriptions_keep_line_breaks_tabs_and_any_real_character(
    client: TestClient, keeps: str
) -> None:
    post = client.post("/api/channels/general/posts", json={"body": keeps})
    assert post.status_code == 201 and post.json()["post"]["body"] == keeps
    channel = client.post("/api/channels", json={"name": "c", "title": "T", "description": keeps})
    assert channel.status_code == 201 and channel.json()["channel"]["description"] == keeps


# Text that shows as nothing: a format character (zero-width space, word joiner, byte
# order mark, a direction mark), a filler (Hangul, Braille blank), a variation selector,
# a noncharacter, mixed with spaces.
INVISIBLE = {
    "ZWSP": "\u200b",
    "WJ": "\u2060 ",
    "BOM": "\ufeff",
    "RLM": " \u200f ",
    "Hangul filler": "\u3164",
    "Hangul choseong filler": "\u115f\u1160",
    "Braille blank": "\u2800\u2800",
    "variation selector": "\ufe0f",
    "noncharacter": "\uffff\ufdd0\U0001fffe",
    "Mongolian variation selector": "\u180b",
    "mixed": "\u00a0\u200b\u3000\ufeff",
}


@pytest.mark.parametrize("value", INVISIBLE.values(), ids=INVISIBLE.keys())
def test_a_body_or_title_that_shows_nothing_is_refused_as_empty(
    client: TestClient, value: str
) -> None:
    for method, path, field in (
        ("POST", "/api/channels/general/posts", "body"),
        ("POST", "/api/channels", "title"),
        ("PATCH", "/api/channels/general", "title"),
    ):
        payload = {field: value, **({"name": "x"} if path == "/api/channels" else {})}
        answer = client.request(method, path, content=encoded(payload), headers=JSON)
        assert_refused(answer, 422, f"'{field}'", "empty")
    assert client.get("/api/channels/general/posts").json()["posts"] == []


@pytest.mark.parametrize(
    "keeps",
    [
        "\u200b!",
        "\U0001f600\ufe0f",
        "\u2800\u2801",
        "\u05e9\u200f",
        "\u3164a",
        "\U0001fa77",  # an emoji newer than some Pythons' Unicode data: unassigned to them
        "\U00031350",  # a CJK ideograph of Unicode 15, the same
        "\u06dd",  # a format character that is drawn: the end of an ayah
        "\u0600",  # an Arabic number sign, drawn too
    ],
)
def test_a_body_with_anything_visible_is_kept_whatever_invisible_characters_it_holds(
    client: TestClient, keeps: str
) -> None:
    post = client.post(
        "/api/channels/general/posts", content=encoded({"body": keeps}), headers=JSON
    )
    assert post.status_code == 201 and post.json()["post"]["body"] == keeps


@pytest.mark.parametrize("value", ONE_LINE_HOSTILE.values(), ids=ONE_LINE_HOSTILE.keys())
def test_channel_titles_are_one_line_of_text(client: TestClient, value: str) -> None:
    new = client.post("/api/channels", content=encoded({"name": "x", "title": value}), headers=JSON)
    assert_refused(new, 422, "'title'", code_point(value))
    edit = client.patch("/api/channels/general", content=encoded({"title": value}), headers=JSON)
    assert_refused(edit, 422, "'title'", code_point(value))
    titles = {c["name"]: c["title"] for c in client.get("/api/channels").json()["channels"]}
    assert titles == {"announcements": "Announcements", "general": "General"}


def test_a_title_keeps_the_direction_marks_right_to_left_text_needs(client: TestClient) -> None:
    title = "\u05d7\u05d3\u05e9\u05d5\u05ea 2026\u200f!"  # RLM: the "!" stays at the end
    made = client.post("/api/channels", json={"name": "x", "title": title})
    assert made.status_code == 201 and made.json()["channel"]["title"] == title


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_channel_descriptions_refuse_what_is_not_text(client: TestClient, value: str) -> None:
    payload = {"name": "x", "title": "X", "description": value}
    new = client.post("/api/channels", content=encoded(payload), headers=JSON)
    assert_refused(new, 422, "'description'", code_point(value))
    edit = client.patch(
        "/api/channels/general", content=encoded({"description": value}), headers=JSON
    )
    assert_refused(edit, 422, "'description'", code_point(value))


@pytest.mark.parametrize(
    "payload",
    [
        {"body": "b", "author": "\ud800"},
        {"body": "b", "\udc00": 1},
        {"body": "b", "author": ["x", {"y": "\udbff"}]},
    ],
    ids=["author", "field name", "nested"],
)
def test_a_lone_surrogate_anywhere_in_a_body_is_refused_not_echoed(
    client: TestClient, payload: dict[str, Any]
) -> None:
    answer = client.post("/api/channels/general/posts", content=encoded(payload), headers=JSON)
    assert_refused(answer, 422, "lone surrogate")


@pytest.mark.parametrize("name", ["ops/dev", "ops/", "/"])
def test_a_member_whose_name_holds_a_slash_is_granted_and_removed_by_its_escaped_name(
    client: TestClient, name: str
) -> None:
    """A token's name may hold "/" (identity.py): its member's path escapes it (%2F),
    which the server reads back as a part of the name, not as the path's next step."""
    path = f"/api/channels/general/members/{quote(name, safe='')}"
    granted = client.put(path, json={"may_post": True})
    assert granted.status_code == 200, granted.text
    assert granted.json() == {"channel": "general", "name": name, "may_post": True}
    listed = client.get("/api/channels/general/members").json()["members"]
    assert [m["name"] for m in listed] == [name]
    removed = client.delete(path)
    assert removed.status_code == 200 and removed.json()["name"] == name
    assert client.get("/api/channels/general/members").json()["members"] == []


@pytest.mark.parametrize(
    "name",
    ["a%00b", "a%1Bb", "a%7Fb", "a%C2%9Bb", "a%0Ab", "a%09b"],
    ids=["NUL", "ESC", "DEL", "C1 CSI", "line feed", "tab"],
)
def test_member_names_in_the_path_are_one_line_of_text(client: TestClient, name: str) -> None:
    answer = client.put(f"/api/channels/general/members/{name}", json={})
    assert answer.status_code == 422, answer.text
    assert "not a usable name" in answer.json()["error"]
    assert client.get("/api/channels/general/members").json()["members"] == []


@pytest.mark.parametrize(
    "target",
    [
        "/api/search?q=%ed%a0%80",
        "/api/search?q=ok&author=%ff",
        "/events?channel=%ff",
        "/search?q=caf%e9",
        "/api/channels/general/posts?before=1%ff",
    ],
)
def test_a_query_that_is_not_utf8_is_a_400_not_a_replacement_character(
    server: Server, target: str
) -> None:
    answer = server.client.get(target)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "The query holds a %-escape or a byte that is not UTF-8."
    # Sent as UTF-8, the same characters are a question like any other.
    fine = server.client.get("/api/search?q=caf%C3%A9&author=%EF%BF%BD")
    assert fine.status_code == 200, fine.text


@pytest.mark.parametrize(
    "path",
    [
        "/api/channels/general/members/%ed%a0%80",
        "/api/channels/general/members/b%ffb",
        "/api/channels/gen%c3/members/bob",
        "/channels/%ff/compose",
        "/api/posts/1/reactions/%f0%9f",
    ],
    ids=["surrogate", "not UTF-8", "cut short", "page", "reaction"],
)
def test_a_percent_escape_that_is_not_utf8_in_the_path_is_a_400(server: Server, path: str) -> None:
    # A real server: its HTTP parser decodes the path, with replacement characters.
    answer = server.client.put(path, json={})
    assert answer.status_code == 400, answer.text
    assert "not UTF-8" in answer.json()["error"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert server.client.get("/api/channels/general/members").json()["members"] == []
    # A replacement character sent as one is a character like any other.
    kept = server.client.put("/api/channels/general/members/a%EF%BF%BDb", json={})
    assert kept.status_code == 200, kept.text


# -- forms ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", CONTROLS.values(), ids=CONTROLS.keys())
def test_the_compose_form_refuses_control_characters_inline(client: TestClient, value: str) -> None:
    # A surrogate cannot arrive through a form (it is no UTF-8), controls can.
    answer = client.post("/compose", data={"channel": "general", "body": value})
    assert answer.status_code == 422
    assert code_point(value) in answer.text and "control character" in answer.text
    assert client.get("/api/channels/general/posts").json()["posts"] == []


@pytest.mark.parametrize(
    "value", {**CONTROLS, **LINE_BREAKS}.values(), ids=[*CONTROLS, *LINE_BREAKS]
)
def test_the_admin_forms_refuse_control_characters_in_titles(
    client: TestClient, value: str
) -> None:
    new = client.post("/admin/channels", data={"name": "x", "title": value})
    assert new.status_code == 422 and code_point(value) in new.text
    retitle = client.post("/admin/channels/general/title", data={"title": value})
    assert retitle.status_code == 422 and code_point(value) in retitle.text
    described = client.post(
        "/admin/channels", data={"name": "y", "title": "Y", "description": CONTROLS["ESC"]}
    )
    assert described.status_code == 422 and "U+001B" in described.text
    names = [c["name"] for c in client.get("/api/channels").json()["channels"]]
    assert names == ["announcements", "general"]


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize("invalid", [b"%FF", b"\xff", b"%C3%28", b"%ED%A0%80"])
@pytest.mark.parametrize("form", ["compose", "reply", "signin", "admin"])
def test_a_form_that_is_not_utf8_is_a_400_as_a_json_body_is(
    client: TestClient, form: str, invalid: bytes
) -> None:
    """Bytes that are not UTF-8, sent raw or percent-encoded, are refused, not stored
    with replacement characters."""
    parent = client.post("/api/channels/general/posts", json={"body": "parent"}).json()["post"]
    path, fields = {
        "compose": ("/compose", b"channel=general&body=x"),
        "reply": (f"/posts/{parent['id']}/replies", b"body=x"),
        "signin": ("/signin", b"token=x"),
        "admin": ("/admin/channels", b"name=fresh&title=x"),
    }[form]
    answer = client.post(path, content=fields + invalid, headers=FORM)
    assert answer.status_code == 400
    assert "The form is not valid UTF-8." in answer.text
    bodies = [p["body"] for p in client.get("/api/channels/general/posts").json()["posts"]]
    assert bodies == ["parent"]
    assert "fresh" not in [c["name"] for c in client.get("/api/channels").json()["channels"]]
    json_body = client.post(
        "/api/channels/general/posts",
        content=b'{"body": "x' + invalid + b'"}',
        headers={"Content-Type": "application/json"},
    )
    if invalid == b"\xff":  # a raw byte in JSON: the same answer
        assert json_body.status_code == 400
        assert json_body.json()["error"] == "The request body is not valid UTF-8."


# -- the proxy's user header ------------------------------------------------------------


@pytest.mark.parametrize(
    "user", [b"ada\x1b", b"ada\x07x", b"a\x7fda", b"a\x9bda", b"a\x85da", b"a\tda"]
)
def test_a_proxy_user_name_with_control_characters_is_refused(tmp_path: Path, user: bytes) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    ensure_admin(url)
    settings = Settings(database_url=url, trusted_user_header="X-User")
    with TestClient(create_app(settings)) as client:
        for path in ("/api/channels", "/"):
            answer = client.get(path, headers={"X-User": user})
            assert answer.status_code == 400, answer.text
            assert "not usable" in answer.json()["error"]
        assert client.get("/api/channels", headers={"X-User": b"ada"}).status_code == 200


# -- the command line -----------------------------------------------------------------


def _cli(database: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_feed(*args, FEED_DATABASE_URL=database)


@pytest.mark.parametrize(
    "name",
    # "\udcff" reaches the command as the byte 0xff, which is not UTF-8.
    ["ada\udcff", "ada\x1b[2J", "ada\x7f", "ada\x9b", "ada\nbob", "ada\tbob"],
    ids=["undecodable byte", "ESC", "DEL", "C1 CSI", "line feed", "tab"],
)
@pytest.mark.slow
def test_token_and_kiosk_names_from_the_command_line_are_one_line_of_text(
    database_url: str, name: str
) -> None:
    ensure_admin(database_url)
    for args in (
        ("token", "create", name),
        ("kiosk", "create", "--channel", "general", "--name", name),
    ):
        result = _cli(database_url, *args)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.startswith("feed: ") and "Traceback" not in result.stderr
        assert code_point(name) in result.stderr
    listed = _cli(database_url, "token", "list").stdout.splitlines()
    assert [line.split("\t")[1] for line in listed] == ["tester"]


def test_the_cli_refuses_text_it_cannot_send_with_a_usage_error(server: Server) -> None:
    auth = ["--token", ADMIN_TOKEN, "--url", server.url]
    for args in (
        ("post", "general", "bad \udcff byte", *auth),
        ("channels", *auth, "create", "ops", "Ops \udcff"),
        ("channels", *auth, "grant", "general", "ada\udcff"),
    ):
        result = run_feed(*args)
        assert result.returncode == 2, result.stderr
        assert "U+DCFF" in result.stderr and "Traceback" not in result.stderr
    piped = subprocess.run(
        [sys.executable, "-m", "feed", "post", "general", "-", *auth],
        input=b"not \xff utf-8",
        capture_output=True,
        timeout=30,
    )
    assert piped.returncode == 2 and b"Traceback" not in piped.stderr, piped.stderr
    # Control characters reach the server, which refuses them with its reason.
    escaped = run_feed("post", "general", "red \x1b[31m", *auth)
    assert escaped.returncode in (2, 3) and "U+001B" in escaped.stderr
    assert server.client.get("/api/channels/general/posts").json()["posts"] == []


# -- others keep being served -----------------------------------------------------------


def test_a_writer_sending_lone_surrogates_never_fails_anyone_elses_post(
    make_server: Callable[..., Server],
) -> None:
    server = make_server()
    rounds, writers = 5, 6
    start = threading.Barrier(2 * writers)
    answers: dict[str, list[int]] = {"honest": [], "hostile": []}
    lock = threading.Lock()

    def write(kind: str, n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=20, headers=ADMIN) as http:
            start.wait(timeout=20)
            for i in range(rounds):
                body = {"body": f"honest {n}.{i}"} if kind == "honest" else {"body": "\ud800"}
                try:
                    status = http.post(
                        "/api/channels/general/posts", content=encoded(body), headers=JSON
                    ).status_code
                except httpx.TransportError:
                    status = 0  # a cut connection
                with lock:
                    answers[kind].append(status)

    threads = [
        threading.Thread(target=write, args=(kind, n))
        for n in range(writers)
        for kind in ("honest", "hostile")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert answers["honest"] == [201] * (rounds * writers)
    assert answers["hostile"] == [422] * (rounds * writers)
    bodies = {
        p["body"]
        for p in server.client.get("/api/channels/general/posts?limit=200").json()["posts"]
    }
    assert bodies == {f"honest {n}.{i}" for n in range(writers) for i in range(rounds)}
