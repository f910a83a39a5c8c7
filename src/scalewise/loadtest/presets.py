"""The four load tests the seeds describe, as data: baseline, stress, spike and soak.

Each preset is a scenario dict that goes through the same validation as a scenario file, so a
preset is exactly a file you could have written (``scalewise loadtest URL --preset stress
--print-scenario`` shows it). Flags tune the numbers; the shapes are:

- **baseline** — steady and low: ``--vus`` (default 10) closed-model users, or ``--rate`` per
  second open-model, for ``--duration`` (default 1 m). The figures to compare later runs with.
- **stress** — ramp the arrival rate linearly from ``--rate``/50 to ``--rate`` (default
  1 000/s) over ``--duration`` (default 2 m) and *stop when it breaks*: error rate above 5 % or
  p95 above 2 s (the seeds' scale-up trigger) over the last 10 s. The rate at that moment is the
  reported breaking point.
- **spike** — ``--rate`` (default 10/s) for a fifth of the run, ×10 within 5 %, held for a fifth,
  back down within 5 %, then half the run to watch recovery.
- **soak** — ``--rate`` (default 20/s) for ``--duration`` (default 30 m); if the target runs
  scalewise, ``/health/scaling`` is polled to report memory growth per hour and latency drift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from scalewise.errors import ScenarioError

PRESETS: Final = ("baseline", "stress", "spike", "soak")

#: Defaults per preset: (duration seconds, rate per second, closed-model VUs).
_DEFAULTS: Final[Mapping[str, tuple[float, float, int]]] = {
    "baseline": (60.0, 0.0, 10),
    "stress": (120.0, 1000.0, 0),
    "spike": (60.0, 10.0, 0),
    "soak": (1800.0, 20.0, 0),
}
#: The seeds' scale-up trigger (p95 > 2 s) and a 5 % error rate mark a breaking point.
STRESS_BREAK: Final = {"http_req_failed": ["rate>0.05"], "http_req_duration": ["p(95)>2000"]}


def preset_scenario(
    preset: str,
    url: str,
    *,
    duration: float | None = None,
    vus: int | None = None,
    rate: float | None = None,
    request: Mapping[str, Any] | None = None,
    thresholds: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The scenario dict for ``preset`` against ``url`` (validated later by ``plan_from_dict``)."""
    if preset not in PRESETS:
        raise ScenarioError("--preset", "preset", f"one of {', '.join(PRESETS)}", preset)
    default_duration, default_rate, default_vus = _DEFAULTS[preset]
    length = duration or default_duration
    scenario = _shape(preset, length, rate or default_rate, vus, default_vus)
    out: dict[str, Any] = {
        "target": url,
        "requests": [{"name": "target", "url": url, **(request or {})}],
        "scenarios": {preset: scenario},
        "thresholds": dict(thresholds or {}),
    }
    if preset == "stress":
        out["break_when"] = STRESS_BREAK
    return out


def _shape(
    preset: str, length: float, rate: float, vus: int | None, default_vus: int
) -> dict[str, Any]:
    if preset == "baseline" and not rate:
        return {"executor": "constant-vus", "vus": vus or default_vus, "duration": length}
    if preset in ("baseline", "soak"):
        return _arrival_pool(
            {"executor": "constant-arrival-rate", "rate": rate, "duration": length}, rate, vus
        )
    if preset == "stress":
        stages = [{"duration": length, "target": rate}]
        scenario = {
            "executor": "ramping-arrival-rate",
            "start_rate": max(1.0, rate / 50),
            "stages": stages,
        }
        return _arrival_pool(scenario, rate, vus)
    edge, hold = 0.05 * length, 0.2 * length
    stages = [
        {"duration": hold, "target": rate},
        {"duration": edge, "target": 10 * rate},
        {"duration": hold, "target": 10 * rate},
        {"duration": edge, "target": rate},
        {"duration": length - 2 * edge - 2 * hold, "target": rate},
    ]
    scenario = {"executor": "ramping-arrival-rate", "start_rate": rate, "stages": stages}
    return _arrival_pool(scenario, 10 * rate, vus)


def _arrival_pool(scenario: dict[str, Any], peak_rate: float, vus: int | None) -> dict[str, Any]:
    """VUs for an open-model preset: enough for 1 s responses at the peak, capped by ``--vus``."""
    most = vus or max(100, min(5000, int(peak_rate)))
    scenario["pre_allocated_vus"] = min(most, max(10, int(peak_rate / 10)))
    scenario["max_vus"] = most
    return scenario
