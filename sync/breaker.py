"""A small circuit breaker, so an outage costs one slow tap, not one per tap.

When the library system is down, asking it anyway makes every patron wait for the
timeout before the door decides from the cache. The breaker remembers the outage:
after ``failures`` consecutive failures, or after a single timeout, it *opens* and
every call fails at once with ``BreakerOpen`` for ``cooldown`` seconds. Then it is
*half-open*: one call is let through as a trial. If the trial succeeds the breaker
*closes* again; if it fails the breaker opens for another cool-down.

The clock is injectable so tests can move time instead of sleeping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


class BreakerOpen(Exception):
    """The breaker is open: the call was not made. Decide without the remote answer."""


class CircuitBreaker:
    """Wraps calls to one remote service; see the module docstring for the states.

    ``trip_at_once`` lists exception types that open the breaker on their first
    occurrence. Timeouts are the default: a timeout already cost a patron the whole
    waiting time, and a second one would cost the next patron the same.
    """

    def __init__(
        self,
        failures: int = 3,
        cooldown: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        trip_at_once: tuple[type[BaseException], ...] = (TimeoutError,),
        name: str = "remote service",
    ):
        if failures < 1:
            raise ValueError(f"failures must be at least 1, got {failures}")
        if cooldown <= 0:
            raise ValueError(f"cooldown must be more than 0 seconds, got {cooldown}")
        self.failures = failures
        self.cooldown = cooldown
        self.name = name
        self._clock = clock
        self._trip_at_once = trip_at_once
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open`` (the cool-down is over; the next call is a trial)."""
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        if self._clock() - self._opened_at < self.cooldown:
            return OPEN
        return HALF_OPEN

    def call(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Call ``fn`` unless the breaker is open; its exceptions are counted and re-raised.

        While a half-open trial is running, other calls fail with ``BreakerOpen``
        rather than pile onto a service that may still be down.
        """
        with self._lock:
            state = self._state()
            if state == OPEN or (state == HALF_OPEN and self._trial_running):
                raise BreakerOpen(f"{self.name}: circuit open, not calling")
            if state == HALF_OPEN:
                self._trial_running = True
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            with self._lock:
                self._failed(exc, trial=(state == HALF_OPEN))
            raise
        with self._lock:
            self._succeeded()
        return result

    def _failed(self, exc: Exception, *, trial: bool) -> None:
        self._trial_running = False
        self._consecutive += 1
        if trial or isinstance(exc, self._trip_at_once) or self._consecutive >= self.failures:
            self._opened_at = self._clock()
            # Only the exception's type: the breaker does not know what its message may carry.
            log.warning(
                "%s: circuit open for %g s after %d failure(s), the last a %s",
                self.name, self.cooldown, self._consecutive, type(exc).__name__,
            )

    def _succeeded(self) -> None:
        if self._opened_at is not None:
            log.info("%s: answered again, circuit closed", self.name)
        self._trial_running = False
        self._consecutive = 0
        self._opened_at = None
