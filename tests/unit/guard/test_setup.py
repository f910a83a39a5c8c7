"""``guard(app, config)``: the guards scalewise.yaml switches on, stacked in order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scalewise.config import load_config
from scalewise.errors import ConfigError
from scalewise.guard.setup import guard

CALLS = {"items": 0}


async def items(request: Request) -> JSONResponse:
    CALLS["items"] += 1
    return JSONResponse({"items": [1, 2, 3]})


async def upload(request: Request) -> JSONResponse:
    return JSONResponse({"bytes": len(await request.body())})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def make_app(tmp_path: Path, yaml_text: str, env: dict[str, str] | None = None) -> object:
    (tmp_path / "scalewise.yaml").write_text(yaml_text)
    config = load_config(tmp_path / "scalewise.yaml", env=env or {})
    app = Starlette(routes=[Route("/items", items), Route("/upload", upload, methods=["POST"]),
                            Route("/health", health)])  # fmt: skip
    return guard(app, config)


def call(app: object, method: str, path: str, **kwargs: object) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.request(method, path, **kwargs) for _ in range(3)]

    return asyncio.run(go())


def test_rate_limit_from_config_answers_429_with_headers(tmp_path: Path) -> None:
    app = make_app(tmp_path, "guards: {rate_limit: 2/minute, rate_limit_burst: 2}\n")
    first, second, third = call(app, "GET", "/items")
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    assert "ratelimit-policy" in first.headers
    assert third.headers["retry-after"]
    assert third.json()["error"] == "rate_limited"
    assert all(r.status_code == 200 for r in call(app, "GET", "/health"))


def test_body_limit_from_a_seed_variable(tmp_path: Path) -> None:
    app = make_app(tmp_path, "guards: {}\n", env={"SCALEWISE_MAX_UPLOAD_SIZE": "1KB"})
    small = call(app, "POST", "/upload", content=b"x" * 100)[0]
    big = call(app, "POST", "/upload", content=b"x" * 5000)[0]
    assert small.status_code == 200
    assert big.status_code == 413


def test_response_cache_serves_repeats_without_calling_the_route(tmp_path: Path) -> None:
    CALLS["items"] = 0
    app = make_app(tmp_path, "guards: {cache_routes: {/items: 30s}}\n")
    responses = call(app, "GET", "/items")
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert CALLS["items"] == 1
    assert responses[-1].headers["x-cache"] == "HIT"


def test_nothing_but_timeout_and_body_limit_is_on_by_default(tmp_path: Path) -> None:
    (tmp_path / "scalewise.yaml").write_text("version: 1\n")
    config = load_config(tmp_path / "scalewise.yaml", env={})
    g = config.guards
    assert (g.rate_limit, g.max_concurrent, g.cache_routes) == (None, None, {})
    assert (g.request_timeout, g.max_body) == (30.0, 10_000_000)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("guards: {rate_limit: -5/s}\n", "guards.rate_limit"),
        ("guards: {max_concurrent: 0}\n", "guards.max_concurrent"),
        ("guards: {max_body: huge}\n", "guards.max_body"),
        ("guards: {rate_limit_backend: mongodb://x}\n", "guards.rate_limit_backend"),
        ("guards: {shed_everything: true}\n", "guards.shed_everything"),
    ],
)
def test_bad_guard_settings_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    (tmp_path / "scalewise.yaml").write_text(text)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(tmp_path / "scalewise.yaml", env={})
