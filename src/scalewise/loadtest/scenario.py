"""Scenario files: YAML in, a validated :class:`LoadPlan` out, every error naming file and field.

A scenario file reads like a k6 script's ``options`` plus the requests to send::

    target: http://127.0.0.1:8000
    data: users.csv                 # ${column} in URLs, headers and bodies, one row per iteration
    requests:
      - {name: home, url: /, weight: 3, checks: {status: 200}}
      - {name: search, url: "/search", query: {q: "${term}"}, think_time: 0.5s-2s}
      - {name: upload, method: POST, url: /upload, files: {file: report.pdf}}
    scenarios:
      steady: {executor: constant-arrival-rate, rate: 50, duration: 1m, preAllocatedVUs: 20}
    thresholds:
      http_req_duration: ["p(95)<300"]
      http_req_failed: ["rate<0.01"]

k6's camelCase option names (``preAllocatedVUs``, ``timeUnit``, ``startTime``…) and their
snake_case forms are both accepted, so a k6 ``options`` block can be pasted in as YAML.
"""

from __future__ import annotations

import csv
import importlib.util
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, model_validator

from scalewise.errors import ScenarioError
from scalewise.loadtest.executors import (
    ConstantArrivalRate,
    ConstantVus,
    Executor,
    PerVuIterations,
    RampingArrivalRate,
    RampingVus,
    SharedIterations,
    Stage,
)
from scalewise.loadtest.requests import Checks, RequestSpec, ThinkTime
from scalewise.units import parse_duration

#: Rows kept from a data file: enough for any realistic user list, bounded all the same.
MAX_DATA_ROWS: Final = 1_000_000


def _duration(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("a duration like '30s', '5m' or a number of seconds")
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ValueError("a duration like '30s', '5m' or a number of seconds") from exc
    if seconds < 0:
        raise ValueError("a duration of 0 or more")
    return seconds


Duration = Annotated[float, PlainValidator(_duration)]
Positive = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class StageModel(_Model):
    duration: Duration
    target: Annotated[float, Field(ge=0)]


class ExecutorModel(_Model):
    """Every k6 executor option; :func:`_executor` checks which ones the executor takes."""

    executor: Literal[
        "constant-vus",
        "ramping-vus",
        "shared-iterations",
        "per-vu-iterations",
        "constant-arrival-rate",
        "ramping-arrival-rate",
    ]
    vus: Count | None = None
    duration: Duration | None = None
    iterations: Count | None = None
    max_duration: Duration | None = None
    start_vus: Annotated[int, Field(ge=0)] | None = None
    stages: list[StageModel] | None = None
    rate: Positive | None = None
    start_rate: Annotated[float, Field(ge=0)] | None = None
    time_unit: Duration | None = None
    pre_allocated_vus: Count | None = None
    max_vus: Count | None = None
    start_time: Duration = 0.0
    graceful_stop: Duration = 30.0
    graceful_ramp_down: Duration | None = None
    exec: str = "default"


class ChecksModel(_Model):
    status: int | list[int] | None = None
    body_contains: str | None = None
    body_matches: str | None = None


class RequestModel(_Model):
    name: str | None = None
    method: str = "GET"
    url: str
    headers: dict[str, str] = {}
    query: dict[str, str | int | float | list[str | int | float]] = {}
    json_body: Any = Field(None, alias="json")
    form: dict[str, str | int | float] | None = None
    files: dict[str, str | list[str]] | None = None
    body: str | None = None
    weight: Positive = 1.0
    checks: ChecksModel | None = None
    think_time: str | float | None = None
    timeout: Duration | None = None

    @model_validator(mode="after")
    def _one_body(self) -> RequestModel:
        kinds = [k for k in ("json", "form", "body") if getattr(self, _BODY[k]) is not None]
        if len(kinds) > 1 or (self.files and ("json" in kinds or "body" in kinds)):
            raise ValueError("one body: json, form, body, or files (with optional form)")
        return self


_BODY: Final = {"json": "json_body", "form": "form", "body": "body"}


class DataModel(_Model):
    file: str
    mode: Literal["cycle", "random", "unique"] = "cycle"


class DefaultsModel(_Model):
    headers: dict[str, str] = {}
    timeout: Duration = 60.0
    connect_timeout: Duration = 10.0
    insecure_tls: bool = False
    think_time: str | float | None = None


class ScenarioFileModel(_Model):
    target: str | None = None
    defaults: DefaultsModel = DefaultsModel()
    data: str | DataModel | None = None
    flows: str | None = None
    requests: list[RequestModel] = []
    mode: Literal["pick", "sequence"] = "pick"
    scenarios: dict[str, ExecutorModel] = {}
    thresholds: dict[str, list[str | dict[str, Any]]] = {}
    break_when: dict[str, list[str]] = {}
    break_window: Duration = 10.0


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """Everything a run needs, validated; built from a file, a preset, or flags."""

    source: str
    target: str
    executors: tuple[Executor, ...]
    requests: tuple[RequestSpec, ...] = ()
    mode: str = "pick"
    data: tuple[Mapping[str, str], ...] = ()
    data_mode: str = "cycle"
    flows: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    on_start: Callable[..., Any] | None = None
    thresholds: Mapping[str, Sequence[str | Mapping[str, Any]]] = field(default_factory=dict)
    break_when: Mapping[str, Sequence[str]] = field(default_factory=dict)
    break_window: float = 10.0
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 60.0
    connect_timeout: float = 10.0
    insecure_tls: bool = False
    preset: str | None = None

    @property
    def duration(self) -> float:
        """Longest the run can take, graceful stops included (every run is bounded)."""
        return max(ex.end for ex in self.executors)


def load_plan(path: str | Path, *, target: str | None = None) -> LoadPlan:
    """Read and validate a scenario file; ``target`` overrides the file's base URL."""
    file = Path(path)
    source = str(path)
    if not file.is_file():
        raise ScenarioError(source, "(file)", "an existing scenario file (YAML)", source)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ScenarioError(source, "(file)", "valid YAML", str(exc).splitlines()[0]) from None
    if not isinstance(raw, Mapping):
        raise ScenarioError(source, "(file)", "a mapping with requests and scenarios", raw)
    return plan_from_dict(raw, source=source, base=file.parent, target=target)


def plan_from_dict(
    raw: Mapping[str, Any], *, source: str, base: Path = Path(), target: str | None = None
) -> LoadPlan:
    """Validate a scenario given as data (a parsed file, or a preset) into a plan."""
    try:
        model = ScenarioFileModel.model_validate(_snake_keys(raw))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = _dotted(err["loc"])
        expected = err["msg"].removeprefix("Value error, ").removeprefix("Input should be ")
        raise ScenarioError(source, where, expected, err.get("input")) from None
    base_url = target or model.target
    if not base_url:
        raise ScenarioError(source, "target", "the URL of the service to test", None)
    if not model.requests and not model.flows:
        raise ScenarioError(source, "requests", "at least one request (or a flows file)", None)
    flows, on_start = _load_flows(model.flows, base, source) if model.flows else ({}, None)
    executors = tuple(_executor(name, ex, source) for name, ex in _scenarios(model))
    for ex in executors:
        if ex.exec != "default" and ex.exec not in flows:
            where = f"scenarios.{ex.name}.exec"
            raise ScenarioError(
                source, where, f"a function in the flows file {model.flows}", ex.exec
            )
        if ex.exec == "default" and not model.requests:
            raise ScenarioError(source, f"scenarios.{ex.name}.exec", "a flow name", "default")
    data_file = model.data if isinstance(model.data, DataModel) else None
    if isinstance(model.data, str):
        data_file = DataModel(file=model.data)
    return LoadPlan(
        source=source,
        target=base_url,
        executors=executors,
        requests=tuple(
            _request(r, i, model, base, source, base_url) for i, r in enumerate(model.requests)
        ),
        mode=model.mode,
        data=_read_data(data_file.file, base, source) if data_file else (),
        data_mode=data_file.mode if data_file else "cycle",
        flows=flows,
        on_start=on_start,
        thresholds=model.thresholds,
        break_when=model.break_when,
        break_window=model.break_window,
        headers=tuple(model.defaults.headers.items()),
        timeout=model.defaults.timeout,
        connect_timeout=model.defaults.connect_timeout,
        insecure_tls=model.defaults.insecure_tls,
    )


def _scenarios(model: ScenarioFileModel) -> list[tuple[str, ExecutorModel]]:
    if model.scenarios:
        return list(model.scenarios.items())
    return [("default", ExecutorModel(executor="constant-vus", vus=1, duration=10.0))]


#: Options each executor takes, with the ones it cannot run without.
_OPTIONS: Final[dict[str, tuple[set[str], set[str]]]] = {
    "constant-vus": ({"vus", "duration"}, {"duration"}),
    "ramping-vus": ({"start_vus", "stages", "graceful_ramp_down"}, {"stages"}),
    "shared-iterations": ({"vus", "iterations", "max_duration"}, set()),
    "per-vu-iterations": ({"vus", "iterations", "max_duration"}, set()),
    "constant-arrival-rate": (
        {"rate", "time_unit", "duration", "pre_allocated_vus", "max_vus"},
        {"rate", "duration", "pre_allocated_vus"},
    ),
    "ramping-arrival-rate": (
        {"start_rate", "time_unit", "stages", "pre_allocated_vus", "max_vus"},
        {"stages", "pre_allocated_vus"},
    ),
}
_COMMON: Final = {"executor", "start_time", "graceful_stop", "exec"}


def _executor(name: str, ex: ExecutorModel, source: str) -> Executor:
    """Check the options against k6's rules for this executor, then build the frozen value."""
    where = f"scenarios.{name}"
    allowed, required = _OPTIONS[ex.executor]
    given = {k for k in ex.model_fields_set if getattr(ex, k) is not None} - _COMMON
    for key in sorted(given - allowed):
        expected = f"only options of {ex.executor}: {', '.join(sorted(allowed))}"
        raise ScenarioError(source, f"{where}.{key}", expected, getattr(ex, key))
    for key in sorted(required - given):
        raise ScenarioError(source, f"{where}.{key}", f"a value (required by {ex.executor})", None)
    if ex.stages is not None and not ex.stages:
        raise ScenarioError(source, f"{where}.stages", "at least one stage", [])
    common: dict[str, Any] = {
        "name": name,
        "start_time": ex.start_time,
        "graceful_stop": ex.graceful_stop,
        "exec": ex.exec,
    }
    stages = tuple(Stage(s.duration, s.target) for s in ex.stages or ())
    if ex.executor == "constant-vus":
        return ConstantVus(**common, vus=ex.vus or 1, run_for=ex.duration or 0.0)
    if ex.executor == "ramping-vus":
        ramp = ex.graceful_ramp_down if ex.graceful_ramp_down is not None else 30.0
        return RampingVus(
            **common, start_vus=ex.start_vus or 0, stages=stages, graceful_ramp_down=ramp
        )
    if ex.executor in ("shared-iterations", "per-vu-iterations"):
        limit = ex.max_duration if ex.max_duration is not None else 600.0
        cls = SharedIterations if ex.executor == "shared-iterations" else PerVuIterations
        return cls(**common, vus=ex.vus or 1, iterations=ex.iterations or 1, max_duration=limit)
    pool: dict[str, Any] = {
        "time_unit": ex.time_unit or 1.0,
        "pre_allocated_vus": ex.pre_allocated_vus,
        "max_vus": max(ex.max_vus or 0, ex.pre_allocated_vus or 1),
    }
    if ex.executor == "constant-arrival-rate":
        return ConstantArrivalRate(
            **common, **pool, rate=ex.rate or 1.0, run_for=ex.duration or 0.0
        )
    return RampingArrivalRate(**common, **pool, start_rate=ex.start_rate or 0.0, stages=stages)


def _request(
    r: RequestModel, index: int, model: ScenarioFileModel, base: Path, source: str, target: str
) -> RequestSpec:
    where = f"requests[{index}]"
    think = r.think_time if r.think_time is not None else model.defaults.think_time
    try:
        think_time = ThinkTime.parse(think) if think is not None else None
    except ValueError as exc:
        raise ScenarioError(source, f"{where}.think_time", str(exc), think) from None
    files: list[tuple[str, Path]] = []
    for field_name, paths in (r.files or {}).items():
        for i, path in enumerate([paths] if isinstance(paths, str) else paths):
            file = (base / path) if not Path(path).is_absolute() else Path(path)
            if not file.is_file():
                at = f"{where}.files.{field_name}" + ("" if isinstance(paths, str) else f"[{i}]")
                raise ScenarioError(source, at, "an existing file", path)
            files.append((field_name, file))
    status = r.checks.status if r.checks else None
    try:
        checks = (
            Checks(
                status=(status,) if isinstance(status, int) else tuple(status or ()),
                body_contains=r.checks.body_contains,
                body_matches=re.compile(r.checks.body_matches) if r.checks.body_matches else None,
            )
            if r.checks
            else None
        )
    except re.error as exc:
        raise ScenarioError(
            source, f"{where}.checks.body_matches", "a regular expression", str(exc)
        ) from None
    return RequestSpec.build(
        name=r.name or f"{r.method.upper()} {r.url}",
        method=r.method.upper(),
        url=r.url,
        target=target,
        headers=(*model.defaults.headers.items(), *r.headers.items()),
        query=r.query,
        json_body=r.json_body,
        form=r.form,
        files=files,
        body=r.body,
        weight=r.weight,
        checks=checks,
        think_time=think_time,
        where=(source, where),
    )


def _read_data(path: str, base: Path, source: str) -> tuple[Mapping[str, str], ...]:
    file = base / path if not Path(path).is_absolute() else Path(path)
    if not file.is_file():
        raise ScenarioError(source, "data.file", "an existing CSV file", path)
    with file.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = []
        for i, row in enumerate(reader):
            if i >= MAX_DATA_ROWS:
                break
            if None in row:
                expected = f"{len(reader.fieldnames or ())} columns (line {reader.line_num})"
                raise ScenarioError(str(file), "(row)", expected, row[None])
            rows.append(row)
    if not rows:
        raise ScenarioError(str(file), "(file)", "a header line and at least one row", None)
    return tuple(rows)


def _load_flows(
    path: str, base: Path, source: str
) -> tuple[dict[str, Callable[..., Any]], Callable[..., Any] | None]:
    """Import the user's flows file; every ``async def`` in it is a flow usable as ``exec``."""
    file = base / path if not Path(path).is_absolute() else Path(path)
    if not file.is_file():
        raise ScenarioError(source, "flows", "an existing Python file with async flows", path)
    spec = importlib.util.spec_from_file_location(f"scalewise_flows_{file.stem}", file)
    if spec is None or spec.loader is None:
        raise ScenarioError(source, "flows", "a Python file", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ScenarioError(
            str(file), "(import)", "a file that imports cleanly", repr(exc)
        ) from None
    flows = {
        name: fn
        for name, fn in vars(module).items()
        if inspect.iscoroutinefunction(fn)
        and not name.startswith("_")
        and fn.__module__ == module.__name__
    }
    on_start = flows.pop("on_start", None)
    if not flows:
        raise ScenarioError(str(file), "(flows)", "at least one 'async def flow(vu)'", None)
    return flows, on_start


_CAMEL: Final = re.compile(r"(?<=[a-z0-9])([A-Z])")


def _snake_keys(raw: Mapping[str, Any]) -> dict[str, Any]:
    """k6 spellings → ours inside ``scenarios`` and ``defaults`` (``preAllocatedVUs``)."""
    out = dict(raw)
    scenarios = raw.get("scenarios")
    if isinstance(scenarios, Mapping):
        out["scenarios"] = {
            name: {_snake(k): v for k, v in body.items()} if isinstance(body, Mapping) else body
            for name, body in scenarios.items()
        }
    for key in ("defaults",):
        if isinstance(raw.get(key), Mapping):
            out[key] = {_snake(k): v for k, v in raw[key].items()}
    return out


def _snake(key: object) -> object:
    if not isinstance(key, str):
        return key
    return _CAMEL.sub(r"_\1", key.replace("VUs", "Vus")).lower()


#: The member tags pydantic puts in an error's location for unions (``str``, ``DataModel``,
#: ``dict[str,any]``): not part of the user's path.
_UNION_TAG: Final = re.compile(r"(str|int|float|bool|none|[A-Z]\w*Model|(list|dict|tuple)\[.*\])")


def _dotted(loc: Sequence[Any]) -> str:
    """``("scenarios", "steady-state", "rate")`` → ``"scenarios.steady-state.rate"``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not _UNION_TAG.fullmatch(str(part)):
            text += f".{part}" if text else str(part)
    return text or "(file)"
