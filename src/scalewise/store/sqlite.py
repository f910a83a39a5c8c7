"""The embedded store: one SQLite file in WAL mode, and the SQL both stores share.

:class:`SQLStore` holds everything that is plain SQL (schema, queries, retention), so SQLite
and PostgreSQL run the same statements; a backend supplies a connection, its column types
and how its errors read. Statements use ``?`` placeholders (the PostgreSQL store translates
them). How a snapshot becomes a row, and how rows merge, is in :mod:`.downsample`.

Schema (version 1): ``meta`` (``schema_version``); ``snapshots`` keyed by (start, instance,
worker, resolution), where ``resolution`` is 0 for snapshots as written and 60 or 600 for
the ones retention merged; histograms are :meth:`Histogram.to_bytes` blobs (NULL when
empty), routes and gauges JSON text (NULL when empty); ``rule_states`` one row per rule;
``decisions`` and ``notifications`` append-only with their time indexed.
"""

from __future__ import annotations

import binascii
import json
import math
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ClassVar, Final, Protocol, Self
from urllib.parse import parse_qsl, unquote, urlsplit

from scalewise.errors import ConfigError, HistogramError, StoreError
from scalewise.metrics.windows import IntervalSnapshot
from scalewise.policy.model import Recommendation, RuleState, Status
from scalewise.store.base import NotificationRecord, Retention
from scalewise.store.downsample import Row, bucket_start, merge_rows, row_snapshot, snapshot_row

SCHEMA_VERSION: Final = 1
RAW: Final = 0.0
MINUTE: Final = 60.0
TEN_MINUTES: Final = 600.0
#: Coarse buckets merged per retention transaction: bounds memory and lock time.
CHUNK_BUCKETS: Final = 360

_SNAPSHOT_COLUMNS: Final = (
    "instance, worker, start, resolution, seconds, requests, errors, client_errors, "
    "disconnects, inflight_peak, busy_seconds, latency, ttfb, queue_time, routes, gauges"
)
_RULE_COLUMNS: Final = (
    "rule, status, active_at, fired_at, resolved_at, keep_firing_since, value, evaluated_at"
)
_NOTIFICATION_COLUMNS: Final = "at, receiver, group_key, status, ok, detail"


def _upsert(table: str, columns: str, key: str) -> str:
    names = [c.strip() for c in columns.split(",")]
    keys = {k.strip() for k in key.split(",")}
    updates = ", ".join(f"{n} = excluded.{n}" for n in names if n not in keys)
    marks = ", ".join("?" * len(names))
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({marks}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )


# Time first: range reads and retention walk it; one B-tree instead of a key plus an index.
_SNAPSHOT_KEY: Final = "start, instance, worker, resolution"
_UPSERT_SNAPSHOT: Final = _upsert("snapshots", _SNAPSHOT_COLUMNS, _SNAPSHOT_KEY)
_UPSERT_RULE: Final = _upsert("rule_states", _RULE_COLUMNS, "rule")

SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS snapshots (instance TEXT NOT NULL, worker INTEGER NOT NULL,"
    " start {real} NOT NULL, resolution {real} NOT NULL, seconds {real} NOT NULL,"
    " requests {int} NOT NULL, errors {int} NOT NULL, client_errors {int} NOT NULL,"
    " disconnects {int} NOT NULL, inflight_peak {int} NOT NULL, busy_seconds {real} NOT NULL,"
    " latency {blob}, ttfb {blob}, queue_time {blob}, routes TEXT, gauges TEXT,"
    " PRIMARY KEY (start, instance, worker, resolution))",
    "CREATE TABLE IF NOT EXISTS rule_states (rule TEXT PRIMARY KEY, status TEXT NOT NULL,"
    " active_at {real}, fired_at {real}, resolved_at {real}, keep_firing_since {real},"
    " value {real}, evaluated_at {real})",
    "CREATE TABLE IF NOT EXISTS decisions (id {serial}, at {real} NOT NULL,"
    " action TEXT NOT NULL, data TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS decisions_at ON decisions (at)",
    "CREATE TABLE IF NOT EXISTS notifications (id {serial}, at {real} NOT NULL,"
    " receiver TEXT NOT NULL, group_key TEXT NOT NULL, status TEXT NOT NULL,"
    " ok {bool} NOT NULL, detail TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS notifications_at ON notifications (at)",
)


class Cursor(Protocol):
    """The DB-API cursor subset the shared SQL uses (sqlite3 and psycopg both have it)."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


# -- policy records ----------------------------------------------------------------------


def recommendation_from_dict(data: Mapping[str, Any]) -> Recommendation:
    """Inverse of :meth:`Recommendation.to_dict` (the contract has no ``from_dict`` yet)."""
    return Recommendation(
        action=data["action"],
        kind=data["kind"],
        at=float(data["at"]),
        current_plan=data.get("current_plan"),
        target_plan=data.get("target_plan"),
        current_instances=int(data["current_instances"]),
        target_instances=int(data["target_instances"]),
        cost_before=data.get("cost_before"),
        cost_after=data.get("cost_after"),
        firing=tuple(data.get("firing", ())),
        values=dict(data.get("values", {})),
        reasons=tuple(data.get("reasons", ())),
        missing=tuple(data.get("missing", ())),
        cooldown_until=data.get("cooldown_until"),
    )


def _rule_row(s: RuleState) -> tuple[Any, ...]:
    times = (s.active_at, s.fired_at, s.resolved_at, s.keep_firing_since)
    return (s.rule, s.status.value, *times, s.value, s.evaluated_at)


class SQLStore(ABC):
    """The :class:`~scalewise.store.base.Store` protocol in plain SQL; thread-safe by a lock."""

    #: Column types for the ``{real}``, ``{int}``, ``{blob}``, ``{bool}``, ``{serial}`` slots.
    TYPES: ClassVar[Mapping[str, str]]

    def __init__(self) -> None:
        self._lock = threading.RLock()

    @abstractmethod
    def _transaction(self, write: bool = True) -> AbstractContextManager[Cursor]:
        """A cursor inside one transaction; driver errors leave it as StoreError."""

    @abstractmethod
    def describe(self) -> str:
        """Where the data lives, for error messages (never a password)."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_statements(self) -> list[str]:
        return [statement.format(**self.TYPES) for statement in SCHEMA]

    def check_version(self, found: str | None) -> None:
        if found is not None and int(found) != SCHEMA_VERSION:
            raise StoreError(
                f"{self.describe()}: schema version {found}, this scalewise reads version "
                f"{SCHEMA_VERSION} (was it written by a newer scalewise?)"
            )

    @contextmanager
    def _decoding(self) -> Iterator[None]:
        try:
            yield
        except (HistogramError, binascii.Error, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{self.describe()}: a stored row does not decode: {exc}") from exc

    # -- snapshots ---------------------------------------------------------------------------

    def write_snapshots(self, instance: str, snapshots: Sequence[IntervalSnapshot]) -> None:
        rows = [snapshot_row(instance, snap, RAW) for snap in snapshots]
        if rows:
            with self._transaction() as cur:
                cur.executemany(_UPSERT_SNAPSHOT, rows)

    def read_snapshots(
        self, start: float, end: float, instance: str | None = None
    ) -> list[IntervalSnapshot]:
        sql = f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots WHERE start >= ? AND start < ?"
        params: list[Any] = [start, end]
        if instance is not None:
            sql += " AND instance = ?"
            params.append(instance)
        with self._transaction(write=False) as cur:
            cur.execute(sql + " ORDER BY start, instance, worker, resolution", params)
            rows = cur.fetchall()
        with self._decoding():
            return [row_snapshot(row) for row in rows]

    def instances(self) -> list[str]:
        """Every instance that has snapshots (``read_snapshots`` does not say whose they are)."""
        with self._transaction(write=False) as cur:
            cur.execute("SELECT DISTINCT instance FROM snapshots ORDER BY instance")
            return [row[0] for row in cur.fetchall()]

    def count_snapshots(self) -> dict[float, int]:
        """Rows per resolution (0 = as written), for status output and the benchmark."""
        with self._transaction(write=False) as cur:
            cur.execute("SELECT resolution, COUNT(*) FROM snapshots GROUP BY resolution")
            return {float(res): int(n) for res, n in cur.fetchall()}

    # -- rule states, decisions, notifications -------------------------------------------------

    def save_rule_states(self, states: Sequence[RuleState]) -> None:
        if states:
            with self._transaction() as cur:
                cur.executemany(_UPSERT_RULE, [_rule_row(s) for s in states])

    def load_rule_states(self) -> dict[str, RuleState]:
        with self._transaction(write=False) as cur:
            cur.execute(f"SELECT {_RULE_COLUMNS} FROM rule_states")
            rows = cur.fetchall()
        with self._decoding():
            return {
                r[0]: RuleState(r[0], Status(r[1]), r[2], r[3], r[4], r[5], r[6], r[7])
                for r in rows
            }

    def record_decision(self, decision: Recommendation) -> None:
        data = json.dumps(decision.to_dict(), separators=(",", ":"))
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO decisions (at, action, data) VALUES (?, ?, ?)",
                (decision.at, decision.action, data),
            )

    def decisions(self, since: float) -> list[Recommendation]:
        with self._transaction(write=False) as cur:
            cur.execute("SELECT data FROM decisions WHERE at >= ? ORDER BY at, id", (since,))
            rows = cur.fetchall()
        with self._decoding():
            return [recommendation_from_dict(json.loads(row[0])) for row in rows]

    def record_notification(self, record: NotificationRecord) -> None:
        r = record
        with self._transaction() as cur:
            cur.execute(
                f"INSERT INTO notifications ({_NOTIFICATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (r.at, r.receiver, r.group_key, r.status, bool(r.ok), r.detail),
            )

    def notifications(self, since: float) -> list[NotificationRecord]:
        with self._transaction(write=False) as cur:
            cur.execute(
                f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE at >= ? ORDER BY at, id",
                (since,),
            )
            rows = cur.fetchall()
        return [NotificationRecord(r[0], r[1], r[2], r[3], bool(r[4]), r[5]) for r in rows]

    # -- retention -----------------------------------------------------------------------------

    def apply_retention(self, now: float, retention: Retention | None = None) -> dict[str, Any]:
        """Delete what is older than every tier, then merge raw → 1 min → 10 min by age.

        Only whole coarse buckets older than the cutoff are merged, each chunk in its own
        transaction, so running it again (or after a crash) changes nothing; a late raw
        snapshot for a bucket already merged is merged into the existing coarse row.
        """
        keep = retention or Retention()
        with self._transaction() as cur:
            cur.execute("DELETE FROM snapshots WHERE start < ?", (now - keep.ten_minutes,))
            deleted = max(0, cur.rowcount)
        raw_merged, minute_rows = self._downsample(RAW, MINUTE, now - keep.raw)
        minute_merged, ten_minute_rows = self._downsample(MINUTE, TEN_MINUTES, now - keep.minute)
        return {
            "deleted": deleted,
            "raw_merged": raw_merged,
            "minute_written": minute_rows,
            "minute_merged": minute_merged,
            "ten_minutes_written": ten_minute_rows,
        }

    def _downsample(self, source: float, target: float, cutoff: float) -> tuple[int, int]:
        """Merge ``source`` rows older than ``cutoff`` into ``target`` rows; (merged, written)."""
        cutoff = bucket_start(cutoff, target)
        merged = written = 0
        done = -math.inf  # nothing of ``source`` is left below this (keeps the scans short)
        while True:
            with self._transaction() as cur:
                cur.execute(
                    "SELECT MIN(start) FROM snapshots"
                    " WHERE start >= ? AND start < ? AND resolution = ?",
                    (done, cutoff, source),
                )
                first = cur.fetchone()[0]
                if first is None:
                    return merged, written
                lo = bucket_start(float(first), target)
                done = min(cutoff, lo + CHUNK_BUCKETS * target)
                n, rows = self._merge_chunk(cur, source, target, lo, done)
                merged += n
                written += rows

    def _merge_chunk(
        self, cur: Cursor, source: float, target: float, lo: float, hi: float
    ) -> tuple[int, int]:
        cur.execute(
            f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots"
            " WHERE start >= ? AND start < ? AND resolution IN (?, ?) ORDER BY start",
            (lo, hi, source, target),
        )
        groups: dict[tuple[str, int, float], list[Row]] = {}
        for row in cur.fetchall():
            groups.setdefault((row[0], row[1], bucket_start(row[2], target)), []).append(row)
        out: list[Row] = []
        merged = 0
        with self._decoding():
            for (_, _, start), group in groups.items():
                n = sum(1 for row in group if row[3] == source)
                if n:  # coarse rows with nothing new stay as they are
                    merged += n
                    out.append(merge_rows(group, start, target))
        cur.executemany(_UPSERT_SNAPSHOT, out)
        cur.execute(
            "DELETE FROM snapshots WHERE start >= ? AND start < ? AND resolution = ?",
            (lo, hi, source),
        )
        return merged, len(out)


class SQLiteStore(SQLStore):
    """History in one SQLite file (WAL, so readers never block the writer).

    One connection shared under a lock: the monitor's background thread and the CLI may use
    the same store; other processes use their own and wait up to ``busy_timeout`` seconds.
    """

    TYPES = {
        "real": "REAL",
        "int": "INTEGER",
        "blob": "BLOB",
        "bool": "INTEGER",
        "serial": "INTEGER PRIMARY KEY",
    }

    def __init__(self, path: str | Path = "scalewise.db", *, busy_timeout: float = 5.0) -> None:
        super().__init__()
        self.path = str(path) if str(path) == ":memory:" else str(Path(path).expanduser())
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        """``sqlite:///relative.db``, ``sqlite:////abs/path.db``, ``?busy_timeout=2``."""
        parts = urlsplit(url)
        if parts.netloc or len(parts.path) < 2:
            raise ConfigError("store", "url", "sqlite:///path/to/file.db (three slashes)", url)
        options = dict(parse_qsl(parts.query))
        unknown = set(options) - {"busy_timeout"}
        if unknown:
            raise ConfigError("store", "url", "only the option busy_timeout", sorted(unknown))
        try:
            timeout = float(options.get("busy_timeout", 5.0))
        except ValueError:
            raise ConfigError(
                "store", "url.busy_timeout", "seconds", options["busy_timeout"]
            ) from None
        return cls(unquote(parts.path[1:]), busy_timeout=timeout)

    def describe(self) -> str:
        return f"sqlite database {self.path}"

    def _open(self) -> sqlite3.Connection:
        """Connect, switching to WAL and creating the schema; retried while busy, because
        SQLite answers a concurrent journal-mode switch with SQLITE_BUSY at once rather than
        through the busy handler (two processes opening a new file together)."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                return self._connect()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._ensure_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        def version() -> str | None:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
            ).fetchone()
            if not exists:
                return None
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            return None if row is None else str(row[0])

        found = version()
        if found is None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in self.schema_statements():
                    conn.execute(statement)
                conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.rollback()
                raise
            found = version()
        self.check_version(found)

    def _error(self, exc: sqlite3.Error) -> StoreError:
        message = " ".join(str(exc).split()) or type(exc).__name__
        if "locked" in message or "busy" in message:
            message += f" (another connection held it longer than {self.busy_timeout:g} s)"
        return StoreError(f"{self.describe()}: {message}")

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[Cursor]:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self._open()
                conn = self._conn
                cur = conn.cursor()
                try:
                    if write:
                        cur.execute("BEGIN IMMEDIATE")
                    yield cur
                    if write:
                        cur.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.rollback()
                    raise
                finally:
                    cur.close()
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
