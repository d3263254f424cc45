"""Lights, the alarm, the occupancy estimate and tailgating, on mock pins with a simulated clock."""

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from gpiozero.pins.mock import MockFactory

from device.building import Occupancy, alarm_armed, lights_on, tailgating
from device.cards import card_key
from device.config import BuildingConfig, Config, DoorConfig
from device.controller import Controller
from device.policy import Patron
from device.schedule import Period
from device.stats import summarize
from device.store import Store
from tests.simulated import SimulatedTime

HELSINKI = ZoneInfo("Europe/Helsinki")
KEY = b"building-test-consortium-key-000"
CARD, SECOND, STAFF = "10000001", "10000002", "90000001"
LIGHTS, ALARM, LOCK, CONTACT, EXIT, COUNT_IN, COUNT_OUT = 16, 26, 17, 27, 22, 20, 21
DAY = date(2026, 11, 25)
#: Self-service 07:00-21:00 every day.
WEEK = {d: (Period(7 * 60, 21 * 60, "self_service"),) for d in range(7)}
T = datetime(2026, 11, 25, 21, 0, tzinfo=timezone.utc)


def local(hhmm: str, day: date = DAY) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm), HELSINKI)


# -- the rules ------------------------------------------------------------------------

@pytest.mark.parametrize("mode, closed_minutes_ago, on", [
    ("self_service", None, True), ("staffed", None, True),
    ("closed", 14, True), ("closed", 15, False), ("closed", None, False),
])
def test_lights_rule(mode, closed_minutes_ago, on):
    since = None if closed_minutes_ago is None else T - timedelta(minutes=closed_minutes_ago)
    assert lights_on(mode, since, T, timedelta(minutes=15)) is on


@pytest.mark.parametrize("mode, closed_minutes_ago, occupancy, shut, armed", [
    ("closed", 5, 0, True, True),
    ("closed", 4, 0, True, False),       # not yet: the last patrons are finding the door
    ("closed", 60, 1, True, False),      # somebody is counted inside
    ("closed", 60, 0, False, False),     # a door is unlocked or open
    ("self_service", None, 0, True, False),
])
def test_alarm_rule(mode, closed_minutes_ago, occupancy, shut, armed):
    since = None if closed_minutes_ago is None else T - timedelta(minutes=closed_minutes_ago)
    assert alarm_armed(mode, since, T, timedelta(minutes=5), occupancy, shut) is armed


def test_tailgating_rule():
    assert tailgating(2, 1) and not tailgating(1, 1) and not tailgating(0, 1)


def test_occupancy_without_a_counter_counts_granted_door_cycles_and_exit_presses():
    people = Occupancy()
    people.granted("entrance")
    assert people.closed("entrance") is None and people.count == 0, "a grant nobody used is no entry"
    people.granted("entrance")
    people.opened("entrance")
    people.closed("entrance")
    people.exit_pressed("entrance")
    people.exit_pressed("entrance")
    assert people.count == 0, "never below zero"


# -- the device -------------------------------------------------------------------

class Building:
    def __init__(self, tmp_path, start: datetime, *, counter: bool = False):
        pins = dict(counter_in_pin=COUNT_IN, counter_out_pin=COUNT_OUT) if counter else {}
        self.config = Config(
            path=tmp_path / "omaovi.toml", branch="test", timezone="Europe/Helsinki",
            database=tmp_path / "omaovi.db", consortium_key_file=tmp_path / "key",
            doors=(DoorConfig(id="entrance", kind="entrance", lock_pin=LOCK, contact_pin=CONTACT,
                              exit_button_pin=EXIT, **pins),),
            building=BuildingConfig(lights_pin=LIGHTS, alarm_pin=ALARM, lights_off_after=15, alarm_arm_after=5),
        )
        self.store = Store(self.config.database)
        self.store.set_weekly(WEEK)
        fresh = dict(self_service=True, valid_until=date(2099, 1, 1), age_ok_from=date(2000, 1, 1), fetched_at=start)
        self.store.put_patrons([Patron(card_key=card_key(KEY, n), **fresh) for n in (CARD, SECOND)], source="test")
        self.store.add_staff_card(card_key(KEY, STAFF), "caretaker", "test")
        self.sim = SimulatedTime(start)
        self.factory = MockFactory()
        self.controller = Controller(self.config, self.store, consortium_key=KEY, pin_factory=self.factory,
                                     start_readers=False, wall=self.sim.wall, clock=self.sim.clock)
        self.pin(CONTACT).drive_low()  # the door is shut (the pull-up reads it open until now)
        self.controller.step()

    def pin(self, number):
        return self.factory.pin(number)

    def until(self, hhmm: str) -> None:
        self.sim.run(self.controller, local(hhmm))

    def tap(self, number: str) -> None:
        self.controller.submit_tap("entrance", number)
        self.controller.step()

    def walk_through(self, people_counted: int = 0) -> None:
        self.pin(CONTACT).drive_high()
        self.controller.step()
        for _ in range(people_counted):
            self.pin(COUNT_IN).drive_low()
            self.pin(COUNT_IN).drive_high()
        self.sim.advance(1)
        self.pin(CONTACT).drive_low()
        self.controller.step()

    def press_exit(self) -> None:
        self.pin(EXIT).drive_low()
        self.pin(EXIT).drive_high()
        self.controller.step()

    @property
    def lights(self) -> bool:
        return self.pin(LIGHTS).state

    @property
    def armed(self) -> bool:
        return self.pin(ALARM).state

    def occupancy(self) -> int:
        return self.store.status()["occupancy"]["value"]["count"]

    def events(self, type_):
        return [e for e in reversed(self.store.events(limit=1000)) if e["type"] == type_]

    def metric(self, name) -> int:
        rows = self.store.counts(local("00:00"), local("00:00", DAY + timedelta(days=2)))
        return sum(r["count"] for r in rows if r["metric"] == name)

    def close(self):
        self.controller.close()
        self.store.close()


@pytest.fixture
def building(tmp_path):
    """A factory of one Building, closed after the test."""
    made = []

    def make(start: str, **kwargs) -> Building:
        made.append(Building(tmp_path, local(start), **kwargs))
        return made[-1]

    yield make
    for b in made:
        b.close()


def test_the_lights_follow_the_hours_with_a_grace_after_closing(building):
    b = building("06:30")
    seen = {}
    b.sim.run(b.controller, local("21:30"), step=60,
              each=lambda now: seen.setdefault(now.astimezone(HELSINKI).strftime("%H:%M"), b.lights))
    assert [seen[t] for t in ("06:31", "06:59", "07:00", "12:00", "20:59", "21:14", "21:15", "21:30")] == [
        False, False, True, True, True, True, False, False]
    assert [e["detail"] for e in b.events("building_output") if "lights" in e["detail"]] == [
        '{"change": "lights on"}', '{"change": "lights off"}']
    assert b.store.status()["building"]["value"] == {"lights": False, "alarm_armed": True}


def test_the_alarm_is_armed_after_closing_only_when_nobody_is_counted_inside(building):
    b = building("20:30")
    b.tap(CARD)
    b.walk_through()
    assert b.occupancy() == 1
    b.until("21:30")
    assert not b.armed, "one person is still inside"
    [left] = b.events("people_inside_after_close")
    assert left["door"] == "building" and left["detail"] == '{"count": 1}'
    assert b.metric("people_inside_after_close") == 1

    b.press_exit()
    b.walk_through()
    b.until("21:31")
    assert b.occupancy() == 0 and b.armed, "the last one out arms the alarm"

    b.tap(STAFF)  # a caretaker at night: the unlocked door disarms at once
    assert not b.armed
    b.walk_through()
    assert b.occupancy() == 1
    b.until("21:40")
    assert not b.armed


@pytest.mark.parametrize("start, lights, armed", [("03:00", False, True), ("21:03", True, False), ("21:07", True, True)])
def test_a_device_started_at_night_knows_how_long_the_branch_has_been_closed(building, start, lights, armed):
    b = building(start)
    assert (b.lights, b.armed) == (lights, armed)


def test_the_alarm_waits_its_delay_after_an_empty_closing(building):
    b = building("20:50")
    b.until("21:04")
    assert not b.armed and b.lights
    b.until("21:05")
    assert b.armed
    assert b.events("people_inside_after_close") == []


def test_the_estimate_starts_from_zero_at_the_next_opening(building):
    b = building("20:30")
    b.tap(CARD)
    b.walk_through()
    b.sim.run(b.controller, local("07:00", DAY + timedelta(days=1)), step=300)
    assert b.occupancy() == 0 and not b.armed


def test_two_people_on_one_card_is_tailgating(building):
    b = building("12:00", counter=True)
    b.tap(CARD)
    b.walk_through(people_counted=2)
    [event] = b.events("tailgating")
    assert event["detail"] == '{"grants": 1, "people_in": 2}'
    assert b.metric("tailgating") == 1
    assert b.occupancy() == 2, "with a counter the pulses are the count"

    b.tap(CARD)
    b.tap(SECOND)
    b.walk_through(people_counted=2)
    assert len(b.events("tailgating")) == 1, "two cards, two people: no tailgating"
    b.pin(COUNT_OUT).drive_low()
    b.pin(COUNT_OUT).drive_high()
    b.controller.step()
    assert b.occupancy() == 3


def test_relays_and_a_counter_that_cannot_be_claimed_leave_the_doors_working(tmp_path, caplog):
    from gpiozero import OutputDevice

    factory = MockFactory()
    blocker = OutputDevice(LIGHTS, pin_factory=factory)  # another program holds GPIO16
    config = Config(
        path=tmp_path / "omaovi.toml", branch="test", timezone="Europe/Helsinki",
        database=tmp_path / "omaovi.db", consortium_key_file=tmp_path / "key",
        doors=(DoorConfig(id="entrance", kind="entrance", lock_pin=LOCK, counter_in_pin=LIGHTS, counter_out_pin=COUNT_OUT),),
        building=BuildingConfig(lights_pin=LIGHTS, alarm_pin=ALARM),
    )
    store = Store(config.database)
    controller = Controller(config, store, consortium_key=KEY, pin_factory=factory, start_readers=False)
    try:
        assert "cannot use the lights and alarm relays" in caplog.text
        assert "cannot use the people counter of door entrance" in caplog.text
        assert controller.counters == {} and controller.building.lights is None and controller.building.alarm is None
        controller.doors["entrance"].pulse()
        assert factory.pin(LOCK).state, "the door still opens"
    finally:
        controller.close()
        store.close()
        blocker.close()
