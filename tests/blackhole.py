"""A TCP proxy on loopback that can drop the streams through it without a word: after
``cut()`` a connection carrying an event stream swallows what either side sends and
is never closed, as a lost NAT entry or a dead link leaves it (half-open: no FIN, no
RST). Connections made after the cut are forwarded as before.

Other connections (a browser's pooled keep-alive ones) are closed at the cut: a
browser sends its next request on one of those first and finds it dead only by
waiting, once per pooled connection, which the page under test does (it opens its
stream again every two silent heartbeats) but a test need not wait for."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

HOST = "127.0.0.1"
CHUNK = 65536
STREAM = b"text/event-stream"


@dataclass
class _Link:
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    stream: bool = False  # an answer of this type went through it
    dead: bool = False


class BlackHole:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:target`` until ``cut``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.links: list[_Link] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> BlackHole:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the black-hole proxy did not start")
        return self

    def cut(self) -> None:
        """Every stream open now goes silent for good; other connections close."""
        done = threading.Event()

        def cut() -> None:
            for link in self.links:
                if link.stream:
                    link.dead = True
                else:
                    for writer in link.writers:
                        writer.close()
            done.set()

        self._loop.call_soon_threadsafe(cut)
        done.wait(10)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, HOST, 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(HOST, self.target)
        except OSError:
            client_w.close()
            return
        link = _Link([client_w, server_w])
        self.links.append(link)
        await asyncio.gather(
            self._pipe(link, client_r, server_w), self._pipe(link, server_r, client_w)
        )

    async def _pipe(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(CHUNK):
                if link.dead:
                    continue  # swallowed; the other side never hears of it
                link.stream = link.stream or STREAM in data
                writer.write(data)
                await writer.drain()
        if not link.dead:
            writer.close()


@contextlib.contextmanager
def black_hole(target: int) -> Iterator[BlackHole]:
    proxy = BlackHole(target).start()
    try:
        yield proxy
    finally:
        proxy.stop()
