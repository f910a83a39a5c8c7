"""Request bodies for scenarios: JSON, urlencoded forms and multipart uploads, encoded once.

Each encoder returns ``(content_type, body)`` so the caller adds one header and hands the bytes
to :class:`scalewise.loadtest.client.Request`; the body is built when the scenario is prepared,
not on every send.

Example::

    files = [("files", "a.jpg"), ("files", "b.jpg")]
    content_type, body = encode_multipart({"album": "trip"}, files)
    Request("POST", url, (("Content-Type", content_type),), body)
"""

from __future__ import annotations

import json
import mimetypes
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import urlencode

from scalewise.errors import LoadTestError

__all__ = ["encode_form", "encode_json", "encode_multipart"]

Fields: TypeAlias = Mapping[str, Any] | Iterable[tuple[str, Any]]
Files: TypeAlias = Mapping[str, "str | Path"] | Iterable[tuple[str, "str | Path"]]


def _pairs(items: Fields | Files | None) -> list[tuple[str, Any]]:
    """Mappings and pair lists alike; pair lists allow one name several times (10 files)."""
    if items is None:
        return []
    if isinstance(items, Mapping):
        return list(items.items())
    return list(items)


def encode_json(value: Any) -> tuple[str, bytes]:
    """Compact UTF-8 JSON; a value JSON cannot represent is a LoadTestError, not a TypeError."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LoadTestError(f"cannot encode the request body as JSON: {exc}") from None
    return "application/json", text.encode("utf-8")


def encode_form(fields: Fields) -> tuple[str, bytes]:
    """``application/x-www-form-urlencoded``, as a browser submits a form."""
    pairs = [(name, _text(value)) for name, value in _pairs(fields)]
    return "application/x-www-form-urlencoded", urlencode(pairs).encode("ascii")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _quote(name: str) -> str:
    """Escape a name or filename for a Content-Disposition parameter (WHATWG HTML rules)."""
    return name.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")


def _file_part(name: str, path: str | Path) -> tuple[bytes, bytes]:
    """(part headers, content) of one file; a missing file is a clear LoadTestError."""
    file = Path(path)
    try:
        content = file.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise LoadTestError(
            f"cannot read upload file {str(file)!r} for field {name!r}: {reason}"
        ) from None
    content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    head = (
        f'Content-Disposition: form-data; name="{_quote(name)}"; filename="{_quote(file.name)}"'
        f"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    return head.encode("utf-8"), content


def encode_multipart(
    fields: Fields | None = None, files: Files | None = None, *, boundary: str | None = None
) -> tuple[str, bytes]:
    """``multipart/form-data`` with text fields first, then files read from their paths.

    ``boundary`` is random unless given (tests pass one to compare bytes); a boundary that
    occurs inside a file would corrupt the body, so a random one is checked and redrawn.
    """
    parts: list[tuple[bytes, bytes]] = []
    for name, value in _pairs(fields):
        head = f'Content-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'
        parts.append((head.encode("utf-8"), _text(value).encode("utf-8")))
    parts.extend(_file_part(name, path) for name, path in _pairs(files))
    chosen = boundary or _boundary()
    for _ in range(8):
        if not any(chosen.encode() in content for _, content in parts):
            break
        if boundary is not None:
            raise LoadTestError(f"multipart boundary {boundary!r} occurs inside a part")
        chosen = _boundary()
    marker = b"--" + chosen.encode("ascii")
    body = b"".join(marker + b"\r\n" + head + content + b"\r\n" for head, content in parts)
    return f"multipart/form-data; boundary={chosen}", body + marker + b"--\r\n"


def _boundary() -> str:
    return "scalewise-" + secrets.token_hex(16)
