"""HttpClient against scripted asyncio servers on loopback: framing, keep-alive, failures.

Each server answers the n-th request with the n-th scripted Reply, so every edge case (chunked
bodies, HEAD, close-delimited bodies, resets, hangs) is produced by a real socket.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvloop
from tests.conftest import free_port, require_command

from scalewise.errors import ConfigError, LoadTestError
from scalewise.loadtest._http import error_kind
from scalewise.loadtest.client import (
    ERROR_KINDS,
    HttpClient,
    MockTransport,
    Request,
    Response,
    Transport,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class Reply:
    data: bytes = OK
    close: bool = False  # close after writing
    reset: bool = False  # RST instead of FIN
    hang: bool = False  # never answer
    pieces: int = 1  # write in this many pieces, yielding between them


@dataclass
class Script:
    replies: list[Reply]
    url: str = ""
    connections: int = 0
    closed: int = 0
    requests: list[bytes] = field(default_factory=list)

    def next_reply(self) -> Reply:
        return self.replies[min(len(self.requests) - 1, len(self.replies) - 1)]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + (await reader.readexactly(length) if length else b"")


async def _answer(reply: Reply, writer: asyncio.StreamWriter) -> None:
    size = max(1, len(reply.data) // reply.pieces)
    for start in range(0, len(reply.data), size):
        writer.write(reply.data[start : start + size])
        await writer.drain()
        await asyncio.sleep(0)


@asynccontextmanager
async def serve(*replies: Reply) -> AsyncIterator[Script]:
    """A loopback server following the script; closes every connection on exit."""
    script = Script(list(replies) or [Reply()])
    writers: list[asyncio.StreamWriter] = []
    handlers: list[asyncio.Task[Any]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        script.connections += 1
        writers.append(writer)
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            for _ in range(1000):
                script.requests.append(await _read_request(reader))
                reply = script.next_reply()
                if reply.hang:
                    await reader.read()  # until the client gives up and closes
                    break
                await _answer(reply, writer)
                if reply.reset:
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    break
                if reply.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            script.closed += 1
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    script.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield script
    finally:
        server.close()
        for writer in writers:
            writer.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Awaitable[Any]], Any]:
    """Run a coroutine on the default loop and on uvloop: the client must work on both."""

    def runner(coro: Awaitable[Any]) -> Any:
        if request.param == "uvloop":
            return uvloop.run(coro)  # type: ignore[arg-type]
        return asyncio.run(coro)  # type: ignore[arg-type]

    return runner


async def _send_all(url_path: str, script: Script, n: int, **kwargs: Any) -> list[Response]:
    async with HttpClient(timeout=kwargs.pop("timeout", 5.0)) as client:
        prepared = client.prepare(Request(kwargs.pop("method", "GET"), script.url + url_path))
        return [await client.send(prepared, **kwargs) for _ in range(n)]


# -- framing and keep-alive ------------------------------------------------------------------


def test_keep_alive_reuses_one_connection(run: Callable[..., Any]) -> None:
    async def go() -> tuple[list[Response], Script]:
        async with serve(Reply()) as script:
            return await _send_all("/a", script, 3), script

    responses, script = run(go())
    assert script.connections == 1
    assert [(r.status, r.error, r.received) for r in responses] == [(200, None, len(OK))] * 3
    first, second = responses[0], responses[1]
    assert first.started <= first.connected <= first.first_byte <= first.ended
    assert second.connected == second.started  # reused: no connect phase
    assert first.sent == len(script.requests[0])
    assert first.body is None
    assert first.headers is None


def test_request_head_is_built_once_with_host_agent_and_length(run: Callable[..., Any]) -> None:
    async def go() -> Script:
        async with serve(Reply()) as script, HttpClient(user_agent="t/1") as client:
            req = Request("POST", script.url + "/p?q=1 2", (("X-A", "b"),), b"hello")
            prepared = client.prepare(req)
            await client.send(prepared)
            await client.send(prepared)
            return script

    script = run(go())
    port = script.url.rsplit(":", 1)[1]
    expected = (
        f"POST /p?q=1%202 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: t/1\r\n"
        "X-A: b\r\nContent-Length: 5\r\n\r\nhello"
    ).encode()
    assert script.requests == [expected, expected]


def test_chunked_body_split_across_reads(run: Callable[..., Any]) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Y: z\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )

    async def go() -> list[Response]:
        async with serve(Reply(chunked, pieces=7)) as script:
            return await _send_all("/", script, 2, want_body=True)

    for response in run(go()):
        assert (response.status, response.error, response.body) == (200, None, b"hello world")
        assert response.headers is not None
        assert (b"X-Y", b"z") in response.headers
        assert response.received == len(chunked)


def test_head_204_and_304_have_no_body_and_keep_the_connection(run: Callable[..., Any]) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    no_content = b"HTTP/1.1 204 No Content\r\n\r\n"
    not_modified = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"

    async def go() -> tuple[list[Response], Script]:
        async with serve(Reply(head), Reply(no_content), Reply(not_modified), Reply()) as script:
            async with HttpClient(timeout=2.0) as client:
                url = script.url + "/"
                out = [await client.send(client.prepare(Request("HEAD", url)))]
                get = client.prepare(Request("GET", url))
                out += [await client.send(get, want_body=True) for _ in range(3)]
            return out, script

    responses, script = run(go())
    assert [(r.status, r.error) for r in responses] == [
        (200, None),
        (204, None),
        (304, None),
        (200, None),
    ]
    assert responses[3].body == b"ok"
    assert script.connections == 1


def test_connection_close_opens_a_new_connection(run: Callable[..., Any]) -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"

    async def go() -> tuple[list[Response], Script]:
        async with serve(Reply(closing, close=True)) as script:
            return await _send_all("/", script, 3), script

    responses, script = run(go())
    assert [(r.status, r.error) for r in responses] == [(200, None)] * 3
    assert script.connections == 3


@pytest.mark.parametrize("want_body", [False, True])
def test_close_delimited_body_ends_at_eof(run: Callable[..., Any], want_body: bool) -> None:
    old = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"

    async def go() -> list[Response]:
        async with serve(Reply(old, close=True, pieces=3)) as script:
            return await _send_all("/", script, 2, want_body=want_body)

    for response in run(go()):
        assert (response.status, response.error) == (200, None)
        assert response.received == len(old)
        assert response.body == (b"until the end" if want_body else None)


def test_truncated_body_is_an_error_not_a_response(run: Callable[..., Any]) -> None:
    short = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"

    async def go() -> list[Response]:
        async with serve(Reply(short, close=True)) as script:
            return await _send_all("/", script, 1) + await _send_all("/", script, 1, want_body=True)

    for response in run(go()):
        assert (response.status, response.error) == (0, "closed")
        assert response.received == len(short)


def test_interim_100_continue_is_skipped(run: Callable[..., Any]) -> None:
    data = b"HTTP/1.1 100 Continue\r\n\r\n" + OK

    async def go() -> list[Response]:
        async with serve(Reply(data)) as script:
            return await _send_all("/", script, 2, want_body=True)

    assert [(r.status, r.body) for r in run(go())] == [(200, b"ok"), (200, b"ok")]


def test_body_is_capped_but_fully_counted(run: Callable[..., Any]) -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000

    async def go() -> list[Response]:
        async with serve(Reply(big, pieces=4)) as script, HttpClient(max_body_bytes=100) as client:
            prepared = client.prepare(Request("GET", script.url))
            return [await client.send(prepared, want_body=True) for _ in range(2)]

    for response in run(go()):
        assert response.status == 200
        assert response.body == b"x" * 100
        assert response.received == len(big)


# -- failures ----------------------------------------------------------------------------------


def test_garbage_is_a_protocol_error(run: Callable[..., Any]) -> None:
    async def go() -> list[Response]:
        async with serve(Reply(b"SSH-2.0-OpenSSH\r\n\r\n")) as script:
            return await _send_all("/", script, 2)

    assert [(r.status, r.error) for r in run(go())] == [(0, "protocol")] * 2


def test_garbage_after_a_complete_response_retires_the_connection(
    run: Callable[..., Any],
) -> None:
    async def go() -> tuple[list[Response], Script]:
        async with serve(Reply(OK + b"garbage!\r\n"), Reply()) as script:
            return await _send_all("/", script, 3), script

    responses, script = run(go())
    assert [(r.status, r.error) for r in responses] == [(200, None)] * 3
    assert script.connections == 2


def test_timeout_drops_the_connection(run: Callable[..., Any]) -> None:
    async def go() -> tuple[Response, Response, Script]:
        async with serve(Reply(hang=True), Reply()) as script:
            async with HttpClient(timeout=0.2) as client:
                prepared = client.prepare(Request("GET", script.url))
                slow = await client.send(prepared)
                fine = await client.send(prepared)
            return slow, fine, script

    slow, fine, script = run(go())
    assert (slow.status, slow.error) == (0, "timeout")
    assert 0.2 <= slow.ended - slow.started < 2.0
    assert (fine.status, fine.error) == (200, None)
    assert script.connections == 2  # the timed-out connection was not reused


def test_reset_is_reported(run: Callable[..., Any]) -> None:
    async def go() -> list[Response]:
        async with serve(Reply(b"", reset=True)) as script:
            return await _send_all("/", script, 1)

    assert [(r.status, r.error) for r in run(go())] == [(0, "reset")]


def test_refused_port_fails_fast(run: Callable[..., Any]) -> None:
    async def go() -> Response:
        async with HttpClient(connect_timeout=5.0) as client:
            return await client.send(client.prepare(Request("GET", f"http://127.0.0.1:{port}/")))

    port = free_port()
    began = time.perf_counter()
    response = run(go())
    assert (response.status, response.error, response.received) == (0, "refused", 0)
    assert time.perf_counter() - began < 2.0


def test_stale_keep_alive_connection_is_retried_once(run: Callable[..., Any]) -> None:
    async def go() -> tuple[list[Response], Script]:
        # the first connection serves one request, then the server quietly closes it
        async with serve(Reply(close=True), Reply()) as script:
            return await _send_all("/", script, 3), script

    responses, script = run(go())
    assert [(r.status, r.error) for r in responses] == [(200, None)] * 3
    assert script.connections == 2


def test_fresh_connection_closed_before_answer_is_not_retried(run: Callable[..., Any]) -> None:
    async def go() -> tuple[list[Response], Script]:
        async with serve(Reply(b"", close=True)) as script:
            return await _send_all("/", script, 1), script

    responses, script = run(go())
    assert [(r.status, r.error) for r in responses] == [(0, "closed")]
    assert len(script.requests) == 1


def test_aclose_ends_sends_in_flight(run: Callable[..., Any]) -> None:
    async def go() -> tuple[Response, Response]:
        async with serve(Reply(hang=True)) as script:
            client = HttpClient(timeout=30.0)
            prepared = client.prepare(Request("GET", script.url))
            pending = asyncio.ensure_future(client.send(prepared))
            while not script.requests:
                await asyncio.sleep(0.01)
            await client.aclose()
            return await pending, await client.send(prepared)

    in_flight, after = run(go())
    assert in_flight.error == "closed"
    assert after.error == "closed"


def test_cancelled_send_does_not_return_its_connection(run: Callable[..., Any]) -> None:
    async def go() -> tuple[Response, Script]:
        async with serve(Reply(hang=True), Reply()) as script, HttpClient() as client:
            prepared = client.prepare(Request("GET", script.url))
            task = asyncio.ensure_future(client.send(prepared))
            while not script.requests:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return await client.send(prepared), script

    response, script = run(go())
    assert (response.status, script.connections) == (200, 2)


def test_idle_connections_above_the_limit_are_closed(run: Callable[..., Any]) -> None:
    async def go() -> tuple[int, int, list[int]]:
        async with serve(Reply()) as script, HttpClient(max_idle_per_origin=1) as client:
            prepared = client.prepare(Request("GET", script.url))
            results = await asyncio.gather(*(client.send(prepared) for _ in range(3)))
            statuses = [r.status for r in results]
            for _ in range(100):  # the server sees the closes a moment later
                if script.closed >= 2:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            return script.connections, script.closed, statuses

    assert run(go()) == (3, 2, [200, 200, 200])


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    openssl = require_command("openssl", "openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_tls_verifies_by_default_and_can_be_told_not_to(
    run: Callable[..., Any], tmp_path: Path
) -> None:
    import ssl

    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _read_request(reader)
            writer.write(OK)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def go() -> tuple[Response, Response]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
        url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        try:
            async with HttpClient() as strict, HttpClient(insecure_tls=True) as lax:
                return (
                    await strict.send(strict.prepare(Request("GET", url))),
                    await lax.send(lax.prepare(Request("GET", url))),
                )
        finally:
            server.close()

    refused, accepted = run(go())
    assert (refused.status, refused.error) == (0, "tls")
    assert (accepted.status, accepted.error) == (200, None)


# -- validation, error kinds, MockTransport ----------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (Request("GET", "ftp://127.0.0.1/"), "http:// or https://"),
        (Request("GET", "http:///path"), "no host"),
        (Request("GET", "http://u:p@127.0.0.1/"), "credentials"),
        (Request("GET", "http://127.0.0.1:99999/"), "invalid URL"),
        (Request("GE T", "http://127.0.0.1/"), "invalid HTTP method"),
        (Request("GET", "http://127.0.0.1/", (("X-A", "a\r\nEvil: 1"),)), "line break"),
        (Request("GET", "http://127.0.0.1/", (("Bad Name", "1"),)), "invalid header name"),
        (Request("POST", "http://127.0.0.1/", (("Content-Length", "9"),), b"ab"), "does not match"),
        (
            Request("POST", "http://127.0.0.1/", (("Transfer-Encoding", "chunked"),)),
            "not supported",
        ),
    ],
)
def test_prepare_rejects_bad_requests_clearly(request_: Request, message: str) -> None:
    with pytest.raises(LoadTestError, match=message):
        HttpClient().prepare(request_)
    with pytest.raises(LoadTestError, match=message):
        MockTransport(lambda r: (200, b"")).prepare(request_)


def test_prepare_host_header_forms() -> None:
    client = HttpClient(user_agent="u")
    cases = {
        "http://127.0.0.1/": b"Host: 127.0.0.1\r\n",
        "https://example.test:443/x": b"Host: example.test\r\n",
        "http://[::1]:8080/": b"Host: [::1]:8080\r\n",
    }
    for url, host_line in cases.items():
        assert host_line in client.prepare(Request("GET", url)).data
    custom = client.prepare(Request("GET", "http://127.0.0.1/", (("host", "a.test"),)))
    assert custom.data.startswith(b"GET / HTTP/1.1\r\nhost: a.test\r\nUser-Agent: u\r\n\r\n")
    empty_post = client.prepare(Request("POST", "http://127.0.0.1/"))
    assert empty_post.data.endswith(b"Content-Length: 0\r\n\r\n")


def test_bad_client_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="timeout"):
        HttpClient(timeout=0)


def test_error_kinds_cover_the_exceptions() -> None:
    import ssl

    cases = [
        (None, "closed"),
        (socket.gaierror(-2, "no name"), "dns"),
        (ssl.SSLError("bad"), "tls"),
        (ConnectionRefusedError(), "refused"),
        (ConnectionResetError(), "reset"),
        (TimeoutError(), "timeout"),
        (OSError(113, "no route"), "refused"),
        (RuntimeError("?"), "other"),
    ]
    for exc, kind in cases:
        assert error_kind(exc) == kind
        assert kind in ERROR_KINDS


def test_mock_transport_sync_async_and_response_handlers() -> None:
    seen: list[Request] = []

    def sync_handler(request: Request) -> tuple[int, bytes]:
        seen.append(request)
        return 201, b"made"

    async def async_handler(request: Request) -> Response:
        return Response(0, "timeout", 1.0, 1.0, 0.0, 2.0, 0, 0)

    async def go() -> list[Response]:
        sync, async_ = MockTransport(sync_handler), MockTransport(async_handler)
        seam: list[Transport] = [sync, async_, HttpClient()]  # mypy checks the Protocol fits
        request = Request("POST", "http://127.0.0.1/x", body=b"abc", name="make")
        out = [
            await sync.send(sync.prepare(request)),
            await sync.send(sync.prepare(request), want_body=True),
            await async_.send(async_.prepare(request)),
        ]
        for transport in seam:
            await transport.aclose()
        return out

    plain, with_body, failed = asyncio.run(go())
    assert (plain.status, plain.body, plain.received) == (201, None, 4)
    assert plain.sent > 3
    assert with_body.body == b"made"
    assert (failed.error, failed.ended) == ("timeout", 2.0)
    assert seen[0].name == "make"
