"""A simulated wall clock and monotonic clock for driving a Controller through hours in a second."""

from datetime import datetime, timedelta, timezone


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
