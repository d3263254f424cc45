"""Child processes measured the way the kernel counts them: wall time, CPU time and peak RSS.

``os.wait4`` hands back the CPU time of exactly the child it reaps. Its
``ru_maxrss`` cannot be used: Linux carries the RSS of the process image that
forked (here the benchmark itself) over the exec into it. The peak RSS is the
kernel's high-water mark of the child's own memory (``VmHWM``), read each time
the child is polled while it runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Finished:
    returncode: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float


class Child:
    def __init__(self, args: list[str], **popen):
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(args, **popen)
        self.finished: Finished | None = None
        self._peak_rss_mb = 0.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> Finished | None:
        if self.finished is None:
            try:
                self._peak_rss_mb = max(self._peak_rss_mb, _status_mb(self.proc.pid, "VmHWM"))
            except (OSError, ValueError):
                pass  # it has just ended: its memory is gone, the last reading stands
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self._reaped(status, usage)
        return self.finished

    def wait(self, timeout: float) -> Finished:
        """Wait at most ``timeout`` seconds, then kill the child and still report it."""
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                self._reaped(*os.wait4(self.proc.pid, 0)[1:])
                break
            time.sleep(0.02)
        return self.finished

    def stop(self, timeout: float = 10.0) -> Finished:
        """SIGTERM, as systemd stops a service."""
        if self.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def _reaped(self, status: int, usage) -> None:
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.finished = Finished(
            returncode=self.proc.returncode,
            seconds=time.perf_counter() - self.started,
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            peak_rss_mb=self._peak_rss_mb,
        )


def cpu_seconds(pid: int) -> float:
    """User plus system time a running process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and all its descendants so far, ended ones included.

    A server that forks a backend per connection (PostgreSQL) has its work spread over
    children that come and go; the kernel adds an ended child's time to its parent's
    ``cutime``/``cstime`` when it is reaped, so the difference of two readings counts
    every backend that ran in between.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0  # ended while we looked; its parent has counted it
    own = sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICKS
    return own + sum(tree_cpu_seconds(child) for child in children(pid))


def rss_mb(pid: int) -> float:
    return _status_mb(pid, "VmRSS")


def service_memory(pid: int) -> dict:
    """The memory of a process and its children (a service's worker processes).

    Their RSS cannot be summed: forked workers share most of their pages with the
    process they were forked from, and each RSS counts those pages again. The
    proportional set size (PSS) shares each page out among the processes that map
    it, so its sum is the memory the service takes.
    """
    pids = [pid, *children(pid)]
    return {
        "processes": len(pids),
        "rss_each_mb": [round(rss_mb(p), 1) for p in pids],
        "pss_mb": round(sum(_pss_kb(p) for p in pids) / 1024, 1),
    }


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a service's forked workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except OSError:
                pass  # ended while we looked
    return found


def _pss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise ValueError(f"no Pss for process {pid}")


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no {field} for process {pid}")


def measure_idle(args: list[str], env: dict, seconds: float, log: Path, cwd: Path | None = None) -> dict:
    """CPU and memory of a process (and its workers) left alone for ``seconds`` once it has settled, then stopped."""
    with open(log, "wb") as output:
        child = Child(args, cwd=cwd, env=env, stdout=output, stderr=output)
    try:
        time.sleep(max(1.0, seconds / 10))  # starting up is not idling
        if child.poll() is not None:
            raise RuntimeError(f"{' '.join(args[:3])} ended at once (exit code {child.finished.returncode}); see {log}")
        used = cpu_seconds(child.pid)
        time.sleep(seconds)
        used = cpu_seconds(child.pid) - used
        memory = service_memory(child.pid)
        child.poll()
    finally:
        finished = child.stop()
    return {"cpu_percent": round(100 * used / seconds, 2), "rss_mb": memory["rss_each_mb"][0],
            "peak_rss_mb": round(finished.peak_rss_mb, 1)} | memory
