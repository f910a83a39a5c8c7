"""Guards under a real uvicorn on loopback: 413 mid-upload, 504, 503 while /health answers."""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Server, free_port, uvicorn_argv

pytestmark = pytest.mark.integration

ENV = {
    "GUARDED_LIMIT": "2",
    "GUARDED_MAX_QUEUE": "0",
    "GUARDED_TIMEOUT": "1500ms",
    "GUARDED_MAX_BODY": "4KB",
}


@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    port = free_port()
    argv = uvicorn_argv("guarded_app:app", port, "--http", request.param)
    srv = Server(argv, port, env=ENV)
    try:
        srv.wait_ready("/health")
        yield srv
    finally:
        srv.stop()


def read_response(sock: socket.socket) -> bytes:
    """Read until the headers and the declared body are in (bounded by the socket timeout)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_a_slow_chunked_upload_gets_413_before_it_finishes_sending(server: Server) -> None:
    planned, sent = 64, 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        response = b""
        for _ in range(planned):  # 1 KB every 20 ms: 64 KB would take over a second
            try:
                sock.sendall(b"400\r\n" + b"x" * 1024 + b"\r\n")
            except OSError:  # the server already answered and closed: fine
                break
            sent += 1
            if select.select([sock], [], [], 0.02)[0]:
                break
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 413")
    assert b'"error":"body_too_large"' in response
    assert sent < planned


def test_a_declared_oversize_body_gets_413_before_any_of_it_is_sent(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 50000000\r\n\r\n"
        )
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 413")
    assert b"connection: close" in response.lower()


def test_a_small_upload_goes_through(server: Server) -> None:
    response = httpx.post(server.url + "/upload", content=b"y" * 4000, timeout=10)
    assert response.json() == {"bytes": 4000}


def test_a_slow_handler_gets_504(server: Server) -> None:
    response = httpx.get(server.url + "/slow", params={"s": "10"}, timeout=8)
    assert response.status_code == 504
    assert response.json()["error"] == "timeout"


def test_over_the_limit_gets_503_fast_while_health_answers(server: Server) -> None:
    hold = 1.0

    async def timed(client: httpx.AsyncClient, path: str) -> tuple[int, float, str | None]:
        began = time.monotonic()
        response = await client.get(path)
        return response.status_code, time.monotonic() - began, response.headers.get("retry-after")

    async def go() -> tuple[list[tuple[int, float, str | None]], tuple[int, float, str | None]]:
        limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=10) as client:
            busy = [asyncio.create_task(timed(client, f"/slow?s={hold}")) for _ in range(8)]
            await asyncio.sleep(0.3)  # let the first two take the slots
            health = await timed(client, "/health")
            return list(await asyncio.gather(*busy)), health

    results, health = asyncio.run(go())
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200, 200, 503, 503, 503, 503, 503, 503]
    for status, elapsed, retry_after in results:
        if status == 503:
            assert retry_after == "1"
            assert elapsed < hold  # refused while the admitted ones were still running
    assert health[0] == 200
    assert health[1] < hold
    stats = httpx.get(server.url + "/stats", timeout=5).json()
    assert stats["shed"] >= 6
    assert stats["inflight"] == 0


def test_a_body_trickling_in_under_the_limit_is_bounded_by_the_timeout(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3000\r\n\r\n")
        for _ in range(100):  # 10 bytes every 50 ms would take 15 s; the timeout is 1.5 s
            try:
                sock.sendall(b"x" * 10)
            except OSError:
                break
            if select.select([sock], [], [], 0.05)[0]:
                break
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 504")


def test_a_stream_that_outlives_the_timeout_is_cut_off_not_passed_off_as_complete(
    server: Server,
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /stream?n=20&every=0.3 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        for _ in range(1000):  # until the server closes the connection
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    assert b"chunk 0" in data
    assert b"chunk 19" not in data
    assert not data.endswith(b"0\r\n\r\n")  # no final chunk: the client can tell it was cut
