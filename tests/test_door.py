"""The door on gpiozero mock pins: relay, contact, exit button, alarms, signals."""

from datetime import datetime, timedelta, timezone

import pytest
from gpiozero.pins.mock import MockFactory

from device.config import DoorConfig
from device.door import Door

LOCK, CONTACT, EXIT, LED_PIN, BUZZER = 17, 27, 22, 23, 24


class Clock:
    def __init__(self):
        self.t = 1000.0
        self.wall = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)

    def __call__(self):
        return self.t

    def advance(self, seconds):
        self.t += seconds
        self.wall += timedelta(seconds=seconds)


@pytest.fixture
def rig():
    factory = MockFactory()
    clock = Clock()
    emitted = []
    cfg = DoorConfig(
        id="entrance", kind="entrance", lock_pin=LOCK, unlock_seconds=5, held_open_seconds=30,
        contact_pin=CONTACT, exit_button_pin=EXIT, led_pin=LED_PIN, buzzer_pin=BUZZER,
    )
    factory.pin(CONTACT).drive_low()  # closed before the door starts watching
    door = Door(cfg, emit=lambda t, d: emitted.append(t), post=lambda work: work(),
                clock=clock, wall=lambda: clock.wall, pin_factory=factory)
    factory.pin(CONTACT).drive_low()
    emitted.clear()

    class Rig:
        pass

    r = Rig()
    r.factory, r.clock, r.emitted, r.door, r.cfg = factory, clock, emitted, door, cfg
    r.lock = factory.pin(LOCK)
    r.contact = factory.pin(CONTACT)
    r.exit = factory.pin(EXIT)
    yield r
    door.close()


def open_door(r):
    r.contact.drive_high()


def close_door(r):
    r.contact.drive_low()


def test_starts_locked_with_the_relay_released(rig):
    assert rig.lock.state is False
    assert rig.door.state == "locked"


def test_active_low_relay_board_is_released_high():
    factory = MockFactory()
    cfg = DoorConfig(id="d", kind="entrance", lock_pin=LOCK, lock_active_high=False)
    door = Door(cfg, emit=lambda *a: None, post=lambda w: w(), pin_factory=factory)
    assert factory.pin(LOCK).state is True  # high = relay off on an active-low board
    door.grant()
    assert factory.pin(LOCK).state is False
    door.close()


def test_grant_unlocks_for_unlock_seconds_then_relocks(rig):
    rig.door.grant()
    assert rig.lock.state is True and rig.door.state == "unlocked"
    rig.clock.advance(4.9)
    rig.door.tick()
    assert rig.lock.state is True
    rig.clock.advance(0.2)
    rig.door.tick()
    assert rig.lock.state is False and rig.door.state == "locked"


def test_relocks_as_soon_as_the_door_has_opened_and_closed(rig):
    rig.door.grant()
    open_door(rig)
    assert rig.door.state == "open"
    rig.clock.advance(1)
    close_door(rig)
    assert rig.lock.state is False, "the next person needs a card of their own"
    assert rig.emitted == ["door_opened", "door_closed"]


def test_door_held_open_raises_one_alarm_and_sounds_the_buzzer(rig):
    rig.door.grant()
    open_door(rig)
    rig.clock.advance(29)
    rig.door.tick()
    assert "door_held_open" not in rig.emitted
    rig.clock.advance(2)
    rig.door.tick()
    rig.door.tick()
    assert rig.emitted.count("door_held_open") == 1
    assert rig.door.state == "held_open"
    assert rig.door.buzzer.is_active or rig.door.buzzer._blink_thread is not None
    close_door(rig)
    assert rig.door.state == "locked"
    assert rig.door.buzzer.value == 0


def test_door_opened_without_grant_or_exit_is_forced(rig):
    open_door(rig)
    assert rig.emitted == ["door_forced_open"]
    assert rig.door.state == "forced"
    close_door(rig)
    assert rig.door.state == "locked"


def test_door_still_moving_right_after_relock_is_not_forced(rig):
    rig.door.grant()
    rig.clock.advance(5.1)
    rig.door.tick()
    assert rig.lock.state is False
    rig.clock.advance(0.5)
    open_door(rig)
    assert rig.emitted == ["door_opened"]


def test_exit_button_unlocks_and_logs_an_exit(rig):
    rig.exit.drive_low()  # pressed (to ground)
    rig.exit.drive_high()
    assert rig.emitted == ["exit"]
    assert rig.lock.state is True
    open_door(rig)
    assert rig.emitted == ["exit", "door_opened"]


def test_exit_button_works_in_lockdown(rig):
    rig.door.set_lockdown()
    rig.door.pulse()
    assert rig.lock.state is False, "a pulse from the staff page does not undo a lockdown"
    rig.exit.drive_low()
    assert rig.lock.state is True, "egress is never blocked"


def test_a_granted_tap_opens_in_lockdown(rig):
    # decide() grants only staff in lockdown; the door must then open, or the log
    # and the counts show a staff entry through a door that stayed shut.
    rig.door.set_lockdown()
    rig.door.grant()
    assert rig.lock.state is True
    rig.clock.advance(5)
    rig.door.tick()
    assert rig.lock.state is False and rig.door.lockdown


def test_hold_keeps_the_door_unlocked_until_the_time(rig):
    rig.door.hold(rig.clock.wall + timedelta(minutes=30))
    open_door(rig)
    rig.clock.advance(120)
    rig.door.tick()
    assert "door_held_open" not in rig.emitted, "an intentionally held door is not an alarm"
    close_door(rig)
    assert rig.lock.state is True
    rig.clock.advance(30 * 60)
    rig.door.tick()
    assert rig.lock.state is False


def test_lockdown_then_release(rig):
    rig.door.hold(rig.clock.wall + timedelta(hours=1))
    rig.door.set_lockdown()
    assert rig.lock.state is False and rig.door.lockdown
    rig.door.release()
    assert rig.lock.state is False and not rig.door.lockdown
    rig.door.grant()
    assert rig.lock.state is True


def test_schedule_unlock_follows_the_setting(rig):
    rig.door.set_schedule_unlocked(True)
    assert rig.lock.state is True
    rig.door.set_schedule_unlocked(False)
    assert rig.lock.state is False


def test_led_and_buzzer_say_granted_or_denied(rig):
    rig.door.deny()
    rig.door.buzzer._blink_thread.join(2)
    buzzer_pin = rig.factory.pin(BUZZER)
    beeps = [s for s in buzzer_pin.states if s.state]
    assert len(beeps) == 3
    buzzer_pin.clear_states()
    rig.door.grant()
    rig.door.buzzer._blink_thread.join(2)
    assert len([s for s in buzzer_pin.states if s.state]) == 1
    assert rig.factory.pin(LED_PIN).state is True  # lit while unlocked


def test_the_pin_prompt_beeps_twice_unlike_granted_and_denied(rig):
    rig.door.prompt_pin()
    rig.door.buzzer._blink_thread.join(2)
    assert len([s for s in rig.factory.pin(BUZZER).states if s.state]) == 2
    assert rig.lock.state is False, "asking for the PIN opens nothing"
