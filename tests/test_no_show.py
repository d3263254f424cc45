"""Booth no-shows: a reservation whose holder never came is logged once, for the central service."""

from datetime import datetime, timedelta, timezone

import pytest
from gpiozero.pins.mock import MockFactory

from device.cards import card_key
from device.config import Config, DoorConfig, PolicyConfig
from device.controller import Controller
from device.policy import Reservation
from device.schedule import Period
from device.store import Store

KEY = b"no-show-test-consortium-key-0000"
HOLDER = "10000006"


@pytest.fixture
def booth(tmp_path):
    door = DoorConfig(id="booth", kind="booth", resource="smartblock-1", lock_pin=5)
    cfg = Config(
        path=tmp_path / "omaovi.toml", branch="test", timezone="Europe/Helsinki", database=tmp_path / "omaovi.db",
        consortium_key_file=tmp_path / "key", doors=(door,), policy=PolicyConfig(no_show_minutes=15),
    )
    store = Store(cfg.database)
    store.set_weekly({d: (Period(0, 1440, "self_service"),) for d in range(7)})
    controller = Controller(cfg, store, consortium_key=KEY, pin_factory=MockFactory(), start_readers=False)
    yield controller, store
    controller.close()
    store.close()


def reserve(store, rid, began_minutes_ago, state="confirmed"):
    now = datetime.now(timezone.utc)
    begin = now - timedelta(minutes=began_minutes_ago)
    store.put_reservations([Reservation(rid, "smartblock-1", card_key(KEY, HOLDER), begin, begin + timedelta(hours=2), state)])


def no_show_ids(store):
    return [e["detail"] for e in store.events(limit=100) if e["type"] == "reservation_no_show"]


def test_a_holder_who_never_came_is_a_no_show_once(booth):
    controller, store = booth
    reserve(store, "r-late", began_minutes_ago=20)
    controller._report_no_shows()
    controller._report_no_shows()
    shows = no_show_ids(store)
    assert len(shows) == 1 and '"reservation": "r-late"' in shows[0]
    event = next(e for e in store.events() if e["type"] == "reservation_no_show")
    assert event["card_key"] == card_key(KEY, HOLDER) and event["door"] == "booth"


def test_no_no_show_for_a_holder_who_came_or_is_not_late_yet_or_cancelled(booth):
    controller, store = booth
    reserve(store, "r-came", began_minutes_ago=20)
    assert controller.tap("booth", HOLDER).decision.granted
    reserve(store, "r-soon", began_minutes_ago=10)
    controller._report_no_shows()
    assert no_show_ids(store) == []
    reserve(store, "r-cancelled", began_minutes_ago=30, state="cancelled")
    controller._report_no_shows()
    assert no_show_ids(store) == []


def test_booth_minutes_count_a_reservation_once_however_often_its_holder_taps(booth):
    controller, store = booth
    reserve(store, "r-twice", began_minutes_ago=5)  # two hours long
    assert controller.tap("booth", HOLDER).decision.granted
    assert controller.tap("booth", HOLDER).decision.granted
    now = datetime.now(timezone.utc)
    counts = {r["metric"]: r["count"] for r in store.counts(now - timedelta(hours=2), now + timedelta(hours=1))}
    assert counts == {"booth_use": 2, "booth_minutes": 120}
