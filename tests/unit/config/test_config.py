from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from scalewise.config import (
    ENV_ALIASES,
    EndpointsSection,
    MetricsSection,
    ScalewiseConfig,
    load_config,
)
from scalewise.config.model import sections
from scalewise.errors import ConfigError
from scalewise.options import EndpointPaths, MetricsOptions
from scalewise.units import DURATION_EXPECTED


@pytest.fixture(autouse=True)
def _no_ambient_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty directory, so a scalewise.yaml in the checkout never leaks in."""
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str, name: str = "scalewise.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- layering ------------------------------------------------------------------------------


def test_defaults_are_the_runtime_defaults() -> None:
    config = load_config(env={})
    assert config == ScalewiseConfig()
    assert config.version == 1
    assert config.metrics_options() == MetricsOptions()


def test_sections_mirror_the_runtime_dataclasses() -> None:
    runtime = {f.name for f in dataclasses.fields(MetricsOptions)} - {"paths"}
    assert set(MetricsSection.model_fields) == runtime
    assert set(EndpointsSection.model_fields) == {f.name for f in dataclasses.fields(EndpointPaths)}


def test_file_values_in_human_units(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
version: 1
metrics:
  interval: 5s
  history: 1h30m
  max_routes: 50
  buckets: [10ms, 0.1, 250ms, 1s]
  queue_buckets: [1ms, 1]
  top_routes: 0
  response_time_header: yes
  exclude: [/static, /favicon.ico]
  multiprocess_dir: /tmp/scalewise
  flush_interval: 2s
  loop_lag_interval: 100ms
endpoints:
  scaling: /scaling
  metrics: false
""",
    )
    options = load_config(path, env={}).metrics_options()
    assert options.interval == 5.0
    assert options.history == 5400.0
    assert options.max_routes == 50
    assert options.buckets == pytest.approx((0.01, 0.1, 0.25, 1.0))
    assert options.queue_buckets == pytest.approx((0.001, 1.0))
    assert options.top_routes == 0
    assert options.response_time_header is True
    assert options.exclude == ("/static", "/favicon.ico")
    assert options.multiprocess_dir == "/tmp/scalewise"
    assert options.flush_interval == 2.0
    assert options.loop_lag_interval == pytest.approx(0.1)
    assert options.paths == EndpointPaths(scaling="/scaling", metrics=None)


def test_env_overrides_file_field_by_field(tmp_path: Path) -> None:
    path = write(tmp_path, "metrics:\n  interval: 5s\n  max_routes: 50\n")
    env = {"SCALEWISE_METRICS_INTERVAL": "2s", "SCALEWISE_ENDPOINTS_METRICS": "/prom"}
    config = load_config(path, env=env)
    assert config.metrics.interval == 2.0
    assert config.metrics.max_routes == 50
    assert config.endpoints.metrics == "/prom"
    assert config.endpoints.health == "/health"


def test_alias_variables() -> None:
    env = {
        "SCALEWISE_INTERVAL": "30s",
        "SCALEWISE_MAX_ROUTES": "7",
        "SCALEWISE_MULTIPROCESS_DIR": "off",
        "SCALEWISE_HEALTH_PATH": "/healthz",
    }
    config = load_config(env=env)
    assert config.metrics.interval == 30.0
    assert config.metrics.max_routes == 7
    assert config.metrics.multiprocess_dir is None
    assert config.endpoints.health == "/healthz"


def test_full_name_beats_alias() -> None:
    env = {"SCALEWISE_METRICS_INTERVAL": "20s", "SCALEWISE_INTERVAL": "30s"}
    assert load_config(env=env).metrics.interval == 20.0


def test_aliases_name_real_fields() -> None:
    for name, (section, field) in ENV_ALIASES.items():
        assert name.startswith("SCALEWISE_")
        assert field in sections()[section].model_fields


def test_list_variables_are_comma_separated() -> None:
    env = {"SCALEWISE_METRICS_BUCKETS": "0.1, 250ms ,1s", "SCALEWISE_EXCLUDE": "/static,/admin"}
    config = load_config(env=env)
    assert config.metrics.buckets == pytest.approx((0.1, 0.25, 1.0))
    assert config.metrics.exclude == ("/static", "/admin")
    assert load_config(env={"SCALEWISE_EXCLUDE": ""}).metrics.exclude == ()


def test_bool_variables() -> None:
    env = {
        "SCALEWISE_METRICS_QUEUE_TIME_HEADER": "false",
        "SCALEWISE_METRICS_SERVER_TIMING_HEADER": "1",
    }
    config = load_config(env=env)
    assert config.metrics.queue_time_header is False
    assert config.metrics.server_timing_header is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [("auto", "auto"), ("off", None), ("null", None), ("false", None), ("/run/sw", "/run/sw")],
)
def test_multiprocess_dir(tmp_path: Path, text: str, expected: str | None) -> None:
    path = write(tmp_path, f"metrics:\n  multiprocess_dir: {text}\n")
    assert load_config(path, env={}).metrics.multiprocess_dir == expected


@pytest.mark.parametrize("value", ["null", "false", "off", "~"])
def test_endpoint_switched_off_in_file(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"endpoints:\n  ready: {value}\n")
    assert load_config(path, env={}).metrics_options().paths.ready is None


def test_unrelated_scalewise_variables_are_ignored() -> None:
    env = {"SCALEWISE_TOKEN": "x", "SCALEWISE_POLICY_RULES": "x", "SCALEWISE_METRICS": "x"}
    assert load_config(env=env) == ScalewiseConfig()


def test_empty_file_and_empty_section_mean_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), env={}) == ScalewiseConfig()
    assert load_config(write(tmp_path, "metrics:\nendpoints:\n"), env={}) == ScalewiseConfig()


# --- which file ----------------------------------------------------------------------------


def test_scalewise_yaml_in_working_directory_is_read(tmp_path: Path) -> None:
    write(tmp_path, "metrics:\n  interval: 3s\n")
    assert load_config(env={}).metrics.interval == 3.0


def test_config_variable_names_the_file(tmp_path: Path) -> None:
    write(tmp_path, "metrics:\n  interval: 3s\n")
    other = write(tmp_path, "metrics:\n  interval: 4s\n", name="other.yaml")
    assert load_config(env={"SCALEWISE_CONFIG": str(other)}).metrics.interval == 4.0


def test_explicit_path_beats_config_variable(tmp_path: Path) -> None:
    one = write(tmp_path, "metrics:\n  interval: 3s\n", name="one.yaml")
    env = {"SCALEWISE_CONFIG": str(tmp_path / "missing.yaml")}
    assert load_config(one, env=env).metrics.interval == 3.0


def test_env_none_reads_os_environ_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCALEWISE_CONFIG", raising=False)
    monkeypatch.delenv("SCALEWISE_METRICS_INTERVAL", raising=False)
    monkeypatch.setenv("SCALEWISE_INTERVAL", "7s")
    assert load_config().metrics.interval == 7.0


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: \(file\): expected an existing"):
        load_config(tmp_path / "nope.yaml", env={})


def test_missing_file_named_by_variable(tmp_path: Path) -> None:
    env = {"SCALEWISE_CONFIG": str(tmp_path / "nope.yaml")}
    with pytest.raises(ConfigError, match=r"nope\.yaml: \(file\): expected an existing"):
        load_config(env=env)


# --- errors --------------------------------------------------------------------------------


def test_bad_duration_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, "metrics:\n  interval: soon\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert "scalewise.yaml" in message
    assert "metrics.interval" in message
    assert "duration" in message
    assert "'soon'" in message
    assert info.value.source == str(path)
    assert info.value.path == "metrics.interval"
    assert info.value.expected == DURATION_EXPECTED
    assert info.value.got == "soon"


def test_bad_list_item_is_indexed(tmp_path: Path) -> None:
    path = write(tmp_path, "metrics:\n  buckets: [0.1, later, 1s]\n")
    with pytest.raises(ConfigError, match=r"metrics\.buckets\[1\]") as info:
        load_config(path, env={})
    assert info.value.path == "metrics.buckets[1]"
    assert info.value.got == "later"


def test_bad_exclude_item_is_indexed(tmp_path: Path) -> None:
    path = write(tmp_path, "metrics:\n  exclude: [/ok, static]\n")
    with pytest.raises(ConfigError, match=r"metrics\.exclude\[1\]: expected a path prefix"):
        load_config(path, env={})


@pytest.mark.parametrize(
    ("text", "path", "key"),
    [
        ("metrics:\n  intervall: 5s\n", "metrics.intervall", "intervall"),
        ("polcy: {}\n", "polcy", "polcy"),
    ],
)
def test_unknown_key_is_named(tmp_path: Path, text: str, path: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"{path}: expected one of the known keys") as info:
        load_config(write(tmp_path, text), env={})
    assert info.value.path == path
    assert info.value.got == key


def test_unknown_section_variable_is_a_typo() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={"SCALEWISE_METRICS_FOO": "1"})
    assert info.value.source == "environment variable SCALEWISE_METRICS_FOO"
    assert info.value.path == "metrics.foo"
    assert "interval" in info.value.expected


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "metrics:\n  interval: 5s\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"SCALEWISE_METRICS_INTERVAL": "soon"})
    assert str(info.value).startswith(
        "environment variable SCALEWISE_METRICS_INTERVAL: metrics.interval: expected a duration"
    )


def test_bad_alias_value_names_the_alias() -> None:
    with pytest.raises(ConfigError, match=r"SCALEWISE_MAX_ROUTES: metrics\.max_routes") as info:
        load_config(env={"SCALEWISE_MAX_ROUTES": "many"})
    assert info.value.expected == "a whole number of at least 1"


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "metrics:\n  interval: 5s\n  buckets: [0.1\n  history: 1h\n")
    with pytest.raises(ConfigError, match=r"scalewise\.yaml: line \d+") as info:
        load_config(path, env={})
    assert info.value.expected.startswith("valid YAML")

    path = write(tmp_path, "metrics:\n  interval: 5s\n   history: 1h\n")
    with pytest.raises(ConfigError, match=r"scalewise\.yaml: line 3, column \d+"):
        load_config(path, env={})


@pytest.mark.parametrize("text", ["- metrics\n", "just text\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match=r"\(top level\): expected a mapping"):
        load_config(write(tmp_path, text), env={})


def test_section_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="metrics: expected a mapping"):
        load_config(write(tmp_path, "metrics: 5\n"), env={"SCALEWISE_METRICS_INTERVAL": "5s"})


def test_every_problem_is_listed_first_one_in_attributes(tmp_path: Path) -> None:
    path = write(
        tmp_path, "metrics:\n  interval: soon\n  max_routes: 0\nendpoints:\n  health: nowhere\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"SCALEWISE_TOP_ROUTES": "-1"})
    lines = str(info.value).splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"{path}: metrics.interval: expected a duration")
    assert any("metrics.max_routes" in line for line in lines)
    assert any(line.startswith("environment variable SCALEWISE_TOP_ROUTES") for line in lines)
    assert any("endpoints.health" in line for line in lines)
    assert (info.value.path, info.value.got) == ("metrics.interval", "soon")


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("metrics:\n  buckets: [0.1, 1s, 500ms]\n", "metrics.buckets[2]"),
        ("metrics:\n  interval: 1m\n  history: 30s\n", "metrics.history"),
        ("endpoints:\n  metrics: /health\n", "endpoints.metrics"),
        ("metrics:\n  interval: 0\n", "metrics.interval"),
        ("metrics:\n  buckets: []\n", "metrics.buckets"),
        ("metrics:\n  buckets: [0, 1]\n", "metrics.buckets[0]"),
    ],
)
def test_rule_violations_point_at_the_field(tmp_path: Path, text: str, path: str) -> None:
    file = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(file, env={})
    assert (info.value.source, info.value.path) == (str(file), path)


def test_unsupported_version(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="version: expected 1"):
        load_config(write(tmp_path, "version: 2\n"), env={})


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"metrics\.interval"):
        load_config(env={"SCALEWISE_INTERVAL": "-5s"})


# --- the runtime dataclasses ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"interval": 0}, "interval"),
        ({"interval": -1.0}, "interval"),
        ({"interval": math.nan}, "interval"),
        ({"interval": True}, "interval"),
        ({"flush_interval": 0}, "flush_interval"),
        ({"loop_lag_interval": math.inf}, "loop_lag_interval"),
        ({"history": 5.0}, "history"),
        ({"interval": 0.001, "history": 1000.0}, "history"),
        ({"max_routes": 0}, "max_routes"),
        ({"max_routes": True}, "max_routes"),
        ({"top_routes": -1}, "top_routes"),
        ({"buckets": ()}, "buckets"),
        ({"buckets": (0.1, 0.5, 0.25)}, "buckets[2]"),
        ({"buckets": (0.1, 0.1)}, "buckets[1]"),
        ({"buckets": (-1.0, 1.0)}, "buckets[0]"),
        ({"queue_buckets": (0.1, math.inf)}, "queue_buckets[1]"),
        ({"exclude": ("static",)}, "exclude[0]"),
        ({"exclude": "/static"}, "exclude"),
        ({"multiprocess_dir": ""}, "multiprocess_dir"),
    ],
)
def test_metrics_options_rejects(kwargs: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        MetricsOptions(**kwargs)  # type: ignore[arg-type]
    assert (info.value.source, info.value.path) == ("MetricsOptions", path)


def test_metrics_options_accepts_lists_as_tuples() -> None:
    options = MetricsOptions(buckets=[0.1, 1], queue_buckets=[0.5], exclude=["/x"])  # type: ignore[arg-type]
    assert options.buckets == (0.1, 1)
    assert options.queue_buckets == (0.5,)
    assert options.exclude == ("/x",)
    assert MetricsOptions(interval=60, history=60).history == 60


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"health": "health"}, "health"),
        ({"metrics": "/ready"}, "metrics"),
        ({"ready": ""}, "ready"),
    ],
)
def test_endpoint_paths_rejects(kwargs: dict[str, str], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        EndpointPaths(**kwargs)
    assert (info.value.source, info.value.path) == ("EndpointPaths", path)


def test_endpoint_paths_may_all_be_off() -> None:
    paths = EndpointPaths(health=None, ready=None, scaling=None, metrics=None)
    assert paths.all() == ()
