"""Process and container resource readings: cgroup limits, CPU/RSS samples, event-loop lag.

A service in a container sees the *host's* memory and CPU count through ``psutil`` and
``os.cpu_count()``, so anything sized from them (worker counts, pools, caches) is sized for a
machine it does not have. The readers here look at the cgroup limits first (v2, then v1) and fall
back to the host only when no limit is set. Every reader takes ``sys_root``/``proc_root`` so tests
run against fake trees, and none raises on a missing, unreadable or garbled file: a limit that
cannot be read is treated as no limit.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

import psutil

from scalewise.clock import Clock, SystemClock
from scalewise.units import format_size

# cgroup v1 reports "no limit" as LONG_MAX rounded down to a page (9223372036854771712).
_V1_UNLIMITED: Final = 2**60
_V1_CPU_MOUNTS: Final = ("cpu", "cpu,cpuacct", "cpuacct,cpu")
_DEFAULT_CFS_PERIOD: Final = 100_000
_READ_LIMIT: Final = 4096

_GIB: Final = 2**30
_MEMORY_BOUNDS: Final = (1 * _GIB, 3 * _GIB)
_CPU_BOUNDS: Final = (1.0, 2.0)
# (name, max_concurrent, db_pool_size, cache_entries), smallest first.
_TIERS: Final = (("mvp", 8, 3, 100), ("scaled", 20, 6, 500), ("enterprise", 50, 10, 1000))


@dataclass(frozen=True, slots=True)
class ContainerLimits:
    """The memory and CPU this process may really use, and where each figure came from.

    ``None`` means no limit was found, so the host's figure applies; sources are ``"cgroup2"``,
    ``"cgroup1"`` or ``"host"``.
    """

    memory_limit_bytes: int | None
    memory_source: str
    cpu_limit_cores: float | None
    cpu_source: str
    host_memory_bytes: int
    host_cpus: int

    @property
    def memory_limit_effective(self) -> int:
        """Bytes available: the cgroup limit, or host memory when unlimited."""
        if self.memory_limit_bytes is not None:
            return self.memory_limit_bytes
        return self.host_memory_bytes

    @property
    def cpu_limit_effective(self) -> float:
        """Cores available: the cgroup quota, or the host CPU count when unlimited."""
        if self.cpu_limit_cores is not None:
            return self.cpu_limit_cores
        return float(self.host_cpus)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields, for /health/scaling and ``--json`` output."""
        return asdict(self)


def read_container_limits(
    sys_root: str = "/sys",
    proc_root: str = "/proc",
    *,
    host_memory_bytes: int | None = None,
    host_cpus: int | None = None,
) -> ContainerLimits:
    """Read the tightest memory and CPU limits on this process: cgroup v2, then v1, then host.

    Limits set on a parent cgroup bind too (Kubernetes and Render often set them there), so every
    level from the process's cgroup up to the root is read and the smallest limit wins. A limit
    above the host's own memory or CPU count is no limit. ``host_memory_bytes``/``host_cpus``
    override the psutil/``os.cpu_count()`` figures, so results do not depend on the machine.

    Example:
        >>> limits = read_container_limits()
        >>> limits.memory_limit_effective > 0
        True
    """
    host_mem = _host_memory() if host_memory_bytes is None else host_memory_bytes
    cpus = (os.cpu_count() or 1) if host_cpus is None else host_cpus
    v2_path, v1_paths = _parse_proc_cgroup(Path(proc_root) / "self" / "cgroup")
    v2_dirs = _cgroup_dirs(Path(sys_root) / "fs" / "cgroup", v2_path)
    v1_root = Path(sys_root) / "fs" / "cgroup"

    memory, memory_source = _smallest(v2_dirs, _read_v2_memory), "cgroup2"
    if _exceeds(memory, host_mem):
        memory = _v1_limit(v1_root, v1_paths, "memory", ("memory",), _read_v1_memory)
        memory_source = "cgroup1"
    if _exceeds(memory, host_mem):
        memory, memory_source = None, "host"

    cpu, cpu_source = _smallest(v2_dirs, _read_v2_cpu), "cgroup2"
    if _exceeds(cpu, cpus):
        cpu = _v1_limit(v1_root, v1_paths, "cpu", _V1_CPU_MOUNTS, _read_v1_cpu)
        cpu_source = "cgroup1"
    if _exceeds(cpu, cpus):
        cpu, cpu_source = None, "host"

    return ContainerLimits(
        memory_limit_bytes=None if memory is None else int(memory),
        memory_source=memory_source,
        cpu_limit_cores=cpu,
        cpu_source=cpu_source,
        host_memory_bytes=host_mem,
        host_cpus=cpus,
    )


def read_cgroup_memory_usage(sys_root: str = "/sys", proc_root: str = "/proc") -> int | None:
    """Bytes charged to this process's cgroup (page cache included), or ``None`` if unknown.

    This is what the OOM killer compares against the limit, which RSS alone underestimates.
    """
    v2_path, v1_paths = _parse_proc_cgroup(Path(proc_root) / "self" / "cgroup")
    usage = _read_int(_cgroup_dirs(Path(sys_root) / "fs" / "cgroup", v2_path)[0] / "memory.current")
    if usage is not None:
        return usage
    for walk in _v1_mounts(Path(sys_root) / "fs" / "cgroup", v1_paths, "memory", ("memory",)):
        usage = _read_int(walk[0] / "memory.usage_in_bytes")
        if usage is not None:
            return usage
    return None


@dataclass(frozen=True, slots=True)
class InstanceProfile:
    """Concurrency, pool and cache sizes that fit the container, and why this tier was chosen.

    ``memory_limit_bytes`` and ``cpu_limit_cores`` are the effective figures the choice used.
    """

    name: str
    max_concurrent: int
    db_pool_size: int
    cache_entries: int
    memory_limit_bytes: int
    cpu_limit_cores: float
    reason: str

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        return asdict(self)


def instance_profile(limits: ContainerLimits) -> InstanceProfile:
    """Pick the smaller of the tiers implied by memory and by CPU.

    The seed sized from host memory alone, so a 512 MiB container on a 64 GiB host got the
    enterprise profile, and a memory-rich but CPU-starved one got 50 concurrent requests.

    Example:
        >>> limits = ContainerLimits(2**29, "cgroup2", 0.5, "cgroup2", 2**34, 8)
        >>> instance_profile(limits).name
        'mvp'
    """
    memory, cpu = limits.memory_limit_effective, limits.cpu_limit_effective
    memory_tier = sum(memory >= bound for bound in _MEMORY_BOUNDS)
    cpu_tier = sum(cpu >= bound for bound in _CPU_BOUNDS)
    tier = min(memory_tier, cpu_tier)
    name, max_concurrent, db_pool_size, cache_entries = _TIERS[tier]
    memory_text, cpu_text = _memory_reason(limits, memory_tier), _cpu_reason(limits, cpu_tier)
    if memory_tier < cpu_tier:
        reason = f"{memory_text}; cpu alone would allow {_TIERS[cpu_tier][0]}"
    elif cpu_tier < memory_tier:
        reason = f"{cpu_text}; memory alone would allow {_TIERS[memory_tier][0]}"
    else:
        reason = f"{memory_text} and {cpu_text}"
    return InstanceProfile(
        name=name,
        max_concurrent=max_concurrent,
        db_pool_size=db_pool_size,
        cache_entries=cache_entries,
        memory_limit_bytes=memory,
        cpu_limit_cores=cpu,
        reason=reason,
    )


@dataclass(frozen=True, slots=True)
class ProcessStats:
    """One reading of a process; percentages are against the container limits, not the host.

    ``cpu_percent`` is of one core, as ``top`` shows it (200 = two busy cores);
    ``cpu_percent_of_limit`` is of the CPU quota. ``alive`` is False when the process could not
    be read, in which case the other figures are zeros.
    """

    pid: int
    cpu_percent: float
    cpu_percent_of_limit: float
    cpu_seconds: float
    rss_bytes: int
    memory_limit_bytes: int
    memory_percent_of_limit: float
    open_fds: int | None
    threads: int
    alive: bool = True

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        return asdict(self)


class ProcessSampler:
    """Cheap, never-raising CPU/RSS/fd readings of one process, meant for a ~1 s background tick.

    CPU percent comes from ``cpu_times`` deltas between samples, so each call costs a couple of
    small /proc reads; the first sample averages over the process's lifetime.

    Example:
        >>> sampler = ProcessSampler()
        >>> sampler.sample().rss_bytes > 0
        True
    """

    def __init__(
        self,
        pid: int | None = None,
        limits: ContainerLimits | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._pid = os.getpid() if pid is None else pid
        self._limits = read_container_limits() if limits is None else limits
        self._clock: Clock = SystemClock() if clock is None else clock
        self._last: tuple[float, float] | None = None  # (monotonic time, cpu seconds)
        self._process: psutil.Process | None = None
        self._create_time: float | None = None
        try:
            self._process = psutil.Process(self._pid)
            self._create_time = self._process.create_time()
        except (psutil.Error, OSError):
            pass

    @property
    def limits(self) -> ContainerLimits:
        """The limits percentages are computed against."""
        return self._limits

    def sample(self) -> ProcessStats:
        """Read the process now; on any failure return zeros with ``alive=False``."""
        now = self._clock.monotonic()
        memory_limit = self._limits.memory_limit_effective
        reading = self._read()
        if reading is None:
            return ProcessStats(
                pid=self._pid,
                cpu_percent=0.0,
                cpu_percent_of_limit=0.0,
                cpu_seconds=0.0,
                rss_bytes=0,
                memory_limit_bytes=memory_limit,
                memory_percent_of_limit=0.0,
                open_fds=None,
                threads=0,
                alive=False,
            )
        cpu_seconds, rss, threads, fds = reading
        if self._last is None:
            start = self._create_time
            elapsed = 0.0 if start is None else self._clock.wall() - start
            used = cpu_seconds
        else:
            elapsed, used = now - self._last[0], cpu_seconds - self._last[1]
        self._last = (now, cpu_seconds)
        cpu_percent = max(0.0, used) / elapsed * 100 if elapsed > 0 else 0.0
        cores = self._limits.cpu_limit_effective
        return ProcessStats(
            pid=self._pid,
            cpu_percent=cpu_percent,
            cpu_percent_of_limit=cpu_percent / cores if cores > 0 else 0.0,
            cpu_seconds=cpu_seconds,
            rss_bytes=rss,
            memory_limit_bytes=memory_limit,
            memory_percent_of_limit=rss / memory_limit * 100 if memory_limit > 0 else 0.0,
            open_fds=fds,
            threads=threads,
        )

    def _read(self) -> tuple[float, int, int, int | None] | None:
        """(cpu seconds, rss, threads, fds) in one oneshot, or None if the process is gone."""
        process = self._process
        if process is None:
            return None
        try:
            with process.oneshot():
                times = process.cpu_times()
                rss = int(process.memory_info().rss)
                threads = int(process.num_threads())
                fds = _num_fds(process)
        except (psutil.Error, OSError):
            return None
        return float(times.user + times.system), rss, threads, fds


class LoopLagMonitor:
    """How late the asyncio event loop wakes up: the clearest sign of a blocked or CPU-bound loop.

    Each tick sleeps ``interval`` seconds and records how much longer than that it took. Only a
    bounded window of recent lags is kept.

    Example:
        >>> monitor = LoopLagMonitor(interval=0.5)
        >>> async def main() -> None:
        ...     monitor.start()
        ...     await asyncio.sleep(0)
        ...     monitor.stop()
        >>> asyncio.run(main())
    """

    def __init__(
        self,
        interval: float = 0.5,
        *,
        on_sample: Callable[[float], None] | None = None,
        window: int = 64,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be a positive number of seconds")
        if window < 1:
            raise ValueError("window must be at least 1")
        self.interval = interval
        self.on_sample = on_sample
        self.last = 0.0
        self.samples = 0
        self._max = 0.0
        self._recent: deque[float] = deque(maxlen=window)
        self._task: asyncio.Task[None] | None = None

    @property
    def mean(self) -> float:
        """Mean lag over the recent window, in seconds (0 before the first tick)."""
        return sum(self._recent) / len(self._recent) if self._recent else 0.0

    def max_since_reset(self) -> float:
        """The largest lag since the previous call, which it resets: one reading per scrape."""
        worst, self._max = self._max, 0.0
        return worst

    async def run(self) -> None:
        """Measure forever; cancelling it leaves the recorded figures consistent."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval)
            self._record(max(0.0, loop.time() - start - self.interval))

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Task[None]:
        """Start measuring on ``loop`` (default: the running loop); a second call is a no-op."""
        if self._task is not None and not self._task.done():
            return self._task
        target = asyncio.get_running_loop() if loop is None else loop
        self._task = target.create_task(self.run(), name="scalewise-loop-lag")
        return self._task

    def stop(self) -> None:
        """Cancel the measuring task, if any; figures recorded so far remain readable."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _record(self, lag: float) -> None:
        self.last = lag
        self.samples += 1
        self._max = max(self._max, lag)
        self._recent.append(lag)
        if self.on_sample is not None:
            try:
                self.on_sample(lag)
            except Exception:
                # A broken callback must not stop the measuring.
                logging.getLogger(__name__).exception("loop lag on_sample callback failed")


def _host_memory() -> int:
    try:
        return int(psutil.virtual_memory().total)
    except (psutil.Error, OSError):
        return 0


def _num_fds(process: psutil.Process) -> int | None:
    """Open file descriptors; None on Windows or when the kernel refuses."""
    try:
        return int(process.num_fds())
    except (AttributeError, psutil.AccessDenied, OSError):
        return None


def _read_text(path: Path) -> str | None:
    try:
        with path.open("rb") as file:
            return file.read(_READ_LIMIT).decode("ascii").strip()
    except (OSError, ValueError):
        return None


def _read_int(path: Path) -> int | None:
    text = _read_text(path)
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _parse_proc_cgroup(path: Path) -> tuple[str, dict[str, tuple[str, str]]]:
    """The v2 path and, per v1 controller, (mount name, path), from ``/proc/self/cgroup``."""
    v2_path = "/"
    v1: dict[str, tuple[str, str]] = {}
    for line in (_read_text(path) or "").splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, cgroup_path = parts
        if not controllers:
            v2_path = cgroup_path
            continue
        for controller in controllers.split(","):
            v1[controller] = (controllers, cgroup_path)
    return v2_path, v1


def _cgroup_dirs(base: Path, cgroup_path: str) -> list[Path]:
    """The process's cgroup directory under ``base``, then each parent up to ``base``.

    Without a cgroup namespace, /proc shows the host-side path while only the container's own
    subtree is mounted, so shorter and shorter suffixes are tried before settling on ``base``.
    """
    parts = [part for part in cgroup_path.strip().split("/") if part not in {"", ".", ".."}]
    leaf = base
    for start in range(len(parts)):
        candidate = base.joinpath(*parts[start:])
        if _is_dir(candidate):
            leaf = candidate
            break
    dirs = [leaf]
    while dirs[-1] != base and base in dirs[-1].parents:
        dirs.append(dirs[-1].parent)
    return dirs


def _v1_mounts(
    root: Path, v1_paths: dict[str, tuple[str, str]], controller: str, names: tuple[str, ...]
) -> list[list[Path]]:
    """Directory walks (leaf first) in each existing v1 mount of ``controller``."""
    mount_name, path = v1_paths.get(controller, (names[0], "/"))
    walks = []
    for name in dict.fromkeys((mount_name, *names)):
        if _is_dir(root / name):
            walks.append(_cgroup_dirs(root / name, path))
    return walks


def _smallest(dirs: list[Path], read: Callable[[Path], float | None]) -> float | None:
    """The tightest limit found at any level, or None when every level is unlimited."""
    limits = [limit for limit in map(read, dirs) if limit is not None]
    return min(limits) if limits else None


def _read_v2_memory(directory: Path) -> float | None:
    value = _read_int(directory / "memory.max")
    return float(value) if value is not None and value > 0 else None


def _read_v2_cpu(directory: Path) -> float | None:
    fields = (_read_text(directory / "cpu.max") or "").split()
    if not fields or fields[0] == "max" or len(fields) > 2:
        return None
    try:
        quota = int(fields[0])
        period = int(fields[1]) if len(fields) == 2 else _DEFAULT_CFS_PERIOD
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _read_v1_memory(directory: Path) -> float | None:
    value = _read_int(directory / "memory.limit_in_bytes")
    return float(value) if value is not None and 0 < value < _V1_UNLIMITED else None


def _read_v1_cpu(directory: Path) -> float | None:
    quota = _read_int(directory / "cpu.cfs_quota_us")
    period = _read_int(directory / "cpu.cfs_period_us")
    if quota is None or period is None or quota <= 0 or period <= 0:
        return None
    return quota / period


def _v1_limit(
    root: Path,
    v1_paths: dict[str, tuple[str, str]],
    controller: str,
    names: tuple[str, ...],
    read: Callable[[Path], float | None],
) -> float | None:
    """The tightest v1 limit in the first mount of ``controller`` that sets one."""
    for walk in _v1_mounts(root, v1_paths, controller, names):
        limit = _smallest(walk, read)
        if limit is not None:
            return limit
    return None


def _exceeds(value: float | None, host: float) -> bool:
    """True when there is no limit or it is above the host's own figure, so binds nothing."""
    return value is None or (host > 0 and value > host)


def _memory_reason(limits: ContainerLimits, tier: int) -> str:
    size = format_size(limits.memory_limit_effective)
    if limits.memory_limit_bytes is None:
        subject = f"host memory {size}"
    else:
        subject = f"memory limit {size} ({limits.memory_source})"
    bound = f"< {format_size(_MEMORY_BOUNDS[tier])}" if tier < 2 else f">= {format_size(_GIB * 3)}"
    return f"{subject} {bound}"


def _cpu_reason(limits: ContainerLimits, tier: int) -> str:
    cores = limits.cpu_limit_effective
    if limits.cpu_limit_cores is None:
        subject = f"host cpus {limits.host_cpus}"
    else:
        subject = f"cpu limit {cores:g} cores ({limits.cpu_source})"
    bound = ("< 1", "< 2", ">= 2")[tier]
    return f"{subject} {bound}"
