"""``scalewise fit``: fit the Universal Scalability Law to ``load,throughput`` pairs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click
from rich.table import Table

from scalewise.cli import _output
from scalewise.errors import FitError

if TYPE_CHECKING:
    from scalewise.capacity.usl import UslFit

#: Rows shown in the measured-vs-fitted table; larger data sets are sampled evenly.
MAX_ROWS: Final = 24
_BAR_WIDTH: Final = 30


@click.command()
@click.argument("data", type=click.Path(exists=True, dir_okay=False), metavar="DATA.csv")
@click.option("--json", "as_json", is_flag=True, help="Print the fit as JSON.")
@click.option(
    "--report",
    "report_file",
    type=click.Path(dir_okay=False, writable=True),
    metavar="FILE",
    help="Also write a self-contained HTML report (points, fitted curve, coefficients).",
)
def fit(data: str, as_json: bool, report_file: str | None) -> None:
    """Fit X(N) = λN / (1 + σ(N−1) + κN(N−1)) to measured load and throughput.

    DATA.csv has two columns, load (concurrency N) and throughput (X); a header row
    'load,throughput' is optional. At least 4 distinct loads are needed. Prints σ
    (contention), κ (coherency), λ (throughput at N=1), R², the peak load N* and the peak
    throughput X_max.

    \b
    Examples:
      scalewise fit steps.csv
      scalewise fit steps.csv --json
      scalewise fit steps.csv --report usl.html
    """
    from scalewise.capacity.usl import fit_points, read_csv  # noqa: PLC0415 - scipy is heavy

    try:
        load, throughput = read_csv(data)
    except FitError as exc:
        raise click.BadParameter(str(exc), param_hint="DATA.csv") from None
    try:
        result = fit_points(load, throughput)
    except FitError as exc:
        raise click.ClickException(f"{data}: {exc}") from None
    if report_file is not None:
        from scalewise.capacity.report import fit_report  # noqa: PLC0415

        Path(report_file).write_text(
            fit_report(result, load, throughput, title=f"USL fit: {Path(data).name}"),
            encoding="utf-8",
        )
        _output.err.print(f"report: {report_file}")
    if as_json:
        doc = result.to_dict()
        doc["source"] = data
        doc["points"] = [
            {"load": n, "throughput": x} for n, x in zip(load, throughput, strict=True)
        ]
        _output.emit_json(doc)
        return
    _print(result, load, throughput)


def _num(value: float) -> str:
    return "∞" if not math.isfinite(value) else f"{value:.4g}"


def _print(result: UslFit, load: list[float], throughput: list[float]) -> None:
    out = _output.out
    out.print("X(N) = λN / (1 + σ(N−1) + κN(N−1))")
    out.print(
        f"σ = {result.sigma:.4g} (contention)   κ = {result.kappa:.4g} (coherency)   "
        f"λ = {result.lam:.4g} (throughput at N=1)"
    )
    out.print(f"R² = {result.r2:.4f} over {result.n_points} points ({result.n_levels} load levels)")
    out.print(
        f"N* = {_num(result.n_max)} (peak load)   X_max = {_num(result.x_max)}"
        + (" (Amdahl limit λ/σ, κ = 0)" if result.kappa == 0 else " (peak throughput)")
    )
    out.print(_chart(result, load, throughput))
    for note in result.notes:
        out.print(f"[yellow]note[/]: {note}")


def _chart(result: UslFit, load: list[float], throughput: list[float]) -> Table:
    """Measured against fitted per point, with a bar of the measured value as a chart."""
    pairs = sorted(zip(load, throughput, strict=True))
    if len(pairs) > MAX_ROWS:
        pairs = [pairs[round(i * (len(pairs) - 1) / (MAX_ROWS - 1))] for i in range(MAX_ROWS)]
    top = max(*(x for _, x in pairs), result.throughput(max(n for n, _ in pairs)))
    table = Table(title="measured vs fitted", title_justify="left")
    for column in ("load", "measured", "fitted", "residual"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("measured ▇, fitted │", no_wrap=True)
    for n, x in pairs:
        fitted = result.throughput(n)
        table.add_row(f"{n:g}", f"{x:.4g}", f"{fitted:.4g}", f"{x - fitted:+.3g}",
                      _bar(x, fitted, top))  # fmt: skip
    return table


def _bar(measured: float, fitted: float, top: float) -> str:
    cells = [" "] * (_BAR_WIDTH + 1)
    filled = round(measured / top * _BAR_WIDTH) if top > 0 else 0
    for i in range(min(filled, _BAR_WIDTH)):
        cells[i] = "▇"
    mark = min(round(fitted / top * _BAR_WIDTH), _BAR_WIDTH) if top > 0 else 0
    cells[mark] = "│"
    return "".join(cells).rstrip()
