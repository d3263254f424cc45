"""Reading opening hours from a Kirkanta v4 schedules answer.

A bad answer must be rejected whole, with a message staff can act on, so most
tests here are about the exact error message.
"""

import copy
import json
from datetime import date

import pytest

from device.schedule import Period
from sync.kirkanta import MAX_ITEMS, NOTE_MAX_LENGTH, KirkantaError, parse_days, parse_schedules

# Shaped like a real answer, including keys the parser does not use.
GOOD = {
    "type": "schedules",
    "total": 3,
    "items": [
        {
            "library": 84860,
            "date": "2026-11-23",
            "day": 1,
            "period": 12345,
            "info": None,
            "closed": False,
            "times": [
                {"from": "07:00", "to": "10:00", "status": 2},
                {"from": "10:00", "to": "16:00", "status": 1},
                {"from": "16:00", "to": "21:00", "status": 2},
            ],
        },
        {"library": 84860, "date": "2026-12-24", "day": 4, "closed": False, "times": [
            {"from": "12:00", "to": "16:00", "status": 0},
            {"from": "08:00", "to": "12:00", "status": 2},
        ]},
        {
            "library": 84860,
            "date": "2026-12-25",
            "day": 5,
            "closed": True,
            "times": None,
            "info": {"fi": "Joulupäivä"},
        },
    ],
}


def with_item(index: int, **changes) -> dict:
    data = copy.deepcopy(GOOD)
    data["items"][index].update(changes)
    return data


def with_time(index: int, number: int, **changes) -> dict:
    data = copy.deepcopy(GOOD)
    data["items"][index]["times"][number].update(changes)
    return data


def error_of(data) -> str:
    with pytest.raises(KirkantaError) as raised:
        parse_schedules(data)
    return str(raised.value)


class TestGoodAnswers:
    def test_days_become_periods_by_status(self):
        assert parse_schedules(GOOD) == {
            date(2026, 11, 23): (
                Period(420, 600, "self_service"),
                Period(600, 960, "staffed"),
                Period(960, 1260, "self_service"),
            ),
            # Sorted by time, whatever the order in the answer.
            date(2026, 12, 24): (Period(480, 720, "self_service"), Period(720, 960, "closed")),
            date(2026, 12, 25): (),
        }

    @pytest.mark.parametrize("raw", [json.dumps(GOOD), json.dumps(GOOD).encode("utf-8")])
    def test_reads_the_raw_body(self, raw):
        assert parse_schedules(raw) == parse_schedules(GOOD)

    @pytest.mark.parametrize("end_of_day", ["00:00", "24:00"])
    def test_midnight_as_an_end_is_the_end_of_the_day(self, end_of_day):
        data = with_time(0, 2, to=end_of_day)
        assert parse_schedules(data)[date(2026, 11, 23)][-1] == Period(960, 1440, "self_service")

    def test_a_day_open_around_the_clock(self):
        data = with_item(0, times=[{"from": "00:00", "to": "00:00", "status": 2}])
        assert parse_schedules(data)[date(2026, 11, 23)] == (Period(0, 1440, "self_service"),)

    @pytest.mark.parametrize("times", [None, []])
    def test_a_closed_day_has_no_periods(self, times):
        data = with_item(0, closed=True, times=times)
        assert parse_schedules(data)[date(2026, 11, 23)] == ()

    def test_a_closed_day_may_list_closed_times(self):
        data = with_item(0, closed=True, times=[{"from": "00:00", "to": "24:00", "status": 0}])
        assert parse_schedules(data)[date(2026, 11, 23)] == ()

    def test_an_open_day_without_times_is_closed(self):
        assert parse_schedules(with_item(0, times=None))[date(2026, 11, 23)] == ()

    def test_an_empty_answer_has_no_days(self):
        assert parse_schedules({"items": []}) == {}


class TestNotes:
    """The holiday's name in ``info`` becomes the exception's note."""

    def test_info_by_language_and_none(self):
        days = parse_days(GOOD)
        assert days[date(2026, 12, 25)].note == "Joulupäivä"
        assert days[date(2026, 11, 23)].note == "" and days[date(2026, 12, 24)].note == ""

    @pytest.mark.parametrize("info, note", [
        ("Itsenäisyyspäivä", "Itsenäisyyspäivä"),
        ({"sv": "Självständighetsdagen", "fi": "Itsenäisyyspäivä"}, "Itsenäisyyspäivä"),
        ({"sv": "Självständighetsdagen", "fi": ""}, "Självständighetsdagen"),
        ({"se": "Iešmearrideami beaivi"}, "Iešmearrideami beaivi"),
        ("  Joulu-\n aatto ", "Joulu- aatto"),
        ({}, ""),
    ])
    def test_info_shapes(self, info, note):
        assert parse_days(with_item(0, info=info))[date(2026, 11, 23)].note == note

    def test_a_long_info_is_cut_to_a_note(self):
        note = parse_days(with_item(0, info="x" * 500))[date(2026, 11, 23)].note
        assert len(note) == NOTE_MAX_LENGTH and note.endswith("…")

    def test_an_info_that_is_not_text(self):
        assert error_of(with_item(0, info=[1, 2])) == (
            "items[0] (2026-11-23).info: expected a text, an object of texts by language, or null, got [1, 2]"
        )


class TestBadAnswers:
    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ('{"items": [1,', "not valid JSON: Expecting value at line 1, column 14 (character 13)"),
            ('{"items": []} x', "not valid JSON: Extra data at line 1, column 15 (character 14)"),
            (b'{"items": [\xff]}', "not valid JSON: byte 11 cannot be decoded (invalid start byte)"),
        ],
    )
    def test_not_json(self, data, message):
        assert error_of(data) == message

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ([], 'expected a JSON object with "items", got []'),
            ({"type": "schedules"}, "items: missing"),
            ({"items": {"0": {}}}, 'items: expected a list, got {"0": {}}'),
            ({"items": ["2026-11-23"]}, 'items[0]: expected an object, got "2026-11-23"'),
        ],
    )
    def test_wrong_shape(self, data, message):
        assert error_of(data) == message

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"date": "2026-02-30"}, 'items[1].date: "2026-02-30" is not a date (expected YYYY-MM-DD)'),
            ({"date": "24.12.2026"}, 'items[1].date: "24.12.2026" is not a date (expected YYYY-MM-DD)'),
            ({"date": "20261224"}, 'items[1].date: "20261224" is not a date (expected YYYY-MM-DD)'),
            ({"date": 20261224}, "items[1].date: 20261224 is not a date (expected YYYY-MM-DD)"),
            ({"closed": "no"}, 'items[1] (2026-12-24).closed: expected true or false, got "no"'),
            ({"closed": 0}, "items[1] (2026-12-24).closed: expected true or false, got 0"),
            (
                {"times": {"from": "08:00"}},
                'items[1] (2026-12-24).times: expected a list or null, got {"from": "08:00"}',
            ),
            ({"times": ["08:00-12:00"]}, 'items[1] (2026-12-24).times[0]: expected an object, got "08:00-12:00"'),
        ],
    )
    def test_bad_item_field(self, changes, message):
        assert error_of(with_item(1, **changes)) == message

    @pytest.mark.parametrize("key", ["date", "closed"])
    def test_missing_item_field(self, key):
        data = copy.deepcopy(GOOD)
        del data["items"][1][key]
        where = "items[1]" if key == "date" else "items[1] (2026-12-24)"
        assert error_of(data) == f"{where}.{key}: missing"

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"status": 7}, "times[1].status: 7 is not one of 0 (closed), 1 (staffed), 2 (self-service)"),
            ({"status": "2"}, 'times[1].status: "2" is not one of 0 (closed), 1 (staffed), 2 (self-service)'),
            ({"status": True}, "times[1].status: true is not one of 0 (closed), 1 (staffed), 2 (self-service)"),
            ({"status": 2.0}, "times[1].status: 2.0 is not one of 0 (closed), 1 (staffed), 2 (self-service)"),
            ({"from": "8.00"}, 'times[1].from: "8.00" is not a time (expected HH:MM)'),
            ({"from": "24:00"}, 'times[1].from: "24:00" is not a time (expected HH:MM)'),
            ({"from": 800}, "times[1].from: 800 is not a time (expected HH:MM)"),
            (
                {"to": "25:00"},
                'times[1].to: "25:00" is not a time (expected HH:MM, 00:00 or 24:00 for the end of the day)',
            ),
            ({"to": "07:00"}, "times[1].to: 07:00 is not after from 08:00"),
            ({"to": "08:00"}, "times[1].to: 08:00 is not after from 08:00"),
        ],
    )
    def test_bad_time_field(self, changes, message):
        assert error_of(with_time(1, 1, **changes)) == f"items[1] (2026-12-24).{message}"

    @pytest.mark.parametrize("key", ["from", "to", "status"])
    def test_missing_time_field(self, key):
        data = copy.deepcopy(GOOD)
        del data["items"][1]["times"][1][key]
        assert error_of(data) == f"items[1] (2026-12-24).times[1].{key}: missing"

    def test_overlapping_times(self):
        data = with_time(0, 1, **{"from": "09:30"})
        assert error_of(data) == "items[0] (2026-11-23).times[1]: 09:30–16:00 overlaps times[0] 07:00–10:00"

    def test_open_times_on_a_day_marked_closed(self):
        data = with_item(0, closed=True)
        assert error_of(data) == "items[0] (2026-11-23).times[0]: 07:00–10:00 is self_service on a day marked closed"

    def test_the_same_date_twice(self):
        data = copy.deepcopy(GOOD)
        data["items"].append(copy.deepcopy(data["items"][1]))
        assert error_of(data) == "items[3] (2026-12-24).date: the same date as items[1]"

    def test_too_many_days(self):
        data = {"items": [{"date": "2026-01-01", "closed": True}] * (MAX_ITEMS + 1)}
        assert error_of(data) == f"items: {MAX_ITEMS + 1} days is more than the {MAX_ITEMS} allowed"

    def test_a_long_bad_value_is_cut_short_in_the_message(self):
        message = error_of(with_item(0, closed="x" * 500))
        assert message.startswith('items[0] (2026-11-23).closed: expected true or false, got "xxx')
        assert message.endswith("...")
        assert len(message) < 150
