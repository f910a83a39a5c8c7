"""A plain Starlette app for load-test integration tests (the client's and the runner's).

Routes: /health, /ok, /slow?ms=N, /error (500), /echo (POST: body and content type back),
/stream?chunks=N (chunked), /upload (multipart: sizes of each field and file).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

MAX_SLOW_MS = 60_000


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def slow(request: Request) -> PlainTextResponse:
    ms = min(float(request.query_params.get("ms", "100")), MAX_SLOW_MS)
    await asyncio.sleep(ms / 1000)
    return PlainTextResponse(f"slept {ms:g} ms")


async def error(request: Request) -> PlainTextResponse:
    return PlainTextResponse("error on purpose", status_code=500)


async def echo(request: Request) -> Response:
    body = await request.body()
    media = request.headers.get("content-type", "application/octet-stream")
    return Response(body, media_type=media, headers={"X-Echo-Length": str(len(body))})


async def stream(request: Request) -> StreamingResponse:
    chunks = min(int(request.query_params.get("chunks", "3")), 10_000)

    async def parts() -> AsyncIterator[bytes]:
        for i in range(chunks):
            yield f"chunk {i}\n".encode()
            await asyncio.sleep(0)

    return StreamingResponse(parts(), media_type="text/plain")


async def upload(request: Request) -> JSONResponse:
    form = await request.form()
    fields: dict[str, list[int]] = {}
    files: dict[str, list[dict[str, object]]] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            size = len(await value.read())
            files.setdefault(name, []).append({"filename": value.filename, "size": size})
        else:
            fields.setdefault(name, []).append(len(value.encode()))
    await form.close()
    return JSONResponse({"fields": fields, "files": files})


app = Starlette(
    routes=[
        Route("/health", ok),
        Route("/ok", ok, methods=["GET", "HEAD"]),
        Route("/slow", slow),
        Route("/error", error),
        Route("/echo", echo, methods=["POST", "PUT"]),
        Route("/stream", stream),
        Route("/upload", upload, methods=["POST"]),
    ]
)
