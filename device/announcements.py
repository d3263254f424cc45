"""Spoken announcements: when they are due, what they say, and playing them off the door loop.

``due`` is pure: it asks the schedule for its changes (``Schedule.next_change``),
so the announcement before an 21:00 closing is at 20:45 local time on the two
nights a year when the clocks change as on any other. The staff page may change
the offsets and texts; they are kept in the ``settings`` table
(``Store.announcement_settings``), seeded from ``[announcements]`` in the config.

Playing is ``aplay`` for a recorded file or ``espeak-ng`` for the text, run one
after another on a worker thread: a missing speaker or a hung sound card costs
an announcement, never a door decision. Staff write the texts, so a text never
reaches espeak-ng's command line: it goes in on stdin, where a text such as
``--phonout=/var/lib/omaovi/omaovi.db`` is words to speak, not an option that
overwrites the database. Texts that begin with ``-`` are refused all the same
(``device.config.looks_like_an_option``), by the staff page and by the config check.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from device import messages
from device.background import Worker
from device.config import ANNOUNCEMENT_KINDS, AnnouncementConfig, looks_like_an_option
from device.schedule import Schedule

log = logging.getLogger("omaovi.announcements")

#: A clip longer than this is cut off: the next announcement must not queue behind a hung player.
PLAY_TIMEOUT_SECONDS = 60
#: espeak-ng voice per language.
VOICES = {"fi": "fi", "sv": "sv", "en": "en"}


@dataclass(frozen=True)
class Announcement:
    at: datetime
    kind: str
    #: Minutes of self-service left, for a closing announcement.
    minutes: int | None = None


def offsets(first_minutes: int, every_minutes: int) -> list[int]:
    """Minutes before the end: 15, then every 5 → [15, 10, 5]."""
    return list(range(first_minutes, 0, -every_minutes))


def due(schedule: Schedule, since: datetime, until: datetime, first_minutes: int, every_minutes: int) -> list[Announcement]:
    """The announcements whose moment is in (since, until], in time order.

    A closing announcement comes before each change from self-service to closed,
    at each offset that still falls inside self-service (self-service giving way
    to staffed hours closes nothing); one more comes when staffed hours turn into
    self-service, so that patrons know staff have left.
    """
    minutes = offsets(first_minutes, every_minutes)
    horizon = until + timedelta(minutes=max(minutes, default=0))
    found: list[Announcement] = []
    mode, moment = schedule.mode_at(since), since
    while (change := schedule.next_change(moment)) is not None and change[0] <= horizon:
        at, new_mode = change
        if mode == "self_service" and new_mode == "closed":
            for left in minutes:
                when = at - timedelta(minutes=left)
                if since < when <= until and schedule.mode_at(when) == "self_service":
                    found.append(Announcement(when, messages.CLOSING, left))
        elif mode == "staffed" and new_mode == "self_service" and since < at <= until:
            found.append(Announcement(at, messages.SELF_SERVICE_STARTS))
        mode, moment = new_mode, at
    return sorted(found, key=lambda a: a.at)


def default_settings(cfg: AnnouncementConfig) -> dict:
    """The settings row the staff page edits, as the config and the message catalogue give it."""
    return {
        "first_minutes": cfg.first_minutes,
        "every_minutes": cfg.every_minutes,
        "texts": {
            kind: {lang: cfg.texts.get(kind, {}).get(lang, messages.CATALOGUE[kind][lang]) for lang in cfg.languages}
            for kind in ANNOUNCEMENT_KINDS
        },
    }


def spoken(announcement: Announcement, settings: dict) -> dict[str, str]:
    """The text of an announcement in each language, with the minutes filled in."""
    return {
        lang: text.format(minutes=announcement.minutes)
        for lang, text in settings["texts"][announcement.kind].items()
    }


class Player(Protocol):
    def play(self, clips: list[tuple[str, str, Path | None]]) -> None:
        """Play (language, text, file) clips in order, without blocking the caller."""


class SoundPlayer:
    """``aplay -- FILE`` when a recording is given, else ``espeak-ng -v LANG --stdin`` with the text on stdin, on a worker thread."""

    def __init__(self):
        self._worker = Worker("announcements")

    def play(self, clips: list[tuple[str, str, Path | None]]) -> None:
        self._worker.submit(lambda: [self._play_one(*clip) for clip in clips])

    def _play_one(self, lang: str, text: str, file: Path | None) -> None:
        # "--" ends aplay's options: the path is a file name whatever it begins with.
        if file is not None:
            command, text_in = ["aplay", "-q", "--", str(file)], None
        else:
            command, text_in = ["espeak-ng", "-v", VOICES[lang], "--stdin"], text
        try:
            subprocess.run(command, input=text_in, text=True, check=True, timeout=PLAY_TIMEOUT_SECONDS, capture_output=True)
        except (OSError, subprocess.SubprocessError) as exc:
            log.error("announcement in %s could not be played with %s: %s", lang, command[0], exc)

    def close(self) -> None:
        self._worker.close()
