"""Moves the wall clock of every Python process of a test run OMAOVI_TEST_SHIFT_DAYS days ahead.

A test that quietly depends on the real date (a literal day that is "in the future"
until the calendar passes it) fails only on the day it expires, and then CI is red for
everyone. ``./dev test`` therefore runs the suite a second time with today moved more
than a year ahead, in the test process and in every device, web or sync process a test
starts: a date that is not relative to the test's own "today" shows up at once.

Only the wall clock moves (``time.time``, ``datetime.now`` and friends); the monotonic
clock that timers and timeouts use is left alone.
"""

import os

_days = os.environ.get("OMAOVI_TEST_SHIFT_DAYS")
if _days:
    from datetime import datetime, timedelta, timezone

    try:
        import time_machine
    except ImportError:
        # Another interpreter than the test run's (the venv a test of systemd/install.sh
        # builds): its programs keep the real clock. The test process itself is checked
        # in tests/conftest.py, so a shift that did not take there still fails loudly.
        time_machine = None
    if time_machine is not None:
        time_machine.travel(datetime.now(timezone.utc) + timedelta(days=int(_days)), tick=True).start()
