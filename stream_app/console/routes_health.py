"""``GET /healthz`` for Docker's health check and load balancers: 200 ``{"ok": true}`` while the console serves
and reaches its session store (Redis: without it nobody can log in), else 503 with the reason's kind. No log-in,
nothing about users or detectors."""
from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stream_app.console.web import parts


async def healthz(request: Request) -> Response:
    try:
        await asyncio.wait_for(parts(request).sessions.ping(), 3.0)
    except Exception as exc:  # noqa: BLE001 - any failure of the store is "not healthy", said without details
        return JSONResponse({"ok": False, "sessions": type(exc).__name__}, status_code=503)
    return JSONResponse({"ok": True})


routes = [Route("/healthz", healthz, methods=["GET"])]
