"""Universal Scalability Law (Gunther): fit X(N) = λN / (1 + σ(N−1) + κN(N−1)) to measurements.

σ (contention) is the serial fraction, κ (coherency) the cost of keeping N workers in step, λ
the throughput of one. The fit is ordinary least squares on X with 0 ≤ σ, κ ≤ 1 and λ ≥ 0,
started from several points, as the R package ``usl`` (smoeding/usl) does; on its published
data sets the coefficients agree to better than 0.1 % (tests/unit/capacity/test_usl.py).

A fit that lands on a meaningless corner (σ at 1: throughput never grows; λ at 0) raises
:class:`~scalewise.errors.FitError` saying what to measure, instead of printing nonsense.

Example:
    >>> fit = fit_points([1, 2, 4, 8], [100, 190, 340, 520])
    >>> round(fit.throughput(4))
    340
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from scipy.optimize import least_squares

from scalewise.errors import FitError

#: Fewest distinct load levels for three coefficients plus one degree of freedom.
MIN_LEVELS: Final = 4
#: σ (or κ) this close to 1 is "at the bound".
_AT_BOUND: Final = 1e-3
#: A term contributing less than this to the denominator at the largest load is zero.
_NEGLIGIBLE: Final = 1e-9


def _model(params: np.ndarray, n: np.ndarray) -> np.ndarray:
    sigma, kappa, lam = (float(v) for v in params)
    result: np.ndarray = lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))
    return result


@dataclass(frozen=True, slots=True)
class UslFit:
    """A fitted USL curve; ``throughput(n)`` predicts, ``n_max``/``x_max`` give the peak."""

    sigma: float
    kappa: float
    lam: float
    r2: float
    n_points: int
    n_levels: int
    max_load: float
    rss: float
    notes: tuple[str, ...] = field(default=())

    def throughput(self, n: float) -> float:
        """Predicted throughput X(n) at load (concurrency) ``n``."""
        return float(_model(np.array([self.sigma, self.kappa, self.lam]), np.asarray(n)))

    @property
    def n_max(self) -> float:
        """Peak load N* = √((1−σ)/κ); beyond it throughput falls. ∞ when κ = 0."""
        if self.kappa == 0:
            return math.inf
        return math.sqrt((1 - self.sigma) / self.kappa)

    @property
    def x_max(self) -> float:
        """Peak throughput X(N*); with κ = 0 the Amdahl limit λ/σ (approached, never reached)."""
        if self.kappa == 0:
            return self.x_limit
        return self.throughput(self.n_max)

    @property
    def x_limit(self) -> float:
        """Amdahl asymptote λ/σ (∞ when σ = 0: linear scaling)."""
        return math.inf if self.sigma == 0 else self.lam / self.sigma

    @property
    def n_opt(self) -> float:
        """1/σ, the load where contention starts to dominate (∞ when σ = 0)."""
        return math.inf if self.sigma == 0 else 1 / self.sigma

    def efficiency(self, n: float) -> float:
        """Throughput per unit of load relative to λ: 1.0 is perfect linear scaling."""
        return self.throughput(n) / (n * self.lam)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; infinite figures (κ = 0 or σ = 0) are ``None``."""
        return {
            "sigma": self.sigma,
            "kappa": self.kappa,
            "lambda": self.lam,
            "r2": self.r2,
            "n_max": _finite(self.n_max),
            "x_max": _finite(self.x_max),
            "x_limit": _finite(self.x_limit),
            "n_points": self.n_points,
            "n_levels": self.n_levels,
            "max_load": self.max_load,
            "rss": self.rss,
            "notes": list(self.notes),
        }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def fit_points(load: Sequence[float], throughput: Sequence[float]) -> UslFit:
    """Fit the USL to paired ``load`` (concurrency N) and ``throughput`` (X) measurements.

    Raises:
        FitError: too few distinct loads, bad values, no convergence, or a meaningless fit.
    """
    n, x = _validate(load, throughput)
    best = _least_squares(n, x)
    sigma, kappa, lam = (float(v) for v in best.x)
    top = float(n.max())
    # Snap coefficients whose term is invisible at every measured load (raytracer: κ≈5e-32).
    if kappa * top * top < _NEGLIGIBLE:
        kappa = 0.0
    if sigma * top < _NEGLIGIBLE:
        sigma = 0.0
    _reject_nonsense(sigma, kappa, lam, n, x)
    residuals = _model(np.array([sigma, kappa, lam]), n) - x
    rss = float(residuals @ residuals)
    ss_tot = float(((x - x.mean()) ** 2).sum())
    r2 = 1.0 - rss / ss_tot if ss_tot > 0 else 1.0
    levels = len(np.unique(n))
    fit = UslFit(sigma, kappa, lam, r2, len(n), levels, top, rss)
    return UslFit(sigma, kappa, lam, r2, len(n), levels, top, rss, _notes(fit))


def _validate(load: Sequence[float], throughput: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    if len(load) != len(throughput):
        raise FitError(f"{len(load)} loads but {len(throughput)} throughputs: pair them up")
    n = np.asarray(load, dtype=float)
    x = np.asarray(throughput, dtype=float)
    for name, values in (("load", n), ("throughput", x)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise FitError(
                f"{name} #{bad[0] + 1} is {values[bad[0]]}: every value must be a number"
            )
        bad = np.flatnonzero(values <= 0)
        if bad.size:
            raise FitError(
                f"{name} #{bad[0] + 1} is {values[bad[0]]:g}: loads and throughputs must be "
                "positive (drop failed steps, or steps where nothing completed)"
            )
    levels = np.unique(n)
    if len(levels) < MIN_LEVELS:
        have = ", ".join(f"{v:g}" for v in levels) or "none"
        raise FitError(
            f"the USL needs at least {MIN_LEVELS} distinct load levels, got {len(levels)} "
            f"({have}); measure more steps, e.g. concurrency 1, 2, 4, 8, 16"
        )
    return n, x


def _starts(n: np.ndarray, x: np.ndarray) -> list[np.ndarray]:
    """Several starting points: the linearised (Gunther) regression plus a small grid."""
    per_unit = x / n
    lams = {float(per_unit.max()), float(per_unit[np.argmin(n)])}
    starts = []
    for lam in lams:
        # N/C − 1 = σ(N−1) + κN(N−1) with C = X/λ: linear in σ, κ.
        y = n * lam / x - 1
        design = np.column_stack([n - 1, n * (n - 1)])
        (s, k), *_ = np.linalg.lstsq(design, y, rcond=None)
        starts.append(np.array([min(max(s, 0.0), 0.99), min(max(k, 0.0), 0.99), lam]))
        for s0 in (0.0, 0.05, 0.5):
            for k0 in (0.0, 1e-4, 1e-2):
                starts.append(np.array([s0, k0, lam]))
    return starts


def _least_squares(n: np.ndarray, x: np.ndarray) -> Any:
    def residuals(p: np.ndarray) -> np.ndarray:
        return _model(p, n) - x  # type: ignore[no-any-return]

    def jacobian(p: np.ndarray) -> np.ndarray:
        sigma, kappa, lam = p
        d = 1 + sigma * (n - 1) + kappa * n * (n - 1)
        return np.column_stack([-lam * n * (n - 1) / d**2, -lam * n * n * (n - 1) / d**2, n / d])

    bounds = ([0.0, 0.0, 0.0], [1.0, 1.0, np.inf])
    best = None
    for start in _starts(n, x):
        result = least_squares(
            residuals, start, jac=jacobian, bounds=bounds, method="trf",
            x_scale="jac", ftol=1e-14, xtol=1e-14, gtol=1e-14, max_nfev=2000,
        )  # fmt: skip
        usable = result.status > 0 and np.all(np.isfinite(result.x))
        if usable and (best is None or result.cost < best.cost):
            best = result
    if best is None:
        raise FitError(
            "the USL fit did not converge from any starting point; check that load and "
            "throughput are paired correctly and measure more steps"
        )
    return best


def _reject_nonsense(sigma: float, kappa: float, lam: float, n: np.ndarray, x: np.ndarray) -> None:
    if sigma >= 1 - _AT_BOUND:
        first, last = int(np.argmin(n)), int(np.argmax(n))
        raise FitError(
            f"σ at bound 1: the service does not scale (throughput {x[first]:.4g} at load "
            f"{n[first]:g}, {x[last]:.4g} at {n[last]:g}); measure more steps below "
            "saturation, or add workers before fitting"
        )
    if kappa >= 1 - _AT_BOUND:
        raise FitError(
            "κ at bound 1: throughput collapses from the second step on; measure finer steps "
            "between the smallest loads"
        )
    if lam <= 0:
        raise FitError("λ fitted to 0: no throughput at one unit of load; check the data")
    low = float(n.min())
    if kappa > 0 and math.sqrt((1 - sigma) / kappa) < low:
        raise FitError(
            f"throughput falls from the first step on (peak load N* = "
            f"{math.sqrt((1 - sigma) / kappa):.3g} is below the smallest measured load {low:g}): "
            "the service does not scale at these loads; measure more steps below saturation"
        )


def _notes(fit: UslFit) -> tuple[str, ...]:
    notes = []
    if fit.kappa == 0 and fit.sigma == 0:
        notes.append("σ = κ = 0: linear scaling over the measured range, so no peak is predicted")
    elif fit.kappa == 0:
        notes.append(
            "κ = 0: no retrograde region in the data, so N* is infinite and X_max is the "
            "Amdahl limit λ/σ"
        )
    if fit.n_levels < 6:
        notes.append(f"only {fit.n_levels} load levels: the coefficients are uncertain")
    if fit.r2 < 0.9:
        notes.append(f"R² = {fit.r2:.2f}: the curve does not describe the data well")
    if math.isfinite(fit.n_max) and fit.n_max > 2 * fit.max_load:
        notes.append(
            f"N* = {fit.n_max:.3g} is beyond twice the largest measured load "
            f"({fit.max_load:g}): the peak is an extrapolation"
        )
    return tuple(notes)


def read_csv(path: str | Path) -> tuple[list[float], list[float]]:
    """Read ``load,throughput`` pairs; a header row is optional, ``#`` lines are comments.

    Raises:
        FitError: the file is unreadable or a line is not two numbers; names file and line.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FitError(f"{path}: cannot read: {exc}") from exc
    load: list[float] = []
    throughput: list[float] = []
    columns = (0, 1)
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if not load and _is_header(cells):
            columns = _header_columns(cells, path, lineno)
            continue
        try:
            pair = [float(cells[i]) for i in columns]
        except (ValueError, IndexError):
            raise FitError(
                f"{path}:{lineno}: expected two numbers 'load,throughput', got {','.join(row)!r}"
            ) from None
        load.append(pair[0])
        throughput.append(pair[1])
    if not load:
        raise FitError(f"{path}: no data rows (expected lines 'load,throughput')")
    return load, throughput


def _is_header(cells: list[str]) -> bool:
    try:
        float(cells[0])
    except ValueError:
        return True
    return False


def _header_columns(cells: list[str], path: str | Path, lineno: int) -> tuple[int, int]:
    names = [c.lower() for c in cells]
    if "load" in names and "throughput" in names:
        return names.index("load"), names.index("throughput")
    raise FitError(
        f"{path}:{lineno}: the header must name the columns 'load' and 'throughput', "
        f"got {','.join(cells)!r}"
    )


def fit_csv(path: str | Path) -> UslFit:
    """:func:`read_csv` then :func:`fit_points`; a FitError from the fit names the file."""
    load, throughput = read_csv(path)
    try:
        return fit_points(load, throughput)
    except FitError as exc:
        raise FitError(f"{path}: {exc}") from None
