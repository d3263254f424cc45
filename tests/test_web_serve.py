"""``omaovi web`` with more than one worker process, as a branch runs it.

The workers share the port, so what staff notice is that every request is
answered, that a stopped service leaves nothing behind holding the port, and that
a broken worker brings the service down for systemd to start again rather than
leaving some of the staff's requests unanswered.
"""

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from admin_web import serve
from bench.procs import children
from tests.webclient import write_branch

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(condition, what: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.05)


def _get(url: str, timeout: float = 5) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        answer.read()
        return answer.status


@contextlib.contextmanager
def web_service(tmp_path, workers: int = 2):
    """``omaovi web`` answering on a free port, with its worker pids; killed if the test leaves it running."""
    port = _free_port()
    config = write_branch(tmp_path)
    config.path.write_text(config.path.read_text().replace("[web]\n", f'[web]\nhost = "127.0.0.1"\nport = {port}\nworkers = {workers}\n'))
    process = subprocess.Popen(
        [sys.executable, "-m", "device.cli", "web", "-c", str(config.path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}/login"
    try:
        _wait(lambda: len(children(process.pid)) == workers - 1, f"{workers - 1} worker processes")

        def answers() -> bool:
            with contextlib.suppress(OSError):
                return _get(url, timeout=1) == 200
            return False

        _wait(answers, "the staff page to answer")
        yield process, children(process.pid), url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def test_every_worker_answers_requests(tmp_path):
    """Connections are spread over the workers: with one worker paused, some go unanswered
    until it goes on, and then every request has its answer."""
    with web_service(tmp_path, workers=2) as (_, [worker], url):
        os.kill(worker, signal.SIGSTOP)
        try:
            with ThreadPoolExecutor(16) as pool:
                waiting = [pool.submit(_get, url, 30) for _ in range(16)]
                time.sleep(1.5)
                unanswered = sum(not request.done() for request in waiting)
                os.kill(worker, signal.SIGCONT)
                statuses = [request.result() for request in waiting]
        finally:
            os.kill(worker, signal.SIGCONT)
        assert 0 < unanswered < 16  # both processes had connections
        assert statuses == [200] * 16


def test_stopping_the_service_stops_every_worker(tmp_path):
    with web_service(tmp_path, workers=3) as (process, workers, _):
        assert len(workers) == 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
        _wait(lambda: not any(_alive(pid) for pid in workers), "the workers to end")


def test_a_worker_that_dies_stops_the_service_for_systemd_to_restart(tmp_path):
    with web_service(tmp_path, workers=2) as (process, [worker], _):
        os.kill(worker, signal.SIGKILL)
        assert process.wait(15) == 1
        assert f"web worker {worker} ended (killed by SIGKILL)" in process.stdout.read()


def test_workers_end_with_a_killed_service_and_free_the_port(tmp_path):
    """kill -9 of the first process (a power cut's kin): no worker is left answering on the port."""
    with web_service(tmp_path, workers=2) as (process, [worker], url):
        process.kill()
        process.wait()
        _wait(lambda: not _alive(worker), "the worker to end with the service")
        with pytest.raises(OSError):
            _get(url, timeout=2)


def test_one_worker_serves_without_children(tmp_path):
    with web_service(tmp_path, workers=1) as (process, workers, url):
        assert workers == [] and _get(url) == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0


def test_waitress_queue_warnings_are_kept_to_one_a_minute(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(serve.time, "monotonic", lambda: clock[0])
    limiter = serve._QueueWarnings()

    def warning(depth: int) -> logging.LogRecord:
        return logging.LogRecord("waitress.queue", logging.WARNING, __file__, 1, "Task queue depth is %d", (depth,), None)

    assert limiter.filter(warning(1))
    assert [limiter.filter(warning(depth)) for depth in (2, 3, 4)] == [False, False, False]
    clock[0] += 61
    later = warning(5)
    assert limiter.filter(later)
    assert later.getMessage() == "Task queue depth is 5 (3 more since the last one logged)"
