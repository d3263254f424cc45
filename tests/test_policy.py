"""decide(): every reason, as a table of situations a door meets."""

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest

from device.config import DoorConfig, PolicyConfig
from device.policy import Decision, DoorState, Patron, PinResult, Reason, Reservation, decide
from device.schedule import Period, Schedule

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)  # Monday 14:00 in Helsinki
TODAY = date(2026, 11, 23)
ENTRANCE = DoorConfig(id="entrance", kind="entrance", lock_pin=17)
BOOTH = DoorConfig(id="booth", kind="booth", lock_pin=5, resource="smartblock-1")
SETTINGS = PolicyConfig(booth_early_minutes=10, max_offline_age=timedelta(hours=72))


def all_day(mode: str) -> Schedule:
    return Schedule(weekly={} if mode == "closed" else {d: (Period(0, 1440, mode),) for d in range(7)}, exceptions={})


OK = Patron(
    card_key="k1", self_service=True, valid_until=date(2027, 5, 31), age_ok_from=date(2011, 3, 2),
    fetched_at=NOW - timedelta(hours=1),
)
STAFF_LOCAL = Patron(card_key="k1", local_staff=True)
STAFF_CACHED = replace(OK, staff=True, self_service=False)
STALE = replace(OK, fetched_at=NOW - timedelta(hours=73))


def reservation(begin_min: int, end_min: int, **kw) -> Reservation:
    values = dict(id="r-1", resource="smartblock-1", card_key="k1", begin=NOW + timedelta(minutes=begin_min),
                  end=NOW + timedelta(minutes=end_min), state="confirmed")
    return Reservation(**(values | kw))


CASES = [
    # (name, door, mode, patron, reservations, settings, state, pin, granted, reason)
    ("self-service patron", ENTRANCE, "self_service", OK, [], SETTINGS, DoorState(), None, True, Reason.GRANTED),
    ("unknown card", ENTRANCE, "self_service", None, [], SETTINGS, DoorState(), None, False, Reason.UNKNOWN_CARD),
    ("blocked by the library system", ENTRANCE, "self_service", replace(OK, blocked_reason="fines"), [], SETTINGS, DoorState(), None, False, Reason.BLOCKED),
    ("blocked by this branch", ENTRANCE, "self_service", replace(OK, local_block="broke the door"), [], SETTINGS, DoorState(), None, False, Reason.BLOCKED),
    ("under the age limit until tomorrow", ENTRANCE, "self_service", replace(OK, age_ok_from=TODAY + timedelta(days=1)), [], SETTINGS, DoorState(), None, False, Reason.UNDERAGE),
    ("reaches the age today", ENTRANCE, "self_service", replace(OK, age_ok_from=TODAY), [], SETTINGS, DoorState(), None, True, Reason.GRANTED),
    ("age unknown", ENTRANCE, "self_service", replace(OK, age_ok_from=None), [], SETTINGS, DoorState(), None, False, Reason.UNDERAGE),
    ("terms not accepted", ENTRANCE, "self_service", replace(OK, self_service=False), [], SETTINGS, DoorState(), None, False, Reason.TERMS_NOT_ACCEPTED),
    ("patron class refused by the library system", ENTRANCE, "self_service", replace(OK, self_service=False, class_refused=True), [], SETTINGS, DoorState(), None, False, Reason.CLASS_NOT_ALLOWED),
    ("staffed, card required: a refused class may enter", ENTRANCE, "staffed", replace(OK, self_service=False, class_refused=True), [], SETTINGS, DoorState(), None, True, Reason.GRANTED),
    ("card expired yesterday", ENTRANCE, "self_service", replace(OK, valid_until=TODAY - timedelta(days=1)), [], SETTINGS, DoorState(), None, False, Reason.CARD_EXPIRED),
    ("card valid through today", ENTRANCE, "self_service", replace(OK, valid_until=TODAY), [], SETTINGS, DoorState(), None, True, Reason.GRANTED),
    ("cache older than max_offline_age", ENTRANCE, "self_service", STALE, [], SETTINGS, DoorState(), None, False, Reason.UNAVAILABLE),
    ("cache never fetched", ENTRANCE, "self_service", replace(OK, fetched_at=None), [], SETTINGS, DoorState(), None, False, Reason.UNAVAILABLE),
    ("closed: patron", ENTRANCE, "closed", OK, [], SETTINGS, DoorState(), None, False, Reason.CLOSED),
    ("closed: local staff card", ENTRANCE, "closed", STAFF_LOCAL, [], SETTINGS, DoorState(), None, True, Reason.STAFF),
    ("closed: fresh staff flag from the central service", ENTRANCE, "closed", STAFF_CACHED, [], SETTINGS, DoorState(), None, True, Reason.STAFF),
    ("local block wins over a fresh staff flag from the central service", ENTRANCE, "closed", replace(STAFF_CACHED, local_block="lost card"), [], SETTINGS, DoorState(), None, False, Reason.BLOCKED),
    ("closed: stale staff flag never grants", ENTRANCE, "closed", replace(STAFF_CACHED, fetched_at=NOW - timedelta(days=4)), [], SETTINGS, DoorState(), None, False, Reason.CLOSED),
    ("staffed, card required: underage patron may enter", ENTRANCE, "staffed", replace(OK, age_ok_from=None, self_service=False), [], SETTINGS, DoorState(), None, True, Reason.GRANTED),
    ("staffed, card required: blocked patron may not", ENTRANCE, "staffed", replace(OK, blocked_reason="fines"), [], SETTINGS, DoorState(), None, False, Reason.BLOCKED),
    ("staffed, card required: unknown card", ENTRANCE, "staffed", None, [], SETTINGS, DoorState(), None, False, Reason.UNKNOWN_CARD),
    ("staffed, unlocked: any card counts a visit", ENTRANCE, "staffed", None, [], replace(SETTINGS, staffed_entrance="unlocked"), DoorState(), None, True, Reason.GRANTED),
    ("lockdown: patron", ENTRANCE, "self_service", OK, [], SETTINGS, DoorState(lockdown=True), None, False, Reason.CLOSED),
    ("lockdown: staff still enter", ENTRANCE, "self_service", STAFF_LOCAL, [], SETTINGS, DoorState(lockdown=True), None, True, Reason.STAFF),
    ("right PIN", ENTRANCE, "self_service", OK, [], SETTINGS, DoorState(), PinResult.OK, True, Reason.GRANTED),
    ("wrong PIN", ENTRANCE, "self_service", OK, [], SETTINGS, DoorState(), PinResult.WRONG, False, Reason.WRONG_PIN),
    ("PIN not entered in time", ENTRANCE, "self_service", OK, [], SETTINGS, DoorState(), PinResult.TIMEOUT, False, Reason.PIN_TIMEOUT),
    ("wrong PIN does not hide a block", ENTRANCE, "self_service", replace(OK, blocked_reason="x"), [], SETTINGS, DoorState(), PinResult.WRONG, False, Reason.BLOCKED),
    ("booth: reservation now", BOOTH, "self_service", OK, [reservation(-30, 60)], SETTINGS, DoorState(), None, True, Reason.GRANTED),
    ("booth: 10 min early is allowed", BOOTH, "self_service", OK, [reservation(10, 70)], SETTINGS, DoorState(), None, True, Reason.GRANTED),
    ("booth: 11 min early is not", BOOTH, "self_service", OK, [reservation(11, 71)], SETTINGS, DoorState(), None, False, Reason.NO_RESERVATION),
    ("booth: reservation ended at this instant", BOOTH, "self_service", OK, [reservation(-60, 0)], SETTINGS, DoorState(), None, False, Reason.NO_RESERVATION),
    ("booth: cancelled reservation", BOOTH, "self_service", OK, [reservation(-30, 60, state="cancelled")], SETTINGS, DoorState(), None, False, Reason.NO_RESERVATION),
    ("booth: requested, not yet confirmed", BOOTH, "self_service", OK, [reservation(-30, 60, state="requested")], SETTINGS, DoorState(), None, False, Reason.NO_RESERVATION),
    ("booth: denied by the booking system", BOOTH, "self_service", OK, [reservation(-30, 60, state="denied")], SETTINGS, DoorState(), None, False, Reason.NO_RESERVATION),
    ("booth: someone else's reservation", BOOTH, "self_service", OK, [reservation(-30, 60, card_key="k2")], SETTINGS, DoorState(), None, False, Reason.NO_RESERVATION),
    ("booth: another booth's reservation", BOOTH, "self_service", OK, [reservation(-30, 60, resource="smartblock-2")], SETTINGS, DoorState(), None, False, Reason.NO_RESERVATION),
    ("booth: no patron record needed, the reservation is the permission", BOOTH, "closed", None, [reservation(-30, 60)], SETTINGS, DoorState(), None, True, Reason.GRANTED),
    ("booth: local block wins over a reservation", BOOTH, "self_service", replace(OK, local_block="ban"), [reservation(-30, 60)], SETTINGS, DoorState(), None, False, Reason.BLOCKED),
    ("booth: staff", BOOTH, "self_service", STAFF_LOCAL, [], SETTINGS, DoorState(), None, True, Reason.STAFF),
    ("booth: wrong PIN", BOOTH, "self_service", OK, [reservation(-30, 60)], SETTINGS, DoorState(), PinResult.WRONG, False, Reason.WRONG_PIN),
]


@pytest.mark.parametrize(
    "door, mode, patron, reservations, settings, state, pin, granted, reason",
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decide(door, mode, patron, reservations, settings, state, pin, granted, reason):
    decision = decide("k1", door, NOW, all_day(mode), patron, reservations, settings, state, pin)
    assert (decision.granted, decision.reason) == (granted, reason)
    assert decision.mode == mode


def test_a_card_with_no_entry_is_unavailable_when_the_caller_cannot_tell_it_is_unknown():
    unsure = dict(unknown=Reason.UNAVAILABLE)
    assert decide("k1", ENTRANCE, NOW, all_day("self_service"), None, [], SETTINGS, **unsure).reason is Reason.UNAVAILABLE
    assert decide("k1", ENTRANCE, NOW, all_day("self_service"), OK, [], SETTINGS, **unsure).reason is Reason.GRANTED


def test_every_reason_is_covered_by_the_table():
    assert {case[-1] for case in CASES} == set(Reason)


def test_early_booth_card_is_told_when_its_reservation_starts():
    later = reservation(45, 105)
    decision = decide("k1", BOOTH, NOW, all_day("self_service"), OK, [later], SETTINGS)
    assert decision == Decision(False, Reason.NO_RESERVATION, "self_service", later)


def test_the_mode_follows_the_schedule_at_the_instant():
    # Staffed 10-16 local, self-service otherwise; 16:00 Helsinki is 14:00 UTC in November.
    schedule = Schedule(weekly={0: (Period(600, 960, "staffed"), Period(960, 1440, "self_service"))}, exceptions={})
    teen = replace(OK, age_ok_from=None)
    at_1559 = decide("k1", ENTRANCE, datetime(2026, 11, 23, 13, 59, tzinfo=timezone.utc), schedule, teen, [], SETTINGS)
    at_1600 = decide("k1", ENTRANCE, datetime(2026, 11, 23, 14, 0, tzinfo=timezone.utc), schedule, teen, [], SETTINGS)
    assert (at_1559.granted, at_1559.mode) == (True, "staffed")
    assert (at_1600.granted, at_1600.reason, at_1600.mode) == (False, Reason.UNDERAGE, "self_service")


def test_card_expiry_and_age_use_the_local_date_near_midnight():
    # 22:30 UTC on 23 Nov is already 24 Nov in Helsinki.
    late = datetime(2026, 11, 23, 22, 30, tzinfo=timezone.utc)
    expires_23rd = replace(OK, valid_until=date(2026, 11, 23), fetched_at=late)
    assert decide("k1", ENTRANCE, late, all_day("self_service"), expires_23rd, [], SETTINGS).reason is Reason.CARD_EXPIRED
    of_age_24th = replace(OK, age_ok_from=date(2026, 11, 24), fetched_at=late)
    assert decide("k1", ENTRANCE, late, all_day("self_service"), of_age_24th, [], SETTINGS).granted
