"""Guards that keep a service up while it grows: rate limits, load shedding, coalescing.

``guard(app)`` wraps an ASGI app in every guard ``scalewise.yaml`` switches on; each guard is
also a middleware of its own (see docs/guards.md).
"""

from __future__ import annotations

from scalewise.guard.setup import guard

__all__ = ["guard"]
