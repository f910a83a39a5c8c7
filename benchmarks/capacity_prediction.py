"""Does the USL fit predict? Fit on concurrency 1…8 of the demo service, measure 16 and 32.

The bar (issue 5): the predicted throughput at 16 and 32 is within 15 % of the measured. The
service is the bundled demo (uvicorn, one worker) with the demo's request mix; the load comes
from scalewise's own load tester, closed model, one step per level. Everything on 127.0.0.1.

    PYTHONPATH=src python benchmarks/capacity_prediction.py [--step-duration 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from scalewise.capacity.stepped import Ladder, measure_steps
from scalewise.capacity.usl import fit_points
from scalewise.demo.run import demo_plan, free_port, start_service, stop_service, write_config

FIT_LEVELS = (1, 2, 4, 8)
CHECK_LEVELS = (16, 32)
BAR = 0.15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step-duration", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = start_service(port, config=write_config(Path(tmp)))
        try:
            ladder = Ladder(FIT_LEVELS + CHECK_LEVELS, args.step_duration, stop_early=False)
            steps = [m.step for m in measure_steps(demo_plan(f"http://127.0.0.1:{port}"), ladder)]
        finally:
            stop_service(proc)
    fitted = [s for s in steps if s.concurrency in FIT_LEVELS]
    fit = fit_points([s.concurrency for s in fitted], [s.throughput for s in fitted])
    rows = []
    for s in steps:
        predicted = fit.throughput(s.concurrency)
        error = predicted / s.throughput - 1
        rows.append({"concurrency": s.concurrency, "measured_rps": round(s.throughput, 1),
                     "predicted_rps": round(predicted, 1), "error": round(error, 4),
                     "fitted_on": s.concurrency in FIT_LEVELS})  # fmt: skip
    checks = [r for r in rows if not r["fitted_on"]]
    ok = all(abs(r["error"]) <= BAR for r in checks)
    if args.json:
        print(json.dumps({"fit": fit.to_dict(), "rows": rows, "within_15pct": ok}, indent=2))
        return
    print(f"USL fit on N={FIT_LEVELS}: sigma={fit.sigma:.4g} kappa={fit.kappa:.4g} "
          f"lambda={fit.lam:.4g} r2={fit.r2:.4f}")  # fmt: skip
    print(f"{'N':>4} {'measured req/s':>15} {'predicted':>10} {'error':>8}")
    for r in rows:
        tag = "" if r["fitted_on"] else "  ← predicted"
        print(f"{r['concurrency']:>4g} {r['measured_rps']:>15,.1f} {r['predicted_rps']:>10,.1f} "
              f"{r['error']:>+8.1%}{tag}")  # fmt: skip
    print(f"bar: |error| ≤ {BAR:.0%} at N={CHECK_LEVELS}: {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
