"""Issue #6's door extras on the staff page: Today's building parts, the announcements page, the labels."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from gpiozero.pins.mock import MockFactory

from admin_web import audit, branch_now
from admin_web.announcements import KIND_LABELS
from admin_web.i18n import EVENT_TYPE_LABELS
from device.config import ANNOUNCEMENT_KINDS
from device.controller import Controller
from device.events import Event, utc_text
from device.messages import CATALOGUE
from device.schedule import Period
from device.store import Store
from webclient import WebClient, make_app, write_branch

EN = {"Accept-Language": "en"}
FI = {"Accept-Language": "fi"}
SV = {"Accept-Language": "sv"}
#: Wednesday 25.11.2026 14.00 in Helsinki (UTC+2).
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
#: Every day: staffed 8–16, self-service 16–21.
WEEKLY = {day: [Period(8 * 60, 16 * 60, "staffed"), Period(16 * 60, 21 * 60, "self_service")] for day in range(7)}
FULL_KEY = "ab12cd" + "9" * 58
EXTRAS = """
[doors.keypad]
type = "serial"
device = "/dev/ttyUSB7"

[pin]
pepper_file = "pepper.key"

[building]
lights_pin = 23
alarm_pin = 24

[announcements]
languages = ["fi", "sv"]
closing = { fi = "Kirjasto sulkeutuu {minutes} minuutin päästä" }
closing_files = { sv = "stanger-sv.wav" }
"""
NEW_EVENT_TYPES = ("pin_lockout", "pin_lockout_cleared", "tailgating", "people_inside_after_close", "announcement",
                   "building_output", "keypad_offline", "keypad_online")


def at(hour: int, minute: int = 0, days: int = 0) -> datetime:
    """A Helsinki wall-clock time on the test day, in UTC."""
    return NOW.replace(hour=hour - 2, minute=minute) + timedelta(days=days)


@pytest.fixture
def branch_config(tmp_path):
    """The test branch with a keypad, PINs, lights and alarm relays and announcements."""
    (tmp_path / "pepper.key").write_bytes(b"p" * 32)
    return write_branch(tmp_path, EXTRAS)


@pytest.fixture(autouse=True)
def pinned_clock(monkeypatch):
    monkeypatch.setattr(branch_now, "utc_now", lambda: NOW)


@pytest.fixture
def plain(tmp_path):
    """A logged-in staff member of a branch with none of the extras, and its database."""
    folder = tmp_path / "plain"
    folder.mkdir()
    config = write_branch(folder)
    client = staff_of(config)
    db = Store(config.database)
    yield client, db
    db.close()


def staff_of(config) -> WebClient:
    app = make_app(config)
    app.test_client_class = WebClient
    client = app.test_client()
    client.login("staff")
    return client


def publish(db: Store) -> None:
    """What a running device with the extras writes."""
    db.set_weekly(WEEKLY)
    db.set_status("occupancy", {"count": 7})
    db.set_status("building", {"lights": True, "alarm_armed": False})
    db.set_status("pin_lockouts", [
        {"card_key": FULL_KEY, "until": utc_text(at(14, 30))},
        {"card_key": "ee" * 32, "until": utc_text(at(13, 59))},  # over, though a stopped device left it
    ])


# -- Today --------------------------------------------------------------------
def test_today_shows_people_inside_lights_alarm_and_lockouts(staff, web_store):
    publish(web_store)
    page = staff.get("/", headers=EN).get_data(as_text=True)
    assert "People inside" in page and '<div class="big-number">7</div>' in page
    assert "Lights" in page and ">On<" in page
    assert "Intruder alarm" in page and ">Not armed<" in page
    assert "Cards locked out of PIN entry" in page
    assert "<code>ab12cd…</code>" in page and "until 14.30" in page
    assert FULL_KEY not in page and FULL_KEY[:7] not in page, "only a short prefix of the key is shown"
    assert "eeeeee" not in page, "an ended lockout is not shown"
    assert staff.get("/today/live", headers=EN).get_data(as_text=True).count("<code>ab12cd…</code>") == 1


def keypad(db: Store, works: bool, since: datetime) -> None:
    """What the device writes when the keypad (the booth's, in this branch) stops or starts working."""
    db.set_status("keypad:booth", {"works": works, "detail": "cannot open the serial keypad /dev/ttyUSB7"})
    with db.conn:
        db.conn.execute("UPDATE device_status SET updated_at = ? WHERE key = 'keypad:booth'", (utc_text(since),))


def test_today_shows_a_door_whose_keypad_does_not_work_as_card_only(staff, web_store):
    keypad(web_store, False, at(13, 20))
    page = staff.get("/", headers=EN).get_data(as_text=True)
    assert "Card only: keypad not working" in page, "the door's row says it opens by card alone"
    assert ("The PIN keypad of Work booth has not worked since 25.11.2026 13.20: the door opens by card alone, "
            "without a PIN.") in page
    finnish = staff.get("/today/live", headers=FI).get_data(as_text=True)
    assert "Vain kortilla" in finnish and "PIN-näppäimistö" in finnish
    assert "Card only" not in finnish and "keypad" not in finnish
    keypad(web_store, True, at(13, 40))
    page = staff.get("/", headers=EN).get_data(as_text=True)
    assert "Card only" not in page and "has not worked since" not in page


def test_today_says_when_the_device_has_not_reported_the_extras_yet(staff):
    page = staff.get("/", headers=EN).get_data(as_text=True)
    assert "People inside" in page and "Not reported by the door controller yet." in page
    assert page.count("Not reported yet") == 2  # lights and alarm
    assert "No card is locked out." in page


def test_a_branch_without_the_extras_shows_none_of_them(plain):
    client, db = plain
    publish(db)  # the device publishes an estimate even without a counter or alarm, and logs it at closing
    db.record([Event(at(9), "building", "people_inside_after_close", mode="closed", door_kind="building", detail={"count": 2})])
    page = client.get("/", headers=EN).get_data(as_text=True)
    for hidden in ("<h2>People inside</h2>", "Lights and alarm", "Intruder alarm", "locked out", "ab12cd", "still counted inside"):
        assert hidden not in page


def test_lights_only_branch_shows_no_alarm_and_no_people_count(tmp_path):
    config = write_branch(tmp_path, "\n[building]\nlights_pin = 23\n")
    client = staff_of(config)
    db = Store(config.database)
    publish(db)
    db.close()
    page = client.get("/", headers=EN).get_data(as_text=True)
    assert "Lights and alarm" in page and ">On<" in page
    assert "Intruder alarm" not in page and "People inside" not in page and "locked out" not in page


def test_today_warns_of_people_left_inside_and_tailgating_today_only(staff, web_store):
    web_store.record([
        Event(at(9), "building", "people_inside_after_close", mode="closed", door_kind="building", detail={"count": 2}),
        Event(at(13, 5), "entrance", "tailgating", mode="staffed", detail={"people_in": 3, "grants": 1}),
    ])
    page = staff.get("/", headers=EN).get_data(as_text=True)
    assert "At closing (09.00) people were still counted inside: 2." in page
    assert "Main entrance at 13.05: 3 people went in on 1 card taps." in page
    finnish = staff.get("/", headers=FI).get_data(as_text=True)
    assert "Perään kulkeminen" in finnish and "Ihmisiä sisällä sulkemisen jälkeen" in finnish


def test_yesterdays_building_events_raise_no_warning(staff, web_store):
    web_store.record([
        Event(at(21, days=-1), "building", "people_inside_after_close", mode="closed", door_kind="building", detail={"count": 2}),
        Event(at(20, days=-1), "entrance", "tailgating", mode="self_service", detail={"people_in": 3, "grants": 1}),
    ])
    page = staff.get("/", headers=EN).get_data(as_text=True)
    assert "still counted inside" not in page and "people went in on" not in page


def test_latest_events_name_the_building_and_the_relay_change(staff, web_store):
    web_store.record([Event(at(13), "building", "building_output", mode="staffed", door_kind="building",
                            detail={"change": "alarm off"})])
    assert "Building" in staff.get("/", headers=EN).get_data(as_text=True)
    page = staff.get("/", headers=FI).get_data(as_text=True)
    assert "Rakennus" in page and "Hälytys pois päältä" in page


# -- clearing a PIN lockout -----------------------------------------------------
CLEAR_URL = "/today/pin-lockouts/ab12cd/clear"


def test_a_lockout_shown_on_today_has_a_button_that_clears_it(staff, web_store):
    publish(web_store)
    page = staff.get("/", headers=EN).get_data(as_text=True)
    assert f'<form method="post" action="{CLEAR_URL}">' in page and "Clear lockout" in page
    assert page.count("Clear lockout<") == 1, "no button for the lockout that is over"
    response = staff.post(CLEAR_URL, data={}, headers=EN)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    [command] = web_store.pending_commands()
    assert (command.action, command.card_key, command.requested_by) == ("clear_pin_lockout", FULL_KEY, "staff")
    entry = audit.entries(web_store, limit=1)[0]
    assert (entry["actor"], entry["action"], entry["target"]) == ("staff", "pin_lockout.clear", "ab12cd")
    assert entry["detail"] == {"command": command.id} and FULL_KEY not in str(entry)
    page = staff.get("/", headers=EN).get_data(as_text=True)
    assert "is being cleared" in page, "the flash message"
    assert "Being cleared: waiting for the door controller" in page and CLEAR_URL not in page
    assert FULL_KEY[:7] not in page


def test_the_device_carries_out_the_clearing_and_the_event_log_names_who_asked(staff, web_store, branch_config):
    publish(web_store)
    staff.post(CLEAR_URL, data={})
    factory = MockFactory()
    controller = Controller(branch_config, web_store, pin_factory=factory, start_readers=False, pepper=b"p" * 32)
    try:
        controller.step()
    finally:
        controller.close()
    assert web_store.pending_commands() == []
    events_page = staff.get("/events?type=pin_lockout_cleared", headers=EN).get_data(as_text=True)
    assert "PIN lockout cleared by staff" in events_page and '">by staff</td>' in events_page
    assert "<code>ab12cd" in events_page
    today = staff.get("/", headers=EN).get_data(as_text=True)
    assert "PIN lockout cleared by staff" in today and "(staff)" in today


def test_clearing_a_card_that_is_no_longer_locked_out_changes_nothing(staff, web_store):
    publish(web_store)
    response = staff.post("/today/pin-lockouts/eeeeee/clear", data={}, headers=EN, follow_redirects=True)
    assert "The card eeeeee… is no longer locked out." in response.get_data(as_text=True)
    assert staff.post("/today/pin-lockouts/AB12CD'/clear", data={}).status_code == 404
    assert web_store.pending_commands() == []
    assert "pin_lockout.clear" not in [e["action"] for e in audit.entries(web_store)]


def test_two_lockouts_with_the_same_shown_key_are_not_guessed_between(staff, web_store):
    web_store.set_status("pin_lockouts", [{"card_key": FULL_KEY, "until": utc_text(at(14, 30))},
                                          {"card_key": "ab12cd" + "0" * 58, "until": utc_text(at(14, 40))}])
    response = staff.post(CLEAR_URL, data={}, headers=EN, follow_redirects=True)
    assert "Two locked-out cards begin with ab12cd…" in response.get_data(as_text=True)
    assert web_store.pending_commands() == []


def test_clearing_needs_the_csrf_token_and_a_login(staff, anonymous, web_store):
    publish(web_store)
    assert staff.post(CLEAR_URL, data={"csrf_token": "forged"}).status_code == 400
    assert anonymous.post(CLEAR_URL).status_code in (302, 400)
    assert web_store.pending_commands() == []


def test_the_audit_page_names_the_clearing(admin, staff, web_store):
    publish(web_store)
    staff.post(CLEAR_URL, data={})
    for headers, label in ((EN, "PIN lockout cleared"), (FI, "PIN-lukitus poistettu"), (SV, "PIN-spärren hävd")):
        assert label in admin.get("/users/audit", headers=headers).get_data(as_text=True)


# -- labels -------------------------------------------------------------------
@pytest.mark.parametrize("event_type", NEW_EVENT_TYPES)
def test_the_events_page_filters_and_names_each_new_event_type(staff, web_store, event_type):
    web_store.record([Event(at(13), "entrance", event_type, mode="staffed")])
    english = str(EVENT_TYPE_LABELS[event_type])
    response = staff.get(f"/events?type={event_type}", headers=EN)
    assert response.status_code == 200 and english in response.get_data(as_text=True)
    for headers in (FI, SV):
        page = staff.get(f"/events?type={event_type}", headers=headers).get_data(as_text=True)
        assert english not in page, f"{event_type} is not translated for {headers}"


def test_the_events_page_names_and_filters_the_building(staff, web_store):
    web_store.record([Event(at(13), "building", "announcement", mode="staffed", door_kind="building"),
                      Event(at(13, 1), "entrance", "tap", "granted", "staffed", FULL_KEY)])
    response = staff.get("/events?door=building", headers=FI)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '">Rakennus</td>' in page and "Kuulutus" in page and '">Main entrance</td>' not in page


def test_the_finnish_labels_use_the_librarys_words(staff, web_store):
    page = staff.get("/events", headers=FI).get_data(as_text=True)
    for label in ("PIN-koodin syöttö estetty", "Perään kulkeminen", "Ihmisiä sisällä sulkemisen jälkeen", "Kuulutus"):
        assert label in page  # the type filter lists every type


# -- the announcements page ---------------------------------------------------
def test_announcements_are_prefilled_from_the_config_and_the_catalogue(staff, web_store):
    web_store.set_weekly(WEEKLY)
    page = staff.get("/announcements", headers=EN).get_data(as_text=True)
    assert 'name="first_minutes" value="15"' in page and 'name="every_minutes" value="5"' in page
    assert "Kirjasto sulkeutuu {minutes} minuutin päästä</textarea>" in page  # the config's text
    assert CATALOGUE["closing"]["sv"] + "</textarea>" in page  # the catalogue's for the rest
    assert CATALOGUE["self_service_starts"]["fi"] + "</textarea>" in page
    assert 'name="text-closing-en"' not in page, "only the languages the config speaks"
    assert "A recording is played instead of this text: stanger-sv.wav" in page


def test_the_page_lists_the_announcements_still_to_come_today(staff, web_store):
    web_store.set_weekly(WEEKLY)
    page = staff.get("/announcements", headers=EN).get_data(as_text=True)
    upcoming = page[page.index("Announcements still to come today"):page.index("Times and texts")]
    assert [t for t in ("16.00", "20.45", "20.50", "20.55") if t in upcoming] == ["16.00", "20.45", "20.50", "20.55"]
    assert "Self-service ends in 15 minutes" in upcoming and "When self-service starts" in upcoming


def test_no_announcements_left_today_says_so(staff, web_store):
    web_store.set_weekly({day: [] for day in range(7)})
    assert "No more announcements today." in staff.get("/announcements", headers=EN).get_data(as_text=True)


def form(**changes) -> dict:
    values = {
        "first_minutes": "10", "every_minutes": "10",
        "text-closing-fi": "Suljemme {minutes} minuutin päästä, kiitos käynnistä!",
        "text-closing-sv": "Vi stänger om {minutes} minuter",
        "text-self_service_starts-fi": "Henkilökunta lähti,   kirjasto on omatoiminen",
        "text-self_service_starts-sv": "Personalen har gått",
    }
    return values | changes


def test_saved_settings_are_stored_audited_and_used_by_the_device(staff, web_store, branch_config):
    response = staff.post("/announcements", data=form(), headers=EN)
    assert response.status_code == 302
    saved = web_store.announcement_settings()
    assert saved == {
        "first_minutes": 10, "every_minutes": 10,
        "texts": {"closing": {"fi": "Suljemme {minutes} minuutin päästä, kiitos käynnistä!", "sv": "Vi stänger om {minutes} minuter"},
                  "self_service_starts": {"fi": "Henkilökunta lähti, kirjasto on omatoiminen", "sv": "Personalen har gått"}},
    }
    entry = audit.entries(web_store, limit=1)[0]
    assert entry["actor"] == "staff" and entry["action"] == "announcements.settings"
    assert entry["detail"]["old"] is None and entry["detail"]["new"] == saved
    assert "Announcement settings saved." in staff.get("/announcements", headers=EN).get_data(as_text=True)

    # The device announces with them: 10 minutes before a 21.00 closing, once.
    web_store.set_weekly(WEEKLY)
    wall = [at(20, 49) + timedelta(seconds=30)]
    played = []
    player = type("Player", (), {"play": lambda self, clips: played.append(clips)})()
    controller = Controller(branch_config, Store(branch_config.database), pin_factory=MockFactory(), start_readers=False,
                            wall=lambda: wall[0], player=player, pepper=b"p" * 32)
    try:
        wall[0] = at(20, 50) + timedelta(seconds=2)
        controller.step()
    finally:
        controller.close()
        controller.store.close()
    assert played and played[0][0][:2] == ("fi", "Suljemme 10 minuutin päästä, kiitos käynnistä!")
    assert played[0][1][2] is not None and played[0][1][2].name == "stanger-sv.wav"


def test_a_second_save_audits_the_old_and_the_new(staff, web_store):
    staff.post("/announcements", data=form())
    staff.post("/announcements", data=form(first_minutes="20"))
    entry = audit.entries(web_store, limit=1)[0]
    assert entry["detail"]["old"]["first_minutes"] == 10 and entry["detail"]["new"]["first_minutes"] == 20


def test_saving_the_same_settings_changes_nothing(staff, web_store):
    staff.post("/announcements", data=form())
    response = staff.post("/announcements", data=form(), headers=EN, follow_redirects=True)
    assert "Nothing was changed." in response.get_data(as_text=True)
    assert [e["action"] for e in audit.entries(web_store)].count("announcements.settings") == 1


@pytest.mark.parametrize("changes, message", [
    ({"first_minutes": "0"}, "First announcement: write a whole number of minutes from 1 to 120."),
    ({"first_minutes": "121"}, "First announcement: write a whole number of minutes from 1 to 120."),
    ({"every_minutes": "5.5"}, "Repeat interval: write a whole number of minutes from 1 to 60."),
    ({"every_minutes": "٥"}, "Repeat interval: write a whole number of minutes from 1 to 60."),
    ({"every_minutes": ""}, "Repeat interval: write a whole number of minutes from 1 to 60."),
    ({"text-closing-sv": "   "}, "Before self-service ends, Svenska: write the text to be spoken."),
    ({"text-closing-fi": "x" * 301}, "Before self-service ends, Suomi: shorten the text to at most 300 characters (now 301)."),
    ({"text-closing-fi": "Suljemme {minuutit} päästä"}, "Before self-service ends, Suomi: curly brackets are only allowed in {minutes}"),
    ({"text-closing-fi": "Suljemme { pian"}, "Before self-service ends, Suomi: curly brackets are only allowed in {minutes}"),
    ({"text-self_service_starts-sv": "Om {minutes} minuter"}, "When self-service starts, Svenska: remove the curly brackets"),
])
def test_bad_settings_are_refused_with_the_field_named(staff, web_store, changes, message):
    response = staff.post("/announcements", data=form(**changes), headers=EN)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in page
    assert "Vi stänger om {minutes} minuter</textarea>" in page or "text-closing-sv" in changes, "values are kept"
    assert web_store.announcement_settings() is None
    assert "announcements.settings" not in [e["action"] for e in audit.entries(web_store)]


@pytest.mark.parametrize("language, message", [
    ("en", "Before self-service ends, Suomi: the text must not begin with a dash (-): begin it with a word."),
    ("fi", "viiva"),
    ("sv", "tankstreck"),
])
def test_a_text_that_would_read_as_an_option_is_refused_in_every_language(staff, web_store, language, message):
    response = staff.post("/announcements", data=form(**{"text-closing-fi": "--phonout=/var/lib/omaovi/omaovi.db"}),
                          headers={"Accept-Language": language})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert web_store.announcement_settings() is None


def test_texts_are_escaped(staff, web_store):
    staff.post("/announcements", data=form(**{"text-closing-fi": "<script>alert(1)</script> {minutes}"}))
    page = staff.get("/announcements").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; {minutes}" in page


def test_unusable_saved_settings_are_flagged_and_the_config_shown(staff, web_store):
    web_store.set_announcement_settings({"first_minutes": "soon", "texts": {}})
    page = staff.get("/announcements", headers=EN).get_data(as_text=True)
    assert "The saved announcement settings could not be used" in page
    assert 'name="first_minutes" value="15"' in page
    staff.post("/announcements", data=form())
    assert audit.entries(web_store, limit=1)[0]["detail"]["old"] == {"first_minutes": "soon", "texts": {}}


def test_a_branch_without_announcements_explains_how_to_turn_them_on(plain):
    client, db = plain
    page = client.get("/announcements", headers=EN).get_data(as_text=True)
    assert "Announcements are not in use at this library" in page
    assert "[announcements]" in page and "first_minutes" in page and "<textarea" not in page
    client.post("/announcements", data=form())
    assert db.announcement_settings() is None


def test_the_hours_page_links_to_the_announcements(staff):
    assert 'href="/announcements"' in staff.get("/hours").get_data(as_text=True)


def test_only_logged_in_staff_reach_the_page(anonymous, admin):
    assert "/login" in anonymous.get("/announcements").headers["Location"]
    assert admin.get("/announcements").status_code == 200


def test_every_announcement_kind_has_a_label():
    assert tuple(KIND_LABELS) == ANNOUNCEMENT_KINDS


def test_the_announcement_page_is_translated(staff):
    assert "Sulkemiskuulutukset" in staff.get("/announcements", headers=FI).get_data(as_text=True)
    assert "Stängningsutrop" in staff.get("/announcements", headers=SV).get_data(as_text=True)
