"""The scalewise exception hierarchy.

::

    ScalewiseError
    ├── ConfigError         a bad value in scalewise.yaml, a SCALEWISE_* variable or an argument
    ├── HistogramError      histograms that cannot be combined or decoded
    ├── RuleError           a rule that cannot be evaluated as written
    ├── StoreError          the history store failed (wraps the driver's error)
    └── NotifyError         a notification was not delivered after its retries

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
