"""A simulated wall clock and monotonic clock for driving a Controller through hours in a second."""

import os
from datetime import datetime, timedelta, timezone

#: What a test's child process must inherit for ``./dev test``'s shifted run (tests/clock_shift).
CLOCK_SHIFT_VARIABLES = ("OMAOVI_TEST_SHIFT_DAYS", "PYTHONPATH")


def child_env(**variables: str) -> dict[str, str]:
    """A small, explicit environment for a child process that still keeps the test run's clock shift."""
    inherited = {name: os.environ[name] for name in CLOCK_SHIFT_VARIABLES if name in os.environ}
    return inherited | variables


def with_pythonpath(env: dict[str, str], path: str) -> dict[str, str]:
    """``env`` with ``path`` put first on PYTHONPATH, keeping what was there (the clock shift among it)."""
    return env | {"PYTHONPATH": os.pathsep.join(filter(None, [path, env.get("PYTHONPATH", "")]))}


class SimulatedTime:
    def __init__(self, start: datetime):
        self.now = start.astimezone(timezone.utc)
        self.mono = 1000.0

    def wall(self) -> datetime:
        return self.now

    def clock(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds

    def run(self, controller, until: datetime, step: float = 30.0, each=None) -> None:
        """Step the controller's loop by hand from now to ``until``; ``each`` sees every step."""
        while self.now < until:
            self.advance(step)
            controller.step()
            if each is not None:
                each(self.now)
