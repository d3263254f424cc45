"""Whether the door controller runs, as the staff page and monitoring can tell from outside.

The device loop writes the ``device`` status row every ``HEARTBEAT_SECONDS`` and,
when it stops cleanly, once more with ``stopped_at``. A crash, a kill or a hung
loop writes nothing, so a heartbeat older than ``SILENT_AFTER`` means the same
as a stop. What the device reported about its doors and the building is true
only while it runs: a stopped device has released its relays, whatever its last
rows say.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from device.events import parse_utc

#: The status row the heartbeat lives in.
KEY = "device"
#: How often the device loop writes its heartbeat.
HEARTBEAT_SECONDS = 30.0
#: Three heartbeats missed: the loop is not running (a loaded Pi may miss one).
SILENT_AFTER = timedelta(seconds=3 * HEARTBEAT_SECONDS)


@dataclass(frozen=True)
class Liveness:
    running: bool
    #: When the device was last known to run (its clean stop, or its last heartbeat),
    #: while it is not running; None while it runs, or if it never ran.
    not_running_since: datetime | None
    #: When the last heartbeat was written, and its age in seconds; None if it never was.
    heartbeat_at: datetime | None
    heartbeat_age: float | None


def liveness(row: dict | None, now: datetime) -> Liveness:
    """``row`` is the ``device`` entry of ``Store.status()``, or None when the device never wrote one."""
    if row is None:
        return Liveness(False, None, None, None)
    beat = parse_utc(row["updated_at"])
    age = max(0.0, (now - beat).total_seconds())
    value = row["value"] if isinstance(row["value"], dict) else {}
    if value.get("stopped_at"):
        return Liveness(False, parse_utc(value["stopped_at"]), beat, age)
    if now - beat > SILENT_AFTER:
        return Liveness(False, beat, beat, age)
    return Liveness(True, None, beat, age)
