"""Route templates for labels (``/items/{id}``, never ``/items/42``), per framework.

A resolver gets the ASGI scope (or a WSGI environ wrapped as a mapping) *after* the app ran,
when routers have annotated it, and returns a template or ``None``. Lookups that cost a
router match (Django, Werkzeug) are cached in a bounded LRU keyed by the raw path, so a flood
of unique URLs cannot grow memory; the recorder's route cap bounds the labels themselves.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Final

RouteResolver = Callable[[Mapping[str, Any]], "str | None"]

_ID_SEGMENT: Final = re.compile(
    r"^(?:\d+|[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
    r"|(?=[^/]*\d)[0-9a-fA-F]{8,}|[A-Za-z0-9_-]{25,})$"
)
CACHE_SIZE: Final = 2048


class _LRU:
    """A tiny bounded cache; ``functools.lru_cache`` cannot key on scope-derived values."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self.data: OrderedDict[tuple[str, str], str | None] = OrderedDict()

    def get(self, key: tuple[str, str], compute: Callable[[], str | None]) -> str | None:
        try:  # one lookup, safe against another thread evicting the key meanwhile
            value = self.data[key]
            self.data.move_to_end(key)
            return value
        except KeyError:
            pass
        value = compute()
        self.data[key] = value
        if len(self.data) > self.size:
            self.data.popitem(last=False)
        return value


def normalize_path(path: str) -> str:
    """A guessed template for frameworks we cannot ask: ids, UUIDs, hashes → ``{id}``."""
    return "/".join("{id}" if _ID_SEGMENT.match(part) else part for part in path.split("/"))


class StarletteRoutes:
    """Starlette and FastAPI put the matched route in ``scope["route"]``; mounts extend
    ``root_path``, so the template is the mount prefix plus the route's own path.

    Templates are cached per route object (routes are few and live as long as the app), so
    the request path pays one dict lookup instead of attribute probing.
    """

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self.cache: dict[tuple[int, str], tuple[object, str | None]] = {}
        #: Routes outside any mount whose template is known: ``id(route) -> (route, template)``.
        #: The ASGI middleware reads this directly (one dict lookup, no call).
        self.plain: dict[int, tuple[object, str]] = {}

    def __call__(self, scope: Mapping[str, Any], root_path: str = "") -> str | None:
        route = scope.get("route")
        if route is None:
            return None
        prefix = scope.get("root_path", "")
        # Without mounts root_path is the very object captured at entry: no slicing then.
        prefix = str(prefix)[len(root_path) :] if prefix is not root_path else ""
        key = (id(route), prefix)
        hit = self.cache.get(key)
        if hit is not None and hit[0] is route:
            return hit[1]
        template = self._template(route, prefix)
        if len(self.cache) >= self.size:
            self.cache.clear()
            self.plain.clear()
        self.cache[key] = (route, template)
        if template is not None and not prefix:
            self.plain[id(route)] = (route, template)
        return template

    @staticmethod
    def _template(route: object, prefix: str) -> str | None:
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            return None
        if hasattr(route, "routes") or type(route).__name__ == "Mount":
            return (prefix or path) + "/{path}"
        return prefix + path if prefix else path


def django_resolver() -> RouteResolver:
    """Django: ``django.urls.resolve(path).route`` (``items/<int:pk>/``), cached per path."""
    from django.urls import Resolver404, resolve  # noqa: PLC0415 - only for Django apps

    cache = _LRU()

    def compute(path: str) -> str | None:
        try:
            match = resolve(path)
        except Resolver404:
            return None
        return "/" + match.route if match.route is not None else None

    def resolver(scope: Mapping[str, Any]) -> str | None:
        path = str(scope.get("path") or scope.get("PATH_INFO") or "/")
        return cache.get(("", path), lambda: compute(path))

    return resolver


def werkzeug_resolver(app: Any) -> RouteResolver:
    """Flask and Quart: match the path against ``app.url_map`` and return ``rule.rule``."""
    cache = _LRU()

    def compute(method: str, path: str) -> str | None:
        try:
            adapter = app.url_map.bind("localhost")
            rule, _ = adapter.match(path, method=method, return_rule=True)
        except Exception:  # NotFound, MethodNotAllowed, RequestRedirect: no template
            return None
        return str(rule.rule)

    def resolver(scope: Mapping[str, Any]) -> str | None:
        request = scope.get("werkzeug.request")  # Flask's request object, set in the environ
        rule = getattr(request, "url_rule", None)
        if rule is not None:
            return str(rule.rule)
        method = str(scope.get("method") or scope.get("REQUEST_METHOD") or "GET")
        path = str(scope.get("path") or scope.get("PATH_INFO") or "/")
        return cache.get((method, path), lambda: compute(method, path))

    return resolver


def resolver_for(app: Any) -> RouteResolver | None:
    """Pick a resolver by looking at the wrapped application's type (``None``: use scope)."""
    module = type(app).__module__
    if module.startswith("django."):
        return django_resolver()
    if hasattr(app, "url_map") and hasattr(app.url_map, "bind"):
        return werkzeug_resolver(app)
    return None
