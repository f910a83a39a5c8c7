"""The shared store: the same schema and SQL as SQLite, in PostgreSQL through psycopg 3.

For a fleet whose instances write to one history. Histograms are BYTEA, times DOUBLE
PRECISION, JSON kept as TEXT (``jsonb`` refuses the NaN a gauge can hold). One connection
per store, used under a lock and reopened after the server went away; a ``schema`` keeps
several services (or test runs) apart in one database.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from scalewise.errors import ConfigError, StoreError
from scalewise.store.sqlite import SCHEMA_VERSION, Cursor, SQLStore

#: Serialises schema creation between stores starting at once (any constant would do).
_SCHEMA_LOCK_KEY: Final = 0x5CA1E_0001
DEFAULT_CONNINFO: Final = "postgresql://postgres@127.0.0.1:5432/postgres"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class _QmarkCursor:
    """Runs the shared ``?``-placeholder SQL on a psycopg cursor (``%s`` placeholders)."""

    __slots__ = ("_cur",)

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    def execute(self, query: str, params: Sequence[Any] = (), /) -> _QmarkCursor:
        self._cur.execute(query.replace("?", "%s").encode(), params)
        return self

    def executemany(self, query: str, params: Iterable[Sequence[Any]], /) -> _QmarkCursor:
        self._cur.executemany(query.replace("?", "%s").encode(), params)
        return self

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()


class PostgresStore(SQLStore):
    """History in PostgreSQL; ``conninfo`` is a libpq URL or key=value string."""

    TYPES = {
        "real": "DOUBLE PRECISION",
        "int": "BIGINT",
        "blob": "BYTEA",
        "bool": "BOOLEAN",
        "serial": "BIGSERIAL PRIMARY KEY",
    }

    def __init__(
        self,
        conninfo: str = DEFAULT_CONNINFO,
        *,
        schema: str | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self.conninfo = conninfo
        self.schema = schema
        self.connect_timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None
        try:
            params = conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as exc:
            raise ConfigError("store", "url", "a PostgreSQL URL", _one_line(exc)) from None
        host = str(params.get("host") or params.get("hostaddr") or "localhost")
        self._where = f"postgres at {host}:{params.get('port') or 5432}"

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        """``postgresql://user@host:5432/db?schema=name&connect_timeout=5`` (libpq options pass)."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        schema = query.pop("schema", None)
        raw_timeout = query.pop("connect_timeout", "5")
        try:
            timeout = float(raw_timeout)
        except ValueError:
            raise ConfigError("store", "url.connect_timeout", "seconds", raw_timeout) from None
        conninfo = urlunsplit(parts._replace(query=urlencode(query)))
        return cls(conninfo, schema=schema, connect_timeout=timeout)

    def describe(self) -> str:
        return self._where + (f" (schema {self.schema})" if self.schema else "")

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(
                self.conninfo,
                autocommit=True,
                connect_timeout=max(1, math.ceil(self.connect_timeout)),
            )
        except psycopg.Error as exc:
            raise StoreError(f"{self._where} unreachable: {_one_line(exc)}") from exc
        try:
            if self.schema:
                conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            self._ensure_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            # CREATE … IF NOT EXISTS races in PostgreSQL; one creator at a time.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            if self.schema:
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
                )
            exists = conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()
            if not (exists and exists[0]):
                for statement in self.schema_statements():
                    conn.execute(statement.encode())
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', %s)"
                    " ON CONFLICT (key) DO NOTHING",
                    (str(SCHEMA_VERSION),),
                )
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        self.check_version(None if row is None else str(row[0]))

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self._conn.close()
            self._conn = None
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[Cursor]:
        with self._lock:
            try:
                conn = self._connection()
                with conn.cursor() as raw:
                    if write:
                        with conn.transaction():
                            yield _QmarkCursor(raw)
                    else:
                        yield _QmarkCursor(raw)
            except psycopg.Error as exc:
                # A server that went away mid-call breaks the connection; the next call
                # reconnects (see _connection).
                lost = self._conn is None or self._conn.broken
                state = " unreachable" if lost else ""
                raise StoreError(f"{self.describe()}{state}: {_one_line(exc)}") from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
