"""Cards (admin): this branch's own staff cards and local blocks, and the patron CSV import.

A card number typed or scanned here becomes its ``card_key`` at once and goes no
further: it is not stored, logged, audited or shown back, not even in an error or
a form shown again, so the branch keeps holding no raw card numbers. Staff cards
and blocks are listed by a short prefix of the key instead.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

from flask import Blueprint, flash, redirect, render_template, request, url_for

from admin_web import branch, store
from admin_web.auth import actor, log_action
from admin_web.i18n import gettext as _
from admin_web.security import ADMIN, access
from device.events import parse_utc
from device.cards import CardNumberError, card_key, load_consortium_key, normalize
from sync import patrons_csv
from sync.patrons_csv import MAX_REPORTED, PROGRESS_KEY, EmptyReplace, NotUtf8Error, PatronCsvError

bp = Blueprint("cards", __name__, url_prefix="/cards")

#: How much of a card_key the page and the audit log show: enough to tell cards apart.
KEY_PREFIX = 8
MAX_NOTE = 200
#: An import writes its progress every second; one silent this long has stopped.
STALLED_AFTER = timedelta(minutes=1)

_SEPARATORS = re.compile(r"[\s\-:._/]+")
_FINNISH_DATE = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class Invalid(Exception):
    """A form field that cannot be accepted; the message is the translated text naming the field."""


def short(key: str) -> str:
    return key[:KEY_PREFIX]


# -- the page ---------------------------------------------------------------------
@bp.route("")
@access(ADMIN)
def index():
    return _page()


def _page(status: int = 200, errors: dict | None = None, problems: list[str] | None = None):
    """The whole page; after a refused form, with its errors and the values typed, except any card number."""
    today = _today()
    blocks = store().local_blocks()
    return render_template(
        "cards/index.html",
        staff_cards=store().staff_cards(),
        active_blocks=[b for b in blocks if b["until"] is None or b["until"] >= today],
        expired_blocks=[b for b in blocks if b["until"] is not None and b["until"] < today],
        errors=errors or {},
        problems=problems or [],
        values=request.form if status != 200 else {},
        max_note=MAX_NOTE,
        short=short,
        last_import=_last_import(),
    ), status


def _today() -> date:
    return datetime.now(branch().config.tz).date()


# -- staff cards ------------------------------------------------------------------
@bp.route("/staff", methods=["POST"])
@access(ADMIN)
def add_staff():
    errors: dict[str, str] = {}
    key, note = _card_and_note("staff", errors, missing_note=_("Note: write whose card this is, for example the staff member's name."))
    known = store().patron(key, _today()) if key is not None else None
    if known is not None:
        if known.local_staff:
            errors["staff_number"] = _("This card is already a staff card (%(card)s).", card=short(key))
        elif known.local_block:
            errors["staff_number"] = _(
                "This card is blocked at this branch. Remove the block first if the card should open the doors."
            )
    if errors:
        return _page(400, errors)
    with store().conn:
        store().add_staff_card(key, note, actor())
        log_action("cards.staff.add", short(key), note=note)
    flash(_("Staff card %(card)s added. It opens the doors from now on.", card=short(key)), "ok")
    return redirect(url_for("cards.index", _anchor="staff"))


@bp.route("/staff/<key>/remove", methods=["GET", "POST"])
@access(ADMIN)
def remove_staff(key: str):
    return _remove(
        key, store().staff_cards(), store().remove_staff_card, "cards.staff.remove",
        title=_("Remove a staff card"),
        question=_("Remove staff card %(card)s? It stops opening the doors at once.", card=short(key)),
        done=_("Staff card %(card)s removed.", card=short(key)),
        anchor="staff",
    )


# -- local blocks -----------------------------------------------------------------
@bp.route("/blocks", methods=["POST"])
@access(ADMIN)
def add_block():
    errors: dict[str, str] = {}
    key, note = _card_and_note("block", errors, missing_note=_("Reason: write why the card is blocked."))
    until = _field(errors, "block_until", _until, request.form.get("block_until", ""))
    if key is not None and _is_local_staff(key):
        errors["block_number"] = _(
            "This card is a staff card of this branch, and a staff card opens the doors even when blocked. "
            "Remove it from the staff cards first."
        )
    if errors:
        return _page(400, errors)
    with store().conn:
        store().add_local_block(key, note, actor(), until)
        log_action("cards.block.add", short(key), note=note, until=until.isoformat() if until else None)
    flash(_("Card %(card)s is blocked at this branch.", card=short(key)), "ok")
    return redirect(url_for("cards.index", _anchor="blocks"))


@bp.route("/blocks/<key>/remove", methods=["GET", "POST"])
@access(ADMIN)
def remove_block(key: str):
    return _remove(
        key, store().local_blocks(), store().remove_local_block, "cards.block.remove",
        title=_("Remove a local block"),
        question=_("Remove the block of card %(card)s? The card is then checked as usual again.", card=short(key)),
        done=_("The block of card %(card)s was removed.", card=short(key)),
        anchor="blocks",
    )


def _remove(key: str, rows: list[dict], remove, action: str, *, title: str, question: str, done: str, anchor: str):
    """The confirmation step (GET) and the removal (POST) of a staff card or a block."""
    row = next((r for r in rows if r["card_key"] == key), None)
    if row is None:
        flash(_("That card is no longer on the list."), "warn")
        return redirect(url_for("cards.index", _anchor=anchor))
    if request.method == "GET":
        return render_template("cards/remove.html", row=row, title=title, question=question, short=short, anchor=anchor)
    with store().conn:
        remove(key)
        log_action(action, short(key), note=row["note"])
    flash(done, "ok")
    return redirect(url_for("cards.index", _anchor=anchor))


# -- patron CSV -------------------------------------------------------------------
@bp.route("/import", methods=["POST"])
@access(ADMIN)
def import_patrons():
    """The rules of ``omaovi patrons import``: all or nothing, and no emptying the cache by accident.

    The upload is in memory (InMemoryUploads), and is read from there a chunk of
    rows at a time (sync/patrons_csv.py); the raw numbers in it are never written
    anywhere. The page's progress region follows the import while it runs.
    """
    replace = request.form.get("replace") == "1"
    upload = request.files.get("csv_file")
    if upload is None or not upload.filename:
        return _page(400, {"csv_file": _("Choose the CSV file to import.")})
    errors: dict[str, str] = {}
    key = _field(errors, "csv_file", _consortium_key)
    if errors:
        return _page(400, errors)
    try:
        imported = patrons_csv.import_patrons(
            store(), upload.stream, key, datetime.now(timezone.utc), source=upload.filename, replace=replace,
            total_bytes=patrons_csv.file_size(upload.stream), by=actor(),
            audit=lambda done: log_action("cards.import", "", count=done.count, replace=replace, ageless=done.ageless),
        )
    except NotUtf8Error:
        return _page(400, {"csv_file": _("The file is not UTF-8 text. Save it from the spreadsheet as \"CSV UTF-8\" and try again.")})
    except PatronCsvError as exc:
        return _page(400, {"csv_file": _("Nothing was imported. Fix these lines in the file and try again:")}, exc.problems[:MAX_REPORTED])
    except EmptyReplace:
        return _page(400, {"csv_file": _(
            "The file has no patrons, and replacing the list with it would leave nobody with access. Nothing was imported."
        )})
    flash(_("Imported %(count)d patrons from the file.", count=imported.count), "ok")
    if imported.ageless:
        flash(_(
            "%(count)d patrons have no age_ok_from date, so the door refuses them in self-service hours as too young. "
            "Add the age_ok_from column (the day each patron reaches the age limit) to the file.", count=imported.ageless,
        ), "warn")
    return redirect(url_for("cards.index", _anchor="import"))


@bp.route("/import/progress")
@access(ADMIN)
def import_progress():
    """The progress region of the page, polled while an import runs (here or from the console)."""
    return render_template("cards/_import_progress.html", last_import=_last_import())


def _last_import() -> dict | None:
    """The latest import's progress or outcome. One that has not written its progress
    for a while was stopped (the process killed, say): nothing of it was brought in."""
    entry = store().status().get(PROGRESS_KEY)
    if entry is None:
        return None
    stalled = datetime.now(timezone.utc) - parse_utc(entry["updated_at"]) > STALLED_AFTER
    return {**entry["value"], "updated_at": entry["updated_at"], "stalled": stalled}


# -- fields -----------------------------------------------------------------------
def _field(errors: dict, name: str, check, *args):
    try:
        return check(*args)
    except Invalid as exc:
        errors[name] = str(exc)
        return None


def _card_and_note(form: str, errors: dict, *, missing_note: str) -> tuple[str | None, str]:
    """The card_key of ``<form>_number`` and the tidied ``<form>_note``, which must not hold the number."""
    number = request.form.get(f"{form}_number", "")
    note = " ".join(request.form.get(f"{form}_note", "").split())
    key = _field(errors, f"{form}_number", _card_key, number)
    if not note:
        errors[f"{form}_note"] = missing_note
    elif len(note) > MAX_NOTE:
        errors[f"{form}_note"] = _("At most %(length)d characters.", length=MAX_NOTE)
    elif key is not None and normalize(number) in _SEPARATORS.sub("", note).upper():
        errors[f"{form}_note"] = _("Do not write the card number here; the list shows the card by its code.")
    return key, note


def _card_key(number: str) -> str:
    if not number.strip():
        raise Invalid(_("Card number: type the number, or tap the card on the USB reader."))
    try:
        return card_key(_consortium_key(), number)
    except CardNumberError:
        # Its message quotes the number: never shown.
        raise Invalid(_("Card number: use the letters and digits of the card (1 to 64 of them).")) from None


def _consortium_key() -> bytes:
    try:
        return load_consortium_key(branch().config.consortium_key_file)
    except (OSError, ValueError):
        raise Invalid(_("The consortium key file cannot be read, so cards cannot be checked. Run omaovi doctor on the device.")) from None


def _until(text: str) -> date | None:
    text = text.strip()
    if not text:
        return None
    day = _parse_day(text)
    if day is None:
        raise Invalid(_("Blocked until: write a date such as 24.12.2026 or 2026-12-24, or leave it empty for a block with no end."))
    if day < _today():
        raise Invalid(_("Blocked until: that date is already past."))
    return day


def _parse_day(text: str) -> date | None:
    try:
        if match := _FINNISH_DATE.match(text):
            return date(int(match[3]), int(match[2]), int(match[1]))
        if _ISO_DATE.match(text):
            return date.fromisoformat(text)
    except ValueError:
        pass  # 31.2.2026: the shape is right, the day is not
    return None


def _is_local_staff(key: str) -> bool:
    known = store().patron(key, _today())
    return known is not None and known.local_staff
