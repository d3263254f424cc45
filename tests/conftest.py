"""Shared test hygiene, and how hard the property-based tests try."""

import os
import tempfile
import threading
import time
from datetime import datetime

import pytest
from hypothesis import settings

#: The everyday run must stay quick on two shared cores; ``--long`` (or
#: OMAOVI_LONG=1) is the soak before a release: 10,000 inputs per parser.
settings.register_profile("omaovi", max_examples=100, deadline=None)
settings.register_profile("omaovi-long", max_examples=10_000, deadline=None)


def pytest_addoption(parser):
    parser.addoption(
        "--long", action="store_true", default=os.environ.get("OMAOVI_LONG") == "1",
        help="run the property-based tests with 10,000 examples each (also OMAOVI_LONG=1)",
    )


def pytest_configure(config):
    settings.load_profile("omaovi-long" if config.getoption("--long") else "omaovi")
    _check_clock_shift()


def _check_clock_shift():
    """The shifted run (tests/clock_shift) proves nothing if the shift did not take: say so loudly."""
    days = os.environ.get("OMAOVI_TEST_SHIFT_DAYS")
    if not days:
        return
    with tempfile.TemporaryFile() as probe:  # the kernel stamps the file with the real time
        real = os.fstat(probe.fileno()).st_mtime
    if time.time() - real < (int(days) - 1) * 86400:
        raise pytest.UsageError("OMAOVI_TEST_SHIFT_DAYS is set but the clock did not move: put tests/clock_shift on PYTHONPATH")


def pytest_report_header(config):
    days = os.environ.get("OMAOVI_TEST_SHIFT_DAYS")
    return f"wall clock moved {days} days ahead (tests/clock_shift); today is {datetime.now():%Y-%m-%d}" if days else None


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


@pytest.fixture
def branch_config(tmp_path):
    """A branch with an entrance and a booth in a temporary folder (see tests/webclient.py)."""
    from webclient import write_branch

    return write_branch(tmp_path)


@pytest.fixture
def web_app(branch_config):
    """The staff page app with two users, ``admin`` and ``staff``."""
    from webclient import WebClient, make_app

    app = make_app(branch_config)
    app.test_client_class = WebClient
    return app


@pytest.fixture
def web_store(web_app, branch_config):
    """The database the app uses, opened as the device would."""
    from device.store import Store

    store = Store(branch_config.database)
    yield store
    store.close()


@pytest.fixture
def anonymous(web_app):
    return web_app.test_client()


@pytest.fixture
def staff(web_app):
    client = web_app.test_client()
    assert client.login("staff").status_code == 302
    return client


@pytest.fixture
def admin(web_app):
    client = web_app.test_client()
    assert client.login("admin").status_code == 302
    return client


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI nothing is skipped: a test that would skip (no root, no tool) fails there instead,
    so a missing install step cannot hide behind a green run."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") == "true" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every test must run: {reason}"
