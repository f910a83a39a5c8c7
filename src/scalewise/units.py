"""Human units for config: durations (``90s``, ``5m``, ``1h30m``), sizes (``512MB``), percents.

Parsers raise :class:`ValueError` with the accepted forms; the config loader turns that into a
:class:`~scalewise.errors.ConfigError` naming the file and field.
"""

from __future__ import annotations

import math
import re

_DURATION_UNITS = {
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(us|µs|ms|s|m|h|d|w)")
_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "ki": 2**10,
    "mi": 2**20,
    "gi": 2**30,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")

DURATION_EXPECTED = "a duration like '250ms', '10s', '5m', '1h30m' or a number of seconds"
SIZE_EXPECTED = "a size like '512MB', '2GiB' or a number of bytes"
PERCENT_EXPECTED = "a percentage like '5%' or a fraction between 0 and 1"


def parse_duration(value: str | float) -> float:
    """Seconds from ``"1h30m"``, ``"250ms"``, ``"10s"`` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError(DURATION_EXPECTED)
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(DURATION_EXPECTED) from None
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(DURATION_EXPECTED)
    return seconds


def parse_size(value: str | float) -> int:
    """Bytes from ``"512MB"`` (decimal), ``"2GiB"`` (binary), ``"512Mi"`` or a number of bytes."""
    if isinstance(value, bool):
        raise ValueError(SIZE_EXPECTED)
    if isinstance(value, int | float):
        number, factor = float(value), 1
    else:
        match = _SIZE.fullmatch(value.strip().lower())
        if match is None or match.group(2) not in {"", *_SIZE_UNITS}:
            raise ValueError(SIZE_EXPECTED)
        number, factor = float(match.group(1)), _SIZE_UNITS.get(match.group(2), 1)
    if not math.isfinite(number) or number < 0:
        raise ValueError(SIZE_EXPECTED)
    return int(number * factor)


def parse_percent(value: str | float) -> float:
    """A fraction from ``"5%"`` (0.05) or a number already between 0 and 1."""
    if isinstance(value, bool):
        raise ValueError(PERCENT_EXPECTED)
    if isinstance(value, str):
        text = value.strip()
        try:
            fraction = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(PERCENT_EXPECTED) from None
    else:
        fraction = float(value)
    if not (0.0 <= fraction <= 1.0):
        raise ValueError(PERCENT_EXPECTED)
    return fraction


def format_duration(seconds: float) -> str:
    """Short human form: ``0.0123`` → ``'12.3ms'``, ``90`` → ``'1m30s'``."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{secs}s" if secs else "")


def format_size(size: float) -> str:
    """Binary units, as memory limits are set: ``536870912`` → ``'512MiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.4g}{unit}"
        size /= 1024
    return f"{size:.4g}TiB"
