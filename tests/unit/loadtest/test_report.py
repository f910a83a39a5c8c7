"""Reports: the text summary, the JSON summary, the JSONL stream and the HTML report."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console

from scalewise.loadtest import report
from scalewise.loadtest.results import ResultRecorder, RunResult
from scalewise.loadtest.thresholds import evaluate, parse_cli_threshold
from scalewise.metrics.histogram import Histogram

ORIGIN = 7.0
STARTED_AT = 1_700_000_000.0


def _result(*, open_model: bool = True, seconds: int = 20) -> RunResult:
    """100 req/s of 20 ms service time; from 10 s to 13 s the target stalls, so requests
    queue before they are sent (open model) and a tenth of them fail."""
    rec = ResultRecorder(origin=ORIGIN)
    backlog = 0.0
    for tick in range(seconds * 100):
        at = tick / 100
        rec.roll(ORIGIN + at)
        rec.set_vus(4, 6)
        stall = 10 <= at < 13
        backlog = backlog + 0.01 if stall else max(0.0, backlog - 0.02)
        lag = backlog if open_model else 0.0
        status = 503 if stall and tick % 10 == 0 else 200
        intended = ORIGIN + at
        started = intended + lag
        rec.record(
            "login" if tick % 5 == 0 else "home", status, "timeout" if tick == 1500 else None,
            status >= 400, intended, started, started, started + 0.015, started + 0.02, 2048, 128,
        )  # fmt: skip
        if tick % 100 == 0:
            rec.record_check("status is 200", status == 200)
            rec.record_iteration("main", 0.02)
    result = rec.result(
        {"target": "http://127.0.0.1:9/", "started_at": STARTED_AT, "segment": "1/1"},
        now=ORIGIN + seconds,
    )
    texts = ["http_req_duration: p(50)<100", "http_req_duration: p(95)<100 over 2s",
             "http_req_failed: rate<0.05"]  # fmt: skip
    result.thresholds = evaluate([parse_cli_threshold(t) for t in texts], result)
    return result


@pytest.fixture(scope="module")
def result() -> RunResult:
    return _result()


def test_format_helpers() -> None:
    assert report.format_ms(0.85) == "850µs"
    assert report.format_ms(66.64) == "66.6ms"
    assert report.format_ms(1250) == "1.25s"
    assert report.format_ms(0) == "0"
    assert report.format_bytes(1_500_000) == "1.5 MB"
    assert report.format_bytes(12) == "12 B"


def test_trend_stats_are_k6_columns_in_ms() -> None:
    hist = Histogram()
    for ms in range(1, 101):
        hist.record(ms / 1000)
    stats = report.trend_stats(hist)
    assert list(stats) == ["avg", "min", "med", "max", "p(90)", "p(95)", "p(99)", "count"]
    assert stats["avg"] == pytest.approx(50.5)
    assert (stats["min"], stats["max"], stats["count"]) == (1.0, 100.0, 100)
    assert stats["p(95)"] == pytest.approx(95, rel=0.01)
    assert report.trend_stats(Histogram())["p(99)"] == 0.0


def test_summary_dict_is_strict_json_with_k6_metrics(result: RunResult) -> None:
    summary = report.summary_dict(result)
    text = json.dumps(summary, allow_nan=False)
    assert json.loads(text) == summary
    metrics = summary["metrics"]
    assert metrics["http_reqs"] == {"count": 2000, "rate": 100.0}
    assert metrics["http_req_service"]["p(99)"] == pytest.approx(20, rel=0.01)
    assert metrics["http_req_duration"]["max"] > 200
    assert metrics["http_req_failed"]["passes"] == 30
    assert metrics["checks"] == {"rate": pytest.approx(17 / 20), "passes": 17, "fails": 3}
    assert metrics["vus_max"] == {"value": 6}
    assert summary["errors"] == {"5xx": 30, "timeout": 1}
    assert summary["names"]["login"]["requests"] == 400
    assert [t["ok"] for t in summary["thresholds"]] == [True, False, True]
    assert summary["passed"] is False
    assert summary["coordinated_omission"]["service_p99_ms"] == pytest.approx(20, rel=0.01)


def test_coordinated_omission_note_depends_on_the_model(result: RunResult) -> None:
    assert "coordinated omission" in report.coordinated_omission(result.totals)["note"]
    closed = _result(open_model=False, seconds=3)
    assert report.coordinated_omission(closed.totals)["note"].startswith("Closed model")


def test_text_summary_shows_metrics_thresholds_errors_and_names(result: RunResult) -> None:
    console = Console(record=True, width=120, color_system=None)
    report.print_summary(result, console)
    text = console.export_text()
    for needle in ("http://127.0.0.1:9/", "http_req_duration", "http_req_service", "p(95)",
                   "http_reqs", "100.0/s", "coordinated omission", "5xx", "timeout", "login",
                   "p(95)<100 over 2s", "FAILED"):  # fmt: skip
        assert needle in text, needle
    assert text.count("✓") == 2
    assert text.count("✗") == 1
    window = next(t.worst_window for t in result.thresholds if t.worst_window)
    assert f"{window[0]:.0f}s–{window[1]:.0f}s" in text


def test_result_file_round_trips(tmp_path: Path, result: RunResult) -> None:
    path = tmp_path / "result.json"
    report.write_result(path, result)
    back = RunResult.from_dict(json.loads(path.read_text()))
    assert back.to_dict() == result.to_dict()


def test_jsonl_streams_one_line_per_interval(tmp_path: Path, result: RunResult) -> None:
    path = tmp_path / "series.jsonl"
    with report.JsonlWriter(path, started_at=STARTED_AT) as writer:
        writer.write(result.series[0])
        assert len(path.read_text().splitlines()) == 1  # flushed while still open
        for iv in result.series[1:]:
            writer.write(iv)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == len(result.series) == 20
    first = lines[0]
    assert first["requests"] == 100
    assert first["rps"] == 100.0
    assert first["p99_ms"] == pytest.approx(20, rel=0.01)
    assert first["time"].startswith("2023-11-14T22:13:20")
    back = report.read_jsonl(path)
    assert [iv.requests for iv in back] == [iv.requests for iv in result.series]
    assert back[11].trend("http_req_duration") == result.series[11].trend("http_req_duration")


def test_write_jsonl_appends_and_read_skips_a_torn_line(tmp_path: Path, result: RunResult) -> None:
    path = tmp_path / "series.jsonl"
    report.write_jsonl(path, result.series[:3])
    report.write_jsonl(path, result.series[3:5])
    with path.open("a") as handle:
        handle.write('{"start": 5.0, "wid')  # a run killed mid-write
    assert [iv.start for iv in report.read_jsonl(path)] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_histogram_bins_keep_every_sample() -> None:
    hist = Histogram()
    for i in range(1, 1001):
        hist.record(i / 10000)
    bins = report.histogram_bins(hist, bins=20)
    assert len(bins) == 20
    assert sum(n for _, n in bins) == 1000
    edges = [float(label) for label, _ in bins]
    assert edges == sorted(edges)
    assert edges[0] == pytest.approx(0.1, rel=0.02)
    assert report.histogram_bins(Histogram()) == []


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_report_is_self_contained_with_charts_and_tables(result: RunResult) -> None:
    page = report.html_report(result)
    parser = _Page()
    parser.feed(page)
    text = " ".join(parser.text)
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page
    assert not re.search(r"(src|href)=", page)
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(svgs) == 5
    titles = [ET.fromstring(svg).findtext("{http://www.w3.org/2000/svg}title") for svg in svgs]
    assert titles == [
        "Latency over time (from the intended send time)",
        "Throughput",
        "Virtual users",
        "Errors by kind",
        "Latency distribution (http_req_duration)",
    ]
    for needle in ("Thresholds", "p(95)<100 over 2s", "✗", "Per request name", "login",
                   "coordinated omission", "timeout", "503", "2,000"):  # fmt: skip
        assert needle in text, needle
    assert "p(50)&lt;100, p(95)&lt;100 over 2s (100)" in svgs[0]  # limits drawn on the chart
    p95 = report.summary_dict(result)["metrics"]["http_req_duration"]["p(95)"]
    assert f"{p95:.4g}" in text


def test_html_report_of_an_empty_run() -> None:
    rec = ResultRecorder(origin=0.0)
    empty = rec.result({"target": "http://127.0.0.1:9/"}, now=0.5)
    page = report.html_report(empty)
    assert page.count("no data") == 3  # latency, errors, distribution
    assert report.summary_dict(empty)["metrics"]["http_reqs"]["count"] == 0
    assert math.isfinite(report.summary_dict(empty)["metrics"]["http_req_duration"]["min"])


def test_write_html(tmp_path: Path, result: RunResult) -> None:
    path = tmp_path / "report.html"
    report.write_html(path, result)
    assert path.read_text(encoding="utf-8").endswith("</html>\n")
