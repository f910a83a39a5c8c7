"""The C recording core against its pure-Python reference: same buckets, same fields, same
refusals. In CI the C core must be built (it is what users get from ``pip install``)."""

from __future__ import annotations

import math
import os
import pickle
import random
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import require

from scalewise.metrics import histogram
from scalewise.metrics.histogram import BUCKETS, MAX_VALUE, MIN_VALUE, Histogram, _PyCore

try:
    from scalewise.metrics import _speedups
except ImportError:  # pragma: no cover - only where no compiler was at hand
    _speedups = None  # type: ignore[assignment]


@pytest.fixture
def c_core() -> type:
    require(_speedups is not None, "the C histogram core is not built (pip install -e .)")
    return _speedups.HistogramCore


def _fields(core: object) -> tuple[object, ...]:
    return (list(core._counts), core.count, core.sum, core.min, core.max)  # type: ignore[attr-defined]


def _edge_values() -> list[float]:
    """Values on and around every bucket edge the layout has, plus its special regions."""
    values = [0.0, 5e-324, MIN_VALUE * 0.999, MIN_VALUE, MAX_VALUE, MAX_VALUE * 1.001, 1e308]
    for index in range(1, BUCKETS - 1):
        edge = histogram.bucket_upper_bound(index)
        values += [math.nextafter(edge, 0.0), edge, math.nextafter(edge, math.inf)]
    return values


def test_the_installed_histogram_uses_the_c_core_when_built() -> None:
    expected = "c" if _speedups is not None else "python"
    if os.environ.get("SCALEWISE_PURE_PYTHON", "") not in ("", "0"):
        expected = "python"
    assert expected == histogram.CORE
    assert isinstance(Histogram(), _speedups.HistogramCore if expected == "c" else _PyCore)


def test_record_puts_every_edge_value_in_the_same_bucket(c_core: type) -> None:
    for value in _edge_values():
        py, c = _PyCore(), c_core()
        py.record(value)
        c.record(value)
        assert _fields(c) == _fields(py), value


def test_record_all_matches_record_value_by_value(c_core: type) -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-4, 2) for _ in range(5000)] + _edge_values()
    rng.shuffle(values)
    py, c = _PyCore(), c_core()
    for start in range(0, len(values), 97):
        py.record_all(values[start : start + 97])
        c.record_all(tuple(values[start : start + 97]))
    one = _PyCore()
    for value in values:
        one.record(value)
    assert c._counts == py._counts == one._counts
    assert c.count == py.count == len(values)
    assert (c.min, c.max) == (py.min, py.max) == (min(values), max(values))
    assert math.isclose(c.sum, py.sum, rel_tol=1e-12)


@pytest.mark.parametrize("bad", [-1e-9, -1.0, math.nan, -math.inf])
def test_bad_values_are_refused_and_change_nothing(c_core: type, bad: float) -> None:
    for core in (_PyCore(), c_core()):
        core.record(0.01)
        before = _fields(core)
        with pytest.raises(ValueError, match=">= 0"):
            core.record(bad)
        with pytest.raises(ValueError, match=">= 0"):
            core.record_all([0.02, bad, 0.03])
        assert _fields(core) == before


def test_non_numbers_raise_type_error(c_core: type) -> None:
    for core in (_PyCore(), c_core()):
        with pytest.raises(TypeError):
            core.record("0.1")  # type: ignore[arg-type]


def test_c_core_takes_ints_any_sequence_and_empty_batches(c_core: type) -> None:
    c = c_core()
    c.record(1)
    c.record_all([])
    c.record_all((2, 0.5))
    c.record_all(v / 10 for v in range(1, 4))  # any iterable: made a tuple first
    assert c.count == 6
    assert c.max == 2.0
    assert c.min == 0.1


def test_a_frozen_or_unset_histogram_cannot_record(c_core: type) -> None:
    frozen = Histogram()
    frozen.record(0.1)
    with pytest.raises(TypeError):
        frozen.freeze().record(0.2)
    bare = c_core.__new__(c_core)  # never initialised: no bucket list
    with pytest.raises(TypeError, match="cannot record"):
        bare.record(0.1)
    with pytest.raises(TypeError, match="cannot record"):
        bare.record_all([0.1])


def test_histograms_pickle_through_their_bytes() -> None:
    h = Histogram()
    h.record_all([0.001, 0.02, 0.3])
    again = pickle.loads(pickle.dumps(h))
    assert again == h
    assert type(again) is Histogram
    frozen = pickle.loads(pickle.dumps(h.freeze()))
    assert frozen == h
    assert type(frozen) is type(h.freeze())


def test_the_histogram_tests_pass_on_the_pure_python_fallback() -> None:
    """The fallback is what users get without a compiler: run its tests in a fresh process."""
    here = Path(__file__).parent
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--no-header",
            str(here / "test_histogram.py"),
            str(here / "test_windows.py"),
        ],
        env={**os.environ, "SCALEWISE_PURE_PYTHON": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=here.parent.parent.parent,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout


def test_c_core_survives_python_code_that_changes_it_mid_call(c_core: type) -> None:
    """A value's ``__float__`` runs Python code inside record_all; it must not crash C."""
    core = c_core()

    class Sneaky:
        def __float__(self) -> float:
            core._counts = []  # a frozen-looking span
            return 0.1

    with pytest.raises(TypeError, match="cannot record"):
        core.record_all([0.2, Sneaky()])
    assert core.count == 0
    core._counts = [0] * BUCKETS
    core._counts[histogram.bucket_index(0.5)] = "x"  # a foreign count object
    with pytest.raises(TypeError, match="must be ints"):
        core.record(0.5)
    assert core.count == 0
