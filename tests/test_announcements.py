"""Closing announcements: at the right local times on the DST days, played off the loop, logged, editable."""

from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from gpiozero.pins.mock import MockFactory

from device import announcements
from device.announcements import due
from device.config import AnnouncementConfig, Config, DoorConfig
from device.controller import Controller
from device.schedule import Period, Schedule
from device.store import Store
from tests.simulated import SimulatedTime

HELSINKI = ZoneInfo("Europe/Helsinki")
KEY = b"announcement-test-consortium-key"
#: Self-service 07-10, staffed 10-16, self-service 16-21, every day.
WEEK = {d: (Period(7 * 60, 10 * 60, "self_service"), Period(10 * 60, 16 * 60, "staffed"),
            Period(16 * 60, 21 * 60, "self_service")) for d in range(7)}
SPRING, AUTUMN = date(2026, 3, 29), date(2026, 10, 25)
#: Night openings across the hour the clocks skip (spring) and repeat (autumn).
NIGHTS = {SPRING: (Period(60, 4 * 60 + 30, "self_service"),), AUTUMN: (Period(2 * 60, 5 * 60, "self_service"),)}


def local(day: date, hhmm: str, fold: int = 0) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm), HELSINKI).replace(fold=fold)


def polled(schedule: Schedule, day: date, step=timedelta(seconds=37)) -> list[tuple[str, str, int | None]]:
    """Everything announced over a local day, asked for in small steps as the loop asks."""
    moment = local(day, "00:00").astimezone(timezone.utc)
    end = local(day + timedelta(days=1), "00:00").astimezone(timezone.utc)
    found = []
    while moment < end:
        found += due(schedule, moment, min(moment + step, end), 15, 5)
        moment += step
    return [(a.at.astimezone(HELSINKI).strftime("%H:%M"), a.kind, a.minutes) for a in found]


@pytest.mark.parametrize("day", [date(2026, 3, 28), SPRING, date(2026, 10, 24), AUTUMN])
def test_announcements_come_at_the_same_local_times_on_the_dst_days(day):
    assert polled(Schedule(WEEK, {}), day) == [
        ("16:00", "self_service_starts", None),
        ("20:45", "closing", 15), ("20:50", "closing", 10), ("20:55", "closing", 5),
    ]


def test_the_instants_follow_the_offset_of_the_day():
    schedule = Schedule(WEEK, {})
    at = lambda day: [a.at for a in due(schedule, local(day, "20:00"), local(day, "21:00"), 15, 5)][0]
    assert at(date(2026, 3, 28)) == datetime(2026, 3, 28, 18, 45, tzinfo=timezone.utc)  # UTC+2
    assert at(SPRING) == datetime(2026, 3, 29, 17, 45, tzinfo=timezone.utc)  # UTC+3
    assert at(AUTUMN) == datetime(2026, 10, 25, 18, 45, tzinfo=timezone.utc)  # UTC+2 again


@pytest.mark.parametrize("day, expected", [
    # 03:00 does not exist on the spring night; 04:15 is 01:15 UTC.
    (SPRING, [("04:15", 15), ("04:20", 10), ("04:25", 5)]),
    # 03:00-04:00 happens twice on the autumn night; 04:45 is 02:45 UTC, once.
    (AUTUMN, [("04:45", 15), ("04:50", 10), ("04:55", 5)]),
])
def test_a_night_opening_across_the_clock_change_is_announced_once_each(day, expected):
    found = polled(Schedule({}, NIGHTS), day)
    assert [(hhmm, minutes) for hhmm, kind, minutes in found if kind == "closing"] == expected


def test_offsets_that_fall_outside_self_service_are_skipped():
    short = Schedule({0: (Period(20 * 60 + 50, 21 * 60, "self_service"),)}, {})
    monday = date(2026, 11, 23)
    assert [a.minutes for a in due(short, local(monday, "20:00"), local(monday, "21:00"), 15, 5)] == [10, 5]


def test_self_service_giving_way_to_staffed_hours_is_not_a_closing():
    morning = [a for a in due(Schedule(WEEK, {}), local(SPRING, "09:00"), local(SPRING, "10:30"), 15, 5)]
    assert morning == []


class RecordingPlayer:
    def __init__(self):
        self.calls = []

    def play(self, clips):
        self.calls.append(clips)


@pytest.fixture
def branch(tmp_path):
    """A factory of branches (each a controller, its store, its clock and its player), closed after the test."""
    made = []

    def make(start: datetime, **announcement):
        made.append(_branch(tmp_path, start, **announcement))
        return made[-1]

    yield make
    for controller, store, _, _ in made:
        controller.close()
        store.close()


def _branch(tmp_path, start: datetime, **announcement):
    config = Config(
        path=tmp_path / "omaovi.toml", branch="test", timezone="Europe/Helsinki",
        database=tmp_path / "omaovi.db", consortium_key_file=tmp_path / "key",
        doors=(DoorConfig(id="entrance", kind="entrance", lock_pin=17),),
        announcements=AnnouncementConfig(**announcement),
    )
    store = Store(config.database)
    store.set_weekly(WEEK)
    sim = SimulatedTime(start)
    player = RecordingPlayer()
    controller = Controller(config, store, consortium_key=KEY, pin_factory=MockFactory(), start_readers=False,
                            wall=sim.wall, clock=sim.clock, player=player)
    return controller, store, sim, player


def test_the_device_plays_and_logs_each_announcement_on_the_autumn_dst_day(branch):
    wav = Path("/usr/share/omaovi/closing-fi.wav")
    controller, store, sim, player = branch(local(AUTUMN, "15:50"), languages=("fi", "en"), files={"closing": {"fi": wav}})
    sim.run(controller, local(AUTUMN, "21:05"))
    assert [[(lang, file) for lang, _, file in call] for call in player.calls] == [
        [("fi", None), ("en", None)],
        [("fi", wav), ("en", None)], [("fi", wav), ("en", None)], [("fi", wav), ("en", None)],
    ]
    assert player.calls[1][1][1] == "The self-service library closes in 15 minutes"
    logged = [e for e in reversed(store.events(limit=100)) if e["type"] == "announcement"]
    assert [(e["door"], datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).astimezone(HELSINKI).strftime("%H:%M"))
            for e in logged] == [("building", "16:00"), ("building", "20:45"), ("building", "20:50"), ("building", "20:55")]
    assert "sulkeutuu 5 minuutin" in logged[-1]["detail"]


def test_staff_changes_to_offsets_and_texts_are_followed_and_survive_a_restart(branch):
    controller, store, sim, player = branch(local(SPRING, "20:00"))
    settings = store.announcement_settings()
    assert settings["first_minutes"] == 15 and settings["texts"]["closing"]["sv"].startswith("Meröppet stänger")
    settings.update(first_minutes=10, every_minutes=10)
    settings["texts"]["closing"]["fi"] = "Suljemme {minutes} minuutin päästä, kiitos käynnistä!"
    store.set_announcement_settings(settings)
    sim.run(controller, local(SPRING, "21:00"))
    assert len(player.calls) == 1
    assert player.calls[0][0] == ("fi", "Suljemme 10 minuutin päästä, kiitos käynnistä!", None)
    controller.close()
    _, again, _, _ = branch(local(SPRING, "20:00"))
    assert again.announcement_settings()["first_minutes"] == 10, "the config's defaults do not undo staff edits"


def test_unusable_saved_settings_fall_back_to_the_config(branch):
    controller, store, sim, player = branch(local(SPRING, "20:40"))
    store.set_announcement_settings({"first_minutes": "soon"})
    sim.run(controller, local(SPRING, "21:00"))
    assert len(player.calls) == 3


def test_a_saved_text_that_reads_as_an_option_is_passed_over_for_the_config(branch):
    """Written to the database by hand or by an older version: the device does not speak it."""
    controller, store, sim, player = branch(local(SPRING, "20:40"))
    settings = store.announcement_settings()
    settings["texts"]["closing"]["fi"] = "-f/etc/omaovi/consortium.key"
    store.set_announcement_settings(settings)
    sim.run(controller, local(SPRING, "21:00"))
    assert len(player.calls) == 3
    assert all(not text.startswith("-") for call in player.calls for _, text, _ in call)


def test_a_clock_set_forward_does_not_replay_the_missed_announcements(branch):
    controller, store, sim, player = branch(local(SPRING, "12:00"))
    controller.step()
    sim.advance(9 * 3600)  # 21:00: NTP has corrected a clock that was hours behind
    controller.step()
    sim.run(controller, local(SPRING, "21:10"))
    assert player.calls == []


def test_the_sound_player_runs_aplay_for_a_file_and_espeak_for_text(monkeypatch):
    ran = []
    monkeypatch.setattr(announcements.subprocess, "run", lambda command, **kw: ran.append(command))
    player = announcements.SoundPlayer()
    player.play([("fi", "Suljemme pian", Path("/tmp/x.wav")), ("sv", "Vi stänger snart", None)])
    player.close()
    assert ran == [["aplay", "-q", "--", "/tmp/x.wav"], ["espeak-ng", "-v", "sv", "--stdin"]]


def test_a_missing_player_program_costs_the_announcement_only(monkeypatch, caplog):
    def missing(command, **kw):
        raise FileNotFoundError(command[0])

    monkeypatch.setattr(announcements.subprocess, "run", missing)
    player = announcements.SoundPlayer()
    player.play([("fi", "Suljemme pian", None)])
    player.close()
    assert "could not be played with espeak-ng" in caplog.text
