"""The HTTP client behind ``feed post``, ``feed tail`` and ``feed channels``: every
request those commands make to a running server is made here.

Rationale:

1. Failures come in kinds, so the command can give each its exit code
   (client_failures.py).
2. ``follow`` resumes with ``Last-Event-ID`` after any disconnect, so a restart or
   a network cut yields every event once. It first waits what the stream's
   ``retry:`` said, as a browser does: the server spreads that value over each
   stream at random, and a fixed delay of our own would bring every ``tail`` a
   restart dropped back in the same instant. The wait doubles, up to ten seconds
   (or the server's, if longer), while the server stays down. Only the very first
   connection failing ends it: that is a wrong URL or a server that is not running.
   After it, an answer of 5xx or 429 is "not now" (the database out, a proxy with no
   server behind it, too many streams) and is waited out as a cut is, for at least
   its ``Retry-After``, up to ``MAX_RETRY_AFTER``; any other refusal (a token revoked:
   401) ends it.
3. Text, the token, bodies and channels' paths are checked before anything is sent
   (client_sends.py): what could never be stored or sent is refused without a request.
4. ``feed post --ndjson``'s lines become batch items in post_lines.py; they are sent
   here, a batch a request (``post_batch``).
5. An answer is checked for the shape feed gives it before anything reads it: what
   another server says (a web server's welcome page, a JSON API of its own) is
   ``NotFeed``, one line naming the URL, never a traceback. The command prints what
   it got through terminal_text.py, since every string in it is the server's.
6. The URL is shown with its secrets hidden (redaction.py). A user name
   or password in it is refused: httpx would send them as Basic credentials in place
   of the token, and the server would answer 401 to a token that is fine. So is a port
   outside 1 to 65535, which the socket would take modulo 65536: --url
   http://host:99999 would send the token to port 34463.
7. What httpx says of a request it could not send is never shown: it may quote the
   request's headers, the token's among them (client_sends.py, on the token).
8. Every request but a stream's has ``REQUEST_DEADLINE`` for the whole of it, and
   every answer ``MAX_ANSWER_BYTES``; a stream's events have ``MAX_EVENT_BYTES`` each
   (client_bounds.py). Past a limit, what answered is no feed server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import connect_sse

from feed import client_sends
from feed.batch_input import PREFER_MINIMAL
from feed.client_bounds import Late, TooLarge, capped, events, within
from feed.client_failures import (
    MAX_RETRY_AFTER,
    Answer,
    Failure,
    NotFeed,
    NotSendable,
    Unreachable,
    not_now,
    refusal,
)
from feed.post_lines import Line
from feed.redaction import redact_url

# How long to wait after a cut, until the server has said (2).
FIRST_DELAY = 1.0
MIN_DELAY = 0.1  # the shortest wait a stream's retry: hint may ask for
MAX_ID_DIGITS = 19  # event ids fit in 64 bits (storage/log.py, on ids)
MAX_BACKOFF = 10.0
REQUEST_TIMEOUT = 10.0  # for each read
# A whole request and its answer (8): long enough for a batch of a thousand posts.
REQUEST_DEADLINE = 30.0
# The longest answer (8): a search page of the most results (100), each a post at the
# default length limit and of the most HTML, takes about 15 MB (a post of 3,333
# mentions renders to 110 kB); feed's other answers take less.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
# The longest event of a stream (8): such a post's takes about 130 kB; room for a
# server that allows posts several times as long.
MAX_EVENT_BYTES = 1024 * 1024
STREAM_TIMEOUT = httpx.Timeout(REQUEST_TIMEOUT, read=None)  # idle between heartbeats
BATCH_PATH = "/api/posts:batch"
# The fields of feed's answers that the commands read, and their types (5).
Shape = Mapping[str, type | tuple[type, ...]]
POST: Shape = {"id": int, "channel": str}
POSTED: Shape = {"post": dict, "event_id": int}
FOUND_POST: Shape = {**POST, "author": str, "created_at": str, "parent": (int, type(None))}
LISTED_CHANNEL: Shape = {"name": str, "title": str}
CHANNEL: Shape = {**LISTED_CHANNEL, "archived": bool}
MEMBER: Shape = {"name": str, "may_post": bool}
JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event read from ``GET /events``."""

    event: str
    id: int | None
    data: str
    # The ``retry:`` field, in milliseconds: how long to wait before reconnecting.
    retry: int | None = None


def check_url(url: str) -> None:
    """Refuse a server URL that is not one, or that holds credentials (6)
    (NotSendable), before any request."""
    shown = redact_url(url)
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise NotSendable(f"--url {shown!r} is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise NotSendable(f"--url {shown!r} is not an http:// or https:// URL")
    if parsed.userinfo:
        raise NotSendable(
            f"--url {shown!r} holds a user name or password: feed signs in with --token "
            "(or FEED_TOKEN) alone, so give the URL without them"
        )
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise NotSendable(f"--url {shown!r} has no port: a port is 1 to 65535")


class Client:
    """One server, as one identity (``token``; None: anonymous)."""

    def __init__(
        self, url: str, token: str | None = None, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.url = url.rstrip("/")
        check_url(self.url)
        self.shown_url = redact_url(self.url)  # in messages (6)
        self.token = client_sends.usable_token(token)
        self._sleep = sleep

    def _headers(self) -> dict[str, str]:
        return {} if not self.token else {"Authorization": f"Bearer {self.token}"}

    def _call(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | list[dict[str, Any]] | None = None,
        params: Sequence[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One API request; the decoded answer, or the reason it failed (1)."""
        fields = payload.items() if isinstance(payload, dict) else []
        for field, value in [*fields, *(params or [])]:
            if isinstance(value, str):
                client_sends.sendable(f"the {field}", value)
        body = None if payload is None else client_sends.json_body(payload)
        try:
            request = httpx.Request(
                method,
                f"{self.url}{path}",
                content=body,
                params=tuple(params or ()),
                headers=self._headers() | ({} if body is None else JSON_HEADERS) | (headers or {}),
            )
            answer = within(REQUEST_DEADLINE, lambda: _fetched(request))
        except Late:
            raise self._late() from None
        except TooLarge as exc:
            raise self._too_large("an answer", exc) from None
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if not 200 <= answer.status < 300:
            raise refusal(answer, self.url)
        try:
            return json.loads(answer.body)
        except ValueError:
            raise self._not_feed() from None

    def _unreachable(self, exc: httpx.HTTPError) -> Unreachable:
        """No answer, told by its kind alone if httpx's words could quote a header (7)."""
        network = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)
        said = str(exc) if isinstance(exc, network) else ""
        if self.token and self.token in said:
            said = ""
        said = said or f"the request could not be made ({type(exc).__name__})"
        return Unreachable(f"cannot reach {self.shown_url}: {said}")

    def _late(self) -> Unreachable:
        return Unreachable(f"{self.shown_url} did not answer within {REQUEST_DEADLINE:g} s")

    def _too_large(self, what: str, exc: TooLarge) -> NotFeed:
        return NotFeed(
            f"{self.shown_url} sent {what} of more than {exc.readable}, more than feed "
            "sends: is that feed's URL?"
        )

    def _not_feed(self) -> NotFeed:
        return NotFeed(
            f"{self.shown_url} answered with what no feed server sends: is that feed's URL?"
        )

    def _shaped(self, answer: Any, shape: Shape) -> Any:
        """``answer``, if it is an object with each field of ``shape`` of its type (5)."""
        if not isinstance(answer, dict) or not all(
            isinstance(answer.get(name), kind) for name, kind in shape.items()
        ):
            raise self._not_feed()
        return answer

    def _listed(self, answer: Any, key: str, shape: Shape) -> Any:
        """``answer[key]``, if it is a list of objects of ``shape`` (5)."""
        items = self._shaped(answer, {key: list})[key]
        for item in items:
            self._shaped(item, shape)
        return items

    def _posted(self, answer: Any) -> dict[str, Any]:
        """A post's or a reply's answer, checked (5)."""
        self._shaped(self._shaped(answer, POSTED)["post"], POST)
        posted: dict[str, Any] = answer
        return posted

    def _results(self, answer: Any, count: int) -> list[dict[str, Any]]:
        """A batch's ``count`` results, checked (5): a written item's ids (with its post
        or without), a refused one's reason."""
        results: list[dict[str, Any]] = self._listed(answer, "results", {"status": int})
        if len(results) != count:
            raise self._not_feed()
        for result in results:
            if result["status"] != 201:
                self._shaped(result, {"error": str})
            else:
                self._shaped(result.get("post", result), POST)
                self._shaped(result, {"event_id": int})
        return results

    # -- posts ---------------------------------------------------------------------

    def post(self, channel: str, body: str) -> dict[str, Any]:
        """Publish one post as the token's identity; the server's answer (the post and
        its event id)."""
        return self._posted(
            self._call("POST", f"{client_sends.channel_path(channel)}/posts", {"body": body})
        )

    def post_batch(
        self, items: Sequence[Line], *, minimal: bool = False
    ) -> list[tuple[int, dict[str, Any]]]:
        """Send ``items`` as one batch (post_lines.py); each line's number with its result, in
        order. A line refused before sending has its result already. ``minimal``: a
        written item's result has its ids, not its post (batch.py, on the minimal
        answer)."""
        ready = [line for line in items if line.result is None]
        results: list[dict[str, Any]] = []
        if ready:
            prefer = {"Prefer": PREFER_MINIMAL} if minimal else None
            answer = self._call("POST", BATCH_PATH, [line.item for line in ready], headers=prefer)
            results = self._results(answer, len(ready))
        sent = iter(results)
        return [(line.number, line.result or next(sent)) for line in items]

    def reply(self, parent: int, body: str) -> dict[str, Any]:
        """Reply to the post ``parent`` as the token's identity; the server's answer."""
        return self._posted(self._call("POST", f"/api/posts/{parent}/replies", {"body": body}))

    def search(
        self, q: str, channels: Sequence[str], author: str | None, limit: int | None
    ) -> list[dict[str, Any]]:
        """The first page of a search, best first: each result's post and snippet."""
        params = [("q", q), *(("channel", name) for name in channels)]
        params += [("author", author)] if author else []
        params += [("limit", str(limit))] if limit is not None else []
        found: list[dict[str, Any]] = self._listed(
            self._call("GET", "/api/search", params=params),
            "results",
            {"post": dict, "snippet": str},
        )
        for result in found:
            self._shaped(result["post"], FOUND_POST)
        return found

    # -- channels ------------------------------------------------------------------

    def channels(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._listed(
            self._call("GET", "/api/channels"), "channels", LISTED_CHANNEL
        )
        return found

    def create_channel(
        self,
        name: str,
        title: str,
        *,
        description: str | None = None,
        private: bool = False,
        announcement_only: bool = False,
        replies: bool = True,
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {"name": name, "title": title}
        if description:
            fields["description"] = description
        if private:
            fields["private"] = True
        if announcement_only:
            fields["announcement_only"] = True
        if not replies:
            fields["replies"] = False
        return self._channel(self._call("POST", "/api/channels", fields))

    def set_replies(self, name: str, replies: bool) -> dict[str, Any]:
        """Whether readers of an announcement-only channel may reply there."""
        return self._channel(
            self._call("PATCH", client_sends.channel_path(name), {"replies": replies})
        )

    def retitle_channel(self, name: str, title: str) -> dict[str, Any]:
        return self._channel(self._call("PATCH", client_sends.channel_path(name), {"title": title}))

    def archive_channel(self, name: str) -> dict[str, Any]:
        return self._channel(self._call("POST", f"{client_sends.channel_path(name)}/archive"))

    def restore_channel(self, name: str) -> dict[str, Any]:
        return self._channel(self._call("POST", f"{client_sends.channel_path(name)}/restore"))

    def _channel(self, answer: Any) -> dict[str, Any]:
        channel: dict[str, Any] = self._shaped(
            self._shaped(answer, {"channel": dict})["channel"], CHANNEL
        )
        return channel

    # -- memberships ---------------------------------------------------------------

    def members(self, channel: str) -> list[dict[str, Any]]:
        answer = self._call("GET", f"{client_sends.channel_path(channel)}/members")
        found: list[dict[str, Any]] = self._listed(answer, "members", MEMBER)
        return found

    def grant(self, channel: str, who: str, *, may_post: bool) -> None:
        self._call("PUT", self._member(channel, who), {"may_post": may_post})

    def ungrant(self, channel: str, who: str) -> None:
        self._call("DELETE", self._member(channel, who))

    @staticmethod
    def _member(channel: str, who: str) -> str:
        return f"{client_sends.channel_path(channel)}/members/{quote(who, safe='')}"

    # -- the stream ----------------------------------------------------------------

    def follow(
        self,
        channels: Sequence[str],
        last_id: int | None,
        reconnecting: Callable[[str, float], object],
        only: str | None = None,
    ) -> Iterator[StreamEvent]:
        """Every event of the JSON stream of ``channels`` (all, if none) after
        ``last_id`` (None: from now), for as long as the caller reads, across
        disconnects (2). ``reconnecting`` hears why the stream broke and how many
        seconds pass before the next try. ``only="mentions"``: only the mentions of
        the token's holder."""
        connected_once, first, delay = False, FIRST_DELAY, FIRST_DELAY
        while True:
            try:
                for event in self._stream(channels, last_id, only):
                    connected_once, delay = True, first
                    if event is None:
                        continue
                    if event.retry is not None:
                        # Within what a client may sensibly wait: 0 would be a busy loop.
                        first = delay = min(max(event.retry / 1000, MIN_DELAY), MAX_RETRY_AFTER)
                    if event.id is not None:
                        last_id = event.id
                    yield event
                reason, wait = "the server ended the stream", delay
            except Failure as failure:
                if not connected_once or not not_now(failure):
                    raise
                reason, wait = str(failure), max(delay, failure.retry_after or 0.0)
            except httpx.HTTPError as exc:
                if not connected_once:
                    raise self._unreachable(exc) from None
                reason, wait = str(self._unreachable(exc)), delay
            reconnecting(reason, wait)
            self._sleep(wait)
            delay = min(delay * 2, max(first, MAX_BACKOFF))

    def _stream(
        self, channels: Sequence[str], last_id: int | None, only: str | None = None
    ) -> Iterator[StreamEvent | None]:
        """One connection: None once it is open, then each event."""
        params: list[tuple[str, str]] = [("format", "json")]
        params += [("channel", name) for name in channels]
        params += [("only", only)] if only else []
        headers = self._headers()
        if last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        with (
            httpx.Client(timeout=STREAM_TIMEOUT) as client,
            connect_sse(client, "GET", f"{self.url}/events", params=params, headers=headers) as sse,
        ):
            response = sse.response
            kind = response.headers.get("content-type", "").partition(";")[0].strip().lower()
            # A stream is answered 200 or refused; any other success is no feed's (5).
            if response.status_code == 200 and kind != "text/event-stream":
                raise self._not_feed()
            if response.status_code != 200:
                if response.is_success:
                    raise self._not_feed()
                try:
                    raise refusal(within(REQUEST_DEADLINE, lambda: _read(response)), self.url)
                except Late:
                    raise self._late() from None
                except TooLarge as exc:
                    raise self._too_large("an answer", exc) from None
            yield None
            try:
                for event in events(response.iter_bytes(), MAX_EVENT_BYTES):
                    yield StreamEvent(event.event, _event_id(event.id), event.data, event.retry)
            except TooLarge as exc:
                raise self._too_large("an event", exc) from None


def _fetched(request: httpx.Request) -> Answer:
    """``request``'s answer, read whole within ``MAX_ANSWER_BYTES`` (8); redirects not
    followed (client_failures.py, on redirects)."""
    with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
        response = client.send(request, stream=True)
        try:
            return _read(response)
        finally:
            response.close()


def _read(response: httpx.Response) -> Answer:
    body = capped(response.iter_bytes(), MAX_ANSWER_BYTES)
    return Answer(
        str(response.request.url),
        response.status_code,
        response.reason_phrase,
        response.headers,
        body,
    )


def _event_id(said: str) -> int | None:
    """An event's ``id:``, which feed writes as a number; anything else is no feed's."""
    if not said:
        return None
    if not (said.isascii() and said.isdigit() and len(said) <= MAX_ID_DIGITS):
        raise NotFeed(f"the server sent an event id that is no feed's: {said[:40]!r}")
    return int(said)
