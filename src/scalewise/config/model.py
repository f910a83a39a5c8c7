"""The shape of ``scalewise.yaml``: one pydantic model per top-level section.

pydantic is used only here, at the file/environment boundary, because its errors carry field
paths (``metrics.buckets[2]``). Runtime code takes the frozen dataclasses in
:mod:`scalewise.options`, built by :meth:`ScalewiseConfig.metrics_options`.

Custom validators raise ``PydanticCustomError`` with an ``expected`` entry in the context, which
the loader copies into :class:`~scalewise.errors.ConfigError` as it is.

To add a section (``policy:``, ``guards:``, ``store:``): write a ``_Section`` subclass and add
one field to :class:`ScalewiseConfig`. The loader derives ``SCALEWISE_<SECTION>_<FIELD>``
variable names from the model, so nothing else needs to change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from scalewise.config.guards_model import GuardsSection
from scalewise.config.policy_model import PolicySection
from scalewise.options import EndpointPaths, MetricsOptions
from scalewise.policy.model import Policy
from scalewise.store.base import Retention
from scalewise.units import DURATION_EXPECTED, parse_duration

#: Strings meaning "switch this off", as YAML 1.1 and shell users write them.
OFF_WORDS: Final = frozenset({"", "off", "false", "no", "none", "null"})

_METRICS_DEFAULTS: Final = MetricsOptions()
_PATH_DEFAULTS: Final = EndpointPaths()
_POSITIVE_DURATION: Final = f"{DURATION_EXPECTED}, greater than 0"
_ENDPOINT_EXPECTED: Final = "a path starting with '/', or off/null/false to switch it off"


def _fail(expected: str) -> PydanticCustomError:
    # "{expected}" keeps pydantic's own message readable; the loader reads ctx["expected"].
    return PydanticCustomError("scalewise", "expected {expected}", {"expected": expected})


def _positive_duration(value: object) -> float:
    """Seconds from '10s', '5m' or a number; zero would make a rolling window divide by zero."""
    if isinstance(value, str | int | float):
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise _fail(DURATION_EXPECTED) from None
        if seconds > 0:
            return seconds
    raise _fail(_POSITIVE_DURATION)


def _whole(minimum: int) -> Callable[[object], int]:
    expected = f"a whole number of at least {minimum}"

    def check(value: object) -> int:
        # Strings come from environment variables; bools are refused although they are ints.
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise _fail(expected) from None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _fail(expected)
        return value

    return check


def _comma_list(value: object) -> object:
    """Let one string stand for a list, as environment variables must: '0.1, 0.5, 1s'."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",")] if value.strip() else []
    return value


def _non_empty(value: object) -> object:
    value = _comma_list(value)
    if isinstance(value, list | tuple) and not value:
        raise _fail("a non-empty list of durations")
    return value


def _prefix(value: object) -> str:
    if isinstance(value, str) and value.startswith("/"):
        return value
    raise _fail("a path prefix starting with '/'")


def _endpoint(value: object) -> str | None:
    if value is None or value is False:
        return None
    if isinstance(value, str):
        if value.strip().lower() in OFF_WORDS:
            return None
        if value.startswith("/"):
            return value
    raise _fail(_ENDPOINT_EXPECTED)


def _multiprocess_dir(value: object) -> str | None:
    if value is None or value is False:
        return None
    if isinstance(value, str):
        return None if value.strip().lower() in OFF_WORDS else value
    raise _fail("'auto', a directory, or off/null/false to keep figures per worker")


Duration = Annotated[float, PlainValidator(_positive_duration)]
Buckets = Annotated[tuple[Duration, ...], BeforeValidator(_non_empty)]
Prefixes = Annotated[
    tuple[Annotated[str, PlainValidator(_prefix)], ...], BeforeValidator(_comma_list)
]
Endpoint = Annotated[str | None, PlainValidator(_endpoint)]


class _Section(BaseModel):
    """Base of every section: unknown keys are errors, because a typo must not be ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricsSection(_Section):
    """``metrics:``: the fields of :class:`~scalewise.options.MetricsOptions`, in human units.

    Cross-field rules (history vs interval, bucket order) are checked by the dataclass itself.
    """

    interval: Duration = _METRICS_DEFAULTS.interval
    history: Duration = _METRICS_DEFAULTS.history
    max_routes: Annotated[int, PlainValidator(_whole(1))] = _METRICS_DEFAULTS.max_routes
    max_series: Annotated[int, PlainValidator(_whole(12))] = _METRICS_DEFAULTS.max_series
    buckets: Buckets = _METRICS_DEFAULTS.buckets
    queue_buckets: Buckets = _METRICS_DEFAULTS.queue_buckets
    top_routes: Annotated[int, PlainValidator(_whole(0))] = _METRICS_DEFAULTS.top_routes
    queue_time_header: bool = _METRICS_DEFAULTS.queue_time_header
    response_time_header: bool = _METRICS_DEFAULTS.response_time_header
    server_timing_header: bool = _METRICS_DEFAULTS.server_timing_header
    exclude: Prefixes = _METRICS_DEFAULTS.exclude
    multiprocess_dir: Annotated[str | None, PlainValidator(_multiprocess_dir)] = (
        _METRICS_DEFAULTS.multiprocess_dir
    )
    flush_interval: Duration = _METRICS_DEFAULTS.flush_interval
    loop_lag_interval: Duration = _METRICS_DEFAULTS.loop_lag_interval


class EndpointsSection(_Section):
    """``endpoints:``: where scalewise serves its own endpoints; null/false switches one off."""

    health: Endpoint = _PATH_DEFAULTS.health
    ready: Endpoint = _PATH_DEFAULTS.ready
    scaling: Endpoint = _PATH_DEFAULTS.scaling
    metrics: Endpoint = _PATH_DEFAULTS.metrics


def _store_url(value: object) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in OFF_WORDS):
        return None
    if isinstance(value, str) and "://" in value:
        return value.strip()
    raise _fail("a store URL like 'sqlite:///scalewise.db' or 'postgresql://user@host/db'")


class StoreSection(_Section):
    """``store:``: where interval snapshots, rule states and decisions are kept.

    ``url`` unset (the default) keeps the app's figures in memory only; ``scalewise watch``
    and ``replay`` then fall back to ``sqlite:///scalewise.db``.
    """

    url: Annotated[str | None, PlainValidator(_store_url)] = None
    instance: str | None = None  # default: the host name
    retention_raw: Duration = 2 * 86400.0
    retention_minute: Duration = 14 * 86400.0
    retention_ten_minutes: Duration = 400 * 86400.0


class ScalewiseConfig(_Section):
    """The whole of ``scalewise.yaml``; every section is optional and defaults as documented."""

    version: int = Field(default=1, strict=True)
    metrics: MetricsSection = MetricsSection()
    endpoints: EndpointsSection = EndpointsSection()
    store: StoreSection = StoreSection()
    policy: PolicySection | None = None
    guards: GuardsSection = GuardsSection()

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # "metrics:" with nothing under it is YAML null; treat it as an empty section.
        if isinstance(data, dict):
            return {
                key: {} if value is None and key in sections() else value
                for key, value in data.items()
            }
        return data

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        # A newer file format must fail loudly rather than be half-understood.
        if value != 1:
            raise _fail("1, the only file format version this scalewise reads")
        return value

    def metrics_options(self) -> MetricsOptions:
        """The runtime options; raises ConfigError for rules spanning fields (history/interval)."""
        return MetricsOptions(
            **self.metrics.model_dump(), paths=EndpointPaths(**self.endpoints.model_dump())
        )

    def retention(self) -> Retention:
        """The store's retention tiers from ``store.retention_*``."""
        st = self.store
        return Retention(st.retention_raw, st.retention_minute, st.retention_ten_minutes)

    def store_url(self) -> str:
        """The store URL to use for the policy daemon: ``store.url`` or the embedded SQLite."""
        return self.store.url or "sqlite:///scalewise.db"

    def policy_object(self) -> Policy:
        """The ``policy:`` section as a Policy (empty when absent); its problems were raised,
        all at once, by ``load_config``."""
        return Policy() if self.policy is None else self.policy.root


def sections() -> dict[str, type[BaseModel]]:
    """Section name → model, read from :class:`ScalewiseConfig` so new sections need no list."""
    return {
        name: info.annotation
        for name, info in ScalewiseConfig.model_fields.items()
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
    }
