"""What an open stream's connection keeps in memory, made smaller once it attaches.

An attached stream (subscribers.py, on attaching) is idle for almost all its life: the
hub writes to its transport, and its task waits for the client to leave. What it holds
meanwhile is mostly uvicorn's, made for short requests: its connection's protocol and
flow control, its request cycle, and the coroutines between them and the app.

Rationale:

1. On queues of waiters. uvicorn gives each connection a ``deque`` of pipelined
   requests and an ``asyncio.Event`` for flow control, and each request another
   ``Event`` for its ``receive``; every ``Event`` keeps a ``deque`` of its waiters. An
   empty ``deque`` still holds a block of 64 slots, about 600 bytes, so these three
   were close to 2 KB of every open stream, with at most one waiter or request in any
   of them. ``slim`` swaps them, when a stream attaches, for a ``Signal`` and a
   ``Pipeline`` that do the same with a list made only while something waits in it.
2. On the swap. It is done where stream.py already knows uvicorn's cycle by its exact
   type (stream.py, on the pre-framed chunk), between two of the stream's own sends:
   nobody waits on the old objects then. The state goes with it (set or not, what
   is queued), and uvicorn's protocol looks each one up on its cycle or flow at
   every use, so from then on it uses the new ones.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Signal:
    """``asyncio.Event``, with its list of waiters made only while one waits (1)."""

    __slots__ = ("_value", "_waiters")

    def __init__(self, value: bool = False) -> None:
        self._value = value
        self._waiters: list[asyncio.Future[bool]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if self._value:
            return
        self._value = True
        for waiter in self._waiters or ():
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            self._waiters.remove(waiter)
            if not self._waiters:
                self._waiters = None


class Pipeline(list[Any]):
    """uvicorn's queue of pipelined requests (a ``deque`` it only ``appendleft``-s and
    ``pop``-s), as a list: empty, which it almost always is, a list is 56 bytes (1)."""

    __slots__ = ()

    def appendleft(self, entry: Any) -> None:
        self.insert(0, entry)


def slim(cycle: Any) -> None:
    """Swap the queues of waiters behind uvicorn's httptools request ``cycle`` for
    smaller ones that behave the same (1, 2)."""
    cycle.message_event = Signal(cycle.message_event.is_set())
    flow = cycle.flow
    flow._is_writable_event = Signal(flow._is_writable_event.is_set())
    protocol = getattr(cycle.on_response, "__self__", None)
    if protocol is not None and not isinstance(protocol.pipeline, Pipeline):
        protocol.pipeline = Pipeline(protocol.pipeline)
