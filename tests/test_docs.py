"""The README documents every command the ``omaovi`` CLI has."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from device.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"


def _commands(parser: argparse.ArgumentParser, prefix: str = "omaovi") -> list[str]:
    """Every leaf command: "omaovi device", "omaovi user add", ..."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, f"{prefix} {name}")
    return found or [prefix]


def test_every_command_is_in_the_readme():
    table = README.read_text(encoding="utf-8")
    documented = set(re.findall(r"`(omaovi [a-z0-9 -]+?)(?: [A-Z\[-]|`)", table))
    missing = [command for command in _commands(build_parser()) if command not in documented]
    assert missing == [], "add these to the README's command table"


def test_the_walk_finds_nested_commands():
    commands = _commands(build_parser())
    assert "omaovi user add" in commands and "omaovi device" in commands and len(commands) > 10


def test_no_doc_promises_a_command_this_version_already_has():
    """"`omaovi web` comes in a later version" read wrong once the command was there."""
    commands = set(_commands(build_parser()))
    pages = [README, *sorted((README.parent / "docs").glob("*.md"))]
    stale = [
        f"{page.name}: {command}"
        for page in pages
        for command in re.findall(r"`(omaovi [a-z -]+?)`\s+(?:comes|will come|is coming|arrives)\s+(?:in\s+)?a\s+later", page.read_text(encoding="utf-8"))
        if command in commands
    ]
    assert stale == []
