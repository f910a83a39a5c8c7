"""The load-test HttpClient against a real uvicorn serving tests/apps/loadtest_app.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop

from scalewise.loadtest.bodies import encode_json, encode_multipart
from scalewise.loadtest.client import HttpClient, Request, Response
from tests.conftest import Server, free_port, uvicorn_argv

pytestmark = pytest.mark.integration
T = TypeVar("T")


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    port = free_port()
    server = Server(uvicorn_argv("loadtest_app:app", port), port)
    try:
        server.wait_ready()
        yield server.url
    finally:
        server.stop()


def run(coro: Awaitable[T]) -> T:
    return uvloop.run(coro)  # type: ignore[arg-type]


async def _one(request: Request, want_body: bool = True, **options: Any) -> Response:
    async with HttpClient(**options) as client:
        return await client.send(client.prepare(request), want_body=want_body)


def test_many_keep_alive_requests_concurrently(app_url: str) -> None:
    async def go() -> list[Response]:
        async with HttpClient() as client:
            prepared = client.prepare(Request("GET", app_url + "/ok"))
            out: list[Response] = []
            for _ in range(5):  # rounds of 20 concurrent sends over the same pool
                out += await asyncio.gather(*(client.send(prepared) for _ in range(20)))
            return out

    responses = run(go())
    assert len(responses) == 100
    assert {(r.status, r.error) for r in responses} == {(200, None)}
    reused = [r for r in responses if r.connected == r.started]
    assert len(reused) >= 80  # only the first round opens connections


def test_http_errors_are_statuses_not_transport_errors(app_url: str) -> None:
    response = run(_one(Request("GET", app_url + "/error")))
    assert (response.status, response.error, response.body) == (500, None, b"error on purpose")


def test_slow_route_times_out_and_the_next_request_works(app_url: str) -> None:
    async def go() -> tuple[Response, Response]:
        async with HttpClient(timeout=0.3) as client:
            slow = await client.send(client.prepare(Request("GET", app_url + "/slow?ms=3000")))
            ok = await client.send(client.prepare(Request("GET", app_url + "/slow?ms=10")))
            return slow, ok

    slow, ok = run(go())
    assert (slow.status, slow.error) == (0, "timeout")
    assert slow.ended - slow.started < 2.0
    assert (ok.status, ok.error) == (200, None)


def test_post_json_echo(app_url: str) -> None:
    content_type, body = encode_json({"user": "ana", "items": list(range(50))})
    request = Request("POST", app_url + "/echo", (("Content-Type", content_type),), body)
    response = run(_one(request))
    assert (response.status, response.body) == (200, body)
    assert response.headers is not None
    headers = {k.lower(): v for k, v in response.headers}
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"x-echo-length"] == str(len(body)).encode()
    assert response.sent > len(body)


def test_chunked_stream_is_reassembled(app_url: str) -> None:
    response = run(_one(Request("GET", app_url + "/stream?chunks=200")))
    assert response.status == 200
    assert response.body == b"".join(f"chunk {i}\n".encode() for i in range(200))


def test_batch_upload_of_ten_files(app_url: str, tmp_path: Path) -> None:
    paths = []
    for i in range(10):
        path = tmp_path / f"scan-{i}.pdf"
        path.write_bytes(bytes([i]) * (1000 * (i + 1)))
        paths.append(("files", path))
    content_type, body = encode_multipart({"batch": "qc-7"}, paths)
    request = Request("POST", app_url + "/upload", (("Content-Type", content_type),), body)
    response = run(_one(request))
    assert response.status == 200
    assert response.body is not None
    assert json.loads(response.body) == {
        "fields": {"batch": [4]},
        "files": {
            "files": [{"filename": f"scan-{i}.pdf", "size": 1000 * (i + 1)} for i in range(10)]
        },
    }


def test_head_has_no_body_and_keeps_the_connection(app_url: str) -> None:
    async def go() -> list[Response]:
        async with HttpClient() as client:
            head = client.prepare(Request("HEAD", app_url + "/ok"))
            get = client.prepare(Request("GET", app_url + "/ok"))
            return [
                await client.send(head, want_body=True),
                await client.send(get, want_body=True),
            ]

    head, get = run(go())
    assert (head.status, head.body, get.status, get.body) == (200, b"", 200, b"ok")
    assert get.connected == get.started  # reused after the HEAD


def test_stopped_server_is_refused() -> None:
    port = free_port()
    response = run(_one(Request("GET", f"http://127.0.0.1:{port}/ok")))
    assert (response.status, response.error) == (0, "refused")


def test_localhost_name_resolves_once(app_url: str) -> None:
    url = app_url.replace("127.0.0.1", "localhost") + "/ok"

    async def go() -> list[Response]:
        async with HttpClient() as client:
            prepared = client.prepare(Request("GET", url))
            return list(await asyncio.gather(*(client.send(prepared) for _ in range(5))))

    assert {(r.status, r.error) for r in run(go())} == {(200, None)}
