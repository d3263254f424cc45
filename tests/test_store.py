"""The shared SQLite store: schema, events with counts, patrons, hours, commands."""

import sqlite3
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from device.events import Event, parse_utc, utc_text
from device.policy import Patron, Reservation
from device.schedule import Period
from device.store import MIGRATIONS, Store

HEL = ZoneInfo("Europe/Helsinki")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "omaovi.db")
    yield s
    s.close()


def tap(reason="granted", mode="self_service", ts=NOW, door="entrance", kind="entrance"):
    return Event(ts=ts, door=door, type="tap", reason=reason, mode=mode, card_key="k" * 64, door_kind=kind)


def test_new_database_is_migrated_and_in_wal_mode(tmp_path):
    store = Store(tmp_path / "a.db")
    assert store.version == len(MIGRATIONS)
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    again = Store(tmp_path / "a.db")  # opening again must not re-run anything
    assert again.version == len(MIGRATIONS)
    again.close()


def test_an_event_and_its_counts_are_written_together(store):
    store.record([tap(), tap(), tap(mode="staffed"), tap(reason="blocked"), tap(door="booth", kind="booth")])
    assert len(store.events()) == 5
    counts = {(r["door"], r["metric"]): r["count"] for r in store.counts(NOW - timedelta(hours=1), NOW + timedelta(hours=1))}
    assert counts == {
        ("entrance", "visit_self_service"): 2,
        ("entrance", "visit_staffed"): 1,
        ("entrance", "denied_blocked"): 1,
        ("booth", "booth_use"): 1,
    }


def test_a_failed_batch_writes_neither_events_nor_counts(store):
    broken = Event(ts=NOW, door=None, type="tap", reason="granted", mode="self_service")  # door is NOT NULL
    with pytest.raises(sqlite3.IntegrityError):
        store.record([tap(), broken])
    assert store.events() == []
    assert store.counts(NOW - timedelta(hours=1), NOW + timedelta(hours=1)) == []


def test_writing_an_event_again_neither_duplicates_nor_recounts_it(store):
    """A commit can report an error after it happened; the device then retries the batch."""
    first = tap()
    store.record([first])
    store.record([first, tap()])
    assert len(store.events()) == 2
    assert sum(r["count"] for r in store.counts(NOW - timedelta(hours=1), NOW + timedelta(hours=1))) == 2


def test_retention_deletes_old_events_but_keeps_their_counts(store):
    old = tap(ts=NOW - timedelta(days=100))
    store.record([old, tap()])
    assert store.purge_events(NOW - timedelta(days=90)) == 1
    assert [e["uuid"] for e in store.events()] != [old.uuid]
    assert len(store.events()) == 1
    rows = store.counts(NOW - timedelta(days=101), NOW + timedelta(hours=1))
    assert sum(r["count"] for r in rows) == 2


def test_patron_merges_the_cache_with_local_staff_cards_and_blocks(store):
    store.put_patrons([Patron(card_key="a", self_service=True, valid_until=date(2027, 1, 1), fetched_at=NOW)], source="csv")
    store.add_staff_card("s", "caretaker", "admin")
    store.add_local_block("a", "damaged a booth", "admin", until=date(2026, 11, 30))
    assert store.patron("nobody") is None
    assert store.patron("s").local_staff
    blocked = store.patron("a", today=date(2026, 11, 30))
    assert blocked.local_block == "damaged a booth" and blocked.self_service
    assert store.patron("a", today=date(2026, 12, 1)).local_block is None, "the block ends after its last day"
    assert store.patron("a").fetched_at == NOW


def test_replacing_the_patron_cache_removes_the_old_entries(store):
    store.put_patrons([Patron(card_key="old", fetched_at=NOW)], source="central")
    store.put_patrons([Patron(card_key="new", fetched_at=NOW)], source="central", replace=True)
    assert store.patron("old") is None and store.patron("new") is not None


def test_reservations_for_a_card_and_resource(store):
    store.put_reservations([
        Reservation("r1", "smartblock-1", "a", NOW - timedelta(hours=1), NOW + timedelta(hours=1)),
        Reservation("r2", "smartblock-1", "a", NOW - timedelta(hours=3), NOW - timedelta(hours=2)),
        Reservation("r3", "smartblock-2", "a", NOW, NOW + timedelta(hours=1)),
    ])
    assert [r.id for r in store.reservations_for("a", "smartblock-1", NOW)] == ["r1"]


def test_hours_round_trip_and_revision(store):
    before = store.hours_revision()
    store.set_weekly({0: [Period(600, 960, "staffed")], 6: [Period(480, 1200, "self_service")]})
    store.set_exceptions({date(2026, 12, 24): []}, note="Christmas Eve")
    schedule = store.schedule(HEL)
    assert schedule.weekly[0] == (Period(600, 960, "staffed"),)
    assert schedule.exceptions[date(2026, 12, 24)] == ()
    assert store.hours_revision() == before + 2
    store.set_exceptions({date(2026, 12, 24): [Period(600, 720, "staffed")]})
    assert store.schedule(HEL).exceptions[date(2026, 12, 24)] == (Period(600, 720, "staffed"),)


def test_hours_changed_through_another_connection_are_read_again(store):
    """The web keeps the hours between requests; a change the staff page or sync
    made on another connection must still show on the next one."""
    store.set_weekly({0: [Period(600, 960, "staffed")]})
    assert store.schedule(HEL) is store.schedule(HEL)
    other = Store(store.path)
    other.set_weekly({0: [Period(480, 960, "self_service")]})
    other.close()
    assert store.schedule(HEL).weekly[0] == (Period(480, 960, "self_service"),)


def test_times_read_back_are_the_instants_written_and_nothing_else_is_read():
    """The database's times are what utc_text wrote; anything else is a stored value
    gone wrong and must be an error, not a guess."""
    moment = datetime(2026, 3, 29, 0, 59, 59, 123456, tzinfo=timezone.utc)
    assert parse_utc(utc_text(moment)) == moment and parse_utc(utc_text(moment)).tzinfo is timezone.utc
    for text in ("2026-03-29", "2026-03-29T00:59:59Z", "2026-03-29T00:59:59.123456+00:00",
                 "2026-03-29 00:59:59.123456Z", "2026-03-29T00:59:59,123456Z", "2026-13-29T00:59:59.123456Z"):
        with pytest.raises(ValueError):
            parse_utc(text)


def test_counts_written_through_another_connection_are_summed_again(store):
    """The web keeps a statistics query's sums between requests; a tap the device
    records on its own connection, in an hour long past too (an event written
    late), must show on the next request."""
    day = [("2026-11-23", NOW - timedelta(hours=12), NOW + timedelta(hours=12))]
    store.record([tap()])
    assert store.period_totals(day) == [("2026-11-23", "visit_self_service", 1)]
    device = Store(store.path)
    device.record([tap(ts=NOW - timedelta(hours=5)), tap(reason="blocked", ts=NOW - timedelta(hours=5))])
    device.close()
    assert sorted(store.period_totals(day)) == [("2026-11-23", "denied_blocked", 1), ("2026-11-23", "visit_self_service", 2)]


def test_commands_are_pending_until_finished(store):
    until = NOW + timedelta(hours=2)
    first = store.add_command("entrance", "hold", "maija", until=until)
    store.add_command("entrance", "pulse", "maija")
    pending = store.pending_commands()
    assert [(c.action, c.until) for c in pending] == [("hold", until), ("pulse", None)]
    store.finish_command(first, "done")
    assert [c.action for c in store.pending_commands()] == ["pulse"]
    with pytest.raises(ValueError, match="allowed: pulse, hold, lockdown, release"):
        store.add_command("entrance", "explode", "maija")


def test_a_command_to_clear_a_pin_lockout_names_the_card_and_only_it_does(store):
    store.add_command("building", "clear_pin_lockout", "maija", card_key="a" * 64)
    assert [(c.action, c.card_key) for c in store.pending_commands()] == [("clear_pin_lockout", "a" * 64)]
    with pytest.raises(ValueError, match="needs card key"):
        store.add_command("building", "clear_pin_lockout", "maija")
    with pytest.raises(ValueError, match="takes no card key"):
        store.add_command("entrance", "pulse", "maija", card_key="a" * 64)


def test_two_connections_see_each_others_writes(tmp_path):
    device = Store(tmp_path / "shared.db", durable=True)
    web = Store(tmp_path / "shared.db")
    web.add_command("entrance", "pulse", "maija")
    assert len(device.pending_commands()) == 1
    device.record([tap()])
    assert len(web.events()) == 1
    device.close()
    web.close()


def test_unchanged_central_cards_stay_as_fresh_as_the_last_patrons_sync(store):
    week_ago = NOW - timedelta(days=7)
    store.put_patrons([Patron(card_key="c", self_service=True, fetched_at=week_ago)], source="central")
    store.put_patrons([Patron(card_key="f", self_service=True, fetched_at=week_ago)], source="csv")
    assert store.patron("c").fetched_at == week_ago
    store.note_sync_success("patrons", NOW)  # a delta round that changed nothing
    assert store.patron("c").fetched_at == NOW
    assert store.patron("f").fetched_at == week_ago, "a CSV import is only as fresh as the file"
    store.note_sync_success("events", NOW + timedelta(hours=1))
    assert store.patron("c").fetched_at == NOW, "only the patrons stream vouches for patrons"


def test_an_event_adds_its_amount_to_a_counter(store):
    first = Event(ts=NOW, door="booth", type="tap", reason="granted", mode="self_service", door_kind="booth",
                  detail={"reservation": "r1", "booth_minutes": 90})
    again = Event(ts=NOW, door="booth", type="tap", reason="granted", mode="self_service", door_kind="booth",
                  detail={"reservation": "r1"})
    store.record([first, again, first])  # the repeated uuid is not counted again
    counts = {r["metric"]: r["count"] for r in store.counts(NOW - timedelta(hours=1), NOW + timedelta(hours=1))}
    assert counts == {"booth_use": 2, "booth_minutes": 90}
    assert store.reservation_used("booth", "r1", NOW - timedelta(days=1))
    assert not store.reservation_used("booth", "r2", NOW - timedelta(days=1))


def test_wrong_pins_are_counted_per_card_from_the_log_and_a_locked_out_tap_is_not_one(store):
    def pin_tap(card, pin, minutes_ago):
        return Event(ts=NOW - timedelta(minutes=minutes_ago), door="entrance", type="tap", reason="wrong_pin",
                     mode="self_service", card_key=card, detail={"pin": pin})

    store.record([pin_tap("a" * 64, "wrong", 3), pin_tap("a" * 64, "locked_out", 2), pin_tap("b" * 64, "wrong", 1),
                  pin_tap("a" * 64, "wrong", 30)])
    since = NOW - timedelta(minutes=10)
    assert store.wrong_pins(since) == {"a" * 64: [NOW - timedelta(minutes=3)], "b" * 64: [NOW - timedelta(minutes=1)]}
    assert store.wrong_pins(since, "b" * 64) == {"b" * 64: [NOW - timedelta(minutes=1)]}


def test_wrong_pins_before_staff_cleared_the_cards_lockout_no_longer_count(store):
    def wrong(card, minutes_ago):
        return Event(ts=NOW - timedelta(minutes=minutes_ago), door="entrance", type="tap", reason="wrong_pin",
                     mode="self_service", card_key=card, detail={"pin": "wrong"})

    cleared = Event(ts=NOW - timedelta(minutes=5), door="building", type="pin_lockout_cleared", mode="self_service",
                    card_key="a" * 64, door_kind="building", detail={"by": "maija"})
    store.record([wrong("a" * 64, 8), wrong("a" * 64, 6), cleared, wrong("a" * 64, 2), wrong("b" * 64, 7)])
    since = NOW - timedelta(minutes=10)
    assert store.wrong_pins(since) == {"a" * 64: [NOW - timedelta(minutes=2)], "b" * 64: [NOW - timedelta(minutes=7)]}
    assert store.wrong_pins(since, "a" * 64) == {"a" * 64: [NOW - timedelta(minutes=2)]}


def test_announcement_settings_are_seeded_once_and_then_the_staff_page_wins(store):
    assert store.announcement_settings() is None
    store.set_announcement_settings({"first_minutes": 15}, keep_existing=True)
    store.set_announcement_settings({"first_minutes": 10})
    store.set_announcement_settings({"first_minutes": 15}, keep_existing=True)
    assert store.announcement_settings() == {"first_minutes": 10}


def test_a_pin_verifier_survives_a_sip2_refresh(store):
    store.put_patrons([Patron("c" * 64, self_service=True, fetched_at=NOW, pin_verifier="omaovi1$x")], source="central")
    store.refresh_patron("c" * 64, self_service=False, blocked_reason="fines", valid_until=None, fetched_at=NOW, source="sip2")
    assert store.patron("c" * 64).pin_verifier == "omaovi1$x"


def test_an_event_waits_for_another_writer_and_gives_up_at_the_busy_timeout(tmp_path):
    """Events take the write lock by polling it, not by SQLite's growing sleeps (benchmark P3)."""
    import threading

    store = Store(tmp_path / "omaovi.db", busy_timeout_ms=300)
    sync = sqlite3.connect(tmp_path / "omaovi.db", isolation_level=None, check_same_thread=False)
    sync.execute("BEGIN IMMEDIATE")
    threading.Timer(0.05, lambda: sync.execute("COMMIT")).start()
    store.record([tap()])
    assert len(store.events()) == 1

    sync.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        store.record([tap()])
    sync.execute("ROLLBACK")
    store.record([tap()])
    assert len(store.events()) == 2
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 300
    sync.close()
    store.close()
