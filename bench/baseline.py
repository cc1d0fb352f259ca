"""The naive baseline feed is measured against, in the same run, with the same client.

It is what a tutorial would build: one ``asyncio.Queue`` per client feeding
sse-starlette's ``EventSourceResponse``, and a POST handler that puts each new event
into every queue. Every stream then wakes its own task, encodes the event itself and
writes it. The queues are unbounded, as in sse-starlette's broadcast example.

Posts are kept in memory, with no database: that only flatters the baseline, since
feed commits every post to SQLite before fanning it out. Responses have the same
shape as feed's (``{"post": ..., "event_id": N}``, events with ``id:``, ``event:
post-created`` and ``{"id", "type", "post"}`` data, opening with ``retry: 2000``).

Run: ``python -m bench.baseline --port PORT`` (one uvicorn process with uvloop and
httptools, as feed runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import uvicorn
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

RETRY_MS = 2000

Queues = set[asyncio.Queue[ServerSentEvent]]


async def stream(queues: Queues) -> AsyncIterator[ServerSentEvent]:
    queue: asyncio.Queue[ServerSentEvent] = asyncio.Queue()
    # Joined before retry: is sent, so a client that has seen it gets every later post.
    queues.add(queue)
    try:
        yield ServerSentEvent(retry=RETRY_MS)
        while True:
            yield await queue.get()
    finally:
        queues.discard(queue)


def new_post(post_id: int, channel: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": post_id,
        "channel": channel,
        "author": payload["author"],
        "body": payload["body"],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "edited_at": None,
        "pinned": False,
        "deleted": False,
    }


def create_app() -> Starlette:
    queues: Queues = set()
    posts: list[dict[str, Any]] = []

    async def create_post(request: Request) -> Response:
        payload = await request.json()
        if not all(isinstance(payload.get(k), str) for k in ("author", "body")):
            return JSONResponse({"error": "author and body must be strings"}, status_code=422)
        post = new_post(len(posts) + 1, request.path_params["channel"], payload)
        posts.append(post)
        event_id = post["id"]
        data = json.dumps({"id": event_id, "type": "post-created", "post": post})
        event = ServerSentEvent(data, event="post-created", id=str(event_id))
        for queue in queues:
            queue.put_nowait(event)
        return JSONResponse({"post": post, "event_id": event_id}, status_code=201)

    async def events(_request: Request) -> Response:
        return EventSourceResponse(stream(queues), ping=15)

    routes = [
        Route("/api/channels/{channel}/posts", create_post, methods=["POST"]),
        Route("/events", events, methods=["GET"]),
    ]
    return Starlette(routes=routes)


def main() -> None:
    parser = argparse.ArgumentParser(description="The naive SSE baseline server.")
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    uvicorn.run(create_app(), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
