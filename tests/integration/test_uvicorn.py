"""The ASGI middleware under a real uvicorn, driven by real HTTP requests on loopback."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def requests_total(text: str, route: str, status: str, method: str = "GET") -> float:
    key = (("method", method), ("route", route), ("status", status))
    return samples(text, "scalewise_http_requests_total").get(key, 0.0)


def boom(url: str) -> int:
    """GET /boom on its own connection: uvicorn closes a connection after an app exception."""
    return httpx.get(url + "/boom", headers={"Connection": "close"}).status_code


def test_route_templates_statuses_and_errors(uvicorn_server) -> None:
    with httpx.Client(base_url=uvicorn_server.url) as client:
        for i in range(25):
            assert client.get(f"/items/{i}").status_code == 200
        assert client.get("/api/users/abc").status_code == 200
        assert client.get("/teapot").status_code == 418
        assert boom(uvicorn_server.url) == 500
        assert client.get("/no/such/page").status_code == 404
        text = client.get("/metrics").text
    assert requests_total(text, "/items/{item_id:int}", "2xx") == 25
    assert requests_total(text, "/api/users/{user_id}", "2xx") == 1
    assert requests_total(text, "/teapot", "4xx") == 1
    assert requests_total(text, "/boom", "5xx") == 1
    assert requests_total(text, "__unmatched__", "4xx") == 1
    assert samples(text, "scalewise_http_exceptions_total")[()] == 1
    assert not any("/items/3" in str(k) for k in samples(text, "scalewise_http_requests_total"))


def test_scaling_document_reports_windows_routes_and_process(uvicorn_server) -> None:
    with httpx.Client(base_url=uvicorn_server.url) as client:
        for _ in range(10):
            client.get("/slow", params={"s": "0.02"})
        boom(uvicorn_server.url)
        doc = client.get("/health/scaling").json()
    assert doc["schema"] == "scalewise.health.scaling/v1"
    one = doc["windows"]["1m"]
    assert one["requests"] == 11  # its own endpoints are never counted
    assert one["errors"] == 1
    assert one["error_rate"] == pytest.approx(1 / 11, rel=1e-3)
    assert 0.02 <= one["latency"]["p50"] <= 0.2
    assert one["latency"]["max"] >= one["latency"]["p99"] >= one["latency"]["p50"]
    slow = next(r for r in doc["routes"]["top"] if r["route"] == "/slow")
    assert slow["requests"] == 10
    assert doc["routes"]["top"][0]["route"] == "/slow"  # most time spent
    process = doc["process"]
    assert process["rss_bytes"] is None or process["rss_bytes"] > 1_000_000
    assert process["memory_limit_bytes"] > 0
    assert doc["instance"]["name"] in {"mvp", "scaled", "enterprise"}


def test_streaming_time_to_first_byte_and_total(uvicorn_server) -> None:
    with httpx.Client(base_url=uvicorn_server.url) as client:
        body = client.get("/stream", params={"chunks": "4", "delay": "0.05"}).text
        assert body.count("chunk") == 4
        # The stream is recorded when its last send returns, which can be just after the client
        # has read it: the next request may overtake that bookkeeping by a few microseconds.
        deadline = time.monotonic() + 2
        while True:
            one = client.get("/health/scaling").json()["windows"]["1m"]
            if one["requests"] or time.monotonic() > deadline:
                break
            time.sleep(0.01)
    assert one["latency"]["max"] >= 0.19  # four chunks, 50 ms apart
    assert one["ttfb"]["max"] < 0.1  # the first chunk left at once


def test_queue_time_from_x_request_start(uvicorn_server) -> None:
    with httpx.Client(base_url=uvicorn_server.url) as client:
        for header in (
            f"t={int((time.time() - 0.25) * 1e6)}",  # microseconds (Render, nginx µs)
            str(int((time.time() - 0.25) * 1e3)),  # milliseconds (Heroku)
            f"t={time.time() - 0.25:.3f}",
        ):  # seconds (nginx $msec)
            client.get("/items/1", headers={"X-Request-Start": header})
        doc = client.get("/health/scaling").json()
    queue = doc["windows"]["1m"]["queue_time"]
    assert 0.24 <= queue["p50"] <= 0.5
    assert queue["max"] <= 1.0


def test_client_disconnect_is_counted(uvicorn_server) -> None:
    with socket.create_connection(("127.0.0.1", uvicorn_server.port), timeout=5) as sock:
        sock.sendall(b"GET /stream?chunks=40&delay=0.05 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200" in sock.recv(1024)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = httpx.get(uvicorn_server.url + "/metrics").text
        if samples(text, "scalewise_http_client_disconnects_total").get((), 0) >= 1:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the disconnect was never counted")
    assert requests_total(text, "/stream", "2xx") == 1


def test_response_headers_off_by_default(uvicorn_server) -> None:
    response = httpx.get(uvicorn_server.url + "/items/5")
    assert "x-response-time" not in response.headers
    assert "server-timing" not in response.headers
    assert httpx.get(uvicorn_server.url + "/ready").json() == {"status": "ready"}
