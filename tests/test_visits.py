"""Physical visits: a card's repeat taps count once, and a people counter counts the people."""

from datetime import datetime, timedelta, timezone

from device.stats import summarize
from device.visits import RepeatTaps
from tests.test_building import CARD, DAY, HELSINKI, SECOND, building  # noqa: F401 - the fixture

T = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)


def test_a_cards_taps_within_the_window_of_its_counted_visit_are_repeats():
    taps = RepeatTaps(timedelta(minutes=10))
    seen = [taps.is_repeat(card, T + timedelta(minutes=minutes))
            for card, minutes in (("a", 0), ("a", 5), ("b", 6), ("a", 9), ("a", 10), ("b", 15), ("b", 16))]
    assert seen == [False, True, False, True, False, True, False]


def test_no_window_counts_every_tap_and_a_clock_stepped_back_hides_no_visit():
    assert [RepeatTaps(timedelta(0)).is_repeat("a", T) for _ in range(2)] == [False, False]
    taps = RepeatTaps(timedelta(minutes=10))
    assert not taps.is_repeat("a", T)
    assert not taps.is_repeat("a", T - timedelta(minutes=3))


def day_row(b) -> dict:
    return summarize(b.store, HELSINKI, DAY, DAY)[0]


def test_a_card_tapping_again_at_the_door_is_one_visit(building):  # noqa: F811
    b = building("12:00")
    for number, minutes in ((CARD, 0), (CARD, 4), (SECOND, 1), (CARD, 7)):
        b.sim.advance(minutes * 60)
        b.tap(number)
    row = day_row(b)
    assert (row["granted_taps"], row["physical_visits"]) == (4, 3), "CARD came at 12:00 and again at 12:12"


def test_a_people_counter_counts_the_visits_at_its_door(building):  # noqa: F811
    b = building("12:00", counter=True)
    b.tap(CARD)
    b.walk_through(people_counted=2)  # a parent and a child on one card
    row = day_row(b)
    assert (row["granted_taps"], row["physical_visits"]) == (1, 2)


def test_the_window_is_the_configured_one(building, monkeypatch):  # noqa: F811
    """[policy] repeat_tap_minutes = 0: every tap is a visit."""
    from device.config import Config, PolicyConfig
    from tests import test_building

    monkeypatch.setattr(test_building, "Config", lambda **kw: Config(**kw, policy=PolicyConfig(repeat_tap_minutes=0)))
    b = building("12:00")
    b.tap(CARD)
    b.tap(CARD)
    row = day_row(b)
    assert (row["granted_taps"], row["physical_visits"]) == (2, 2)
