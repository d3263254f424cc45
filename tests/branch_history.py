"""Giving a test database a past: the statistics count open hours only from the branch's first day."""

from datetime import datetime

from device.events import hour_text
from device.store import INSTALLED_KEY, Store


def installed_at(store: Store, moment: datetime) -> None:
    """Make the branch's first day ``moment``'s, as if its database had been made then."""
    with store.conn:
        store.conn.execute("UPDATE settings SET value = ? WHERE key = ?", (hour_text(moment), INSTALLED_KEY))
