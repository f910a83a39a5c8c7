"""Inline SVG charts and HTML pages: well-formed, escaped, data present, no network."""

from __future__ import annotations

import itertools
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from scalewise.charts import (
    bar_chart,
    format_number,
    html_page,
    html_table,
    line_chart,
    nice_ticks,
)

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def _find(root: ET.Element, path: str) -> ET.Element:
    found = root.find(path)
    assert found is not None, path
    return found


def _texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def test_nice_ticks_cover_the_range_with_round_steps() -> None:
    assert nice_ticks(0, 9.3) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    ticks = nice_ticks(0.0013, 0.0121)
    assert ticks[0] <= 0.0013
    assert ticks[-1] >= 0.0121
    steps = {round(b - a, 12) for a, b in itertools.pairwise(ticks)}
    assert steps == {0.0025}


@pytest.mark.parametrize(("low", "high"), [(5.0, 5.0), (0.0, 0.0), (-3.0, 7.0), (1e6, 3.3e6)])
def test_nice_ticks_handle_flat_and_negative_ranges(low: float, high: float) -> None:
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low
    assert ticks[-1] >= high
    assert len(ticks) >= 2
    assert ticks == sorted(ticks)


def test_format_number_is_short() -> None:
    assert format_number(1500) == "1.5k"
    assert format_number(2_000_000) == "2M"
    assert format_number(0.25) == "0.25"
    assert format_number(0) == "0"


def test_line_chart_draws_each_series_with_its_points() -> None:
    svg = line_chart(
        {"p95": [(0, 10.0), (1, 20.0), (2, 15.0)], "p99": [(0, 30.0), (1, 40.0)]},
        title="Latency",
        x_label="seconds",
        y_label="ms",
    )
    root = _parse(svg)
    lines = list(root.iter(f"{SVG}polyline"))
    assert len(lines) == 2
    assert len(lines[0].get("points", "").split()) == 3
    texts = _texts(root)
    assert {"Latency", "seconds", "ms", "p95", "p99"} <= set(texts)
    assert _find(root, f"{SVG}title").text == "Latency"


def test_line_chart_y_axis_covers_data_and_hlines() -> None:
    svg = line_chart(
        {"a": [(0, 10.0), (10, 20.0)]},
        title="t",
        x_label="x",
        y_label="y",
        hlines={"SLO": 300.0},
    )
    root = _parse(svg)
    tick_values = [float(re.sub("[kM]", "", t)) for t in _texts(root) if re.fullmatch(r"[\d.]+", t)]
    assert max(tick_values) >= 300
    assert "SLO (300)" in _texts(root)
    hline = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "hline")
    assert _find(hline, f"{SVG}line").get("stroke-dasharray")


def test_line_chart_scatter_points_and_gaps() -> None:
    svg = line_chart(
        {"a": [(0, 1.0), (1, math.nan), (2, 3.0), (3, 4.0)]},
        points={"fit": [(0.5, 2.0), (1.5, math.inf), (2.5, 3.5)]},
        title="t",
        x_label="x",
        y_label="y",
    )
    root = _parse(svg)
    series = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "series")
    # the NaN breaks the line: a lone dot, then a two-point line
    assert len(list(series.iter(f"{SVG}circle"))) == 1
    assert len(list(series.iter(f"{SVG}polyline"))) == 1
    markers = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "points")
    assert len(list(markers.iter(f"{SVG}circle"))) == 2
    assert "fit" in _texts(root)


def test_line_chart_log_axis_skips_non_positive_values() -> None:
    svg = line_chart(
        {"a": [(0, 0.0), (1, 0.001), (2, 1.0), (3, 10.0)]},
        title="t",
        x_label="x",
        y_label="y",
        log_y=True,
    )
    root = _parse(svg)
    assert {"0.001", "1", "10"} <= set(_texts(root))
    assert len(_find(root, f".//{SVG}polyline").get("points", "").split()) == 3


def test_charts_without_data_say_so() -> None:
    for svg in (
        line_chart({}, title="t", x_label="x", y_label="y"),
        line_chart({"a": [(0, math.nan)]}, title="t", x_label="x", y_label="y"),
        bar_chart([], title="t", x_label="x", y_label="y"),
    ):
        assert "no data" in _texts(_parse(svg))


def test_all_text_is_escaped() -> None:
    evil = '<script>alert("x")</script>&'
    svg = line_chart(
        {evil: [(0, 1.0), (1, 2.0)]},
        title=evil,
        x_label=evil,
        y_label=evil,
        hlines={evil: 1.5},
    )
    assert "<script>" not in svg
    root = _parse(svg)  # well-formed despite the markup in every label
    assert evil in _texts(root)
    bars = bar_chart([(evil, 1.0)], title=evil, x_label="x", y_label="y")
    assert "<script>" not in bars
    _parse(bars)


def test_bar_chart_heights_follow_values() -> None:
    svg = bar_chart([("a", 1.0), ("b", 4.0), ("c", 2.0)], title="h", x_label="x", y_label="n")
    root = _parse(svg)
    rects = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]
    heights = [float(r.get("height", "0")) for r in rects]
    assert heights[1] == pytest.approx(4 * heights[0], rel=0.02)
    assert heights[2] == pytest.approx(2 * heights[0], rel=0.02)
    assert [_find(r, f"{SVG}title").text for r in rects] == ["a: 1", "b: 4", "c: 2"]


def test_bar_chart_thins_labels_when_crowded() -> None:
    bars = [(str(i), float(i)) for i in range(200)]
    root = _parse(bar_chart(bars, title="h", x_label="x", y_label="n"))
    labels = [t for t in root.iter(f"{SVG}text") if t.get("class") == "tick" and t.get("y")]
    assert len([r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]) == 200
    assert 5 < len(labels) < 60


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.data: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in {"meta", "br", "img", "rect", "circle", "line", "path", "polyline"}:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.data.append(data)


def test_html_page_is_a_complete_self_contained_document() -> None:
    page = html_page("Run <1>", "<p>body</p>")
    parser = _Collector()
    parser.feed(page)
    assert page.startswith("<!DOCTYPE html>")
    assert parser.stack == []
    assert "Run <1>" in parser.data
    assert {"html", "head", "style", "body", "h1", "p"} <= set(parser.tags)
    assert "http://" not in page
    assert "https://" not in page
    assert "<script" not in page


def test_html_table_aligns_numbers_and_escapes_text() -> None:
    table = html_table(["name", "n", "p95 ms"], [["<b>", 1234, 12.3456], ["x", None, math.inf]])
    parser = _Collector()
    parser.feed(table)
    assert parser.stack == []
    assert parser.tags.count("tr") == 3
    assert "&lt;b&gt;" in table
    assert '<td class="num">1,234</td>' in table
    assert '<td class="num">12.35</td>' in table
    assert "inf" in table


def test_limits_at_one_value_share_a_line_and_close_labels_do_not_overlap() -> None:
    svg = line_chart(
        {"a": [(0, 10.0), (1, 600.0)]},
        title="t",
        x_label="x",
        y_label="y",
        hlines={"p(95)<100": 100.0, "p(95)<100 over 1m": 100.0, "p(99)<105": 105.0},
    )
    root = _parse(svg)
    groups = [g for g in root.iter(f"{SVG}g") if g.get("class") == "hline"]
    assert len(groups) == 2
    labels = [_find(g, f"{SVG}text") for g in groups]
    assert labels[1].text == "p(95)<100, p(95)<100 over 1m (100)"
    ys = sorted(float(t.get("y", "0")) for t in labels)
    assert ys[1] - ys[0] >= 12
