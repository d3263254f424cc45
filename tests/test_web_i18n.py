"""The staff page's Finnish and Swedish catalogues are complete and compiled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "admin_web" / "translations"


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """Every msgid the code and templates use, as ``./dev translations`` collects them."""
    pot = tmp_path_factory.mktemp("i18n") / "messages.pot"
    subprocess.run(
        [sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "admin_web/babel.cfg", "-k", "_l",
         "--no-location", "-o", str(pot), "."],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    with open(pot, "rb") as handle:
        ids = {message.id for message in read_po(handle) if message.id}
    assert "Log in" in ids and "Self-service" in ids  # the extraction itself worked
    return ids


@pytest.mark.parametrize("language", ["fi", "sv"])
def test_every_text_of_the_page_is_translated(extracted, language):
    with open(TRANSLATIONS / language / "LC_MESSAGES" / "messages.po", "rb") as handle:
        catalog = read_po(handle, locale=language)
    missing = sorted(m for m in extracted if m not in catalog or not catalog[m].string)
    fuzzy = sorted(m.id for m in catalog if m.id and m.fuzzy)
    assert missing == [], f"untranslated in {language}; run ./dev translations and fill them in"
    assert fuzzy == [], f"fuzzy (unchecked) translations in {language}"


@pytest.mark.parametrize("language", ["fi", "sv"])
def test_the_compiled_catalogue_matches_its_source(language):
    folder = TRANSLATIONS / language / "LC_MESSAGES"
    with open(folder / "messages.po", "rb") as handle:
        source = {m.id: m.string for m in read_po(handle, locale=language) if m.id and m.string}
    with open(folder / "messages.mo", "rb") as handle:
        compiled = {m.id: m.string for m in read_mo(handle) if m.id}
    assert compiled == source, "messages.mo is out of date; run ./dev translations"


@pytest.mark.parametrize("language", ["fi", "sv"])
def test_placeholders_survive_translation(language):
    import re

    with open(TRANSLATIONS / language / "LC_MESSAGES" / "messages.po", "rb") as handle:
        catalog = read_po(handle, locale=language)
    names = re.compile(r"%\(\w+\)[sd]")
    wrong = [m.id for m in catalog if m.id and m.string and sorted(names.findall(m.id)) != sorted(names.findall(m.string))]
    assert wrong == []
