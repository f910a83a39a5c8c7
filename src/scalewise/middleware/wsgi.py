"""placeholder: being written."""

from __future__ import annotations


class ScalewiseWSGIMiddleware:
    pass
