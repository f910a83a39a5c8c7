"""Pick a store by URL: ``sqlite:///scalewise.db`` or ``postgresql://user@host:5432/db``.

An explicit table from scheme to ``"module:Class"`` (no registry filled at import), and the
backend module is imported only when asked for, so SQLite users never need psycopg; a
missing driver is a configuration error that says which extra to install.
"""

from __future__ import annotations

import importlib
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from scalewise.errors import ConfigError
from scalewise.store.base import Store

DEFAULT_URL: Final = "sqlite:///scalewise.db"

BACKENDS: Final[dict[str, str]] = {
    "sqlite": "scalewise.store.sqlite:SQLiteStore",
    "postgresql": "scalewise.store.postgres:PostgresStore",
    "postgres": "scalewise.store.postgres:PostgresStore",
}
#: scheme -> the extra that installs its driver.
EXTRAS: Final[dict[str, str]] = {"postgresql": "postgres", "postgres": "postgres"}


def redact(url: str) -> str:
    """``url`` without its password, for error messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparsable url>"


def store_from_url(url: str = DEFAULT_URL) -> Store:
    """The store ``url`` names, not yet connected (it connects and creates its schema on use).

    Example:
        >>> store = store_from_url("sqlite:///:memory:")
        >>> store.read_snapshots(0, 1e12)
        []
    """
    scheme, sep, _ = url.partition("://")
    target = BACKENDS.get(scheme.lower()) if sep else None
    if target is None:
        raise ConfigError(
            "store",
            "url",
            "a URL like 'sqlite:///scalewise.db' or 'postgresql://user@127.0.0.1:5432/db'",
            redact(url),
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] == "scalewise":
            raise
        extra = EXTRAS.get(scheme.lower(), scheme.lower())
        raise ConfigError(
            "store",
            "url",
            f"the {scheme}:// driver (pip install 'scalewise[{extra}]')",
            f"module {exc.name!r} is not installed",
        ) from exc
    store: Store = getattr(module, class_name).from_url(url)
    return store
