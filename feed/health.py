"""``/healthz`` (the process answers), ``/readyz`` (it can serve: the database
answers and the broker is connected) and ``/metrics`` (metrics.py). All are cheap
enough to poll every second.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from feed.metrics import CONTENT_TYPE
from feed.runtime import runtime

# A database slower than this to answer SELECT 1 is not ready to serve.
PING_TIMEOUT = 2.0


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> JSONResponse:
    rt = runtime(request)
    database: dict[str, Any] = {"backend": rt.store.backend, "reachable": True, "error": None}
    try:
        await asyncio.wait_for(rt.store.ping(), PING_TIMEOUT)
    except Exception as exc:
        database.update(reachable=False, error=str(exc) or type(exc).__name__)
    broker = rt.broker.status()
    ready = database["reachable"] and broker.connected
    body = {
        "status": "ready" if ready else "unavailable",
        "database": database,
        "broker": broker.as_dict(),
        "last_event_delivered": rt.relay.delivered,
        "subscribers": len(rt.hub),
    }
    return JSONResponse(body, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    return Response(runtime(request).metrics.render(), media_type=CONTENT_TYPE)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
