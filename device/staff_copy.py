"""A small copy of the branch's staff cards, kept in a file beside the database.

The README promises that staff cards open the door while the database cannot be
written. At run time the device keeps them in memory; this copy is for a start
when the database cannot even be read (a file restored by root with mode 0600, a
damaged file), so that the caretaker still gets in to fix it. It holds card keys
only (HMACs, never card numbers), one per line, and is written whole and renamed
into place, so a power cut leaves the old copy or the new one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_CARD_KEY = re.compile(r"[0-9a-f]{64}")


def copy_path(database: Path) -> Path:
    return database.with_name(database.name + ".staff-cards")


def save(path: Path, keys: frozenset[str]) -> None:
    """Write the copy; raises OSError when the directory cannot be written."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.writelines(f"{key}\n" for key in sorted(keys))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def load(path: Path) -> frozenset[str]:
    """The card keys in the copy; raises OSError when it cannot be read. Lines that are
    not card keys are skipped: a damaged copy must not keep the rest from opening."""
    text = path.read_text(encoding="ascii", errors="replace")
    return frozenset(line for line in text.split() if _CARD_KEY.fullmatch(line))
