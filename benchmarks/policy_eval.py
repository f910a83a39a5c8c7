"""One policy evaluation: 1 000 rules over 500 series, against the issue's 50 ms bar.

A synthetic source holds 500 named series with a value per evaluation time (a random walk
each, 5 % of points missing); 1 000 rules are spread over them at random with mixed
comparisons, thresholds near the series' level, ``for:`` of 0 to 15 minutes and some
``keep_firing_for``, so every evaluation moves rules through pending, firing and resolved.
``Evaluator.evaluate`` runs at consecutive 60 s steps after a warm-up; each evaluation is
timed on its own (``time.perf_counter``) and the median, p90 and max are reported. The
"engine only" line times the bare ``step()`` calls over the same values, i.e. the evaluation
without the source calls and the evaluator's bookkeeping. No store is attached (the SQLite
store's cost is measured by its own benchmark).

Run: ``PYTHONPATH=src python benchmarks/policy_eval.py [--json]``
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import _common as c
from scalewise.policy.engine import step
from scalewise.policy.evaluator import Evaluator
from scalewise.policy.model import Action, Comparison, Policy, Rule, RuleState

BAR_MS = 50.0
INTERVAL = 60.0


class SyntheticSource:
    """``value(rule, now)``: the value of ``rule.metric`` at ``now`` from a prepared table."""

    def __init__(self, table: dict[float, dict[str, float | None]]) -> None:
        self.table = table

    def value(self, rule: Rule, now: float) -> float | None:
        return self.table[now][rule.metric]


def make_table(series: int, steps: int, seed: int) -> dict[float, dict[str, float | None]]:
    rng = random.Random(seed)
    level = {f"series_{i}": 50.0 for i in range(series)}
    table: dict[float, dict[str, float | None]] = {}
    for k in range(steps):
        row: dict[str, float | None] = {}
        for name, previous in level.items():
            value = min(100.0, max(0.0, previous + rng.gauss(0.0, 4.0)))
            level[name] = value
            row[name] = None if rng.random() < 0.05 else value
        table[k * INTERVAL] = row
    return table


def make_rules(rules: int, series: int, seed: int) -> tuple[Rule, ...]:
    rng = random.Random(seed)
    ops = (Comparison.GT, Comparison.GE, Comparison.LT, Comparison.LE)
    return tuple(
        Rule(
            name=f"rule_{i}",
            metric=f"series_{rng.randrange(series)}",
            op=rng.choice(ops),
            threshold=rng.uniform(35.0, 65.0),
            action=rng.choice(list(Action)),
            for_=rng.choice((0.0, 60.0, 300.0, 900.0)),
            keep_firing_for=rng.choice((0.0, 0.0, 120.0)),
        )
        for i in range(rules)
    )


def _engine_only(policy: Policy, table: dict[float, dict[str, float | None]]) -> list[float]:
    states = {r.name: RuleState(r.name) for r in policy.rules}
    out = []
    for now, row in table.items():
        start = time.perf_counter()
        for r in policy.rules:
            states[r.name] = step(r, states[r.name], row[r.metric], now)
        out.append(time.perf_counter() - start)
    return out


def run(rules: int, series: int, evaluations: int, warmup: int, seed: int) -> dict[str, Any]:
    table = make_table(series, warmup + evaluations, seed)
    policy = Policy(rules=make_rules(rules, series, seed), evaluation_interval=INTERVAL)
    evaluator = Evaluator(policy, SyntheticSource(table))
    times, statuses = [], {"inactive": 0, "pending": 0, "firing": 0}
    for k, now in enumerate(table):
        start = time.perf_counter()
        states = evaluator.evaluate(now)
        elapsed = time.perf_counter() - start
        if k >= warmup:
            times.append(elapsed)
            for state in states.values():
                statuses[state.status.value] += 1
    engine = _engine_only(policy, table)[warmup:]
    ms = sorted(t * 1e3 for t in times)
    return {
        "rules": rules,
        "series": series,
        "evaluations": evaluations,
        "median_ms": statistics.median(ms),
        "p90_ms": ms[int(0.9 * (len(ms) - 1))],
        "max_ms": ms[-1],
        "us_per_rule": statistics.median(ms) * 1e3 / rules,
        "engine_only_median_ms": statistics.median(engine) * 1e3,
        "state_mix": {k: v / len(times) for k, v in statuses.items()},
    }


def _render(result: dict[str, Any]) -> str:
    r = result["run"]
    mix = ", ".join(f"{k} {v:.0f}" for k, v in r["state_mix"].items())
    rows = [
        ["Evaluator.evaluate", c.fmt(r["median_ms"]), c.fmt(r["p90_ms"]), c.fmt(r["max_ms"])],
        ["engine only (step)", c.fmt(r["engine_only_median_ms"]), "—", "—"],
    ]
    return "\n".join(
        [
            c.machine_line(result["machine"]),
            "",
            f"one evaluation of {r['rules']:,} rules over {r['series']:,} series, "
            f"{r['evaluations']} evaluations (CPU {result['config']['cpu']}); "
            f"average states per evaluation: {mix}",
            c.table(["variant", "median ms", "p90 ms", "max ms"], rows),
            f"{r['us_per_rule']:.1f} µs per rule",
            "",
            c.bar_line(
                f"one evaluation <= {BAR_MS:g} ms (median)", r["met"], c.fmt(r["median_ms"])
            ),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--rules", type=int, default=1_000)
    parser.add_argument("--series", type=int, default=500)
    parser.add_argument("--evaluations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cpu", type=int, default=0, help="CPU to pin to (-1: do not pin)")
    args = parser.parse_args()
    c.pin(None if args.cpu < 0 else args.cpu)
    started = time.monotonic()
    result: dict[str, Any] = {"benchmark": "policy_eval", "machine": c.machine()}
    result["config"] = vars(args)
    result["run"] = run(args.rules, args.series, args.evaluations, args.warmup, args.seed)
    result["run"]["met"] = result["run"]["median_ms"] <= BAR_MS
    result["bars"] = [
        {
            "bar": f"one evaluation <= {BAR_MS:g} ms (median)",
            "value": round(result["run"]["median_ms"], 3),
            "met": result["run"]["met"],
        }
    ]
    result["seconds"] = round(time.monotonic() - started, 1)
    c.emit(result, args.json, _render)


if __name__ == "__main__":
    main()
