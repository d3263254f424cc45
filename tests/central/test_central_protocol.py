"""Protocol v1 as a branch meets it, on the central service (SQLite and PostgreSQL) and on the test double.

Everything here is what docs/central-protocol.md promises; a branch written only
from that page must get exactly these answers from either server.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests

from harness import BRANCH, DoubleCentral, RealCentral, card

NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture(params=["double", "central-sqlite", "central-postgresql"])
def central(request, tmp_path):
    if request.param == "double":
        server = DoubleCentral()
    else:
        engine = request.param.split("-")[1]
        url = f"sqlite:///{tmp_path / 'central.db'}" if engine == "sqlite" else request.getfixturevalue("postgres").new_database()
        server = RealCentral(tmp_path, url)
    with server:
        yield server


class Branch:
    """What ``omaovi sync`` sends, written out by hand from the protocol page."""

    def __init__(self, central, token: str | None = None):
        self.central = central
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy between us and 127.0.0.1
        self.session.headers["Authorization"] = f"Bearer {token or central.token}"

    def get(self, stream: str, **params) -> requests.Response:
        return self.session.get(f"{self.central.url}/v1/branches/{BRANCH}/{stream}", params=params, timeout=30)

    def post_events(self, body) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.session.post(f"{self.central.url}/v1/branches/{BRANCH}/events", data=data,
                                 headers={"Content-Type": "application/json"}, timeout=30)

    def pages(self, stream: str, cursor: str | None = None) -> tuple[list[dict], str]:
        """Follow a stream to its last page, as sync does; every page must move the cursor on."""
        items: list[dict] = []
        for _ in range(100):
            answer = self.get(stream, **({"cursor": cursor} if cursor else {}))
            assert answer.status_code == 200, answer.text
            page = answer.json()
            assert page["cursor"] != cursor or not page["more"]
            items += page["items"]
            cursor = page["cursor"]
            if not page["more"]:
                return items, cursor
        raise AssertionError("the stream never ended")


def patron(n: int, **changes) -> dict:
    return {"card_key": card(n), "self_service": True, "blocked_reason": None,
            "valid_until": (NOW.date() + timedelta(days=365)).isoformat(), "age_ok_from": "2000-01-01",
            "staff": False, "pin_verifier": None} | changes


def event(n: int, **changes) -> dict:
    return {"uuid": str(uuid.uuid4()), "seq": n, "ts": NOW.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "door": "entrance",
            "type": "tap", "reason": "granted", "mode": "self_service", "card_key": card(1),
            "detail": {"message": "Tervetuloa"}} | changes


# -- tokens -----------------------------------------------------------------------
@pytest.mark.parametrize("token", ["", "not-a-token", "other branch"])
def test_a_request_without_this_branchs_token_is_refused(central, token):
    branch = Branch(central, central.other_token if token == "other branch" else token or None)
    if not token:
        del branch.session.headers["Authorization"]
    for answer in (branch.get("patrons"), branch.post_events({"events": [event(1)]})):
        assert answer.status_code in (401, 403)
        assert "error" in answer.json()
    assert central.stored_events() == {}


def test_every_answer_carries_a_date_header(central):
    answer = Branch(central).get("patrons")
    assert answer.status_code == 200 and answer.headers["Date"].endswith("GMT")


# -- patrons: snapshot, then changes ----------------------------------------------
def test_a_snapshot_pages_every_card_then_changes_carry_updates_and_deletions(central):
    central.put_patrons(*(patron(n) for n in range(1, 6)))
    branch = Branch(central)
    items, cursor = branch.pages("patrons")
    assert sorted(item["card_key"] for item in items) == [card(n) for n in range(1, 6)]
    assert all(not item.get("deleted") for item in items)

    central.put_patrons(patron(2, blocked_reason="Lost card"), {"card_key": card(3), "deleted": True}, patron(6))
    changes, cursor = branch.pages("patrons", cursor)
    by_key = {item["card_key"]: item for item in changes}
    assert by_key[card(2)]["blocked_reason"] == "Lost card"
    assert by_key[card(3)] == {"card_key": card(3), "deleted": True}
    assert by_key[card(6)]["self_service"] is True
    assert card(1) not in by_key, "an unchanged card is not sent again"

    again, _ = branch.pages("patrons", cursor)
    assert again == [], "a round with no changes is empty"


def test_a_snapshot_holds_no_tombstones(central):
    central.put_patrons(patron(1), patron(2))
    central.put_patrons({"card_key": card(1), "deleted": True})
    items, _ = Branch(central).pages("patrons")
    assert [item["card_key"] for item in items] == [card(2)]


def test_a_change_made_while_a_snapshot_is_read_arrives_in_the_next_round(central):
    central.put_patrons(*(patron(n) for n in range(1, 6)))
    branch = Branch(central)
    first = branch.get("patrons").json()
    assert first["more"]
    central.put_patrons(patron(1, blocked_reason="Fines"))
    items, cursor = branch.pages("patrons", first["cursor"])
    changes, _ = branch.pages("patrons", cursor)
    assert next(i for i in changes if i["card_key"] == card(1))["blocked_reason"] == "Fines"


@pytest.mark.parametrize("cursor", [
    "garbage", "d:99999", "x" * 2001, "", "s:0:0", "%00", "AAAA.BBBB",
])
def test_a_cursor_the_service_never_issued_is_gone_not_bad(central, cursor):
    answer = Branch(central).get("patrons", cursor=cursor)
    assert answer.status_code == 410, (cursor, answer.status_code, answer.text)
    assert "error" in answer.json()


def test_a_cursor_with_one_character_changed_is_gone(central):
    central.put_patrons(patron(1))
    branch = Branch(central)
    _, cursor = branch.pages("patrons")
    for position in range(0, len(cursor), max(1, len(cursor) // 7)):
        tampered = cursor[:position] + ("A" if cursor[position] != "A" else "B") + cursor[position + 1:]
        assert branch.get("patrons", cursor=tampered).status_code == 410, position


def test_a_patrons_cursor_is_no_reservations_cursor(central):
    central.put_patrons(patron(1), patron(2))
    central.book(card(1), NOW + timedelta(days=1), NOW + timedelta(days=1, hours=1))
    _, cursor = Branch(central).pages("patrons")
    assert Branch(central).get("reservations", cursor=cursor).status_code == 410


def test_unknown_query_parameters_are_ignored(central):
    central.put_patrons(patron(1))
    answer = Branch(central).get("patrons", page_size="3", fields="all")
    assert answer.status_code == 200 and answer.json()["items"][0]["card_key"] == card(1)


def test_after_the_change_log_is_compacted_an_old_cursor_is_gone_and_a_snapshot_repairs_it(central):
    central.put_patrons(patron(1))
    branch = Branch(central)
    _, old = branch.pages("patrons")
    central.put_patrons(patron(2), patron(3))
    central.forget_cursors()
    assert branch.get("patrons", cursor=old).status_code == 410
    items, _ = branch.pages("patrons")
    assert sorted(item["card_key"] for item in items) == [card(1), card(2), card(3)]


def test_a_cursor_from_before_a_restore_is_gone_even_once_the_log_has_moved_past_it(central):
    central.put_patrons(patron(1))
    backup = central.backup()
    branch = Branch(central)
    central.put_patrons(patron(2), patron(3))
    _, seen = branch.pages("patrons")  # the branch has seen cards 2 and 3, which the backup does not have
    central.restore(backup)
    central.put_patrons(patron(4), patron(5), patron(6), patron(7))  # the restored log moves past the branch's position
    assert branch.get("patrons", cursor=seen).status_code == 410
    items, _ = branch.pages("patrons")
    assert sorted(item["card_key"] for item in items) == [card(1), card(4), card(5), card(6), card(7)]


# -- reservations -----------------------------------------------------------------
def test_reservations_snapshot_lists_confirmed_bookings_and_changes_carry_cancellations(central):
    start = NOW + timedelta(days=1)
    kept = central.book(card(1), start, start + timedelta(hours=2))
    gone = central.book(card(2), start + timedelta(hours=3), start + timedelta(hours=4))
    central.cancel(gone)
    branch = Branch(central)
    items, cursor = branch.pages("reservations")
    assert [item["id"] for item in items] == [kept], "a snapshot lists no cancelled booking"
    assert items[0]["card_key"] == card(1) and items[0]["state"] == "confirmed"
    assert datetime.fromisoformat(items[0]["begin"]) == start

    central.cancel(kept)
    changes, _ = branch.pages("reservations", cursor)
    assert [(item["id"], item["state"]) for item in changes] == [(kept, "cancelled")]


# -- hours ------------------------------------------------------------------------
@pytest.mark.parametrize("params", [{}, {"from": "2026-12-01"}, {"to": "2026-12-01"}, {"from": "1.12.2026", "to": "2026-12-31"},
                                    {"from": "2026-02-30", "to": "2026-03-01"}, {"from": "2026-12-31", "to": "2026-12-01"}])
def test_hours_with_a_missing_or_malformed_date_is_a_clear_400(central, params):
    answer = Branch(central).get("hours", **params)
    assert answer.status_code == 400
    assert answer.json()["error"]


# -- events -----------------------------------------------------------------------
def test_events_are_stored_once_by_uuid(central):
    branch = Branch(central)
    batch = {"events": [event(1), event(2, type="door_opened", reason=None, card_key=None, detail=None)]}
    assert branch.post_events(batch).json() == {"accepted": 2, "duplicates": 0}
    assert branch.post_events(batch).json() == {"accepted": 0, "duplicates": 2}
    assert set(central.stored_events()) == {e["uuid"] for e in batch["events"]}


def test_a_future_event_type_and_reason_are_stored_not_refused(central):
    answer = Branch(central).post_events({"events": [event(1, type="help_requested", reason="some_new_reason")]})
    assert answer.status_code == 200 and answer.json()["accepted"] == 1


MALFORMED = {
    "not JSON": b"{nope",
    "not an object": [1, 2],
    "no events": {"evnts": []},
    "events not a list": {"events": {"0": {}}},
    "no events at all": {"events": []},
    "501 events": {"events": [event(n) for n in range(1, 502)]},
    "an event that is no object": {"events": ["tap"]},
    "no uuid": {"events": [{k: v for k, v in event(1).items() if k != "uuid"}]},
    "a uuid that is no uuid": {"events": [event(1, uuid="1234")]},
    "seq as text": {"events": [event(1, seq="1")]},
    "seq below 1": {"events": [event(1, seq=0)]},
    "ts with an offset": {"events": [event(1, ts="2026-11-23T20:04:12+02:00")]},
    "ts without a zone": {"events": [event(1, ts="2026-11-23T18:04:12")]},
    "ts that is no time": {"events": [event(1, ts="yesterday")]},
    "an empty door": {"events": [event(1, door="")]},
    "a type with markup": {"events": [event(1, type="<script>")]},
    "a reason that is a number": {"events": [event(1, reason=3)]},
    "an unknown mode": {"events": [event(1, mode="open")]},
    "a card number for a card key": {"events": [event(1, card_key="10000001")]},
    "a detail that is a list": {"events": [event(1, detail=["x"])]},
    "one bad event among good ones": {"events": [event(1), event(2, seq=-5), event(3)]},
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_batch_is_refused_whole_with_what_was_wrong(central, body):
    answer = Branch(central).post_events(body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]
    assert central.stored_events() == {}, "nothing of a refused batch is stored"


def test_a_refusal_names_each_bad_event_by_index_and_uuid(central):
    good, bad = event(1), event(2, ts="2026-11-23T20:04:12+02:00")
    answer = Branch(central).post_events({"events": [good, bad]}).json()
    assert answer["problems"] == [{"index": 1, "uuid": bad["uuid"], "error": answer["problems"][0]["error"]}]
    assert "events[1].ts" in answer["problems"][0]["error"] and "UTC" in answer["problems"][0]["error"]
