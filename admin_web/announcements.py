"""The closing announcements page: when the announcements come and what they say.

Staff, not only admins, set these: the wording of "the library closes in 15
minutes" is desk work, like the hours. The device reads the saved settings every
second and falls back to the config's when what is saved cannot be used, so this
page checks a change whole, the same way, before anything is written: a text
that would make the device fall back silently is refused here with a reason.
Recordings and the list of languages stay in the config file.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from admin_web import branch, branch_now, store
from admin_web.auth import log_action
from admin_web.i18n import LANGUAGE_NAMES, gettext as _, lazy_gettext as _l
from device import announcements
from device.config import ANNOUNCEMENT_KINDS, AnnouncementConfig, looks_like_an_option
from device.messages import CLOSING, SELF_SERVICE_STARTS
from device.store import day_bounds

bp = Blueprint("announcements", __name__, url_prefix="/announcements")

#: The ranges ``[announcements]`` allows in the config (device/config.py).
FIRST_MINUTES = (1, 120)
EVERY_MINUTES = (1, 60)
#: One spoken sentence or two; longer is a notice, not an announcement.
TEXT_MAX_LENGTH = 300

KIND_LABELS = {
    CLOSING: _l("Before self-service ends"),
    SELF_SERVICE_STARTS: _l("When self-service starts"),
}


def text_field(kind: str, lang: str) -> str:
    return f"text-{kind}-{lang}"


def read_form(form, cfg: AnnouncementConfig) -> tuple[dict, list[str]]:
    """The settings as the device stores them, and a message for each field to fix.

    Texts are kept for the config's languages only: the device speaks every
    language a saved text has.
    """
    errors: list[str] = []

    def minutes(name: str, field: str, allowed: tuple[int, int]) -> int | None:
        text = (form.get(name) or "").strip()
        if text.isascii() and text.isdigit() and allowed[0] <= int(text) <= allowed[1]:
            return int(text)
        errors.append(_("%(field)s: write a whole number of minutes from %(low)d to %(high)d.",
                        field=field, low=allowed[0], high=allowed[1]))
        return None

    value = {
        "first_minutes": minutes("first_minutes", _("First announcement"), FIRST_MINUTES),
        "every_minutes": minutes("every_minutes", _("Repeat interval"), EVERY_MINUTES),
        "texts": {},
    }
    for kind in ANNOUNCEMENT_KINDS:
        value["texts"][kind] = {}
        for lang in cfg.languages:
            text = " ".join((form.get(text_field(kind, lang)) or "").split())
            field = f"{KIND_LABELS[kind]}, {LANGUAGE_NAMES[lang]}"
            problem = _text_problem(kind, text)
            if problem:
                errors.append(f"{field}: {problem}")
            value["texts"][kind][lang] = text
    return value, errors


def _text_problem(kind: str, text: str) -> str | None:
    if not text:
        return _("write the text to be spoken.")
    if looks_like_an_option(text):
        return _("the text must not begin with a dash (-): begin it with a word.")
    if len(text) > TEXT_MAX_LENGTH:
        return _("shorten the text to at most %(count)d characters (now %(length)d).", count=TEXT_MAX_LENGTH, length=len(text))
    try:
        # As the device fills it in: {minutes} in a closing text, nothing in the other.
        text.format(minutes=0) if kind == CLOSING else text.format()
    except (KeyError, ValueError, IndexError, AttributeError):
        if kind == CLOSING:
            return _("curly brackets are only allowed in {minutes}, which is replaced by the minutes left.")
        return _("remove the curly brackets: this announcement has no minutes to fill in.")
    return None


def _as_form(settings: dict, defaults: dict) -> dict[str, str]:
    """Saved settings as the form would post them; a language added to the config since has the default text."""
    fields = {"first_minutes": str(settings["first_minutes"]), "every_minutes": str(settings["every_minutes"])}
    for kind, texts in defaults["texts"].items():
        for lang, default in texts.items():
            fields[text_field(kind, lang)] = str(settings["texts"].get(kind, {}).get(lang, default))
    return fields


def settings_in_use(cfg: AnnouncementConfig) -> tuple[dict, bool]:
    """What the device announces with, and whether saved settings had to be passed over for the config's."""
    defaults = announcements.default_settings(cfg)
    saved = store().announcement_settings()
    if saved is None:
        return defaults, False
    try:
        value, errors = read_form(_as_form(saved, defaults), cfg)
    except (TypeError, KeyError, AttributeError):
        return defaults, True
    return (defaults, True) if errors else (value, False)


@bp.route("", methods=["GET", "POST"])
def index():
    cfg = branch().config.announcements
    if cfg is None:
        return render_template("announcements/index.html", cfg=None, config_path=branch().config.path)
    current, unusable = settings_in_use(cfg)
    if request.method == "GET":
        return _page(cfg, current, _as_form(current, current), unusable=unusable)
    value, errors = read_form(request.form, cfg)
    if errors:
        return _page(cfg, current, request.form, errors=errors), 400
    # The audit's "old" is what was saved, unusable or None as it may be: what this change replaced.
    before = store().announcement_settings()
    if value == before:
        flash(_("Nothing was changed."), "ok")
    else:
        with store().conn:
            store().set_announcement_settings(value)
            log_action("announcements.settings", "", old=before, new=value)
        flash(_("Announcement settings saved. The door controller uses them from the next announcement on."), "ok")
    return redirect(url_for("announcements.index"))


def _page(cfg: AnnouncementConfig, current: dict, values, *, errors: list[str] | None = None, unusable: bool = False):
    config = branch().config
    now = branch_now.utc_now()
    day_end = day_bounds(now.astimezone(config.tz).date(), config.tz)[1]
    upcoming = announcements.due(store().schedule(config.tz), now, day_end, current["first_minutes"], current["every_minutes"])
    return render_template(
        "announcements/index.html",
        cfg=cfg, values=values, errors=errors or [], unusable=unusable, upcoming=upcoming,
        kind_labels=KIND_LABELS, text_field=text_field,
        closing=CLOSING, text_max_length=TEXT_MAX_LENGTH, first_range=FIRST_MINUTES, every_range=EVERY_MINUTES,
    )
