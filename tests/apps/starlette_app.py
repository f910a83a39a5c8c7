"""The Starlette app integration tests run under real servers."""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route

from scalewise import ScalewiseMiddleware
from scalewise.config import load_config


async def item(request: Request) -> JSONResponse:
    return JSONResponse(dict(request.path_params))


async def slow(request: Request) -> PlainTextResponse:
    await asyncio.sleep(float(request.query_params.get("s", "0.05")))
    return PlainTextResponse("done")


async def boom(request: Request) -> PlainTextResponse:
    raise RuntimeError("boom")


async def teapot(request: Request) -> PlainTextResponse:
    return PlainTextResponse("short and stout", status_code=418)


async def stream(request: Request) -> StreamingResponse:
    chunks = int(request.query_params.get("chunks", "3"))
    delay = float(request.query_params.get("delay", "0.05"))

    async def body():  # type: ignore[no-untyped-def]
        for i in range(chunks):
            yield f"chunk {i}\n".encode()
            await asyncio.sleep(delay)

    return StreamingResponse(body(), media_type="text/plain")


api = Starlette(routes=[Route("/users/{user_id}", item)])
app = Starlette(
    routes=[
        Route("/items/{item_id:int}", item),
        Route("/slow", slow),
        Route("/boom", boom),
        Route("/teapot", teapot),
        Route("/stream", stream),
        Mount("/api", api),
    ]
)
app.add_middleware(ScalewiseMiddleware, options=load_config().metrics_options())
