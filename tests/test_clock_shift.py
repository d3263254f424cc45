"""The shifted run of ``./dev test`` (tests/clock_shift) moves the wall clock and nothing else."""

import subprocess
import sys
from pathlib import Path

from simulated import with_pythonpath

SHIFT = Path(__file__).parent / "clock_shift"
PROBE = """
import datetime, os, tempfile, time
with tempfile.TemporaryFile() as f:
    kernel = os.fstat(f.fileno()).st_mtime
started = time.monotonic()
time.sleep(0.01)
print(round((time.time() - kernel) / 86400), datetime.date.today() - datetime.date.fromtimestamp(kernel), time.monotonic() > started)
"""


def run_probe(env):
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60, check=True).stdout.split()


def test_a_shifted_process_lives_400_days_ahead_with_working_sleep_and_timers():
    env = with_pythonpath({"PATH": "/usr/bin:/bin", "OMAOVI_TEST_SHIFT_DAYS": "400"}, str(SHIFT))
    days, today_shift, *_, monotonic_ok = run_probe(env)
    assert days == "400" and today_shift.startswith("400") and monotonic_ok == "True"


def test_without_the_variable_nothing_moves():
    days, *_ = run_probe(with_pythonpath({"PATH": "/usr/bin:/bin"}, str(SHIFT)))
    assert days == "0"
