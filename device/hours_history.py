"""The hours that were in force on each day, so that past statistics stay as they were.

Staff edit the weekly pattern now and then; a day's open hours must be measured
with the pattern that applied that day, not the one stored today. The store keeps
every version of the pattern with the instant it was saved; a version applies from
its local day on (so an edit made at noon counts for the whole of that day) until
the next one. The earliest version also covers the days before it: no other hours
are known for them. Dated exceptions are dated already and belong to every version.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import date

from device.schedule import Schedule


@dataclass(frozen=True)
class HoursHistory:
    """The versions of the hours, each with the local day it took effect, oldest first.

    Several versions may share a day: the last of them is that day's, and the
    first of all still covers the days before it.
    """

    versions: tuple[tuple[date, Schedule], ...]
    # The days alone, for the search that a year of statistics makes 365 times.
    _days: tuple[date, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.versions:
            raise ValueError("the hours need at least one version")
        days = tuple(day for day, _schedule in self.versions)
        if list(days) != sorted(days):
            raise ValueError("hour versions must be in the order they took effect")
        object.__setattr__(self, "_days", days)

    def on(self, day: date) -> Schedule:
        """The hours in force on a local day: the last version that took effect on it or before."""
        return self.versions[max(bisect_right(self._days, day) - 1, 0)][1]
