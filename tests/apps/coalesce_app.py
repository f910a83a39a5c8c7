"""An app whose expensive call is coalesced across processes through Redis.

Every real execution increments a Redis counter, so a test can count backend calls across
all the servers. Settings come from the environment (each test uses its own prefix):
``REDIS_URL``, ``COALESCE_PREFIX``, ``COALESCE_LOCK_TTL``.

``GET /work?k=KEY&first_delay=S&delay=S&fail=1``: the first execution for a key sleeps
``first_delay`` (so a test can kill it mid-call), later ones ``delay``; ``fail=1`` raises.
"""

from __future__ import annotations

import asyncio
import os

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from scalewise.guard.backends.redis_coalesce import RedisCoalesceBackend
from scalewise.guard.coalesce import coalesce

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("COALESCE_PREFIX", "scalewise-test:")
client = aioredis.Redis.from_url(REDIS_URL)
backend = RedisCoalesceBackend(
    client,
    prefix=PREFIX,
    lock_ttl=float(os.environ.get("COALESCE_LOCK_TTL", "5")),
    max_wait="60s",
)


@coalesce(key="work:{key}", ttl="60s", timeout="60s", backend=backend, namespace="app")
async def expensive(key: str, first_delay: float, delay: float, fail: bool) -> dict[str, object]:
    n = await client.incr(f"{PREFIX}calls:{key}")
    await asyncio.sleep(first_delay if n == 1 else delay)
    if fail:
        raise ValueError(f"backend failed for {key}")
    return {"key": key, "call": n, "pid": os.getpid()}


async def work(request: Request) -> JSONResponse:
    q = request.query_params
    try:
        result = await expensive(
            q["k"],
            float(q.get("first_delay", "0.5")),
            float(q.get("delay", "0.5")),
            q.get("fail") == "1",
        )
    except Exception as exc:
        return JSONResponse({"error": type(exc).__name__, "message": str(exc)}, status_code=502)
    return JSONResponse(result)


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/work", work), Route("/health", health)])
