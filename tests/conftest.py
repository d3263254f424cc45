"""Shared test hygiene."""

import threading
import time

import pytest


@pytest.fixture(autouse=True)
def no_reader_left_running():
    """A reader thread that outlives its test keeps reopening its device path, and a
    later test's pseudo-terminal may get the same /dev/pts number: it would steal
    that test's bytes. Every test must stop the readers it starts."""
    yield
    deadline = time.monotonic() + 2
    while True:
        alive = [t.name for t in threading.enumerate() if t.name.startswith("reader ") and t.is_alive()]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not alive, f"reader threads still running after the test: {alive}"
