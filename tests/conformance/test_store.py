"""One suite, every store: SQLite (a temporary file) and PostgreSQL (a fresh schema per test on
127.0.0.1:5432, database ``test``, user ``postgres``; skipped when unreachable, except in CI).
"""

from __future__ import annotations

import functools
import inspect
import random
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from tests.conftest import free_port, require

from scalewise.errors import StoreError
from scalewise.metrics.histogram import EMPTY, FrozenHistogram, Histogram, merge_all
from scalewise.metrics.windows import IntervalSnapshot, RouteSnapshot
from scalewise.policy.model import Recommendation, RuleState, Status
from scalewise.store.base import NotificationRecord, Retention, Store
from scalewise.store.downsample import totals
from scalewise.store.sqlite import MINUTE, RAW, TEN_MINUTES, SQLiteStore, SQLStore

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
T0 = 1_699_999_200.0  # a multiple of 3600, so every bucket boundary is easy to reason about
QS = (0.0, 0.5, 0.9, 0.95, 0.99, 1.0)


@functools.cache
def postgres_missing() -> str | None:
    """Why the PostgreSQL backend cannot run here, or None."""
    try:
        import psycopg
    except ImportError:
        return "psycopg not installed (pip install 'scalewise[postgres]')"
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at 127.0.0.1:5432: {' '.join(str(exc).split())}"
    return None


@dataclass
class Backend:
    """Opens stores that share one location (a file, a schema), to test several connections."""

    name: str
    open: Callable[[], SQLStore]


def _postgres_backend() -> Iterator[Backend]:
    reason = postgres_missing()
    require(reason is None, reason or "")
    import psycopg
    from psycopg import sql

    from scalewise.store.postgres import PostgresStore

    schema = f"scalewise_test_{uuid.uuid4().hex[:12]}"
    opened: list[SQLStore] = []

    def open_store() -> SQLStore:
        opened.append(PostgresStore(PG_URL, schema=schema, connect_timeout=3))
        return opened[-1]

    try:
        yield Backend("postgres", open_store)
    finally:
        for s in opened:
            s.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(
    params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.integration)]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "postgres":
        yield from _postgres_backend()
        return
    opened: list[SQLStore] = []

    def open_store() -> SQLStore:
        opened.append(SQLiteStore(tmp_path / "history.db"))
        return opened[-1]

    yield Backend("sqlite", open_store)
    for s in opened:
        s.close()


@pytest.fixture
def store(backend: Backend) -> SQLStore:
    return backend.open()


# -- data ----------------------------------------------------------------------------------


def hist(rng: random.Random, n: int, scale: float = 0.05) -> FrozenHistogram:
    h = Histogram()
    for _ in range(n):
        h.record(rng.lognormvariate(0, 0.8) * scale)
    return h.freeze()


@functools.cache
def snap(start: float, worker: int = 0, seed: int = 0) -> IntervalSnapshot:
    """A busy 10 s interval with two routes and the usual gauges (cached: they are immutable)."""
    rng = random.Random(hash((start, worker, seed)))
    items = rng.randint(1, 40)
    orders = rng.randint(0, 10)
    routes = {
        "GET /items/{id}": RouteSnapshot(items, 1, 2, hist(rng, items)),
        "POST /orders": RouteSnapshot(orders, 0, 0, hist(rng, orders, 0.3)),
    }
    return IntervalSnapshot(
        start=start,
        seconds=10.0,
        requests=items + orders,
        errors=1,
        client_errors=2,
        disconnects=rng.randint(0, 1),
        inflight_peak=rng.randint(1, 12),
        busy_seconds=rng.uniform(0, 10),
        latency=merge_all(r.latency for r in routes.values()).freeze(),
        ttfb=hist(rng, items + orders, 0.01),
        queue_time=hist(rng, 3, 0.001),
        routes=routes,
        gauges={"cpu_percent": rng.uniform(0, 100), "rss_bytes": float(rng.randint(1, 9) << 27)},
        worker=worker,
    )


def series(start: float, count: int, worker: int = 0) -> list[IntervalSnapshot]:
    return [snap(start + 10 * i, worker) for i in range(count)]


def recommendation(at: float, action: str = "scale_up") -> Recommendation:
    return Recommendation(
        action=action,
        kind="vertical",
        at=at,
        current_plan="Starter",
        target_plan="Standard",
        current_instances=1,
        target_instances=1,
        cost_before=7.0,
        cost_after=25.0,
        firing=("high-latency", "memory"),
        values={"high-latency": 8.4, "memory": None},
        reasons=("avg latency 8.4 s > 8 s for 1h",),
        missing=("queue-depth",),
        cooldown_until=at + 600,
    )


# -- the protocol ----------------------------------------------------------------------------


def test_implements_the_store_protocol_exactly(store: SQLStore) -> None:
    for name, member in inspect.getmembers(Store, inspect.isfunction):
        if name.startswith("_"):
            continue
        assert inspect.signature(getattr(type(store), name)) == inspect.signature(member), name


# -- snapshots -------------------------------------------------------------------------------


def test_round_trip_keeps_histograms_routes_and_gauges(store: SQLStore) -> None:
    written = series(T0, 5)
    store.write_snapshots("web-1", written)
    read = store.read_snapshots(T0, T0 + 3600)
    assert read == written
    for a, b in zip(read, written, strict=True):
        assert a.latency.quantiles(QS) == b.latency.quantiles(QS)
        assert a.ttfb.quantiles(QS) == b.ttfb.quantiles(QS)
        assert isinstance(a.latency, FrozenHistogram)
        for name, route in a.routes.items():
            assert route.latency.quantiles(QS) == b.routes[name].latency.quantiles(QS)
        assert a.latency.sum == b.latency.sum
        assert (a.latency.min, a.latency.max) == (b.latency.min, b.latency.max)


def test_an_idle_interval_round_trips(store: SQLStore) -> None:
    idle = IntervalSnapshot(start=T0, seconds=10.0, inflight_peak=0)
    store.write_snapshots("web-1", [idle])
    [read] = store.read_snapshots(T0, T0 + 10)
    assert read == idle
    assert read.latency is EMPTY
    assert read.routes == {}
    assert read.gauges == {}


def test_writing_the_same_snapshot_twice_keeps_one_row(store: SQLStore) -> None:
    first = snap(T0, seed=2)
    store.write_snapshots("web-1", [first])
    store.write_snapshots("web-1", [first, first])
    assert store.read_snapshots(T0, T0 + 10) == [first]
    changed = replace(first, requests=first.requests + 1)
    store.write_snapshots("web-1", [changed])
    assert store.read_snapshots(T0, T0 + 10) == [changed]
    assert store.count_snapshots() == {RAW: 1}


def test_reads_a_half_open_time_range_oldest_first(store: SQLStore) -> None:
    written = series(T0, 10)
    store.write_snapshots("web-1", list(reversed(written)))
    assert store.read_snapshots(T0 + 20, T0 + 50) == written[2:5]
    assert store.read_snapshots(T0 + 25, T0 + 30) == []
    assert store.read_snapshots(T0 + 90, T0 + 1e6) == written[9:]
    assert store.read_snapshots(0, T0) == []


def test_keeps_instances_and_workers_apart(store: SQLStore) -> None:
    a0, a1 = series(T0, 3, worker=0), series(T0, 3, worker=1)
    b0 = series(T0 + 5, 3)
    store.write_snapshots("web-a", a0 + a1)
    store.write_snapshots("web-b", b0)
    assert store.instances() == ["web-a", "web-b"]
    assert store.read_snapshots(T0, T0 + 60, instance="web-b") == b0
    only_a = store.read_snapshots(T0, T0 + 60, instance="web-a")
    assert sorted(only_a, key=lambda s: (s.worker, s.start)) == a0 + a1
    everything = store.read_snapshots(T0, T0 + 60)
    assert len(everything) == 9
    assert [s.start for s in everything] == sorted(s.start for s in everything)
    assert store.read_snapshots(T0, T0 + 60, instance="web-c") == []


def test_data_survives_a_new_connection(backend: Backend) -> None:
    first = backend.open()
    written = series(T0, 3)
    first.write_snapshots("web-1", written)
    first.save_rule_states([RuleState("r", Status.PENDING, active_at=T0)])
    first.close()
    second = backend.open()
    assert second.read_snapshots(T0, T0 + 60) == written
    assert second.load_rule_states()["r"].active_at == T0


def test_two_threads_write_at_once(backend: Backend) -> None:
    shared, other = backend.open(), backend.open()
    errors: list[BaseException] = []

    def writer(store: SQLStore, instance: str, worker: int) -> None:
        try:
            for batch in range(10):
                store.write_snapshots(instance, series(T0 + 100 * batch, 10, worker))
                store.save_rule_states([RuleState(f"{instance}-{worker}", Status.FIRING)])
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=(shared, "web-1", 0)),
        threading.Thread(target=writer, args=(shared, "web-1", 1)),
        threading.Thread(target=writer, args=(other, "web-2", 0)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(shared.read_snapshots(T0, T0 + 1e4)) == 300
    assert len(other.load_rule_states()) == 3


# -- rule states, decisions, notifications ---------------------------------------------------


def test_rule_states_upsert_by_rule(store: SQLStore) -> None:
    assert store.load_rule_states() == {}
    pending = RuleState("p95", Status.PENDING, active_at=T0, value=2.5, evaluated_at=T0)
    quiet = RuleState("errors", evaluated_at=T0)
    store.save_rule_states([pending, quiet])
    assert store.load_rule_states() == {"p95": pending, "errors": quiet}
    firing = replace(pending, status=Status.FIRING, fired_at=T0 + 60, value=None)
    store.save_rule_states([firing])
    assert store.load_rule_states() == {"p95": firing, "errors": quiet}


def test_decisions_come_back_as_recommendations(store: SQLStore) -> None:
    early, late = recommendation(T0), recommendation(T0 + 60, "hold")
    store.record_decision(late)
    store.record_decision(early)
    assert store.decisions(0) == [early, late]
    assert store.decisions(T0 + 1) == [late]
    assert store.decisions(T0 + 61) == []


def test_notifications_are_recorded(store: SQLStore) -> None:
    sent = NotificationRecord(T0, "ops-webhook", "{}:{alertname=p95}", "firing", True)
    failed = NotificationRecord(T0 + 5, "slack", "g", "resolved", False, "HTTP 500 after 3 tries")
    store.record_notification(failed)
    store.record_notification(sent)
    assert store.notifications(T0) == [sent, failed]
    assert store.notifications(T0 + 1) == [failed]


# -- retention -------------------------------------------------------------------------------

SHORT = Retention(raw=600.0, minute=1800.0, ten_minutes=4 * 3600.0)


def _summary(snaps: list[IntervalSnapshot]) -> tuple[object, ...]:
    return (
        dict(totals(snaps)),
        merge_all(s.latency for s in snaps).freeze(),
        merge_all(s.ttfb for s in snaps).freeze(),
        merge_all(r.latency for s in snaps for r in s.routes.values()).freeze(),
        max(s.inflight_peak for s in snaps),
    )


def test_retention_keeps_totals_exact_and_shrinks_rows(store: SQLStore) -> None:
    # Two hours of 10 s intervals: two workers of one instance, one of another.
    store.write_snapshots("web-a", series(T0, 720, 0) + series(T0, 720, 1))
    store.write_snapshots("web-b", series(T0 + 3, 720))
    before = store.read_snapshots(0, 2e10)
    now = T0 + 2 * 3600
    counts = store.apply_retention(now, SHORT)
    after = store.read_snapshots(0, 2e10)
    assert _summary(after) == _summary(before)
    rows = store.count_snapshots()
    assert rows == {RAW: 3 * 60, MINUTE: 3 * 20, TEN_MINUTES: 3 * 9}
    assert counts["raw_merged"] == 3 * (720 - 60)
    assert counts["minute_written"] == 3 * 110
    assert counts["minute_merged"] == 3 * 90
    assert counts["ten_minutes_written"] == 3 * 9
    assert counts["deleted"] == 0
    coarse = [s for s in after if s.start < now - SHORT.minute]
    assert {s.seconds for s in coarse} == {600.0}
    assert all(s.start % 600 == 0 for s in coarse)
    assert {s.seconds for s in after if s.start >= now - SHORT.raw} == {10.0}


def test_retention_keeps_each_instance_and_worker_exact(store: SQLStore) -> None:
    streams = {("web-a", 0): series(T0, 400, 0), ("web-a", 1): series(T0, 400, 1)}
    streams["web-b", 0] = [snap(s.start, 0, seed=1) for s in series(T0, 400, 0)]
    for (instance, _), snaps in streams.items():
        store.write_snapshots(instance, snaps)
    store.apply_retention(T0 + 7200, SHORT)
    for (instance, worker), snaps in streams.items():
        kept = [s for s in store.read_snapshots(0, 2e10, instance) if s.worker == worker]
        assert _summary(kept) == _summary(snaps)


def test_retention_is_idempotent(store: SQLStore) -> None:
    store.write_snapshots("web-1", series(T0, 720))
    store.apply_retention(T0 + 7200, SHORT)
    once = store.read_snapshots(0, 2e10)
    again = store.apply_retention(T0 + 7200, SHORT)
    assert set(again.values()) == {0}
    assert store.read_snapshots(0, 2e10) == once


def test_retention_deletes_what_is_older_than_every_tier(store: SQLStore) -> None:
    store.write_snapshots("web-1", series(T0, 360))  # one hour
    counts = store.apply_retention(T0 + 3600 + SHORT.ten_minutes + 1, SHORT)
    assert counts["deleted"] == 360
    assert store.read_snapshots(0, 2e10) == []


def test_a_late_snapshot_joins_its_merged_minute(store: SQLStore) -> None:
    written = series(T0, 5)  # T0 … T0+40; T0+50 arrives after retention merged the minute
    store.write_snapshots("web-1", written)
    store.apply_retention(T0 + 3600, Retention(raw=60.0))
    late = snap(T0 + 50)
    store.write_snapshots("web-1", [late])
    counts = store.apply_retention(T0 + 3600, Retention(raw=60.0))
    assert counts["raw_merged"] == 1
    [minute] = store.read_snapshots(0, 2e10)
    assert (minute.start, minute.seconds) == (T0, 60.0)
    assert _summary([minute]) == _summary([*written, late])


# -- failures ------------------------------------------------------------------------------


def test_a_newer_schema_is_refused(backend: Backend) -> None:
    first = backend.open()
    with first._transaction() as cur:
        cur.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    first.close()
    with pytest.raises(StoreError, match="schema version 99"):
        backend.open().load_rule_states()


def test_a_row_that_does_not_decode_is_a_store_error(store: SQLStore) -> None:
    store.write_snapshots("web-1", [snap(T0), snap(T0 + 10)])  # one minute: they must merge
    with store._transaction() as cur:
        cur.execute("UPDATE snapshots SET latency = ?", (b"\x01garbage",))
    with pytest.raises(StoreError, match="does not decode"):
        store.read_snapshots(0, 2e10)
    with pytest.raises(StoreError, match="does not decode"):
        store.apply_retention(T0 + 86400 * 3)


def test_a_locked_sqlite_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    SQLiteStore(path).close()
    SQLiteStore(path).write_snapshots("web-1", [snap(T0)])
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        store = SQLiteStore(path, busy_timeout=0.05)
        with pytest.raises(StoreError, match="database is locked") as info:
            store.write_snapshots("web-1", [snap(T0 + 10)])
        assert str(path) in str(info.value)
        assert "\n" not in str(info.value)
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        holder.execute("ROLLBACK")
        store.write_snapshots("web-1", [snap(T0 + 10)])  # usable once the lock is gone
        assert len(store.read_snapshots(0, 2e10)) == 2
        store.close()
    finally:
        holder.close()


def test_a_corrupt_sqlite_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not a database, just some text " * 200)
    with pytest.raises(StoreError, match="not a database") as info:
        SQLiteStore(path).read_snapshots(0, 1)
    assert str(path) in str(info.value)


def test_an_unopenable_sqlite_path_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "history.db"
    with pytest.raises(StoreError, match="unable to open") as info:
        SQLiteStore(path).write_snapshots("web-1", [snap(T0)])
    assert str(path) in str(info.value)


def test_an_unreachable_postgres_is_a_store_error() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        require(False, "psycopg not installed (pip install 'scalewise[postgres]')")
    from scalewise.store.postgres import PostgresStore

    port = free_port()  # nothing listens there
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{port}/test", connect_timeout=2)
    with pytest.raises(StoreError) as info:
        store.write_snapshots("web-1", [snap(T0)])
    message = str(info.value)
    assert message.startswith(f"postgres at 127.0.0.1:{port} unreachable: ")
    assert "\n" not in message


@pytest.fixture
def postgres_backend() -> Iterator[Backend]:
    yield from _postgres_backend()


@pytest.mark.integration
def test_postgres_reconnects_after_losing_its_connection(postgres_backend: Backend) -> None:
    import psycopg

    from scalewise.store.postgres import PostgresStore

    store = postgres_backend.open()
    store.write_snapshots("web-1", [snap(T0)])
    assert isinstance(store, PostgresStore)
    assert store._conn is not None
    pid = store._conn.info.backend_pid
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(StoreError, match="unreachable"):
        store.read_snapshots(0, 2e10)
    assert len(store.read_snapshots(0, 2e10)) == 1
