"""Limits on connections, before a request reaches the app: how long its headers
and its body may take, how large its headers may be, and how many connections one
address may hold.

Rationale:

1. uvicorn's httptools protocol starts no timer while it waits for a request's
   headers: its keep-alive timer runs only after a response, and any byte stops it.
   A client that opens connections and sends nothing, or a byte now and then, holds
   a file descriptor for ever, and with the common limit of 1,024 open files a
   thousand of them lock everyone out. Here a connection has ``FEED_HEADER_TIMEOUT``
   seconds to send complete request headers, counted from when it opens and, on a
   kept-alive connection, from when the previous response ended. Bytes arriving do
   not restart the clock; only complete headers stop it. Then it is closed.
2. A body has ``FEED_BODY_TIMEOUT`` seconds to arrive once its headers have. The
   endpoints read bodies by awaiting the server's ``receive``, which has no bound of
   its own. One that is late is answered 408 and the connection closed; the app's
   ``receive`` then reports a disconnect, and whatever it answers is dropped.
3. httptools keeps a header's name and value in memory until the header is complete,
   and uvicorn takes any size: a 32 MB header was answered. While a request's head
   (request line and headers) is read, at most ``FEED_MAX_HEADER_BYTES`` are fed to
   the parser; a head that is not complete within them is answered 431 and the
   connection closed, so no more than that is ever buffered for one head.
4. One address may hold ``per_address_cap`` connections; further ones are cut as
   they are accepted. A browser screen holds one stream, and for a few seconds after
   its page loads the kept-alive connection that carried the page and its assets, so
   the cap is twice ``FEED_MAX_STREAMS_PER_CLIENT``: every screen behind one NAT
   address can hold its stream and reload at the same moment. It is never more than
   half of the descriptors the open-files limit leaves after ``RESERVED_FILES``, so
   that one address can take at most half of the server whatever the settings say;
   where that is below the stream limit, start-up says so. Proxies named in
   ``FEED_FORWARDED_ALLOW_IPS`` are not capped: every client behind them shares their
   address, and the per-client limits of security.py see each client's own. An IPv6
   client is given a whole /64 and may use any address in it, so IPv6 connections
   count against their /64. The cap is per process: with ``FEED_WORKERS`` of them,
   one address may hold that many times as much, which the open-files limit of each
   still bounds.
5. At start-up the soft open-files limit is raised to the hard one, since the soft
   default (often 1,024) is far below what a server of streams needs; the log says
   what was chosen.
6. All of this lives in a subclass of uvicorn's httptools protocol. Streams
   (``/events``) still go through uvicorn's own ``RequestResponseCycle``, unchanged,
   which the streams' direct writes recognise by its exact type (stream.py).
7. One write per answer. uvicorn writes an answer's head as soon as the app starts
   it and its body when it comes, two sends; on loopback and on a LAN each send is a
   segment the client's kernel wakes its reader for, and the sender pays for both.
   Every other request's cycle is made a ``JoinedCycle`` once uvicorn has built it
   (its class is swapped before its task first runs, so no object is added): the
   head is held and written with the first part of the body, in one send. Nothing
   else changes: the same bytes, in the same order, with uvicorn's own checks. A
   HEAD answer has no body part to join, so its head is written at once, as is the
   head of any answer whose body never comes (the connection is closed then anyway).
8. On memory. Every open stream holds its connection's protocol for as long as it
   is open. uvicorn's protocol sets 28 attributes; CPython shares one table of names
   among all instances of a class only up to 30, and past that gives each instance a
   dictionary of its own, about 1.3 KB more per connection. This class's own state
   is therefore kept in slots, leaving the instance's dictionary to uvicorn's names.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
from typing import TYPE_CHECKING, Any, ClassVar, cast

from starlette.responses import JSONResponse
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from feed.errors import error_body
from feed.settings import Settings

if TYPE_CHECKING:
    from uvicorn._types import ASGISendEvent

logger = logging.getLogger("feed.connections")

# Descriptors kept out of the per-address cap for the process itself: its listening
# socket, the database pool, the broker, logs and the event loop's own.
RESERVED_FILES = 100
# Connections one address may hold per stream it may hold (4).
CONNECTIONS_PER_STREAM = 2
# Requests whose answers stream: they keep uvicorn's own cycle (6).
STREAM_PATH = "/events"


class Trusted:
    """The addresses in ``FEED_FORWARDED_ALLOW_IPS``: addresses, networks or ``*``."""

    def __init__(self, spec: str) -> None:
        entries = [e.strip() for e in spec.split(",") if e.strip()]
        self.everyone = "*" in entries
        self._literals: set[str] = set()
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in entries:
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._literals.add(entry)  # a host name or a socket path, compared as is

    def __contains__(self, address: str) -> bool:
        if self.everyone or address in self._literals:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard one (5); returns (before, after).
    ``resource.RLIM_INFINITY`` (-1) stands for no limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft, soft
    return soft, hard


def per_address_cap(max_streams: int, open_files: int) -> int:
    """Connections one address may hold (4), under an open-files limit of ``open_files``
    (-1: none)."""
    wanted = CONNECTIONS_PER_STREAM * max_streams
    if open_files < 0:
        return wanted
    return max(1, min(wanted, (open_files - RESERVED_FILES) // 2))


class Limits:
    """One server process's connection limits and the connections each address holds."""

    def __init__(self, settings: Settings, open_files: int) -> None:
        self.header_timeout = settings.header_timeout
        self.body_timeout = settings.body_timeout
        self.max_head = settings.max_header_bytes
        self.per_address = per_address_cap(settings.max_streams_per_client, open_files)
        self.trusted = Trusted(settings.forwarded_allow_ips)
        self.held: dict[str, int] = {}
        self._refusing: set[str] = set()  # addresses at the cap, said once each
        self._describe(settings, open_files)

    def _describe(self, settings: Settings, open_files: int) -> None:
        files = "no open-files limit" if open_files < 0 else f"{open_files} open files"
        logger.info(
            "%s: one address may hold %d connections (proxies in FEED_FORWARDED_ALLOW_IPS "
            "are not capped); request headers within %g s and %d bytes, bodies within %g s",
            files,
            self.per_address,
            self.header_timeout,
            self.max_head,
            self.body_timeout,
        )
        if self.per_address < settings.max_streams_per_client:
            logger.warning(
                "the open-files limit (%d) lets one address hold %d connections, fewer "
                "than the %d streams FEED_MAX_STREAMS_PER_CLIENT allows; raise the hard "
                "limit (ulimit -Hn, LimitNOFILE=) for screens behind one address",
                open_files,
                self.per_address,
                settings.max_streams_per_client,
            )

    def admit(self, address: str) -> bool:
        """Count a new connection from ``address``, unless it is at the cap."""
        held = self.held.get(address, 0)
        if held >= self.per_address:
            if address not in self._refusing:
                self._refusing.add(address)
                logger.warning(
                    "%s holds %d connections, the most one address may; cutting new ones",
                    address,
                    held,
                )
            return False
        self.held[address] = held + 1
        return True

    def release(self, address: str) -> None:
        held = self.held[address] - 1
        if held:
            self.held[address] = held
        else:
            del self.held[address]
        if held < self.per_address:
            self._refusing.discard(address)


def holder_of(address: str) -> str:
    """Whom a connection from ``address`` counts against (4): the address itself, or
    for IPv6 the /64 network it is in, since one client is given a whole /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # a socket path, say
    if not isinstance(ip, ipaddress.IPv6Address):
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, 64), strict=False))


def protocol(limits: Limits) -> type[LimitedProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` of one server process."""
    return type("FeedHttpProtocol", (LimitedProtocol,), {"limits": limits})


class LimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above."""

    limits: ClassVar[Limits]
    # Slots, not attributes in the instance's dict (rationale 8).
    __slots__ = ("_body_timer", "_counted", "_head_bytes", "_head_timer", "_reading_head")

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._counted: str | None = None  # the address this connection counts against
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._reading_head = True
        self._head_bytes = 0

    # -- the connection ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        address = self.client[0] if self.client else None
        if address is not None and address not in self.limits.trusted:
            holder = holder_of(address)
            if not self.limits.admit(holder):
                self.transport.abort()
                return
            self._counted = holder
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timers()
        if self._counted is not None:
            self.limits.release(self._counted)
            self._counted = None
        super().connection_lost(exc)

    def _stop_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    # -- reading a head (1, 3) -------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        while data and not self.transport.is_closing():
            if not self._reading_head:
                super().data_received(data)
                return
            room = self.limits.max_head - self._head_bytes
            if room <= 0:
                self._refuse_head()
                return
            piece, data = data[:room], data[room:]
            self._head_bytes += len(piece)
            super().data_received(piece)
            if data and self.transport.get_protocol() is not self:
                return  # upgraded: the rest is the new protocol's

    def on_headers_complete(self) -> None:
        self._reading_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and self.scope["path"] != STREAM_PATH and not cycle.response_started:
            cycle.__class__ = JoinedCycle  # before its task first runs (7)
        self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_late)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._reading_head, self._head_bytes = True, 0

    def on_response_complete(self) -> None:
        waiting = not self.pipeline  # else the next request's head is already in
        super().on_response_complete()
        if self._body_timer is not None:  # answered without reading the whole body
            self._body_timer.cancel()
            self._body_timer = None
        if waiting and self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_late)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes its parser cannot read as HTTP: JSON, as every
        error feed answers."""
        self._answer(400, "The request is not well-formed HTTP.")

    def _refuse_head(self) -> None:
        logger.info(
            "refused request headers longer than %d bytes from %s",
            self.limits.max_head,
            self.client[0] if self.client else "?",
        )
        previous = self.cycle  # the head being read is of the request after it
        idle = previous is None or previous.response_complete
        self._answer(431, "Request headers are too large.", write=idle)

    # -- timers ------------------------------------------------------------------------

    def _head_late(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _body_late(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if cycle is None or cycle.response_complete or self.transport.is_closing():
            return
        # The app's receive() reports a disconnect from now on, and its sends go nowhere.
        cycle.disconnected = True
        cycle.message_event.set()
        self._answer(
            408, "The request body did not arrive in time.", write=not cycle.response_started
        )

    def _answer(self, status: int, message: str, *, write: bool = True) -> None:
        """Answer ``status`` and close the connection; only close it if ``write`` is
        false (a response is under way, and bytes written now would land inside it)."""
        if write:
            # JSON, as every error feed answers (errors.py), though no app saw it, with
            # the headers uvicorn gives every answer (its date).
            body = JSONResponse(error_body(message)).body
            common = b"".join(
                name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
            )
            self.transport.write(
                b"".join(
                    [
                        STATUS_LINE[status],
                        common,
                        b"content-type: application/json\r\n",
                        b"content-length: %d\r\n" % len(body),
                        b"connection: close\r\n\r\n",
                        body,
                    ]
                )
            )
        self.transport.close()


class _Held:
    """Stands in for the transport while uvicorn writes an answer's head (7)."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


class _Joined:
    """Stands in for the transport while uvicorn writes the first part of a body:
    its first write carries the held head too (7)."""

    def __init__(self, transport: asyncio.Transport, head: bytes) -> None:
        self.transport = transport
        self.head: bytes | None = head

    def write(self, data: bytes) -> None:
        head, self.head = self.head, None
        self.transport.write(data if head is None else head + data)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def flush(self) -> None:
        if self.head is not None:
            self.write(b"")


class JoinedCycle(RequestResponseCycle):
    """uvicorn's cycle, writing an answer's head with the first part of its body (7)."""

    held: bytes | None = None  # a class default: instances get one only when they hold

    async def send(self, message: ASGISendEvent) -> None:
        kind = message["type"]
        if kind == "http.response.start" and self.scope["method"] != "HEAD":
            transport, held = self.transport, _Held()
            self.transport = cast(asyncio.Transport, held)
            try:
                await super().send(message)
            finally:
                self.transport = transport
            self.held = held.data or None
        elif kind == "http.response.body" and self.held is not None:
            transport, joined = self.transport, _Joined(self.transport, self.held)
            self.held = None
            self.transport = cast(asyncio.Transport, joined)
            try:
                await super().send(message)
            finally:
                self.transport = transport
                if not self.disconnected:
                    joined.flush()
        else:
            await super().send(message)
