"""One request of a scenario: built once, rendered per iteration only when it uses data.

A request without ``${column}`` placeholders becomes one :class:`~scalewise.loadtest.client.Request`
up front, so the hot loop reuses prepared bytes; one with placeholders is rendered from the
iteration's data row (values are URL-encoded in queries, JSON-escaped in JSON bodies).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode, urljoin, urlsplit

from scalewise.errors import ScenarioError
from scalewise.loadtest.bodies import encode_form, encode_json, encode_multipart
from scalewise.loadtest.client import Request
from scalewise.units import parse_duration

_PLACEHOLDER: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class ThinkTime:
    """Pause after a request: fixed (``1s``) or uniform in a range (``0.5s-2s``)."""

    low: float
    high: float

    @classmethod
    def parse(cls, value: str | float) -> ThinkTime:
        text = str(value).strip()
        parts = text.split("-", 1) if "-" in text[1:] else [text]
        try:
            bounds = [parse_duration(p.strip()) for p in parts]
        except ValueError:
            raise ValueError("a pause like '1s' or a range like '0.5s-2s'") from None
        low, high = bounds[0], bounds[-1]
        if low < 0 or high < low:
            raise ValueError("a pause like '1s' or a range like '0.5s-2s' (low ≤ high)")
        return cls(low, high)

    def draw(self, rng: random.Random) -> float:
        return self.low if self.high == self.low else rng.uniform(self.low, self.high)


@dataclass(frozen=True, slots=True)
class Checks:
    """k6-style checks on a response; each failed check counts in the ``checks`` rate."""

    status: tuple[int, ...] = ()
    body_contains: str | None = None
    body_matches: re.Pattern[str] | None = None

    @property
    def need_body(self) -> bool:
        return self.body_contains is not None or self.body_matches is not None

    def run(self, status: int, body: bytes | None) -> list[tuple[str, bool]]:
        """(check name, passed) pairs, named as k6 names checks in its summary."""
        out: list[tuple[str, bool]] = []
        if self.status:
            out.append((f"status in {list(self.status)}", status in self.status))
        text = (body or b"").decode("utf-8", "replace") if self.need_body else ""
        if self.body_contains is not None:
            out.append((f"body contains {self.body_contains!r}", self.body_contains in text))
        if self.body_matches is not None:
            ok = self.body_matches.search(text) is not None
            out.append((f"body matches /{self.body_matches.pattern}/", ok))
        return out


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """A request as the scenario describes it; :meth:`render` makes the wire request."""

    name: str
    weight: float
    fixed: Request | None
    template: Callable[[Mapping[str, str]], Request] | None
    checks: Checks | None = None
    think_time: ThinkTime | None = None

    def render(self, row: Mapping[str, str] | None) -> Request:
        if self.fixed is not None:
            return self.fixed
        assert self.template is not None
        return self.template(row or {})

    @classmethod
    def build(
        cls,
        *,
        name: str,
        method: str,
        url: str,
        target: str,
        headers: Sequence[tuple[str, str]] = (),
        query: Mapping[str, Any] | None = None,
        json_body: Any = None,
        form: Mapping[str, Any] | None = None,
        files: Sequence[tuple[str, Path]] | None = None,
        body: str | None = None,
        weight: float = 1.0,
        checks: Checks | None = None,
        think_time: ThinkTime | None = None,
        where: tuple[str, str] = ("(flags)", "url"),
    ) -> RequestSpec:
        absolute = _absolute(url, target, where)
        parts = (absolute, headers, query, json_body, form, body)
        templated = _PLACEHOLDER.search(json.dumps(parts, default=str)) is not None

        def make(row: Mapping[str, str]) -> Request:
            def sub(text: str, escape: Callable[[str], str] = str) -> str:
                return _PLACEHOLDER.sub(lambda m: escape(row.get(m.group(1), m.group(0))), text)

            full = sub(absolute)
            if query:
                q = urlencode(_walk(query, sub), doseq=True)
                full += ("&" if urlsplit(full).query else "?") + q
            head = [(k, sub(v)) for k, v in headers]
            content_type, payload = None, b""
            if json_body is not None:
                content_type, payload = encode_json(_walk(json_body, sub))
            elif files:
                content_type, payload = encode_multipart(_walk(form or {}, sub), files)
            elif form is not None:
                content_type, payload = encode_form(_walk(form, sub))
            elif body is not None:
                payload = sub(body).encode()
            if content_type and not any(k.lower() == "content-type" for k, _ in head):
                head.append(("Content-Type", content_type))
            return Request(method, full, tuple(head), payload, name)

        fixed = None if templated else make({})
        return cls(name, weight, fixed, make if templated else None, checks, think_time)


def _walk(value: Any, sub: Callable[[str], str]) -> Any:
    """Substitute placeholders in every string of a JSON-like value, keeping its shape."""
    if isinstance(value, str):
        return sub(value)
    if isinstance(value, Mapping):
        return {k: _walk(v, sub) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, sub) for v in value]
    return value


def _absolute(url: str, target: str, where: tuple[str, str]) -> str:
    full = urljoin(target.rstrip("/") + "/", url.lstrip("/")) if "://" not in url else url
    parts = urlsplit(full)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ScenarioError(where[0], where[1], "an http:// or https:// URL with a host", full)
    return full


def weighted_cycle(weights: Sequence[float], length: int = 1000) -> tuple[int, ...]:
    """Indices in proportion to ``weights``, interleaved (smooth weighted round-robin).

    A fixed cycle rather than a random draw per iteration: the mix is exact over any run
    long enough to go round once, and costs one index per iteration.
    """
    total = sum(weights)
    current = [0.0] * len(weights)
    out = []
    for _ in range(min(length, max(len(weights), round(total / min(weights)) * 10))):
        for i, w in enumerate(weights):
            current[i] += w
        best = max(range(len(weights)), key=current.__getitem__)
        current[best] -= total
        out.append(best)
    return tuple(out)
