"""Request queue time from ``X-Request-Start`` / ``X-Queue-Start``.

Heroku sets ``X-Request-Start: 1700000000123`` (ms), nginx ``t=1700000000.123`` (s, via
``$msec``), others ``t=1700000000123456`` (µs) or nanoseconds. The unit is recognised by the
number's magnitude, as Judoscale and New Relic do. Negative results (clock skew between the
router and this host) count as 0; absurd ones (over an hour) are ignored.
"""

from __future__ import annotations

from typing import Final

#: A set: the middleware tests every request header name against it.
HEADERS: Final = frozenset((b"x-request-start", b"x-queue-start"))
MAX_QUEUE: Final = 3600.0
#: Scanning a request's headers costs more than the rest of the ASGI middleware's work once
#: there are ten of them, and most apps sit behind no router that sets these headers. So
#: after this many scans in a row find none, the middleware scans one request in
#: ``QUEUE_PROBE_EVERY`` until one does; then it scans every request again. Traffic that
#: carries the header now and then (a router in front of some routes) keeps being scanned.
QUEUE_MISSES_BEFORE_PROBING: Final = 1000
QUEUE_PROBE_EVERY: Final = 64


def parse_request_start(value: bytes | str, now: float) -> float | None:
    """Seconds the request waited before ``now`` (wall clock), or ``None`` if unparsable."""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if text.startswith("t="):
        text = text[2:]
    try:
        stamp = float(text)
    except ValueError:
        return None
    if stamp > 1e17:
        stamp /= 1e9  # nanoseconds
    elif stamp > 1e14:
        stamp /= 1e6  # microseconds
    elif stamp > 1e11:
        stamp /= 1e3  # milliseconds
    waited = now - stamp
    if waited > MAX_QUEUE or stamp <= 0:
        return None
    return max(0.0, waited)
