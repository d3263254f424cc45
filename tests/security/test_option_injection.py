"""Staff and config texts that reach a program's command line (issue 14, item 1).

The players here are real processes: a fake ``espeak-ng`` and ``aplay`` on PATH
that read their arguments the way the real ones do (GNU getopt: options anywhere
until ``--``) and carry out the options the attack used, so an option that gets
through does its damage here too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from device import announcements

FAKE_PLAYER = r'''#!{python}
import json, sys
argv, words, options, reading, i = sys.argv[1:], [], [], False, 0
while i < len(argv):
    arg = argv[i]
    if arg == "--":
        words += argv[i + 1:]
        break
    if arg.startswith("--phonout="):  # espeak-ng writes its phonemes there, truncating the file
        open(arg.split("=", 1)[1], "w").close()
    elif arg.startswith("-f"):  # espeak-ng speaks a file
        name = arg[2:] or argv[i + 1]
        i += 0 if arg[2:] else 1
        words.append(open(name).read())
    elif arg in ("-v", "-D"):
        i += 1
    elif arg.startswith("-D"):  # aplay: play on another device
        options.append(arg)
    elif arg == "--stdin":
        reading = True
    elif arg == "-q":
        pass
    elif arg.startswith("-"):
        options.append(arg)
    else:
        words.append(arg)
    i += 1
if reading:
    words.append(sys.stdin.read())
with open({log!r}, "a") as log:
    log.write(json.dumps({{"program": sys.argv[0].rsplit("/", 1)[-1], "argv": sys.argv[1:], "words": words, "options": options}}) + "\n")
'''


@pytest.fixture
def players(tmp_path, monkeypatch):
    """Fake espeak-ng and aplay first on PATH; returns a function giving what each was run with."""
    bin_dir, log = tmp_path / "bin", tmp_path / "played.jsonl"
    bin_dir.mkdir()
    for name in ("espeak-ng", "aplay"):
        program = bin_dir / name
        program.write_text(FAKE_PLAYER.format(python=sys.executable, log=str(log)))
        program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    return lambda: [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def play(*clips):
    player = announcements.SoundPlayer()
    try:
        player.play(list(clips))
    finally:
        player.close()  # waits for the clips


def test_a_text_that_reads_as_an_option_is_spoken_and_leaves_the_database_alone(tmp_path, players):
    database = tmp_path / "omaovi.db"
    database.write_bytes(b"SQLite format 3\0 events and users")
    text = f"--phonout={database}"
    play(("fi", text, None))
    assert database.read_bytes() == b"SQLite format 3\0 events and users"
    [run] = players()
    assert run["program"] == "espeak-ng" and run["words"] == [text] and run["options"] == []
    assert text not in run["argv"]


def test_a_text_naming_the_key_file_does_not_read_the_key_aloud(tmp_path, players):
    key = tmp_path / "consortium.key"
    key.write_text("the-consortium-secret")
    play(("sv", f"-f{key}", None))
    [run] = players()
    assert run["words"] == [f"-f{key}"]
    assert "the-consortium-secret" not in json.dumps(run)


def test_a_recording_whose_name_begins_with_a_dash_is_played_as_a_file(players):
    play(("fi", "Suljemme pian", Path("-Dhw:7")))
    [run] = players()
    assert run["program"] == "aplay" and run["words"] == ["-Dhw:7"] and run["options"] == []


def test_an_ordinary_text_is_still_spoken_in_its_voice(players):
    play(("sv", "Vi stänger om 5 minuter", None))
    [run] = players()
    assert run["words"] == ["Vi stänger om 5 minuter"]
    assert run["argv"][:2] == ["-v", "sv"]
