"""``/healthz`` (the process answers), ``/readyz`` (it can serve: the database
answers and the broker is connected) and ``/metrics`` (metrics.py). All are cheap
enough to poll every second.

``/readyz`` needs no credential, so it says what is down ("database", "broker") and
never why: a database's or a broker's error names host names and ports inside the
deployment. The reasons go to the log, once each time the set of what is down
changes rather than at every probe, and the broker's last error is on ``/admin``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from feed.metrics import CONTENT_TYPE
from feed.runtime import runtime

logger = logging.getLogger("feed.health")

# A database slower than this to answer SELECT 1 is not ready to serve.
PING_TIMEOUT = 2.0


class Readiness:
    """What was down at the last probe, so the log tells each change once."""

    def __init__(self) -> None:
        self.down: tuple[str, ...] = ()

    def note(self, reasons: dict[str, str]) -> None:
        down = tuple(reasons)
        if down == self.down:
            return
        if down:
            details = "; ".join(f"{part}: {why}" for part, why in reasons.items())
            logger.warning("not ready: %s", details)
        else:
            logger.warning("ready again")
        self.down = down


def _readiness(request: Request) -> Readiness:
    state = request.app.state
    found = getattr(state, "readiness", None)
    if not isinstance(found, Readiness):
        found = state.readiness = Readiness()
    return found


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> JSONResponse:
    rt = runtime(request)
    reasons: dict[str, str] = {}
    try:
        await asyncio.wait_for(rt.store.ping(), PING_TIMEOUT)
    except Exception as exc:
        cause = exc.__cause__ or exc
        reasons["database"] = " ".join(f"{type(cause).__name__}: {cause}".split())
    broker = rt.broker.status()
    if not broker.connected:
        reasons["broker"] = broker.last_error or "not connected yet"
    _readiness(request).note(reasons)
    body: dict[str, Any] = {
        "status": "unavailable" if reasons else "ready",
        "down": list(reasons),
        "database": {"backend": rt.store.backend, "reachable": "database" not in reasons},
        "broker": {
            "kind": broker.kind,
            "connected": broker.connected,
            "reconnects": broker.reconnects,
        },
        "last_event_delivered": rt.relay.delivered,
        "subscribers": len(rt.hub),
    }
    return JSONResponse(body, status_code=503 if reasons else 200)


async def metrics(request: Request) -> Response:
    return Response(runtime(request).metrics.render(), media_type=CONTENT_TYPE)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
