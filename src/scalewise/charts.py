"""Self-contained charts and pages: inline SVG and HTML strings, no JavaScript, no network.

Why hand-written SVG: reports must open from a file on an air-gapped CI runner and be
attached to a ticket, so nothing may come from a CDN; and the charts needed (lines, markers,
labelled limits, bars) are small enough that a plotting dependency would cost more than it
gives. Every function is pure: data in, a string out. All text is HTML-escaped.

Example:
    >>> svg = line_chart({"p95": [(0, 0.1), (1, 0.2)]}, title="Latency", x_label="s",
    ...                  y_label="ms")
    >>> svg.startswith("<svg") and "Latency" in svg
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

__all__ = ["bar_chart", "format_number", "html_page", "html_table", "line_chart", "nice_ticks"]

PALETTE: tuple[str, ...] = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
)
_HLINE_COLORS: tuple[str, ...] = ("#b22222", "#6a3d9a", "#b15928", "#33a02c")
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_BOTTOM = 64, 16, 44
_FONT = "font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif"

Point = tuple[float, float]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 × 10ⁿ steps) covering ``[low, high]``.

    Example:
        >>> nice_ticks(0, 9.3)
        [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(high) * 0.5 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks: list[float] = []
    value = first
    while value < high + step * 0.999 and len(ticks) < 50:
        ticks.append(round(value, 12) + 0.0)
        if value >= high - step * 1e-9:
            break
        value = first + step * len(ticks)
    return ticks


def _log_ticks(low: float, high: float) -> list[float]:
    """Powers of ten (with 2× and 5× between when the range is under three decades)."""
    lo, hi = math.floor(math.log10(low)), math.ceil(math.log10(high))
    if hi == lo:
        hi += 1
    mults = (1.0, 2.0, 5.0) if hi - lo <= 3 else (1.0,)
    ticks = [m * 10.0**e for e in range(lo, hi + 1) for m in mults]
    inside = [t for t in ticks if low / 1.0001 <= t <= high * 1.0001]
    below = [t for t in ticks if t < low]
    above = [t for t in ticks if t > high]
    return ([below[-1]] if below else []) + inside + ([above[0]] if above else [])


def format_number(value: float) -> str:
    """Short axis/legend form: ``1.5k``, ``2M``, ``0.25``, ``1e-05``."""
    if not math.isfinite(value):
        return str(value)
    size = abs(value)
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if size >= factor * 10 or (size >= factor and value == round(value)):
            return f"{value / factor:.3g}{suffix}"
    if size == 0 or size >= 1e-3:
        return f"{value:.4g}"
    return f"{value:.2g}"


class _Scale:
    """Maps data values to pixel coordinates along one axis."""

    def __init__(self, low: float, high: float, start: float, end: float, log: bool) -> None:
        self.log = log
        self.low, self.high = (math.log10(low), math.log10(high)) if log else (low, high)
        self.start, self.end = start, end

    def __call__(self, value: float) -> float:
        v = math.log10(value) if self.log else value
        span = self.high - self.low or 1.0
        return self.start + (v - self.low) / span * (self.end - self.start)


def _usable(value: float, log: bool) -> bool:
    return math.isfinite(value) and (value > 0 or not log)


def _y_domain(values: list[float], hlines: Mapping[str, float], log: bool) -> list[float]:
    candidates = [v for v in [*values, *hlines.values()] if _usable(v, log)]
    if not candidates:
        return [1.0, 10.0] if log else [0.0, 1.0]
    low, high = min(candidates), max(candidates)
    if log:
        if high == low:
            low, high = low / 2, high * 2
        return _log_ticks(low, high)
    return nice_ticks(min(low, 0.0), high)


def _svg_open(width: int, height: int, title: str) -> list[str]:
    t = escape(title)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="sw-chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{t}" '
        f'style="{_FONT};font-size:11px">',
        f"<title>{t}</title>",
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
        f'<text x="{width / 2:.1f}" y="16" text-anchor="middle" font-size="14" '
        f'font-weight="600">{t}</text>',
    ]


def _plot_box(top: float, width: int, height: int) -> tuple[float, float, float, float]:
    """The plotting area (left, top, right, bottom) inside the margins."""
    return float(_MARGIN_LEFT), top, float(width - _MARGIN_RIGHT), float(height - _MARGIN_BOTTOM)


def _no_data(parts: list[str], width: int, height: int) -> str:
    parts.append(
        f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle" '
        f'class="no-data" fill="#888">no data</text></svg>'
    )
    return "".join(parts)


def _legend(names: Sequence[str], width: int, y: float) -> tuple[list[str], float]:
    """Legend items laid out in rows under the title; returns the parts and the next free y."""
    parts, x, row_y = [], float(_MARGIN_LEFT), y
    for i, name in enumerate(names):
        label = escape(name)
        item_w = 22 + 6.5 * len(name)
        if x + item_w > width - _MARGIN_RIGHT and x > _MARGIN_LEFT:
            x, row_y = float(_MARGIN_LEFT), row_y + 15
        color = PALETTE[i % len(PALETTE)]
        parts.append(
            f'<g class="legend-item"><rect x="{x:.1f}" y="{row_y - 8:.1f}" width="12" '
            f'height="8" fill="{color}"/><text x="{x + 16:.1f}" y="{row_y:.1f}">{label}</text></g>'
        )
        x += item_w
    return parts, (row_y + 10 if names else y - 6)


def _axes(
    xs: _Scale, ys: _Scale, x_ticks: list[float], y_ticks: list[float], box: tuple[float, ...]
) -> list[str]:
    left, top, right, bottom = box
    parts = [
        f'<g class="axes" stroke="#999" fill="none" stroke-width="1">'
        f'<path d="M{left:.1f},{top:.1f}V{bottom:.1f}H{right:.1f}"/></g>'
    ]
    for t in y_ticks:
        y = ys(t)
        parts.append(
            f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{left - 5:.1f}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
            f"{escape(format_number(t))}</text>"
        )
    for t in x_ticks:
        x = xs(t)
        parts.append(
            f'<line x1="{x:.1f}" y1="{bottom:.1f}" x2="{x:.1f}" y2="{bottom + 4:.1f}" '
            f'stroke="#999"/><text x="{x:.1f}" y="{bottom + 16:.1f}" text-anchor="middle" '
            f'class="tick">{escape(format_number(t))}</text>'
        )
    return parts


def _axis_labels(x_label: str, y_label: str, box: tuple[float, ...], height: int) -> list[str]:
    left, top, right, bottom = box
    cy = (top + bottom) / 2
    return [
        f'<text x="{(left + right) / 2:.1f}" y="{height - 6}" text-anchor="middle" '
        f'class="x-label">{escape(x_label)}</text>',
        f'<text x="14" y="{cy:.1f}" text-anchor="middle" transform="rotate(-90 14 {cy:.1f})" '
        f'class="y-label">{escape(y_label)}</text>',
    ]


def _polylines(pts: Sequence[Point], xs: _Scale, ys: _Scale, color: str, log: bool) -> list[str]:
    """One polyline per run of usable points (NaN, inf or ≤ 0 on a log axis break the line)."""
    runs: list[list[str]] = [[]]
    for x, y in pts:
        if math.isfinite(x) and _usable(y, log):
            runs[-1].append(f"{xs(x):.1f},{ys(y):.1f}")
        elif runs[-1]:
            runs.append([])
    out = []
    for run in runs:
        if len(run) == 1:
            cx, cy = run[0].split(",")
            out.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{color}"/>')
        elif run:
            out.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="1.6" '
                f'stroke-linejoin="round" points="{" ".join(run)}"/>'
            )
    return out


def _markers(pts: Sequence[Point], xs: _Scale, ys: _Scale, color: str, log: bool) -> list[str]:
    return [
        f'<circle cx="{xs(x):.1f}" cy="{ys(y):.1f}" r="3.2" fill="{color}" '
        f'fill-opacity="0.75" stroke="#fff" stroke-width="0.6"/>'
        for x, y in pts
        if math.isfinite(x) and _usable(y, log)
    ]


def _hline_parts(hlines: Mapping[str, float], xs: _Scale, ys: _Scale, log: bool) -> list[str]:
    """Dashed limits; limits at the same value share one line, and labels of lines closer
    than a text height are stacked so they never overprint."""
    grouped: dict[float, list[str]] = {}
    for label, value in hlines.items():
        if _usable(value, log):
            grouped.setdefault(value, []).append(label)
    left, right = xs.start, xs.end
    parts, last_label_y = [], -math.inf
    for i, (value, labels) in enumerate(sorted(grouped.items(), key=lambda kv: -kv[0])):
        y, color = ys(value), _HLINE_COLORS[i % len(_HLINE_COLORS)]
        label_y = last_label_y = max(y - 4, last_label_y + 13)  # top to bottom
        text = escape(f"{', '.join(labels)} ({format_number(value)})")
        parts.append(
            f'<g class="hline"><line x1="{left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" '
            f'stroke="{color}" stroke-dasharray="6 4" stroke-width="1.2"/>'
            f'<text x="{right - 4:.1f}" y="{label_y:.1f}" text-anchor="end" fill="{color}">'
            f"{text}</text></g>"
        )
    return parts


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 720,
    height: int = 280,
    hlines: Mapping[str, float] | None = None,
    points: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    log_y: bool = False,
) -> str:
    """Lines (``series``), scatter markers (``points``) and labelled horizontal limits.

    Series and point sets share one legend and palette (series first). Non-finite values, and
    values ≤ 0 when ``log_y``, are skipped and break a line, so gaps in data show as gaps.
    """
    hlines, points = hlines or {}, points or {}
    names = [*series, *points]
    parts = _svg_open(width, height, title)
    legend, top = _legend(names, width, 34)
    parts += legend
    all_pts = [p for s in (*series.values(), *points.values()) for p in s]
    xs_all = [x for x, y in all_pts if math.isfinite(x) and _usable(y, log_y)]
    if not xs_all:
        return _no_data(parts, width, height)
    box = _plot_box(top + 8, width, height)
    x_ticks = nice_ticks(min(xs_all), max(xs_all))
    y_ticks = _y_domain([y for _, y in all_pts], hlines, log_y)
    xs = _Scale(x_ticks[0], x_ticks[-1], box[0], box[2], log=False)
    ys = _Scale(y_ticks[0], y_ticks[-1], box[3], box[1], log=log_y)
    parts += _axes(xs, ys, x_ticks, y_ticks, box)
    parts += _axis_labels(x_label, y_label, box, height)
    groups = [("series", _polylines, series), ("points", _markers, points)]
    index = 0
    for kind, draw, sets in groups:
        for name, pts in sets.items():
            color = PALETTE[index % len(PALETTE)]
            parts += [f'<g class="{kind}" data-name="{escape(name)}">']
            parts += [*draw(pts, xs, ys, color, log_y), "</g>"]
            index += 1
    parts += _hline_parts(hlines, xs, ys, log_y)
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    bars: Sequence[tuple[str, float]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 720,
    height: int = 280,
) -> str:
    """Vertical bars with category labels (thinned to fit) and a hover ``<title>`` per bar."""
    parts = _svg_open(width, height, title)
    values = [v for _, v in bars if math.isfinite(v)]
    if not values:
        return _no_data(parts, width, height)
    box = _plot_box(34.0, width, height)
    y_ticks = nice_ticks(min(0.0, *values), max(0.0, *values))
    ys = _Scale(y_ticks[0], y_ticks[-1], box[3], box[1], log=False)
    parts += _axes(_Scale(0, 1, box[0], box[2], False), ys, [], y_ticks, box)
    parts += _axis_labels(x_label, y_label, box, height)
    slot = (box[2] - box[0]) / len(bars)
    every = max(1, math.ceil(len(bars) * 48 / (box[2] - box[0])))
    zero = ys(0.0)
    for i, (label, value) in enumerate(bars):
        if not math.isfinite(value):
            continue
        x, y = box[0] + i * slot, ys(value)
        tip = escape(f"{label}: {format_number(value)}")
        parts.append(
            f'<rect class="bar" x="{x + slot * 0.1:.1f}" y="{min(y, zero):.1f}" '
            f'width="{slot * 0.8:.1f}" height="{abs(zero - y):.1f}" fill="{PALETTE[0]}">'
            f"<title>{tip}</title></rect>"
        )
        if i % every == 0:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{box[3] + 14:.1f}" text-anchor="middle" '
                f'class="tick">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;
padding:24px 32px;color:#222;background:#fafafa;line-height:1.45}
h1{font-size:1.6em;margin:0 0 .4em}h2{font-size:1.2em;margin:1.6em 0 .5em;
border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0 1em;background:#fff;font-size:.92em}
th,td{border:1px solid #ddd;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f0f0f0;font-weight:600}tbody tr:nth-child(even){background:#f8f8f8}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.ok{color:#1a7f37;font-weight:600}.fail{color:#c62828;font-weight:600}
.note{color:#555;font-size:.92em;max-width:60em}
svg.sw-chart{display:block;margin:.5em 0 1em;background:#fff;border:1px solid #e4e4e4}
code{background:#f0f0f0;padding:0 3px;border-radius:3px}
"""


def html_page(title: str, body_html: str) -> str:
    """A complete HTML5 document with embedded CSS; ``body_html`` is inserted as is."""
    t = escape(title)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{t}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<h1>{t}</h1>\n"
        f"{body_html}\n</body>\n</html>\n"
    )


def _cell(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return f"<td>{escape('' if value is None else str(value))}</td>"
    if isinstance(value, int):
        return f'<td class="num">{value:,}</td>'
    if isinstance(value, float):
        text = f"{value:.4g}" if math.isfinite(value) and abs(value) < 1e6 else f"{value:,.0f}"
        return f'<td class="num">{escape(text)}</td>'
    return f"<td>{escape(str(value))}</td>"


def html_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A table; ints and floats are right-aligned (``td.num``), everything else escaped text."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>\n" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"
