from __future__ import annotations

import pytest

from scalewise.units import (
    DURATION_EXPECTED,
    PERCENT_EXPECTED,
    SIZE_EXPECTED,
    format_duration,
    format_size,
    parse_duration,
    parse_percent,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h30m", 5400.0),
        (" 1H 30M ", 5400.0),
        ("250ms", 0.25),
        ("10s", 10.0),
        ("1.5s", 1.5),
        ("5m", 300.0),
        ("1d", 86400.0),
        ("2w", 1_209_600.0),
        ("500us", 0.0005),
        ("90", 90.0),
        ("0", 0.0),
        (3, 3.0),
        (0.5, 0.5),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "bad", ["soon", "", "5x", "-5s", "-1", "1h-30m", "s", "10 s s", "nan", "inf", -1, True, False]
)
def test_parse_duration_rejects(bad: str | float) -> None:
    with pytest.raises(ValueError, match="a duration like") as info:
        parse_duration(bad)
    assert str(info.value) == DURATION_EXPECTED


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("2GiB", 2 * 2**30),
        ("512Mi", 512 * 2**20),
        ("512MB", 512 * 10**6),
        ("512 mb", 512 * 10**6),
        ("1.5kb", 1500),
        ("4k", 4000),
        ("100", 100),
        (1024, 1024),
    ],
)
def test_parse_size(text: str | float, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["lots", "5XB", "", "-1", "-2GiB", "nan", "GiB", -1, True])
def test_parse_size_rejects(bad: str | float) -> None:
    with pytest.raises(ValueError, match="a size like") as info:
        parse_size(bad)
    assert str(info.value) == SIZE_EXPECTED


@pytest.mark.parametrize(
    ("text", "fraction"),
    [("5%", 0.05), ("0.05", 0.05), (" 100% ", 1.0), ("0%", 0.0), (0.25, 0.25), (1, 1.0)],
)
def test_parse_percent(text: str | float, fraction: float) -> None:
    assert parse_percent(text) == pytest.approx(fraction)


@pytest.mark.parametrize("bad", ["150%", "-5%", "5", 1.5, -0.1, "abc", "%", "nan", True])
def test_parse_percent_rejects(bad: str | float) -> None:
    with pytest.raises(ValueError, match="a percentage like") as info:
        parse_percent(bad)
    assert str(info.value) == PERCENT_EXPECTED


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5e-5, "50µs"), (0.0123, "12.3ms"), (1.5, "1.5s"), (90, "1m30s"), (5400, "1h30m")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["250ms", "10s", "1m30s", "1h30m"])
def test_format_duration_round_trips(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize(
    ("size", "text"), [(100, "100B"), (2048, "2KiB"), (536_870_912, "512MiB"), (2**41, "2TiB")]
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text
