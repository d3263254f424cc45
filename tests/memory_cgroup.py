"""A memory cgroup standing in for a unit's ``MemoryMax=``, for tests that run real processes in it.

systemd's MemoryMax is the cgroup's memory limit: the kernel's OOM killer ends a
process of the group that goes over it. Here the cgroup v1 memory controller
(writable as root) is given the same limit, with swap counted too where the
kernel offers that, so that nothing escapes the limit by swapping.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup/memory")


class MemoryCgroup:
    def __init__(self, path: Path):
        self.path = path

    def _read(self, name: str) -> str:
        return (self.path / name).read_text()

    def add_self(self) -> None:
        """For ``preexec_fn``: the child joins before it execs, so all it forks is inside too."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    @property
    def peak_mb(self) -> float:
        return int(self._read("memory.max_usage_in_bytes")) / 2**20

    @property
    def oom_kills(self) -> int:
        """Processes the OOM killer ended in this group (kernels since 4.13 count them)."""
        for line in self._read("memory.oom_control").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def pids(self) -> list[int]:
        return [int(pid) for pid in self._read("cgroup.procs").split()]


@contextlib.contextmanager
def memory_cgroup(name: str, limit_mb: int):
    """A fresh memory cgroup limited to ``limit_mb``; every process left in it is killed, and the group removed."""
    path = ROOT / f"omaovi-test-{name}-{os.getpid()}"
    path.mkdir()
    group = MemoryCgroup(path)
    try:
        (path / "memory.limit_in_bytes").write_text(str(limit_mb * 2**20))
        with contextlib.suppress(OSError):  # swap accounting may be off; this machine has no swap either
            (path / "memory.memsw.limit_in_bytes").write_text(str(limit_mb * 2**20))
        yield group
    finally:
        deadline = time.monotonic() + 10
        while True:
            left = group.pids()
            if not left or time.monotonic() > deadline:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        path.rmdir()
