"""A plain Starlette app behind scalewise's shedding, timeout and body-limit guards.

Integration tests and the overload benchmark run it under uvicorn. Settings come from
environment variables (durations and sizes in human units):

    GUARDED_LIMIT          concurrency limit (default 20)
    GUARDED_MAX_QUEUE      wait-queue length (default: limit // 4)
    GUARDED_QUEUE_TIMEOUT  longest wait in the queue (default 1s)
    GUARDED_ADAPTIVE       "" (fixed limit), "aimd" or "gradient2"
    GUARDED_TIMEOUT        request timeout (default 30s)
    GUARDED_MAX_BODY       request body limit (default 10MB)
    GUARDED_DELAY          how long /work takes (default 50ms)

Routes: ``/work`` (sleeps GUARDED_DELAY), ``/slow?s=…``, ``/stream?n=…&every=…``,
``POST /upload`` (reads the body, answers its size), ``/health`` and ``/ready`` (never
shed), ``/stats`` (the shedder's counts as JSON; never shed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from scalewise.guard.adaptive import AdaptiveLimit, adaptive_limit
from scalewise.guard.shed_asgi import LoadShedMiddleware
from scalewise.guard.timeouts import BodyLimitMiddleware, TimeoutMiddleware
from scalewise.units import parse_duration

LIMIT = int(os.environ.get("GUARDED_LIMIT", "20"))
MAX_QUEUE = os.environ.get("GUARDED_MAX_QUEUE")
QUEUE_TIMEOUT = os.environ.get("GUARDED_QUEUE_TIMEOUT", "1s")
ADAPTIVE = os.environ.get("GUARDED_ADAPTIVE", "")
TIMEOUT = os.environ.get("GUARDED_TIMEOUT", "30s")
MAX_BODY = os.environ.get("GUARDED_MAX_BODY", "10MB")
DELAY = parse_duration(os.environ.get("GUARDED_DELAY", "50ms"))


async def work(request: Request) -> JSONResponse:
    await asyncio.sleep(DELAY)
    return JSONResponse({"ok": True})


async def slow(request: Request) -> PlainTextResponse:
    await asyncio.sleep(float(request.query_params.get("s", "1")))
    return PlainTextResponse("done")


async def stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(int(request.query_params.get("n", "10"))):
            yield f"chunk {i}\n".encode()
            await asyncio.sleep(float(request.query_params.get("every", "0.3")))

    return StreamingResponse(chunks(), media_type="text/plain")


async def upload(request: Request) -> JSONResponse:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return JSONResponse({"bytes": size})


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def stats(request: Request) -> JSONResponse:
    return JSONResponse(dataclasses.asdict(app.stats()))


limit: int | AdaptiveLimit = (
    adaptive_limit(ADAPTIVE, initial_limit=LIMIT, max_limit=LIMIT * 10) if ADAPTIVE else LIMIT
)
inner = Starlette(
    routes=[
        Route("/work", work),
        Route("/slow", slow),
        Route("/stream", stream),
        Route("/upload", upload, methods=["POST"]),
        Route("/health", ok),
        Route("/ready", ok),
        Route("/stats", stats),
    ]
)
# Outermost first: shed before anything else (a refusal costs nothing), then the timeout
# (which therefore excludes time spent in the queue), then the body limit.
app = LoadShedMiddleware(
    TimeoutMiddleware(BodyLimitMiddleware(inner, max_body=MAX_BODY), timeout=TIMEOUT),
    limit=limit,
    max_queue=int(MAX_QUEUE) if MAX_QUEUE else None,
    queue_timeout=QUEUE_TIMEOUT,
    exempt=["/stats"],
)
