"""The ``feed`` commands that talk to a running server over HTTP: ``post``, ``tail``
and ``channels``.

Rationale:

1. ``tail`` reads the JSON stream and draws its own lines, so it can colour them;
   the server's ``format=text`` stays plain for ``curl -N``.
2. ``tail`` resumes with ``Last-Event-ID`` after any disconnect, waiting one
   second, doubling up to ten while the server stays down, so a restart or a
   network cut shows every event once. Only the very first connection
   failing ends the command: that is a wrong URL or a server that is not running.
3. Exit codes are for scripts: 0 done, 1 the server could not be reached or failed,
   2 bad usage or settings, 3 the server refused the request (its message is shown),
   130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import httpx
from httpx_sse import SSEError, connect_sse

from feed import text
from feed.render import json_safe, terminal_safe

OK, UNREACHABLE, USAGE, REFUSED, INTERRUPTED = 0, 1, 2, 3, 130
MAX_BACKOFF = 10.0
TIMEOUT = httpx.Timeout(10.0, read=None)  # a stream is idle between heartbeats

_STYLES = {
    "dim": "2",
    "bold": "1",
    "channel": "36",
    "post-created": "32",
    "post-updated": "33",
    "post-deleted": "31",
    "post-pinned": "35",
    "post-unpinned": "35",
}


class CommandError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def want_colour(choice: str, stream: TextIO) -> bool:
    if choice != "auto":
        return choice == "always"
    return stream.isatty() and "NO_COLOR" not in os.environ


def _paint(text: str, style: str, colour: bool) -> str:
    return f"\033[{_STYLES[style]}m{text}\033[0m" if colour else text


def _refusal(response: httpx.Response) -> CommandError:
    try:
        message = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        message = response.text.strip() or response.reason_phrase
    code = REFUSED if response.status_code < 500 else UNREACHABLE
    return CommandError(code, f"the server answered {response.status_code}: {message}")


# -- post and channels --------------------------------------------------------------


def auth(token: str | None) -> dict[str, str]:
    return {} if not token else {"Authorization": f"Bearer {token}"}


def call(
    url: str,
    method: str,
    path: str,
    payload: dict[str, Any] | None = None,
    token: str | None = None,
) -> Any:
    """One API request; the decoded answer, or CommandError with the server's reason."""
    for field, value in (payload or {}).items():
        if isinstance(value, str):
            sendable(f"the {field}", value)
    try:
        response = httpx.request(
            method, f"{url}{path}", json=payload, headers=auth(token), timeout=10
        )
    except httpx.HTTPError as exc:
        raise CommandError(UNREACHABLE, f"cannot reach {url}: {exc}") from None
    if not response.is_success:
        raise _refusal(response)
    return response.json()


def check_url(url: str) -> None:
    """Refuse a server URL that is not one (CommandError), before any request."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise CommandError(USAGE, f"--url {url!r} is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise CommandError(USAGE, f"--url {url!r} is not an http:// or https:// URL")


def sendable(what: str, value: str) -> str:
    """``value``, if the server could take it as text at all (text.py): the loosest
    rule, so what passes here may still be refused, with its reason, by the server."""
    refused = text.problem(value, multiline=True)
    if refused is not None:
        raise CommandError(USAGE, f"{what} {refused}")
    return value


def post(url: str, channel: str, body: str, token: str | None) -> dict[str, Any]:
    """Publish one post as the token's identity; returns the server's answer (the post
    and its event id)."""
    answer: dict[str, Any] = call(
        url, "POST", f"/api/channels/{channel}/posts", {"body": body}, token
    )
    return answer


def channels(url: str, token: str | None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = call(url, "GET", "/api/channels", token=token)["channels"]
    return found


# -- tail ---------------------------------------------------------------------------


def line(event: str, data: str, colour: bool) -> str:
    """One readable line for a JSON event from the stream."""
    payload = json.loads(data)
    if "post" not in payload:
        return _channel_line(event, payload["channel"], colour)
    post = payload["post"]
    when = post["edited_at"] if event == "post-updated" else post["created_at"]
    stamp = _paint(time.strftime("%H:%M", _local(when)), "dim", colour)
    where = _paint(f"#{post['channel']}", "channel", colour)
    who = _paint(terminal_safe(post["author"]), "bold", colour)
    verb = {
        "post-created": "",
        "post-updated": "edited ",
        "post-deleted": "deleted ",
        "post-pinned": "pinned ",
        "post-unpinned": "unpinned ",
    }.get(event, f"{event} ")
    what = _paint(f"{verb}post {post['id']}", event if event in _STYLES else "dim", colour)
    # A body could carry escape sequences that would repaint the user's terminal.
    said = " ".join(terminal_safe(post["body"]).split())
    head = f"{stamp} {where} {who}"
    if event == "post-created":
        return f"{head}: {said}"
    return f"{head} {what}" + (f": {said}" if said and event != "post-deleted" else "")


def _channel_line(event: str, channel: dict[str, Any], colour: bool) -> str:
    where = _paint(f"#{channel['name']}", "channel", colour)
    title = " ".join(terminal_safe(channel["title"]).split())
    what = {
        "channel-created": f"was created: {title}",
        "channel-updated": f"is now titled: {title}",
        "channel-archived": "was archived",
        "channel-restored": "was restored",
    }.get(event, event)
    return _paint(f"{where} {what}", "dim", colour) if colour else f"{where} {what}"


def _local(iso: str) -> time.struct_time:
    from datetime import datetime

    return datetime.fromisoformat(iso).astimezone().timetuple()


@dataclass
class Tail:
    url: str
    channels: Sequence[str]
    fmt: str
    last_id: int | None
    out: TextIO
    err: TextIO
    colour: bool
    # How many events to print before returning (None: until interrupted), for tests.
    limit: int | None = None
    token: str | None = None
    sleep: Callable[[float], None] = time.sleep

    def run(self) -> int:
        printed, connected_once, delay = 0, False, 1.0
        while True:
            try:
                for event in self._events():
                    connected_once, delay = True, 1.0
                    if event is None:
                        continue
                    self._show(*event)
                    printed += 1
                    if self.limit is not None and printed >= self.limit:
                        return OK
                reason = "the server ended the stream"
            except CommandError:
                raise
            except (httpx.HTTPError, SSEError) as exc:
                if not connected_once:
                    raise CommandError(UNREACHABLE, f"cannot reach {self.url}: {exc}") from None
                reason = str(exc) or type(exc).__name__
            print(f"feed: {reason}; reconnecting in {delay:.0f} s", file=self.err, flush=True)
            self.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)

    def _events(self) -> Any:
        """Yields None when the stream opens, then (event, data) for each event."""
        params: list[tuple[str, str]] = [("format", "json")]
        params += [("channel", name) for name in self.channels]
        headers = auth(self.token)
        if self.last_id is not None:
            headers["Last-Event-ID"] = str(self.last_id)
        with (
            httpx.Client(timeout=TIMEOUT) as client,
            connect_sse(client, "GET", f"{self.url}/events", params=params, headers=headers) as sse,
        ):
            if sse.response.status_code != 200:
                sse.response.read()
                raise _refusal(sse.response)
            yield None
            for event in sse.iter_sse():
                if event.id:
                    self.last_id = int(event.id)
                if event.event == "resync":
                    print(
                        "feed: too many events were missed to replay; carrying on from "
                        f"event {self.last_id}",
                        file=self.err,
                        flush=True,
                    )
                elif event.event.startswith(("post-", "channel-")):
                    yield event.event, event.data

    def _show(self, event: str, data: str) -> None:
        shown = json_safe(data) if self.fmt == "json" else line(event, data, self.colour)
        print(shown, file=self.out, flush=True)


def run_tail(args: Any, url: str) -> int:
    tail = Tail(
        url=url,
        channels=args.channel or [],
        fmt=args.format,
        last_id=args.since,
        out=sys.stdout,
        err=sys.stderr,
        colour=want_colour(args.color, sys.stdout),
        limit=args.count,
        token=args.token,
    )
    try:
        return tail.run()
    except KeyboardInterrupt:
        return INTERRUPTED
