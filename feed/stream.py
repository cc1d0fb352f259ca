"""``GET /events``: the Server-Sent Events endpoint.

A minimal ASGI response rather than sse-starlette's ``EventSourceResponse``: that
one runs several tasks and a queue per connection, and the fan-out benchmark's
baseline, built on it, needs several times our memory per stream and our latency
(docs/benchmarks.md). We keep sse-starlette for framing (sse.py).

Rationale:

1. The subscriber joins the hub *before* the replay query, so an event that
   commits while the replay runs is buffered, and the id filter in
   ``Subscriber.take`` writes it once (subscribers.py, on the id filter).
2. ``Last-Event-ID`` wins over ``last_event_id``: a browser's EventSource
   reconnects to the same URL with a newer header, and the header is the truth.
   Either is read as strictly as every other number (inputs.py, on numbers).
3. Where a resuming stream starts, its replay or a ``resync``, is resume.py's.
4. HTML streams (pages) open with ``hello`` (sse.py, on the hello) before any
   replay, so a page rendered by an older release reloads before applying anything.
5. A stream that does not resume starts with a bare ``id:`` of the newest event
   this process has delivered: a client that loses the connection before its first
   event still resumes from where it started, instead of from "now" again.
6. A client that disconnects is noticed by a small task waiting on ``receive``;
   a slow client whose backlog overflows is cancelled mid-write and its
   connection is closed without a final chunk, so it reconnects and resumes.
7. Once a stream has written its opening (and replay) and has nothing pending, the
   hub writes each event's pre-framed HTTP chunk straight to the connection's
   transport (subscribers.py, on attaching). That needs the bytes to be exactly what
   uvicorn would have written, so it is done only where we know them: uvicorn's
   httptools cycle with a chunked response. Everything else keeps the ASGI ``send`` path. The
   final chunk still goes through ``send``, after the hub has stopped writing
   (a closed subscriber takes no more), and uvicorn's flow control sees every
   direct write, because the transport reports its buffer to uvicorn's protocol.
8. ``HEAD /events`` is served here too, under the same per-client stream limit, and
   answered with the status and headers its ``GET`` would open with, then ended: it
   never joins the hub. Starlette would answer it with an endless stream that no
   limit counts.
9. ``q=`` makes the stream a live search: the hub sends it only the changes to posts
   that match (events.py, on live searches), and its replay is exactly the matching
   events after the resume id (replays.py, on live searches). A search follows
   channels, not a thread or one's mentions, and carries no personal events: what it
   shows is what matches. Each different search is matched against every event, so
   one client follows only so many (live_searches.py), counted from before the
   stream begins until it ends.

Elsewhere: replays before the status line (resume.py); a thread's stream, and a
deleted post's thread (thread_streams.py); each stream's ``retry:`` and its maximum
age (reconnects.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence

from starlette.datastructures import Headers, QueryParams
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from feed import footprint, inputs, logs, reading, resume, search_params, security
from feed.errors import ClientError, error_response, unavailable
from feed.models import EventKind
from feed.permissions import Permissions
from feed.reconnects import Expiry, spread
from feed.runtime import Runtime, runtime_of
from feed.sse import AGED, CLOSING, THREAD_OVER, Format, hello, position, retry_hint
from feed.store import StoreUnavailable
from feed.subscribers import Subscriber, Transport
from feed.thread_streams import end_of, thread_of

try:
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle as _HttpToolsCycle
except ImportError:  # no httptools: every stream takes the ASGI path
    _HttpToolsCycle = None  # type: ignore[assignment, misc]

logger = logging.getLogger("feed.stream")

FORMATS = tuple(f.value for f in Format)
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"x-accel-buffering", b"no"),
]


def parse_channels(perms: Permissions, names: Sequence[str]) -> frozenset[str] | None:
    """The channels a stream follows: those asked for (each readable, or 404), or None
    for every channel; a credential limited to some channels follows just those."""
    if not names and perms.identity.scope is None:
        return None
    selected = perms.selection(names)
    return None if selected is None else frozenset(selected)


def direct_transport(send: Send) -> Transport | None:
    """The connection behind ``send`` if the hub may write to it directly (rationale 7),
    its idle footprint made smaller (footprint.py).

    Only for uvicorn's httptools protocol after a chunked response has started, where
    ``send`` is the request cycle's own method: anything in between (another server,
    a wrapper, h11) keeps the ASGI path."""
    if _HttpToolsCycle is None:
        return None
    cycle = getattr(send, "__self__", None)
    if type(cycle) is not _HttpToolsCycle or cycle.chunked_encoding is not True:
        return None
    if cycle.response_complete or cycle.disconnected:
        return None
    # The stream idles from now on: uvicorn's queues of waiters are made smaller.
    footprint.slim(cycle)
    transport: Transport = cycle.transport
    return transport


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _log_open(sub: Subscriber, resume_id: int | None) -> None:
    channels = ",".join(sorted(sub.channels)) if sub.channels else "*"
    fields = {"format": sub.format.value, "channels": channels, "resume_from": resume_id}
    start = "now" if resume_id is None else f"after {resume_id}"
    logger.info("stream opened: %s %s from %s", sub.format.value, channels, start, extra=fields)


def _log_close(sub: Subscriber, seconds: float, outcome: str) -> None:
    fields = {"duration_s": round(seconds, 3), "events": sub.sent, "outcome": outcome}
    logger.info(
        "stream closed after %.1f s, %d events: %s", seconds, sub.sent, outcome, extra=fields
    )


class EventStream:
    """The ASGI app behind ``GET /events``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rt = runtime_of(scope["state"])
        query = QueryParams(scope["query_string"])
        following: tuple[str, str] | None = None  # (client, search) while it lasts (9)
        try:
            refused = inputs.address_not_utf8(scope)
            if refused is not None:
                raise ClientError(400, refused)  # before anything reads the query
            fmt = Format(inputs.choice(query.get("format"), "format", FORMATS, default=Format.JSON))
            header = Headers(scope=scope).get("last-event-id")
            resume_id = inputs.resume_id(header, "The Last-Event-ID header")
            if resume_id is None:
                resume_id = inputs.resume_id(query.get("last_event_id"), "last_event_id")
            perms = await rt.access.permissions(await rt.access.identify(scope))
            only = inputs.choice(query.get("only"), "only", reading.STREAM_ONLY, default="") or None
            person = reading.person(perms.identity)
            if only is not None and person is None:
                raise reading.no_person()
            searched = search_params.search_query(query.get("q"))
            if searched is not None and (only is not None or query.get("thread") is not None):
                raise ClientError(400, "A live search follows channels: send no thread or only.")
            thread = await thread_of(rt, perms, query, resume_id)
            if thread is None:
                channels = parse_channels(perms, query.getlist("channel"))
            elif only is not None:
                raise ClientError(400, "A thread's stream carries the whole thread: send no only.")
            else:
                channels = frozenset({thread.channel})
                person = None  # the thread alone, live as in its replay (thread_streams.py)
            if searched is not None:
                person = None  # what a search shows is what matches (9)
                # Last: nothing after it refuses the stream before it is given back.
                key = perms.identity.limit_key
                following = (security.limit_key(scope, key), searched.text)
                rt.live_searches.open(*following, signed_in=key is not None)
        except StoreUnavailable as exc:
            await unavailable(str(exc))(scope, receive, send)
            return
        except ClientError as exc:
            answer = error_response(exc.status, exc.message, exc.detail, exc.headers)
            answer.raw_headers.extend(security.stream_headers(scope))
            await answer(scope, receive, send)
            return
        except Exception:
            # Served outside Starlette (see app.FeedApp), so answer failures here.
            logger.exception("could not open a stream")
            message = "The feed is unavailable right now; retry shortly."
            await unavailable(message)(scope, receive, send)
            return
        try:
            # nosniff and CORS, chosen once by security.py: nothing wraps the stream's writes.
            extra = security.stream_headers(scope)
            if scope["method"] == "HEAD":
                await _head(send, extra)  # rationale 8
                return
            sub = Subscriber(
                fmt, channels, last_id=resume_id or 0, limit=rt.settings.subscriber_backlog
            )
            # Checked for each private event (events.py) and rechecked by watch.Watch.
            sub.private = perms.private_readable()
            sub.who = perms.identity
            # Their own events follow them (events.py, on personal events).
            sub.person = person
            sub.only = None if only is None else EventKind.MENTION.value
            sub.thread = None if thread is None else thread.id
            sub.search = searched  # a live search (events.py, on live searches)
            # This frame lives as long as the stream: keep only what the stream needs.
            del query, header, perms, channels, person, only, thread, searched
            # Whose turns its replay's pieces take (replays.py, on turns per client).
            client = security.client_address(scope)
            await self._serve(rt, sub, resume_id, client, receive, send, extra)
        finally:
            if following is not None:
                rt.live_searches.close(*following)  # (9)

    async def _serve(
        self,
        rt: Runtime,
        sub: Subscriber,
        resume_id: int | None,
        client: str,
        receive: Receive,
        send: Send,
        extra: Iterable[tuple[bytes, bytes]],
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        # One bound method for both hooks: there is one per open stream.
        interrupt = task.cancel
        sub.on_overflow = interrupt
        rt.watch.add(sub)
        rt.hub.subscribe(sub)
        aged = rt.settings.max_stream_seconds
        expiry = Expiry(sub, aged) if aged else None  # reconnects.py, on the maximum age
        started = False
        opened = time.monotonic()
        outcome = "ended"
        _log_open(sub, resume_id)
        try:
            opening = retry_hint(spread(rt.settings.retry_ms))
            if sub.format is Format.HTML:
                opening += hello(rt.settings.release, rt.settings.heartbeat)
            cursor = None
            if resume_id is None:
                # Events up to here were published before this subscriber joined (no
                # await since); later ones will reach it. Tell the client where it is.
                sub.last_id = rt.relay.delivered
                opening += position(sub.last_id)
            else:
                # Before the status line, so a database outage answers 503, not a cut.
                first, cursor = await resume.replay(rt, sub, resume_id, client)
                opening += first
                del first
            # Joined, it will be handed a deletion committed from now on; one committed
            # since its post was read is in the database (thread_streams.py, on a
            # deletion while the stream opens).
            if sub.thread is not None:
                ends_at = await end_of(rt, sub.thread, resume_id)
                if ends_at is not None:
                    sub.end_at(ends_at)
            await send(_start(extra))
            started = True
            await send({"type": "http.response.body", "body": opening, "more_body": True})
            # This frame lives as long as the stream.
            del opening
            if cursor is not None and not cursor.done:
                # Told when the client leaves, which the replay's writes would not say.
                watcher = asyncio.ensure_future(_until_disconnect(receive))
                try:
                    await resume.replay_rest(rt, sub, cursor, send, watcher.done)
                finally:
                    watcher.cancel()
                del watcher
            del cursor
            if sub.thread_over:
                sub.close()  # its replay ended with its thread's tombstone: nothing more comes
            transport = direct_transport(send)
            if transport is None:
                await self._pump(sub, send, receive)
            else:
                await self._hand_over(sub, send, receive, transport, interrupt)
            if sub.closed:
                await _finish(sub, send, expiry)
        except asyncio.CancelledError:
            # Subscriber.close and an overflow interrupt this task by cancelling it.
            ours = sub.overflowed or (sub.closed and sub.attached)
            if not ours or task.uncancel() > 0:
                raise
            if sub.overflowed and not started:
                # Overflowed while it waited for its replay's turn: no stream was begun.
                outcome = "dropped before it began: its backlog overflowed"
                await _refuse(send, unavailable("The feed is busy; resume shortly."))
            elif sub.overflowed:
                # Returning without the final chunk makes the server drop the connection.
                outcome = "dropped: its backlog overflowed; it will resume"
            else:
                await _finish(sub, send, expiry)
        except ClientError as exc:
            # Its thread's post was deleted while it opened, say: no stream
            # (thread_streams.py).
            outcome = f"refused with {exc.status}: {exc.message}"
            answer = error_response(exc.status, exc.message, exc.detail, exc.headers)
            answer.raw_headers.extend(extra)
            await _refuse(send, answer)
        except StoreUnavailable as exc:
            outcome = "the database is unavailable"
            if started:
                logger.warning("stream ended: %s The client will resume.", exc)
            else:
                await _refuse(send, unavailable(str(exc)))
        except Exception:
            # Mid-stream there is no status to send: end the stream, the client resumes.
            outcome = "failed"
            logger.exception("stream failed; the client will reconnect and resume")
        finally:
            rt.hub.unsubscribe(sub)
            rt.watch.discard(sub)
            if expiry is not None:
                expiry.cancel()
            if outcome == "ended" and sub.thread_over:
                outcome = "its thread's post was deleted"
            elif outcome == "ended" and expiry is not None and expiry.due:
                outcome = "reached its maximum age; it will resume"
            elif outcome == "ended":
                outcome = "server closing" if rt.hub.closing else "client left"
            _log_close(sub, time.monotonic() - opened, outcome)

    @staticmethod
    async def _pump(sub: Subscriber, send: Send, receive: Receive) -> None:
        """The ASGI path: write what the hub queues, through ``send``, until the
        subscriber closes; ``_serve`` then ends the response."""
        watcher = asyncio.ensure_future(_until_disconnect(receive))
        watcher.add_done_callback(lambda _: sub.close())
        try:
            while True:
                await sub.wait()
                if sub.closed:
                    return
                await _write(sub, send)
        finally:
            watcher.cancel()

    @staticmethod
    async def _hand_over(
        sub: Subscriber,
        send: Send,
        receive: Receive,
        transport: Transport,
        interrupt: Callable[[], object],
    ) -> None:
        """The direct path (rationale 7): catch up through ``send``, then let the hub
        write to ``transport`` and wait for the client to leave. ``Subscriber.close``
        interrupts the wait; ``_serve`` then ends the response."""
        while not sub.attach(transport, interrupt):
            if sub.closed:
                return
            # What arrived while the opening or the last write was going out.
            await _write(sub, send)
        # _until_disconnect inlined: one coroutine frame less per open stream.
        while (await receive())["type"] != "http.disconnect":
            pass


async def _refuse(send: Send, answer: Response) -> None:
    """An error (a 503, a 404) in place of a stream that never began."""
    failed = {"status": answer.status_code, "headers": answer.raw_headers}
    await send({"type": "http.response.start", **failed})
    await send({"type": "http.response.body", "body": answer.body})


def _start(extra: Iterable[tuple[bytes, bytes]]) -> Message:
    """A stream's status line, with ``extra`` headers (security.py's) besides its own."""
    request_id = (logs.HEADER, logs.request_id.get().encode())
    headers = [*HEADERS, *extra, request_id]
    return {"type": "http.response.start", "status": 200, "headers": headers}


async def _head(send: Send, extra: Iterable[tuple[bytes, bytes]]) -> None:
    """A stream's status and headers, and no stream (rationale 8)."""
    await send(_start(extra))
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _write(sub: Subscriber, send: Send) -> None:
    data = sub.take()
    if data:
        await send({"type": "http.response.body", "body": data, "more_body": True})


async def _finish(sub: Subscriber, send: Send, expiry: Expiry | None) -> None:
    """What is left, and the final chunk: the client reconnects and resumes, unless its
    thread is over."""
    data = sub.take()  # first: what is left may hold the thread's tombstone
    if sub.thread_over:
        last = THREAD_OVER
    else:
        last = AGED if expiry is not None and expiry.due else CLOSING
    data += last
    await send({"type": "http.response.body", "body": data, "more_body": False})
