"""Container limits, instance profiles, process samples and loop lag, on fake /sys and /proc."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from scalewise.clock import ManualClock
from scalewise.metrics.process import (
    ContainerLimits,
    LoopLagMonitor,
    ProcessSampler,
    instance_profile,
    read_cgroup_memory_usage,
    read_container_limits,
)

GIB = 2**30
MIB = 2**20
HOST_MEMORY = 16 * GIB
HOST_CPUS = 8
V1_UNLIMITED = "9223372036854771712"


def make_tree(root: Path, files: dict[str, str]) -> tuple[str, str]:
    """Write ``files`` (paths relative to ``root``) and return (sys_root, proc_root)."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    (root / "sys").mkdir(exist_ok=True)
    (root / "proc").mkdir(exist_ok=True)
    return str(root / "sys"), str(root / "proc")


def read(sys_root: str, proc_root: str) -> ContainerLimits:
    return read_container_limits(
        sys_root, proc_root, host_memory_bytes=HOST_MEMORY, host_cpus=HOST_CPUS
    )


def limits(memory: int | None, cpu: float | None, host_cpus: int = HOST_CPUS) -> ContainerLimits:
    return ContainerLimits(
        memory_limit_bytes=memory,
        memory_source="host" if memory is None else "cgroup2",
        cpu_limit_cores=cpu,
        cpu_source="host" if cpu is None else "cgroup2",
        host_memory_bytes=HOST_MEMORY,
        host_cpus=host_cpus,
    )


def test_cgroup2_limits_give_mvp(tmp_path: Path) -> None:
    roots = make_tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/\n",
            "sys/fs/cgroup/cgroup.controllers": "cpu memory\n",
            "sys/fs/cgroup/memory.max": "536870912\n",
            "sys/fs/cgroup/cpu.max": "50000 100000\n",
            "sys/fs/cgroup/memory.current": "12345678\n",
        },
    )
    found = read(*roots)
    assert found.memory_limit_bytes == 512 * MIB
    assert found.memory_source == "cgroup2"
    assert found.cpu_limit_cores == 0.5
    assert found.cpu_source == "cgroup2"
    assert found.memory_limit_effective == 512 * MIB
    profile = instance_profile(found)
    assert (profile.name, profile.max_concurrent, profile.db_pool_size) == ("mvp", 8, 3)
    assert profile.cache_entries == 100
    assert "512MiB (cgroup2) < 1GiB" in profile.reason
    assert profile.to_dict()["name"] == "mvp"
    assert read_cgroup_memory_usage(*roots) == 12345678


def test_cgroup2_limit_at_parent_binds(tmp_path: Path) -> None:
    leaf = "sys/fs/cgroup/kubepods/pod1/ctr"
    roots = make_tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/kubepods/pod1/ctr\n",
            f"{leaf}/memory.max": "max\n",
            f"{leaf}/cpu.max": "max 100000\n",
            f"{leaf}/memory.current": "4096\n",
            "sys/fs/cgroup/kubepods/pod1/memory.max": str(2 * GIB),
            "sys/fs/cgroup/kubepods/pod1/cpu.max": "150000 100000",
            "sys/fs/cgroup/kubepods/memory.max": str(4 * GIB),
        },
    )
    found = read(*roots)
    assert found.memory_limit_bytes == 2 * GIB
    assert found.cpu_limit_cores == 1.5
    assert instance_profile(found).name == "scaled"
    assert read_cgroup_memory_usage(*roots) == 4096


def test_host_side_cgroup_path_without_namespace_uses_mounted_root(tmp_path: Path) -> None:
    roots = make_tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/system.slice/docker-abc.scope\n",
            "sys/fs/cgroup/memory.max": str(GIB),
        },
    )
    assert read(*roots).memory_limit_bytes == GIB


def test_cgroup2_unlimited_falls_back_to_host(tmp_path: Path) -> None:
    roots = make_tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/\n",
            "sys/fs/cgroup/memory.max": "max\n",
            "sys/fs/cgroup/cpu.max": "max 100000\n",
        },
    )
    found = read(*roots)
    assert (found.memory_limit_bytes, found.memory_source) == (None, "host")
    assert (found.cpu_limit_cores, found.cpu_source) == (None, "host")
    assert found.memory_limit_effective == HOST_MEMORY
    assert found.cpu_limit_effective == HOST_CPUS
    assert instance_profile(found).name == "enterprise"


def test_limit_above_host_is_no_limit(tmp_path: Path) -> None:
    roots = make_tree(
        tmp_path,
        {"sys/fs/cgroup/memory.max": str(64 * GIB), "sys/fs/cgroup/cpu.max": "1600000 100000"},
    )
    found = read(*roots)
    assert (found.memory_limit_bytes, found.cpu_limit_cores) == (None, None)


def test_cgroup1_limit_and_quota(tmp_path: Path) -> None:
    roots = make_tree(
        tmp_path,
        {
            "proc/self/cgroup": (
                "12:pids:/kubepods/pod1\n"
                "4:memory:/kubepods/pod1\n"
                "3:cpu,cpuacct:/kubepods/pod1\n"
                "0::/\n"
            ),
            "sys/fs/cgroup/memory/memory.limit_in_bytes": V1_UNLIMITED,
            "sys/fs/cgroup/memory/kubepods/pod1/memory.limit_in_bytes": str(768 * MIB),
            "sys/fs/cgroup/memory/kubepods/pod1/memory.usage_in_bytes": "1000",
            "sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/cpu.cfs_quota_us": "200000",
            "sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/cpu.cfs_period_us": "100000",
            "sys/fs/cgroup/unified/cgroup.procs": "",
        },
    )
    found = read(*roots)
    assert (found.memory_limit_bytes, found.memory_source) == (768 * MIB, "cgroup1")
    assert (found.cpu_limit_cores, found.cpu_source) == (2.0, "cgroup1")
    assert instance_profile(found).name == "mvp"
    assert read_cgroup_memory_usage(*roots) == 1000


def test_cgroup1_plain_mounts_without_proc_file(tmp_path: Path) -> None:
    roots = make_tree(
        tmp_path,
        {
            "sys/fs/cgroup/memory/memory.limit_in_bytes": str(GIB),
            "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "50000",
            "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000",
        },
    )
    found = read(*roots)
    assert (found.memory_limit_bytes, found.cpu_limit_cores) == (GIB, 0.5)


def test_cgroup1_unlimited_falls_back_to_host(tmp_path: Path) -> None:
    roots = make_tree(
        tmp_path,
        {
            "proc/self/cgroup": "4:memory:/\n1:cpu:/\n",
            "sys/fs/cgroup/memory/memory.limit_in_bytes": V1_UNLIMITED,
            "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1",
            "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000",
        },
    )
    found = read(*roots)
    assert (found.memory_limit_bytes, found.memory_source) == (None, "host")
    assert (found.cpu_limit_cores, found.cpu_source) == (None, "host")


@pytest.mark.parametrize(
    "files",
    [
        {
            "proc/self/cgroup": "\x00garbage::::\nnot a line\n0::/../../etc\n",
            "sys/fs/cgroup/memory.max": "lots\n",
            "sys/fs/cgroup/cpu.max": "50000 0 7\n",
            "sys/fs/cgroup/memory.current": "-",
        },
        {
            "sys/fs/cgroup/cpu.max": "half 100000",
            "sys/fs/cgroup/memory/memory.limit_in_bytes": "\xff\xfe",
            "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "50000",
            "sys/fs/cgroup/cpu/cpu.cfs_period_us": "zero",
        },
        {"proc/self/cgroup/oops": "a directory where a file should be"},
    ],
)
def test_garbled_files_fall_back_without_raising(tmp_path: Path, files: dict[str, str]) -> None:
    roots = make_tree(tmp_path, files)
    found = read(*roots)
    assert (found.memory_source, found.cpu_source) == ("host", "host")
    assert read_cgroup_memory_usage(*roots) is None


def test_missing_roots_fall_back_to_psutil_host(tmp_path: Path) -> None:
    found = read_container_limits(str(tmp_path / "nosys"), str(tmp_path / "noproc"))
    assert found.memory_limit_bytes is None
    assert found.host_memory_bytes == psutil.virtual_memory().total
    assert found.host_cpus == (os.cpu_count() or 1)


def test_real_system_reads_without_raising() -> None:
    found = read_container_limits()
    assert found.memory_limit_effective > 0
    assert found.cpu_limit_effective > 0
    assert instance_profile(found).name in {"mvp", "scaled", "enterprise"}


@pytest.mark.parametrize(
    ("memory", "cpu", "host_cpus", "expected", "reason"),
    [
        (8 * GIB, 0.5, HOST_CPUS, "mvp", "cpu limit 0.5 cores (cgroup2) < 1"),
        (2 * GIB, 4.0, HOST_CPUS, "scaled", "memory limit 2GiB (cgroup2) < 3GiB"),
        (8 * GIB, 1.0, HOST_CPUS, "scaled", "memory alone would allow enterprise"),
        (512 * MIB, None, HOST_CPUS, "mvp", "cpu alone would allow enterprise"),
        (None, None, 1, "scaled", "host cpus 1 < 2"),
        (None, None, HOST_CPUS, "enterprise", "host memory 16GiB >= 3GiB"),
    ],
)
def test_profile_takes_the_smaller_tier(
    memory: int | None, cpu: float | None, host_cpus: int, expected: str, reason: str
) -> None:
    profile = instance_profile(limits(memory, cpu, host_cpus))
    assert profile.name == expected
    assert reason in profile.reason


def test_sampler_on_current_process_is_sane() -> None:
    sampler = ProcessSampler(limits=limits(100 * 2**40, None))
    first = sampler.sample()
    sum(range(200_000))
    second = sampler.sample()
    for stats in (first, second):
        assert stats.alive
        assert stats.pid == os.getpid()
        assert stats.rss_bytes > 0
        assert stats.cpu_percent >= 0
        assert stats.cpu_percent_of_limit >= 0
        assert 0 < stats.memory_percent_of_limit < 100
        assert stats.threads >= 1
        assert stats.open_fds is None or stats.open_fds > 0
    assert second.cpu_seconds >= first.cpu_seconds
    assert second.to_dict()["rss_bytes"] == second.rss_bytes


class FakeProcess:
    """Stands in for psutil.Process with scripted CPU times."""

    cpu = 1.5
    fail = False

    def __init__(self, pid: int) -> None:
        self.pid = pid

    @contextmanager
    def oneshot(self) -> Iterator[None]:
        yield

    def create_time(self) -> float:
        return ManualClock().wall() - 3.0

    def cpu_times(self) -> SimpleNamespace:
        if FakeProcess.fail:
            raise psutil.NoSuchProcess(self.pid)
        return SimpleNamespace(user=FakeProcess.cpu * 2 / 3, system=FakeProcess.cpu / 3)

    def memory_info(self) -> SimpleNamespace:
        return SimpleNamespace(rss=256 * MIB)

    def num_threads(self) -> int:
        return 4

    def num_fds(self) -> int:
        raise psutil.AccessDenied(self.pid)


def test_sampler_cpu_percent_from_deltas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psutil, "Process", FakeProcess)
    monkeypatch.setattr(FakeProcess, "fail", False)
    clock = ManualClock()
    sampler = ProcessSampler(pid=42, limits=limits(GIB, 0.5), clock=clock)

    first = sampler.sample()  # 1.5 CPU seconds over a 3 s lifetime
    assert first.cpu_percent == pytest.approx(50.0)
    assert first.cpu_percent_of_limit == pytest.approx(100.0)
    assert first.memory_percent_of_limit == pytest.approx(25.0)
    assert (first.open_fds, first.threads, first.pid) == (None, 4, 42)

    monkeypatch.setattr(FakeProcess, "cpu", 3.0)
    clock.advance(1.0)
    assert sampler.sample().cpu_percent == pytest.approx(150.0)

    monkeypatch.setattr(FakeProcess, "fail", True)
    gone = sampler.sample()
    assert not gone.alive
    assert (gone.rss_bytes, gone.cpu_percent, gone.memory_limit_bytes) == (0, 0.0, GIB)


def test_sampler_on_exited_process_does_not_raise() -> None:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    stats = ProcessSampler(pid=finished.pid, limits=limits(GIB, None)).sample()
    assert not stats.alive


def test_loop_lag_monitor_sees_a_blocked_loop() -> None:
    seen: list[float] = []
    monitor = LoopLagMonitor(interval=0.02, on_sample=seen.append)

    async def main() -> None:
        task = monitor.start()
        assert monitor.start() is task
        await asyncio.sleep(0)
        time.sleep(0.2)  # block the loop, as a CPU-bound handler would
        await asyncio.sleep(0.03)
        monitor.stop()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()

    asyncio.run(main())
    assert monitor.last >= 0
    assert seen
    assert max(seen) >= 0.15
    assert monitor.mean > 0
    assert monitor.max_since_reset() >= 0.15
    assert monitor.max_since_reset() == 0.0


def test_loop_lag_monitor_survives_a_failing_callback(caplog: pytest.LogCaptureFixture) -> None:
    def broken(lag: float) -> None:
        raise RuntimeError("boom")

    monitor = LoopLagMonitor(interval=0.001, on_sample=broken, window=2)

    async def main() -> None:
        monitor.start()
        await asyncio.sleep(0.02)
        monitor.stop()

    asyncio.run(main())
    assert monitor.samples >= 2
    assert "on_sample callback failed" in caplog.text


@pytest.mark.parametrize(("interval", "window"), [(0.0, 4), (-1.0, 4), (0.5, 0)])
def test_loop_lag_monitor_rejects_bad_settings(interval: float, window: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        LoopLagMonitor(interval=interval, window=window)
