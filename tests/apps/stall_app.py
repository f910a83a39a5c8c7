"""A service that stalls: every second, one request blocks the whole event loop for 300 ms.

The load tester's coordinated-omission test drives it: a closed-loop client sees one slow
request per stall, an open-model client sees every request that arrived during it.
"""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

STALL_EVERY = 1.0
STALL_FOR = 0.3
_last = [time.monotonic()]


async def fast(request: Request) -> PlainTextResponse:
    now = time.monotonic()
    if now - _last[0] >= STALL_EVERY:
        _last[0] = now
        time.sleep(STALL_FOR)  # blocks the loop on purpose: a GC pause, a sync DB call
    return PlainTextResponse("ok")


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/fast", fast), Route("/health", health)])
