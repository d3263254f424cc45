"""Which granted taps are a new physical visit, for the statistics.

A patron who taps, steps back out for the bike lock and taps again came once. The
yearly library statistics ask for physical visits, so a card's taps within the
window after its counted visit count as one. The window is kept in memory only:
after a restart of the controller a card's next tap counts again, at most one
visit too many per card.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta


class RepeatTaps:
    """The cards counted as a visit within the last ``window``, oldest first."""

    def __init__(self, window: timedelta):
        self.window = window
        self._counted: OrderedDict[str, datetime] = OrderedDict()

    def is_repeat(self, card_key: str, at: datetime) -> bool:
        """Whether a granted tap at ``at`` repeats the card's visit counted less than ``window`` before.

        A tap that is not a repeat starts the card's new visit. A wall clock
        stepped back makes the next tap a new visit rather than hide visits.
        """
        while self._counted and not timedelta(0) <= at - next(iter(self._counted.values())) < self.window:
            self._counted.popitem(last=False)
        counted = self._counted.get(card_key)
        if counted is not None and timedelta(0) <= at - counted < self.window:
            return True
        self._counted.pop(card_key, None)
        self._counted[card_key] = at
        return False
