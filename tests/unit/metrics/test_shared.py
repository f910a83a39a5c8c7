"""Worker files: publishing state, reading siblings, skipping junk, spotting dead workers."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from scalewise.metrics.shared import PREFIX, WorkerFiles, pid_alive, resolve_directory

DEAD_PID = 2**22 + 12345  # above Linux's largest possible pid_max (2**22)


def test_the_dead_pid_really_is_dead() -> None:
    assert not pid_alive(DEAD_PID)
    assert pid_alive(os.getpid())


def test_publish_and_peers_round_trip(tmp_path: Path) -> None:
    me = WorkerFiles(tmp_path / "shared", worker=os.getpid())
    sibling = WorkerFiles(tmp_path / "shared", worker=os.getppid())
    assert me.path == tmp_path / "shared" / f"{PREFIX}{os.getpid()}.json"
    assert list(me.peers()) == []

    state = {"worker": os.getppid(), "inflight": 2, "gauges": {"rss_bytes": 1.5e6}, "x": [1, 2]}
    sibling.publish(state)
    (peer,) = me.peers()
    assert peer.worker == os.getppid()
    assert peer.alive
    assert peer.data == state

    me.publish({"worker": os.getpid()})
    (back,) = sibling.peers()
    assert back.worker == os.getpid()
    assert back.data == {"worker": os.getpid()}
    # A worker never reads itself back.
    assert [p.worker for p in me.peers()] == [os.getppid()]

    # Publishing again replaces the file atomically and leaves no temporary files behind.
    sibling.publish({"worker": os.getppid(), "inflight": 0})
    assert next(me.peers()).data["inflight"] == 0
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == sorted(
        [me.path.name, sibling.path.name]
    )


def test_half_written_and_garbage_files_are_skipped(tmp_path: Path) -> None:
    me = WorkerFiles(tmp_path, worker=os.getpid())
    good = WorkerFiles(tmp_path, worker=os.getppid())
    good.publish({"ok": True})
    full = json.dumps({"series": {"bounds": [0.1, 1.0]}, "inflight": 3})
    (tmp_path / f"{PREFIX}1111.json").write_text(full[: len(full) // 2])  # half-written
    (tmp_path / f"{PREFIX}2222.json").write_bytes(b"\xff\xfe\x00garbage")  # not even UTF-8
    (tmp_path / f"{PREFIX}3333.json").write_text("")  # empty
    (tmp_path / f"{PREFIX}not-a-pid.json").write_text("{}")  # bad name
    (tmp_path / f"{PREFIX}4444.tmp123").write_text("{}")  # someone's temporary file
    (tmp_path / "unrelated.json").write_text("{}")
    (tmp_path / f"{PREFIX}5555.json").mkdir()  # unreadable as a file
    peers = list(me.peers())
    assert [(p.worker, p.data) for p in peers] == [(os.getppid(), {"ok": True})]


def test_a_dead_worker_is_reported_not_alive(tmp_path: Path) -> None:
    me = WorkerFiles(tmp_path, worker=os.getpid())
    WorkerFiles(tmp_path, worker=DEAD_PID).publish({"inflight": 5})
    (peer,) = me.peers()
    assert peer.worker == DEAD_PID
    assert peer.alive is False
    assert peer.data == {"inflight": 5}


def test_remove_deletes_only_this_workers_file(tmp_path: Path) -> None:
    me = WorkerFiles(tmp_path, worker=os.getpid())
    other = WorkerFiles(tmp_path, worker=os.getppid())
    me.publish({})
    other.publish({})
    me.remove()
    me.remove()  # twice is fine
    assert not me.path.exists()
    assert other.path.exists()


def test_the_directory_is_created_private(tmp_path: Path) -> None:
    files = WorkerFiles(tmp_path / "a" / "b", worker=1)
    assert files.directory.is_dir()
    assert files.directory.stat().st_mode & 0o077 == 0


def test_resolve_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_directory(None) is None
    assert resolve_directory(str(tmp_path)) == tmp_path
    assert resolve_directory("relative/dir") == Path("relative/dir")
    # This test process is no worker of a process manager (another test may have imported
    # gunicorn, which the heuristic takes as a sign of being one of its workers).
    monkeypatch.delitem(sys.modules, "gunicorn", raising=False)
    assert resolve_directory("auto") is None
