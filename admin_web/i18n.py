"""Languages and local time on the staff page.

The page speaks Finnish (the default), Swedish and English through Flask-Babel and
gettext catalogues in ``admin_web/translations``; English is the source language.
A logged-in user's own choice wins, then the language picked on this browser, then
the browser's Accept-Language. Times are stored in UTC and shown in the branch's
zone, written the Finnish way (25.11.2026 14.05) whatever the language, because
that is how the library's own notices write them.
"""

from __future__ import annotations

from datetime import date, datetime

from babel.dates import format_date
from flask import Flask, current_app, g, request, session
from flask_babel import Babel, get_locale, get_translations
from flask_babel.speaklater import LazyString
from jinja2 import pass_context
from markupsafe import Markup

from admin_web.accounts import LANGUAGES
from device.config import BUILDING, Config
from device.events import parse_utc

LANGUAGE_NAMES = {"fi": "Suomi", "sv": "Svenska", "en": "English"}


def catalogue():
    """The translations of this request's language, looked up once per request.

    Flask-Babel's own ``gettext`` finds the domain, the locale and the catalogue
    again for every string, through some ten context-local lookups: 25 µs, paid
    by the Today page for each of its 40-odd labels (benchmark P6). A request
    keeps one language (``select_locale``), so one lookup serves it all.
    """
    if not g:  # outside a request: the source text
        return get_translations()
    found = g.get("_catalogue")
    if found is None:
        found = g._catalogue = get_translations()
    return found


def gettext(string: str, **variables) -> str:
    """As Flask-Babel's: the translation, with ``%(name)s`` filled from ``variables``."""
    text = catalogue().ugettext(string)
    return text % variables if variables else text


def lazy_gettext(string: str) -> LazyString:
    """A string for module-level tables, translated each time it is shown."""
    return LazyString(gettext, string)


_l = lazy_gettext

MODE_LABELS = {"self_service": _l("Self-service"), "staffed": _l("Staffed"), "closed": _l("Closed")}

REASON_LABELS = {
    "granted": _l("Welcome"),
    "staff": _l("Staff card"),
    "unknown_card": _l("Card not known here"),
    "blocked": _l("Card blocked"),
    "underage": _l("Too young for self-service"),
    "terms_not_accepted": _l("Self-service terms not accepted"),
    "class_not_allowed": _l("Patron category not allowed in self-service"),
    "card_expired": _l("Card expired"),
    "closed": _l("Library closed"),
    "no_reservation": _l("No reservation now"),
    "wrong_pin": _l("Wrong PIN"),
    "pin_timeout": _l("PIN not entered in time"),
    "unavailable": _l("Card could not be checked"),
}

DOOR_STATE_LABELS = {
    "locked": _l("Locked"),
    "unlocked": _l("Unlocked"),
    "open": _l("Open"),
    "held_open": _l("Held open too long"),
    "forced": _l("Forced open"),
    "unknown": _l("Unknown"),
}

EVENT_TYPE_LABELS = {
    "tap": _l("Card tap"),
    "exit": _l("Exit button"),
    "door_opened": _l("Door opened"),
    "door_closed": _l("Door closed"),
    "door_held_open": _l("Door held open"),
    "door_forced_open": _l("Door forced open"),
    "command": _l("Staff command"),
    "reservation_no_show": _l("Booth no-show"),
    "reader_offline": _l("Reader offline"),
    "reader_online": _l("Reader back online"),
    "keypad_offline": _l("PIN keypad not working"),
    "keypad_online": _l("PIN keypad working"),
    "pin_lockout": _l("PIN entry locked"),
    "pin_lockout_cleared": _l("PIN lockout cleared by staff"),
    "tailgating": _l("Tailgating"),
    "people_inside_after_close": _l("People inside after closing"),
    "announcement": _l("Announcement"),
    "building_output": _l("Lights or alarm changed"),
}

#: A ``building_output`` event's ``detail.change``, as the device writes it.
BUILDING_CHANGE_LABELS = {
    "lights on": _l("Lights on"),
    "lights off": _l("Lights off"),
    "alarm on": _l("Alarm armed"),
    "alarm off": _l("Alarm disarmed"),
}


def door_labels(config: Config) -> dict[str, str]:
    """Door ids as staff know them, with the id the device gives its events about the whole building."""
    return {door.id: door.label for door in config.doors} | {BUILDING: _l("Building")}


#: The audit log's action names, as the audit page shows them; an action missing
#: here (a newer area's) is shown by its own dotted name.
AUDIT_ACTION_LABELS = {
    "login": _l("Logged in"),
    "login.failed": _l("Failed login"),
    "logout": _l("Logged out"),
    "account.password": _l("Changed own password"),
    "hours.weekly": _l("Weekly hours changed"),
    "hours.exception.add": _l("Exception day added"),
    "hours.exception.edit": _l("Exception day changed"),
    "hours.exception.delete": _l("Exception day removed"),
    "hours.import": _l("Hours imported"),
    "door.pulse": _l("Door opened briefly"),
    "door.hold": _l("Door held unlocked"),
    "door.lockdown": _l("Door locked down"),
    "door.release": _l("Door back to schedule"),
    "events.card_lookup": _l("Card looked up in events"),
    "pin_lockout.clear": _l("PIN lockout cleared"),
    "cards.staff.add": _l("Staff card added"),
    "cards.staff.remove": _l("Staff card removed"),
    "cards.block.add": _l("Local block added"),
    "cards.block.remove": _l("Card block removed"),
    "cards.import": _l("Patrons imported"),
    "users.add": _l("User added"),
    "users.disable": _l("User disabled"),
    "users.enable": _l("User enabled"),
    "users.reset": _l("Password reset"),
    "users.role": _l("Role changed"),
    "user.add": _l("User added on the device"),
    "user.passwd": _l("Password set on the device"),
    "user.disable": _l("User disabled on the device"),
    "user.enable": _l("User enabled on the device"),
    "announcements.settings": _l("Announcement settings changed"),
}


def role_label(role: str) -> str:
    return gettext("administrator") if role == "admin" else gettext("staff")


def select_locale() -> str:
    """A page's own choice (the booth board's ``?lang=``), the user's, this browser's, then Accept-Language."""
    if g.get("page_language") in LANGUAGES:
        return g.page_language
    user = g.get("user")
    if user is not None and user.language in LANGUAGES:
        return user.language
    if session.get("lang") in LANGUAGES:
        return session["lang"]
    return request.accept_languages.best_match(LANGUAGES, default="fi")


def _tz():
    return current_app.extensions["omaovi"].config.tz


def _local(value: datetime | str) -> datetime:
    moment = parse_utc(value) if isinstance(value, str) else value
    return moment.astimezone(_tz())


def local_datetime(value: datetime | str | None) -> str:
    return "" if value is None else f"{_local(value):%-d.%-m.%Y %H.%M}"


def local_time(value: datetime | str | None) -> str:
    return "" if value is None else f"{_local(value):%H.%M}"


def day_label(value: date) -> str:
    """"ke 25.11." in Finnish, "ons 25.11." in Swedish: the weekday in the page's language."""
    return f"{format_date(value, 'EEE', locale=str(get_locale()))} {value.day}.{value.month}."


def full_date(value: date) -> str:
    return f"{format_date(value, 'EEEE', locale=str(get_locale()))} {value.day}.{value.month}.{value.year}"


def label(table: dict, key: str | None) -> str:
    """The translated label, or the key itself for a value this version does not know yet."""
    if key is None:
        return ""
    return str(table.get(key, key))


def _page_gettext() -> dict:
    """The templates' ``_()``, with the catalogue looked up once per rendering.

    Flask-Babel's would find it again for each of a page's strings (see
    ``catalogue``). Otherwise as Jinja's own (new-style gettext): escaped, and
    always a format string.
    """
    translations = catalogue()

    @pass_context
    def gettext(context, string: str, **variables) -> str:
        text = translations.ugettext(string)
        if context.eval_ctx.autoescape:
            text = Markup(text)
        return text % variables

    return {"gettext": gettext}  # the i18n extension's ``_`` calls the ``gettext`` it finds here


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", "fi")
    Babel(app, locale_selector=select_locale)
    app.context_processor(_page_gettext)
    app.jinja_env.filters.update(
        local_datetime=local_datetime,
        local_time=local_time,
        day_label=day_label,
        full_date=full_date,
        mode_label=lambda key: label(MODE_LABELS, key),
        reason_label=lambda key: label(REASON_LABELS, key),
        door_state_label=lambda key: label(DOOR_STATE_LABELS, key),
        event_type_label=lambda key: label(EVENT_TYPE_LABELS, key),
        building_change_label=lambda key: label(BUILDING_CHANGE_LABELS, key),
        audit_action_label=lambda key: label(AUDIT_ACTION_LABELS, key),
    )
    app.jinja_env.globals.update(LANGUAGE_NAMES=LANGUAGE_NAMES, current_language=lambda: str(get_locale()))
