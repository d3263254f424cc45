"""The database cannot be written (disk full) or cannot be read at all.

The behaviour, as docs/reliability.md describes it: staff cards still open the
door; everyone else is denied with ``unavailable`` and hears the denial, since a
grant that leaves no record is not allowed; the events wait in memory and are
written, with a ``storage_failed``/``storage_recovered`` pair saying when and how
many, as soon as the disk has room; and the loop neither crashes nor hammers the
full disk with retries.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from datetime import datetime, timezone

import pytest
from branch_rig import ALLOWED, BUZZER_PIN, KEY, STAFF, UNKNOWN, Branch, Seconds

from device import controller as controller_module
from device.cards import card_key
from device.events import utc_text
from device.policy import Reason
from device.store import Store

START = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)
NEW_STAFF = "90000002"


class FailingDisk(Store):
    """A Store whose disk the test can fill up, or make unreadable, at the storage layer."""

    full = False
    unreadable = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.write_attempts = 0

    def record(self, events):
        self.write_attempts += 1
        if self.full:
            raise sqlite3.OperationalError("database or disk is full")
        super().record(events)

    def patron(self, key, today=None):
        if self.unreadable:
            raise sqlite3.DatabaseError("database disk image is malformed")
        return super().patron(key, today)

    def staff_cards(self):
        if self.unreadable:
            raise sqlite3.DatabaseError("database disk image is malformed")
        return super().staff_cards()


@pytest.fixture
def branch(tmp_path):
    made = []

    def build(**kwargs) -> Branch:
        made.append(Branch(tmp_path, START, store_class=FailingDisk, **kwargs))
        return made[-1]

    yield build
    for b in made:
        b.close()


def beeps(b: Branch) -> int:
    """How many times the buzzer has sounded since the door was set up."""
    states = [s.state for s in b.factory.pin(BUZZER_PIN).states]
    return sum(1 for before, after in zip(states, states[1:]) if after and not before)


def test_a_full_disk_lets_only_staff_in_and_logs_everything_once_there_is_room(branch):
    seconds = Seconds()
    b = branch(clock=seconds)
    b.store.full = True

    assert b.tap(ALLOWED).decision.reason is Reason.UNAVAILABLE and not b.relay_on
    assert b.tap(UNKNOWN).decision.reason is Reason.UNKNOWN_CARD and not b.relay_on
    assert b.tap(STAFF).decision.reason is Reason.STAFF and b.relay_on
    assert b.events() == []

    attempts = b.store.write_attempts
    for _ in range(100):  # ten seconds of the loop's ticks
        seconds.advance(0.1)
        b.tick()
    assert b.store.write_attempts - attempts <= 11, "retries at most once a second, not at every tick"

    b.store.full = False
    seconds.advance(1.0)
    b.tick()
    logged = b.events()
    assert [e["type"] for e in logged] == ["storage_failed", "tap", "tap", "tap", "storage_recovered"]
    assert [e["reason"] for e in logged if e["type"] == "tap"] == ["unavailable", "unknown_card", "staff"]
    assert logged[0]["ts"] == utc_text(START) and "disk is full" in json.loads(logged[0]["detail"])["error"]
    assert json.loads(logged[-1]["detail"]) == {"since": utc_text(START), "waited": 3, "dropped": 0}
    assert sum(b.hourly().values()) == 3

    b.tap(ALLOWED)
    b.tick()
    assert [e["type"] for e in b.events()].count("storage_recovered") == 1
    assert b.events()[-1]["reason"] == "granted"


def test_events_beyond_the_memory_limit_are_counted_as_lost(branch, monkeypatch):
    monkeypatch.setattr(controller_module, "MAX_PENDING_EVENTS", 5)
    b = branch()
    b.store.full = True
    for _ in range(8):
        b.tap(UNKNOWN)
    b.store.full = False
    b.tap(STAFF)
    recovered = json.loads(b.events(type="storage_recovered")[0]["detail"])
    assert (recovered["waited"], recovered["dropped"]) == (5, 4)  # of storage_failed and the 8 taps, 5 kept
    assert [e["reason"] for e in b.events(type="tap")] == ["unknown_card"] * 5 + ["staff"]


def test_an_unreadable_database_still_opens_for_staff_and_denies_others_aloud(branch):
    b = branch()
    b.store.unreadable = b.store.full = True

    staff = b.tap(STAFF)
    assert staff.decision.granted and staff.decision.reason is Reason.STAFF and b.relay_on
    time.sleep(0.4)
    assert beeps(b) == 1

    patron = b.tap(ALLOWED)
    assert not patron.decision.granted and patron.decision.reason is Reason.UNAVAILABLE
    time.sleep(0.8)
    assert beeps(b) == 1 + 3, "the denied signal: three beeps"

    b.store.unreadable = b.store.full = False
    b.tap(ALLOWED)
    assert [e["reason"] for e in b.events(type="tap")] == ["staff", "unavailable", "granted"]


def test_a_staff_card_added_while_the_database_works_opens_after_it_becomes_unreadable(branch, monkeypatch):
    monkeypatch.setattr(controller_module, "STAFF_CARDS_POLL_SECONDS", 0.2)
    b = branch()
    staff_page = Store(b.config.database)
    stop = threading.Event()
    loop = threading.Thread(target=b.controller.run, args=(stop,), daemon=True)
    loop.start()
    try:
        staff_page.add_staff_card(card_key(KEY, NEW_STAFF), "new caretaker", "admin")
        time.sleep(1.0)  # several polls of the staff cards
        b.store.unreadable = True
        assert b.controller.call(lambda: b.tap(NEW_STAFF)).decision.reason is Reason.STAFF
        assert b.controller.call(lambda: b.tap(ALLOWED)).decision.reason is Reason.UNAVAILABLE
    finally:
        stop.set()
        loop.join(2)
        staff_page.close()
