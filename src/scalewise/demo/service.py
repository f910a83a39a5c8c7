"""An example Starlette service instrumented with scalewise, with the route kinds that scale
differently: CPU-bound, I/O-bound, cached, and upload.

Run it alone with ``uvicorn scalewise.demo.service:app --host 127.0.0.1``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scalewise import ScalewiseMiddleware

_CACHE_SIZE = 256
_cache: OrderedDict[int, str] = OrderedDict()


async def cpu(request: Request) -> JSONResponse:
    """Burns about ``rounds`` × 2 µs of CPU: throughput is bounded by cores."""
    rounds = min(int(request.query_params.get("rounds", "500")), 100_000)
    digest = b"scalewise"
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return JSONResponse({"digest": digest.hex()[:16]})


async def io(request: Request) -> JSONResponse:
    """Waits like a database call would: throughput is bounded by concurrency, not CPU."""
    delay = min(float(request.query_params.get("ms", "20")), 2000.0) / 1000
    await asyncio.sleep(delay)
    return JSONResponse({"waited_ms": delay * 1000})


async def cached(request: Request) -> JSONResponse:
    """Expensive once per key, then served from a bounded LRU."""
    key = int(request.path_params["key"])
    if key in _cache:
        _cache.move_to_end(key)
        return JSONResponse({"key": key, "value": _cache[key], "cached": True})
    await asyncio.sleep(0.05)
    value = hashlib.sha256(str(key).encode()).hexdigest()[:12]
    _cache[key] = value
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return JSONResponse({"key": key, "value": value, "cached": False})


async def upload(request: Request) -> JSONResponse:
    """Reads the body as it streams in and hashes it (bounded at 10 MB)."""
    digest, size, started = hashlib.sha256(), 0, time.perf_counter()
    async for chunk in request.stream():
        size += len(chunk)
        if size > 10_000_000:
            return JSONResponse({"error": "body larger than 10 MB"}, status_code=413)
        digest.update(chunk)
    return JSONResponse(
        {
            "bytes": size,
            "sha256": digest.hexdigest()[:16],
            "read_ms": round((time.perf_counter() - started) * 1000, 3),
        }
    )


async def flaky(request: Request) -> JSONResponse:
    """Fails one request in ``every`` so error rates have something to show."""
    every = max(1, int(request.query_params.get("every", "20")))
    n = int(request.path_params["n"])
    if n % every == 0:
        return JSONResponse({"error": "simulated failure"}, status_code=503)
    return JSONResponse({"ok": True})


routes = [
    Route("/cpu", cpu),
    Route("/io", io),
    Route("/cached/{key:int}", cached),
    Route("/upload", upload, methods=["POST"]),
    Route("/flaky/{n:int}", flaky),
]
app = Starlette(routes=routes)
app.add_middleware(ScalewiseMiddleware)
