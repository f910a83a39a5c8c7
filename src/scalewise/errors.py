"""The scalewise exception hierarchy.

::

    ScalewiseError
    ├── ConfigError         a bad value in scalewise.yaml, a SCALEWISE_* variable or an argument
    ├── HistogramError      histograms that cannot be combined or decoded
    ├── RuleError           a rule that cannot be evaluated as written
    ├── StoreError          the history store failed (wraps the driver's error)
    ├── NotifyError         a notification was not delivered after its retries
    ├── ScenarioError       a load-test scenario or threshold that cannot run as written
    │   └── (ConfigError-shaped: file, field path, what was expected)
    ├── LoadTestError       a load test that cannot proceed (target unreachable, no result)
    ├── FitError            a capacity model that cannot be fitted to the data given
    └── GuardError          a guard backend failed and the guard is configured to fail closed

Every error scalewise raises on purpose inherits :class:`ScalewiseError`, so callers can catch
one type. Validation never uses ``assert``.
"""

from __future__ import annotations


class ScalewiseError(Exception):
    """Root of every error scalewise raises on purpose."""


class ConfigError(ScalewiseError, ValueError):
    """A configuration value is wrong; says where it came from, which field, and what was expected.

    Example: ``scalewise.yaml: metrics.interval: expected a duration like '10s', got 'soon'``.
    """

    def __init__(self, source: str, path: str, expected: str, got: object = None) -> None:
        self.source = source
        self.path = path
        self.expected = expected
        self.got = got
        detail = f"expected {expected}"
        if got is not None:
            detail += f", got {got!r}"
        super().__init__(f"{source}: {path}: {detail}")


class HistogramError(ScalewiseError, ValueError):
    """Two histograms with different layouts were combined, or bytes did not decode."""


class StoreError(ScalewiseError):
    """The history store failed (locked, down, corrupt); wraps the driver's error."""


class RuleError(ScalewiseError, ValueError):
    """A rule cannot be evaluated as written (unknown metric, wrong kind of threshold)."""


class NotifyError(ScalewiseError):
    """A notification could not be delivered after its retries."""


class ScenarioError(ConfigError):
    """A load-test scenario, data file or threshold is wrong; names the file and the field.

    Example: ``smoke.yaml: scenarios.main.executor: expected one of constant-vus, ..., got 'fast'``.
    """


class LoadTestError(ScalewiseError):
    """A load test cannot proceed: the target is unreachable, or a result file is unusable."""


class FitError(ScalewiseError, ValueError):
    """A capacity model cannot be fitted: too few points, or the fit does not converge."""


class GuardError(ScalewiseError):
    """A guard's backend failed and the guard is configured to fail closed."""
