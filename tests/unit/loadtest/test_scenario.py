"""Scenario files: k6 option names, data files, flows, and errors that name file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalewise.errors import ScenarioError
from scalewise.loadtest.executors import ConstantArrivalRate, RampingVus
from scalewise.loadtest.presets import PRESETS, preset_scenario
from scalewise.loadtest.requests import weighted_cycle
from scalewise.loadtest.scenario import load_plan, plan_from_dict


def write(tmp_path: Path, text: str, name: str = "scenario.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_k6_option_names_are_accepted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
target: http://127.0.0.1:8000
requests: [{url: /items, checks: {status: 200}}]
scenarios:
  steady: {executor: constant-arrival-rate, rate: 50, timeUnit: 1s, duration: 1m,
           preAllocatedVUs: 20, maxVUs: 40, startTime: 5s}
  ramp: {executor: ramping-vus, startVUs: 1, stages: [{duration: 30s, target: 10}]}
""",
    )
    plan = load_plan(path)
    steady, ramp = plan.executors
    assert isinstance(steady, ConstantArrivalRate)
    assert (steady.rate, steady.pre_allocated_vus, steady.max_vus, steady.start_time) == (
        50,
        20,
        40,
        5.0,
    )
    assert isinstance(ramp, RampingVus)
    assert plan.duration == pytest.approx(5 + 60 + 30)
    request = plan.requests[0].render(None)
    assert request.url == "http://127.0.0.1:8000/items"


@pytest.mark.parametrize(
    ("body", "field", "expected"),
    [
        ("scenarios: {a: {executor: fast, duration: 1s}}", "scenarios.a.executor", "constant-vus"),
        (
            "scenarios: {a: {executor: constant-vus, duration: soon}}",
            "scenarios.a.duration",
            "duration",
        ),
        (
            "scenarios: {a: {executor: constant-vus, duration: 1s, rate: 5}}",
            "scenarios.a.rate",
            "only options",
        ),
        (
            "scenarios: {a: {executor: constant-arrival-rate, rate: 5, duration: 1s}}",
            "scenarios.a.pre_allocated_vus",
            "required",
        ),
        ("requests: [{url: /x, weight: -1}]", "requests[0].weight", "greater than 0"),
        ("requests: [{url: /x, json: {a: 1}, body: hi}]", "requests[0]", "one body"),
        ("requests: [{url: /x, think_time: often}]", "requests[0].think_time", "pause"),
        ("requests: [{url: 'ftp://h/x'}]", "requests[0]", "http"),
        (
            "scenarios: {steady-state: {executor: constant-vus, duration: 1s, vus: 0}}",
            "scenarios.steady-state.vus",
            "greater than or equal to 1",
        ),
        ("data: {file: 1}\n", "data", "string"),
    ],
)
def test_errors_name_file_field_and_expectation(
    tmp_path: Path, body: str, field: str, expected: str
) -> None:
    text = "target: http://127.0.0.1:8000\n"
    if not body.startswith("requests"):
        text += "requests: [{url: /}]\n"
    path = write(tmp_path, text + body + "\n")
    with pytest.raises(ScenarioError) as info:
        load_plan(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert field in message
    assert expected in message


def test_missing_data_file_and_missing_upload_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, "target: http://h:1\ndata: users.csv\nrequests: [{url: /}]\n")
    with pytest.raises(ScenarioError, match=r"data\.file: expected an existing CSV file"):
        load_plan(path)
    path = write(tmp_path, "target: http://h:1\nrequests: [{url: /u, files: {f: [a.bin]}}]\n")
    with pytest.raises(ScenarioError, match=r"requests\[0\]\.files\.f\[0\]"):
        load_plan(path)


def test_data_rows_fill_placeholders(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text("user,term\nann,red shoes\nbob,a&b\n")
    path = write(
        tmp_path,
        """
target: http://127.0.0.1:8000
data: users.csv
requests:
  - {url: "/u/${user}", query: {q: "${term}"}, json: {who: "${user}"}, headers: {X-User: "${user}"}}
""",
    )
    plan = load_plan(path)
    request = plan.requests[0].render(plan.data[1])
    assert request.url == "http://127.0.0.1:8000/u/bob?q=a%26b"
    assert request.body == b'{"who":"bob"}'
    assert ("X-User", "bob") in request.headers
    assert ("Content-Type", "application/json") in request.headers


def test_multipart_upload_of_ten_files(tmp_path: Path) -> None:
    names = []
    for i in range(10):
        (tmp_path / f"f{i}.txt").write_text(f"file {i}")
        names.append(f"f{i}.txt")
    path = write(
        tmp_path,
        "target: http://127.0.0.1:1\n"
        f"requests: [{{method: POST, url: /up, files: {{file: {names}}}}}]\n",
    )
    request = load_plan(path).requests[0].render(None)
    assert request.body.count(b'name="file"') == 10
    assert any(
        k == "Content-Type" and v.startswith("multipart/form-data") for k, v in request.headers
    )


def test_flows_file_provides_exec_functions(tmp_path: Path) -> None:
    write(
        tmp_path,
        "async def browse(vu):\n    await vu.get('/')\n\nasync def on_start(vu):\n    pass\n",
        "flows.py",
    )
    path = write(
        tmp_path,
        """
target: http://127.0.0.1:8000
flows: flows.py
scenarios: {a: {executor: per-vu-iterations, vus: 2, iterations: 3, exec: browse}}
""",
    )
    plan = load_plan(path)
    assert set(plan.flows) == {"browse"}
    assert plan.on_start is not None
    bad = write(tmp_path, path.read_text().replace("exec: browse", "exec: shop"), "bad.yaml")
    with pytest.raises(ScenarioError, match=r"scenarios\.a\.exec"):
        load_plan(bad)


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="existing scenario file"):
        load_plan(tmp_path / "nope.yaml")
    with pytest.raises(ScenarioError, match="valid YAML"):
        load_plan(write(tmp_path, "target: [unclosed\n"))


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_are_valid_scenarios(preset: str) -> None:
    plan = plan_from_dict(preset_scenario(preset, "http://127.0.0.1:9/"), source="preset")
    assert plan.duration > 0
    assert plan.requests[0].render(None).url == "http://127.0.0.1:9/"


def test_spike_reaches_ten_times_the_base_rate() -> None:
    raw = preset_scenario("spike", "http://127.0.0.1:9/", rate=20, duration=100)
    stages = raw["scenarios"]["spike"]["stages"]
    assert max(s["target"] for s in stages) == 200
    assert sum(s["duration"] for s in stages) == pytest.approx(100)


def test_weighted_cycle_keeps_the_mix() -> None:
    cycle = weighted_cycle([3, 1])
    assert cycle.count(0) == 3 * cycle.count(1)
    assert cycle[:4] != (0, 0, 0, 1)  # interleaved, not blocks
