"""Load ``scalewise.yaml`` and ``SCALEWISE_*`` variables into one validated config.

Layers, later wins per field: model defaults < the file < the environment. Every problem found
is reported in one :class:`~scalewise.errors.ConfigError` that names where the value came from
(the file, or ``environment variable SCALEWISE_METRICS_INTERVAL``), the field path, what was
expected and what was got; further problems follow on their own lines.

Nothing is read at import: ``env=None`` means ``os.environ`` as it is when :func:`load_config`
runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, NamedTuple

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from scalewise.config.model import ScalewiseConfig, sections
from scalewise.errors import ConfigError

ENV_PREFIX: Final = "SCALEWISE_"
#: Names the config file; an explicit ``path`` argument wins over it.
CONFIG_ENV: Final = "SCALEWISE_CONFIG"
#: Read from the working directory when neither ``path`` nor ``$SCALEWISE_CONFIG`` is given.
DEFAULT_CONFIG_FILE: Final = "scalewise.yaml"

#: Short names in the seeds' flat style (``MAX_CONCURRENT``, ``CLEANUP_INTERVAL``) for the
#: settings changed most often. The full ``SCALEWISE_<SECTION>_<FIELD>`` name wins if both are
#: set. There is no ``SCALEWISE_METRICS_PATH``: it would read as a field of ``metrics:``.
ENV_ALIASES: Final[Mapping[str, tuple[str, str]]] = MappingProxyType(
    {
        "SCALEWISE_INTERVAL": ("metrics", "interval"),
        "SCALEWISE_HISTORY": ("metrics", "history"),
        "SCALEWISE_MAX_ROUTES": ("metrics", "max_routes"),
        "SCALEWISE_MAX_SERIES": ("metrics", "max_series"),
        "SCALEWISE_TOP_ROUTES": ("metrics", "top_routes"),
        "SCALEWISE_BUCKETS": ("metrics", "buckets"),
        "SCALEWISE_EXCLUDE": ("metrics", "exclude"),
        "SCALEWISE_MULTIPROCESS_DIR": ("metrics", "multiprocess_dir"),
        "SCALEWISE_FLUSH_INTERVAL": ("metrics", "flush_interval"),
        "SCALEWISE_RESPONSE_TIME_HEADER": ("metrics", "response_time_header"),
        "SCALEWISE_HEALTH_PATH": ("endpoints", "health"),
        "SCALEWISE_READY_PATH": ("endpoints", "ready"),
        "SCALEWISE_SCALING_PATH": ("endpoints", "scaling"),
        # The seeds' guard settings (000: MAX_CONCURRENT_REQUESTS, REQUEST_TIMEOUT_SECONDS,
        # MAX_UPLOAD_SIZE_MB; 001: MAX_CACHE_ENTRIES, MAX_CACHE_SIZE_MB), with units.
        "SCALEWISE_MAX_CONCURRENT_REQUESTS": ("guards", "max_concurrent"),
        "SCALEWISE_REQUEST_TIMEOUT": ("guards", "request_timeout"),
        "SCALEWISE_MAX_UPLOAD_SIZE": ("guards", "max_body"),
        "SCALEWISE_MAX_CACHE_ENTRIES": ("guards", "cache_max_entries"),
        "SCALEWISE_MAX_CACHE_SIZE": ("guards", "cache_max_bytes"),
        "SCALEWISE_RATE_LIMIT": ("guards", "rate_limit"),
    }
)

_FILE: Final = "(file)"
#: pydantic's own error types, in the words of the rest of scalewise's messages.
_EXPECTED_BY_TYPE: Final[Mapping[str, str]] = MappingProxyType(
    {
        "bool_parsing": "true or false",
        "bool_type": "true or false",
        "int_type": "a whole number",
        "string_type": "a string",
        "tuple_type": "a list",
        "list_type": "a list",
        "model_type": "a mapping of keys to values",
        "model_attributes_type": "a mapping of keys to values",
        "dict_type": "a mapping of keys to values",
    }
)


class _Problem(NamedTuple):
    source: str
    path: str
    expected: str
    got: object


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> ScalewiseConfig:
    """Defaults, then the file, then ``SCALEWISE_*`` variables; one ConfigError lists all faults.

    The file is ``path``, else ``$SCALEWISE_CONFIG``, else ``./scalewise.yaml`` if it exists,
    else none. A file named explicitly (either way) must exist.
    """
    environ = os.environ if env is None else env
    file = _choose_file(path, environ)
    data = _read_file(file) if file is not None else {}
    origins = _file_origins(data, str(file)) if file is not None else {}
    problems = _apply_env(data, environ, origins)
    fallback = " and ".join(dict.fromkeys(origins.values())) or "defaults"
    try:
        config = ScalewiseConfig.model_validate(data)
    except ValidationError as exc:
        problems += [_from_pydantic(err, origins, fallback) for err in exc.errors()]
    if problems:
        raise _combined(problems)
    try:
        config.metrics_options()  # rules across fields live in the runtime dataclasses
    except ConfigError as exc:
        raise _combined([_from_options(exc, origins, fallback)]) from None
    return config


def _choose_file(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path | None:
    if path is not None:
        return Path(path)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def _read_file(file: Path) -> dict[str, Any]:
    """The file's top-level mapping; unreadable files and bad YAML stop here, with the line."""
    source = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        got = exc.strerror or str(exc)
        raise ConfigError(source, _FILE, "an existing, readable YAML file", got) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, _FILE, "UTF-8 text", f"byte {exc.start}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else _FILE
        raise ConfigError(source, where, f"valid YAML ({exc.problem or exc.context})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, _FILE, "valid YAML", str(exc)) from None
    if data is None:  # an empty file means "all defaults"
        return {}
    if not isinstance(data, dict):
        expected = "a mapping of sections such as 'metrics:'"
        raise ConfigError(source, "(top level)", expected, type(data).__name__)
    return data


def _file_origins(data: Mapping[Any, Any], source: str) -> dict[tuple[Any, ...], str]:
    origins: dict[tuple[Any, ...], str] = {}
    for key, value in data.items():
        origins[(key,)] = source
        if isinstance(value, dict):
            origins.update({(key, field): source for field in value})
    return origins


def _apply_env(
    data: dict[str, Any], environ: Mapping[str, str], origins: dict[tuple[Any, ...], str]
) -> list[_Problem]:
    """Overlay ``SCALEWISE_*`` values on ``data``; an unknown field in a known section is a typo."""
    known = sections()
    problems: list[_Problem] = []
    entries: list[tuple[int, str, str, str]] = []  # (priority, variable, section, field)
    for name in environ:
        if name in ENV_ALIASES:
            entries.append((0, name, *ENV_ALIASES[name]))
            continue
        target = _env_target(name, known)
        if target is None:
            continue
        section, field = target
        if field in known[section].model_fields:
            entries.append((1, name, section, field))
        else:
            source = f"environment variable {name}"
            problems.append(_unknown_key(source, (section, field), known[section]))
    for _, name, section, field in sorted(entries):
        current = data.get(section)
        if current is not None and not isinstance(current, dict):
            continue  # the file's section is malformed; validation reports that instead
        data[section] = {**(current or {}), field: environ[name].strip()}
        origins[(section, field)] = f"environment variable {name}"
    return problems


def _env_target(name: str, known: Mapping[str, type[BaseModel]]) -> tuple[str, str] | None:
    """``SCALEWISE_METRICS_MAX_ROUTES`` → ``("metrics", "max_routes")``; None if no section."""
    if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
        return None
    rest = name.removeprefix(ENV_PREFIX)
    for section in sorted(known, key=len, reverse=True):  # longest first: "store_x" before "store"
        head = f"{section.upper()}_"
        if rest.startswith(head):
            return section, rest.removeprefix(head).lower()
    return None


def _unknown_key(source: str, loc: Sequence[Any], model: type[BaseModel]) -> _Problem:
    expected = f"one of the known keys: {', '.join(model.model_fields)}"
    return _Problem(source, _dotted(loc), expected, loc[-1])


def _from_pydantic(
    err: ErrorDetails, origins: Mapping[tuple[Any, ...], str], fallback: str
) -> _Problem:
    loc = err["loc"]
    source = origins.get(tuple(loc[:2])) or origins.get(tuple(loc[:1])) or fallback
    if err["type"] == "extra_forbidden":
        model = sections().get(str(loc[0]), ScalewiseConfig) if len(loc) > 1 else ScalewiseConfig
        return _unknown_key(source, loc, model)
    ctx = err.get("ctx") or {}
    expected = ctx.get("expected") or _EXPECTED_BY_TYPE.get(err["type"])
    if not expected:
        expected = err["msg"].removeprefix("Input should be ")
    return _Problem(source, _dotted(loc), str(expected), err["input"])


def _from_options(
    exc: ConfigError, origins: Mapping[tuple[Any, ...], str], fallback: str
) -> _Problem:
    """Re-aim a dataclass error (``buckets[2]``) at its config path (``metrics.buckets[2]``)."""
    section = "endpoints" if exc.source == "EndpointPaths" else "metrics"
    field = exc.path.split("[", 1)[0]
    source = origins.get((section, field), fallback)
    return _Problem(source, f"{section}.{exc.path}", exc.expected, exc.got)


def _dotted(loc: Sequence[Any]) -> str:
    """``("metrics", "buckets", 2)`` → ``"metrics.buckets[2]"``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _combined(problems: Sequence[_Problem]) -> ConfigError:
    """One error: the first problem in its attributes, every problem on its own line."""
    error = ConfigError(*problems[0])
    if len(problems) > 1:
        error.args = ("\n".join(str(ConfigError(*problem)) for problem in problems),)
    return error
