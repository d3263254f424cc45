"""The CPU of a Raspberry Pi 4 class machine, emulated with a cgroup v1 CPU quota (P9).

A Pi 4's Cortex-A72 cores do roughly a quarter of the work of one of this
machine's, so the processes a branch runs are held to two cores at a quarter
each: CPUs 0 and 1 only (``sched_setaffinity``), and together at most 5 ms of CPU
in every 10 ms period (``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``).

A process joins by its pid being written into the group's ``cgroup.procs``; its
threads go with it, and what it forks or starts later is born inside. The group is
left as it was found, pass or fail: every process moved back to the root group,
the affinities restored, the group removed.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from bench.procs import children

ROOT = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 10_000
QUOTA_US = 5_000
CPUS = frozenset({0, 1})


class CpuBudget:
    def __init__(self, name: str):
        self.path = ROOT / f"omaovi-bench-{name}-{os.getpid()}"
        self._affinities: dict[int, set[int]] = {}

    def __enter__(self) -> "CpuBudget":
        _check_writable()
        missing = CPUS - os.sched_getaffinity(0)
        if missing:
            raise RuntimeError(f"the CPU budget needs CPUs {sorted(CPUS)}; this process may not run on {sorted(missing)}")
        self.path.mkdir()
        try:
            (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(QUOTA_US))
        except BaseException:
            self.path.rmdir()
            raise
        return self

    def add(self, pid: int, *, workers: bool = False) -> None:
        """``pid`` with its threads into the budget, and with ``workers`` every process below it too
        (a server's forked workers; not the benchmark's, whose children stand for other machines)."""
        for process in [pid, *(_descendants(pid) if workers else [])]:
            for thread in _threads(process):
                with contextlib.suppress(ProcessLookupError):
                    self._affinities.setdefault(thread, os.sched_getaffinity(thread))
                    os.sched_setaffinity(thread, CPUS)
            (self.path / "cgroup.procs").write_text(str(process))

    def pids(self) -> list[int]:
        return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]

    def throttled(self) -> dict:
        """How often the quota held the group back, from the kernel's ``cpu.stat``."""
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        return {"periods": int(stat["nr_periods"]), "throttled_periods": int(stat["nr_throttled"]),
                "throttled_seconds": round(int(stat["throttled_time"]) / 1e9, 2)}

    def __exit__(self, *exc) -> None:
        """Every process back to the root group, every affinity back, the group gone."""
        try:
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError, OSError):  # ended meanwhile
                    (ROOT / "cgroup.procs").write_text(str(pid))
            for thread, cpus in self._affinities.items():
                with contextlib.suppress(ProcessLookupError, OSError):
                    os.sched_setaffinity(thread, cpus)
        finally:
            self.path.rmdir()


def _check_writable() -> None:
    """A clear error, not a silent skip: P9 without the budget would be P1 under load."""
    if not (ROOT / "cpu.cfs_quota_us").exists():
        raise RuntimeError(f"P9 needs the cgroup v1 cpu controller at {ROOT}; it is not mounted here")
    if not os.access(ROOT, os.W_OK):
        raise RuntimeError(f"P9 needs to create a cgroup under {ROOT} (as root); it is not writable for uid {os.getuid()}")


def _threads(pid: int) -> list[int]:
    try:
        return [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]
    except OSError:
        return []


def _descendants(pid: int) -> list[int]:
    found = []
    for child in children(pid):
        found += [child, *_descendants(child)]
    return found
