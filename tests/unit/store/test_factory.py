"""store_from_url: schemes, SQLite paths and options, and the errors a bad URL gives."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from scalewise.errors import ConfigError
from scalewise.store.factory import DEFAULT_URL, redact, store_from_url
from scalewise.store.sqlite import SQLiteStore


@pytest.mark.parametrize(
    ("url", "path", "timeout"),
    [
        ("sqlite:///scalewise.db", "scalewise.db", 5.0),
        ("sqlite:///data/history.db?busy_timeout=0.5", "data/history.db", 0.5),
        ("sqlite:////var/lib/scalewise/h.db", "/var/lib/scalewise/h.db", 5.0),
        ("sqlite:///my%20history.db", "my history.db", 5.0),
        ("sqlite:///:memory:", ":memory:", 5.0),
    ],
)
def test_sqlite_urls(url: str, path: str, timeout: float) -> None:
    store = store_from_url(url)
    assert isinstance(store, SQLiteStore)
    assert (store.path, store.busy_timeout) == (path, timeout)


def test_the_default_is_a_file_in_the_working_directory() -> None:
    store = store_from_url()
    assert DEFAULT_URL == "sqlite:///scalewise.db"
    assert isinstance(store, SQLiteStore)
    assert store.path == "scalewise.db"


def test_nothing_is_created_until_first_use(tmp_path: Path) -> None:
    path = tmp_path / "lazy.db"
    store = store_from_url(f"sqlite:///{path}")
    assert not path.exists()
    assert store.read_snapshots(0, 1) == []
    assert path.exists()
    store.close()


def test_the_docstring_example_works() -> None:
    store = store_from_url("sqlite:///:memory:")
    assert store.read_snapshots(0, 1e12) == []
    store.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/db", "expected a URL like 'sqlite:///scalewise.db'"),
        ("scalewise.db", "expected a URL like"),
        ("sqlite://host/file.db", "three slashes"),
        ("sqlite:///", "three slashes"),
        ("sqlite:///x.db?journal=off", "only the option busy_timeout"),
        ("sqlite:///x.db?busy_timeout=soon", "url.busy_timeout: expected seconds"),
    ],
)
def test_bad_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        store_from_url(url)
    assert str(info.value).startswith("store: url")


def test_a_password_never_reaches_the_message() -> None:
    with pytest.raises(ConfigError) as info:
        store_from_url("mongodb://admin:s3cret@127.0.0.1/db")
    assert "s3cret" not in str(info.value)
    assert redact("postgresql://u:pw@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert redact("postgresql://u@h/d") == "postgresql://u@h/d"


def test_a_missing_postgres_driver_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` now fails
    monkeypatch.delitem(sys.modules, "scalewise.store.postgres", raising=False)
    with pytest.raises(ConfigError, match=r"pip install 'scalewise\[postgres\]'") as info:
        store_from_url("postgresql://postgres@127.0.0.1:5432/test")
    assert "psycopg" in str(info.value)
    assert "\n" not in str(info.value)


def test_postgres_urls_pass_libpq_options_and_take_a_schema() -> None:
    pytest.importorskip("psycopg", reason="psycopg not installed (scalewise[postgres])")
    from scalewise.store.postgres import PostgresStore

    store = store_from_url(
        "postgresql://postgres@127.0.0.1:5433/test?schema=svc&connect_timeout=2&sslmode=disable"
    )
    assert isinstance(store, PostgresStore)
    assert store.schema == "svc"
    assert store.connect_timeout == 2.0
    assert store.conninfo == "postgresql://postgres@127.0.0.1:5433/test?sslmode=disable"
    assert store.describe() == "postgres at 127.0.0.1:5433 (schema svc)"
    assert isinstance(store_from_url("postgres://u@db.internal/x"), PostgresStore)
