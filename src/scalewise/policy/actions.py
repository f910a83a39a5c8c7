"""Acting on a decision: run the user's command (``kubectl scale …``, a PaaS CLI) with it.

The command is an argv list, never a shell string, so a plan name cannot inject anything; the
decision reaches it only through ``SCALEWISE_*`` environment variables. Dry-run is the default:
the hook logs what it would run and runs nothing. A real run is bounded: killed (with its
process group) after ``timeout``, output kept up to :data:`OUTPUT_LIMIT` bytes per stream,
result logged. Failures are reported in the :class:`HookResult`, never raised, so a broken hook
cannot stop the evaluation loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any, Final

from scalewise.policy.model import CommandHook, Recommendation

logger = logging.getLogger("scalewise.actions")

#: Bytes of stdout and of stderr kept from a hook; the rest is read and dropped.
OUTPUT_LIMIT: Final = 64 * 1024
_CHUNK: Final = 8192


@dataclass(frozen=True, slots=True)
class HookResult:
    """What happened: ``skipped`` (why nothing ran), or the exit code and captured output."""

    argv: tuple[str, ...]
    dry_run: bool
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    truncated: bool = False
    duration: float = 0.0
    error: str | None = None
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        """True for a dry run, a deliberate skip, or a command that exited 0 in time."""
        if self.dry_run or self.skipped:
            return self.error is None
        return self.returncode == 0 and not self.timed_out and self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "argv": list(self.argv),
            "dry_run": self.dry_run,
            "returncode": self.returncode,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "timed_out": self.timed_out,
            "truncated": self.truncated,
            "duration": self.duration,
            "error": self.error,
            "skipped": self.skipped,
            "ok": self.ok,
        }


def decision_env(rec: Recommendation) -> dict[str, str]:
    """The ``SCALEWISE_*`` variables a hook sees; empty strings where a value is unknown."""

    def text(value: object) -> str:
        return "" if value is None else str(value)

    def money(value: float | None) -> str:
        return "" if value is None else f"{value:.2f}"

    return {
        "SCALEWISE_ACTION": rec.action,
        "SCALEWISE_KIND": rec.kind,
        "SCALEWISE_TARGET_PLAN": text(rec.target_plan),
        "SCALEWISE_TARGET_INSTANCES": str(rec.target_instances),
        "SCALEWISE_CURRENT_PLAN": text(rec.current_plan),
        "SCALEWISE_CURRENT_INSTANCES": str(rec.current_instances),
        "SCALEWISE_COST_BEFORE": money(rec.cost_before),
        "SCALEWISE_COST_AFTER": money(rec.cost_after),
        "SCALEWISE_REASONS": "\n".join(rec.reasons),
        "SCALEWISE_DECISION_JSON": json.dumps(rec.to_dict(), default=str),
    }


def run_command_hook(
    hook: CommandHook, rec: Recommendation, env: Mapping[str, str] | None = None
) -> HookResult:
    """Run ``hook.argv`` for ``rec`` (or only log it, in dry-run); ``env`` replaces
    ``os.environ`` as the base environment. A ``hold`` runs nothing: there is nothing to do."""
    argv = tuple(hook.argv)
    if not argv:
        return HookResult(argv, hook.dry_run, skipped="no command configured")
    if rec.action == "hold":
        return HookResult(argv, hook.dry_run, skipped="hold: nothing to change")
    variables = decision_env(rec)
    summary = (
        f"{rec.action} {rec.kind} → plan={variables['SCALEWISE_TARGET_PLAN'] or '-'} "
        f"instances={rec.target_instances}"
    )
    if hook.dry_run:
        logger.info("dry run: would run %s (%s)", shlex.join(argv), summary)
        return HookResult(argv, True)
    merged = {**(os.environ if env is None else env), **variables}
    result = _run(argv, merged, hook.timeout)
    _log(result, summary)
    return result


async def arun_command_hook(
    hook: CommandHook, rec: Recommendation, env: Mapping[str, str] | None = None
) -> HookResult:
    """:func:`run_command_hook` in a worker thread, for the async evaluation loop."""
    return await asyncio.to_thread(run_command_hook, hook, rec, env)


def _run(argv: tuple[str, ...], env: dict[str, str], timeout: float) -> HookResult:
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, so a timeout kills its children
        )
    except OSError as exc:
        return HookResult(argv, False, error=f"could not start {argv[0]!r}: {exc.strerror or exc}")
    readers = [_Reader(proc.stdout), _Reader(proc.stderr)]
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        proc.wait()
    for reader in readers:
        reader.join()
    out, err = readers
    return HookResult(
        argv,
        False,
        returncode=proc.returncode,
        stdout=out.text(),
        stderr=err.text(),
        timed_out=timed_out,
        truncated=out.dropped > 0 or err.dropped > 0,
        duration=time.monotonic() - start,
        error=f"timed out after {timeout:g}s and was killed" if timed_out else None,
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the process we started and its group (it leads one: ``start_new_session``)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except OSError:
        proc.kill()


class _Reader:
    """Drains one pipe in a thread, keeping the first :data:`OUTPUT_LIMIT` bytes."""

    def __init__(self, stream: IO[bytes] | None) -> None:
        self.kept = bytearray()
        self.dropped = 0
        self._stream = stream
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        if self._stream is None:
            return
        with self._stream:
            while chunk := self._stream.read1(_CHUNK):  # type: ignore[attr-defined]
                room = OUTPUT_LIMIT - len(self.kept)
                self.kept += chunk[:room]
                self.dropped += max(0, len(chunk) - room)

    def join(self) -> None:
        # A grandchild that escaped the group could hold the pipe open: do not wait forever.
        self._thread.join(timeout=5.0)

    def text(self) -> str:
        return self.kept.decode("utf-8", errors="replace")


def _log(result: HookResult, summary: str) -> None:
    command = shlex.join(result.argv)
    if result.ok:
        logger.info("ran %s (%s): exit 0 in %.2fs", command, summary, result.duration)
    else:
        logger.warning(
            "hook %s (%s) failed: %s; stderr: %s",
            command,
            summary,
            result.error or f"exit {result.returncode}",
            result.stderr.strip()[-500:] or "-",
        )
