"""P9's CPU budget: processes really run inside it, and everything is put back, pass or fail."""

import os
import subprocess
import sys
import time

import pytest

from bench import cpu_budget
from bench.cpu_budget import CpuBudget


def _cpu_group(pid: int) -> str:
    for line in open(f"/proc/{pid}/cgroup").read().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
    raise AssertionError(f"no cpu cgroup for {pid}")


@pytest.fixture
def server():
    """A parent with a forked worker, as ``omaovi web`` runs."""
    code = "import os, time\nif os.fork() == 0:\n    time.sleep(60)\nelse:\n    time.sleep(60)\n"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        yield proc
    finally:
        for pid in cpu_budget._descendants(proc.pid):
            os.kill(pid, 9)
        proc.kill()
        proc.wait()


def _wait_for_worker(proc) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = cpu_budget._descendants(proc.pid)
        if workers:
            return workers[0]
        time.sleep(0.02)
    raise AssertionError("the worker was not forked")


@pytest.mark.skipif(not os.access(cpu_budget.ROOT, os.W_OK), reason="needs a writable cgroup v1 cpu controller (root)")
def test_a_server_and_its_workers_run_in_the_budget_and_are_put_back_when_the_figure_fails(server):
    worker = _wait_for_worker(server)
    before = _cpu_group(server.pid), os.sched_getaffinity(server.pid)
    with pytest.raises(RuntimeError, match="the figure broke"):
        with CpuBudget("test") as budget:
            budget.add(server.pid, workers=True)
            group = "/" + budget.path.name
            assert _cpu_group(server.pid) == _cpu_group(worker) == group
            assert os.sched_getaffinity(server.pid) == os.sched_getaffinity(worker) == {0, 1}
            assert (budget.path / "cpu.cfs_quota_us").read_text().strip() == "5000"
            assert (budget.path / "cpu.cfs_period_us").read_text().strip() == "10000"
            raise RuntimeError("the figure broke")
    assert not budget.path.exists()
    assert (_cpu_group(server.pid), os.sched_getaffinity(server.pid)) == before
    assert _cpu_group(worker) == before[0]


@pytest.mark.skipif(not os.access(cpu_budget.ROOT, os.W_OK), reason="needs a writable cgroup v1 cpu controller (root)")
def test_the_benchmark_process_joins_without_its_children(server):
    with CpuBudget("test") as budget:
        budget.add(os.getpid())
        assert _cpu_group(os.getpid()) == "/" + budget.path.name
        assert _cpu_group(server.pid) != "/" + budget.path.name
    assert _cpu_group(os.getpid()) != "/" + budget.path.name


def test_without_the_cpu_controller_the_figure_says_so_instead_of_running_unbudgeted(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu_budget, "ROOT", tmp_path / "cpu")
    with pytest.raises(RuntimeError, match="cgroup v1 cpu controller .* not mounted"):
        with CpuBudget("test"):
            pass


def test_a_cpu_controller_it_may_not_write_is_a_clear_error(tmp_path, monkeypatch):
    root = tmp_path / "cpu"
    root.mkdir()
    (root / "cpu.cfs_quota_us").write_text("-1\n")
    monkeypatch.setattr(cpu_budget, "ROOT", root)
    monkeypatch.setattr(cpu_budget.os, "access", lambda path, mode: False)
    with pytest.raises(RuntimeError, match="not writable"):
        with CpuBudget("test"):
            pass
    assert list(root.iterdir()) == [root / "cpu.cfs_quota_us"]
