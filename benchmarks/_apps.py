"""The apps the benchmarks measure, one factory per variant (uvicorn loads them with
``--factory _apps:<name>``; the in-process benchmarks call the same factories).

Every variant serves the same trivial route, ``GET /items/{id}`` returning ``{"id": N}`` as a
``JSONResponse`` built directly by the endpoint (FastAPI then skips its serializer), so the
only difference between a bare app and its instrumented twin is the middleware.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_SRC = str(Path(__file__).resolve().parent.parent / "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)

from starlette.applications import Starlette  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from scalewise import ScalewiseMiddleware  # noqa: E402

ITEM_PATH = "/items/42"

_perf = time.perf_counter


class FloorMiddleware:
    """The least a timing middleware can do: two ``perf_counter`` calls around the app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.count = 0
        self.total = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = _perf()
        try:
            await self.app(scope, receive, send)
        finally:
            self.total += _perf() - start
            self.count += 1


async def _item(request: Any) -> JSONResponse:
    return JSONResponse({"id": request.path_params["id"]})


def _starlette() -> Starlette:
    return Starlette(routes=[Route("/items/{id:int}", _item)])


def starlette_bare() -> Starlette:
    return _starlette()


def starlette_scalewise() -> Starlette:
    app = _starlette()
    app.add_middleware(ScalewiseMiddleware, multiprocess_dir=None)
    return app


def starlette_exporter() -> Starlette:
    from starlette_exporter import PrometheusMiddleware

    app = _starlette()
    app.add_middleware(PrometheusMiddleware)
    return app


def starlette_floor() -> Starlette:
    app = _starlette()
    app.add_middleware(FloorMiddleware)
    return app


def _fastapi() -> Any:
    from fastapi import FastAPI

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/items/{id}")
    async def item(id: int) -> JSONResponse:
        return JSONResponse({"id": id})

    return app


def fastapi_bare() -> Any:
    return _fastapi()


def fastapi_scalewise() -> Any:
    app = _fastapi()
    app.add_middleware(ScalewiseMiddleware, multiprocess_dir=None)
    return app


def fastapi_instrumentator() -> Any:
    from prometheus_client import CollectorRegistry
    from prometheus_fastapi_instrumentator import Instrumentator

    app = _fastapi()
    # A private registry, so several instrumented apps can live in one process.
    Instrumentator(registry=CollectorRegistry()).instrument(app)
    return app


#: name -> (label, factory, the bare variant it is compared with)
VARIANTS: dict[str, tuple[str, Callable[[], Any], str]] = {
    "starlette_bare": ("Starlette (bare)", starlette_bare, "starlette_bare"),
    "starlette_floor": ("Starlette + perf_counter floor", starlette_floor, "starlette_bare"),
    "starlette_scalewise": ("Starlette + scalewise", starlette_scalewise, "starlette_bare"),
    "starlette_exporter": ("Starlette + starlette-exporter", starlette_exporter, "starlette_bare"),
    "fastapi_bare": ("FastAPI (bare)", fastapi_bare, "fastapi_bare"),
    "fastapi_scalewise": ("FastAPI + scalewise", fastapi_scalewise, "fastapi_bare"),
    "fastapi_instrumentator": ("FastAPI + instrumentator", fastapi_instrumentator, "fastapi_bare"),
}
