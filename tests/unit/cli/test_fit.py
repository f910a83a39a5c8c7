"""``scalewise fit`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from scalewise.cli.fit import fit

SPECSDM91 = Path("/work/shared/reference/usl/specsdm91.csv")


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(fit, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def steps(tmp_path: Path) -> Path:
    path = tmp_path / "steps.csv"
    path.write_text("load,throughput\n1,100\n2,190\n4,340\n8,520\n16,640\n32,600\n")
    return path


def test_prints_coefficients_peak_and_chart(steps: Path) -> None:
    code, out = _run(str(steps))
    assert code == 0
    for text in ("σ =", "κ =", "λ =", "R² =", "N* =", "X_max =", "measured vs fitted", "▇"):
        assert text in out
    assert out.count("\n│") >= 6  # one chart row per point


def test_json_has_the_documented_keys(steps: Path) -> None:
    code, out = _run(str(steps), "--json")
    assert code == 0
    doc = json.loads(out)
    assert {"sigma", "kappa", "lambda", "r2", "n_max", "x_max"} <= doc.keys()
    assert len(doc["points"]) == 6
    assert doc["source"] == str(steps)


def test_json_matches_published_specsdm91_fit() -> None:
    if not SPECSDM91.exists():
        pytest.skip("reference data missing")
    code, out = _run(str(SPECSDM91), "--json")
    assert code == 0
    doc = json.loads(out)
    # smoeding/usl README: alpha 0.0277285, beta 0.0001044, gamma 89.995233; peak 96.51956.
    assert doc["sigma"] == pytest.approx(0.0277285, rel=1e-3)
    assert doc["kappa"] == pytest.approx(0.0001044, rel=1e-3)
    assert doc["lambda"] == pytest.approx(89.995233, rel=1e-3)
    assert doc["n_max"] == pytest.approx(96.51956, rel=1e-3)


def test_report_file_is_written(steps: Path, tmp_path: Path) -> None:
    report = tmp_path / "usl.html"
    result = CliRunner().invoke(fit, [str(steps), "--report", str(report)])
    assert result.exit_code == 0
    html = report.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "<svg" in html
    assert "USL fit: steps.csv" in html


def test_too_few_levels_exit_1_with_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "few.csv"
    path.write_text("1,10\n2,19\n4,35\n")
    result = CliRunner().invoke(fit, [str(path)])
    assert result.exit_code == 1
    assert "at least 4 distinct load levels, got 3" in result.output
    assert "Traceback" not in result.output


def test_malformed_file_exit_2_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("load,throughput\n1,10\n2,twenty\n")
    result = CliRunner().invoke(fit, [str(path)])
    assert result.exit_code == 2
    assert "bad.csv:3: expected two numbers" in result.output


def test_does_not_scale_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "flat.csv"
    path.write_text("1,100\n2,100\n4,100\n8,100\n")
    result = CliRunner().invoke(fit, [str(path)])
    assert result.exit_code == 1
    assert "σ at bound 1: the service does not scale" in result.output


def test_help_has_an_example() -> None:
    code, out = _run("--help")
    assert code == 0
    assert "scalewise fit steps.csv --json" in out
