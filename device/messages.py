"""What the patron is told, in Finnish, Swedish and English: the one catalogue.

Every reason ``decide()`` can give, and the few prompts that are not decisions
("enter PIN"), map to one short sentence per language. The mapping is closed: a
new ``Reason`` without a message fails the catalogue's own test, so the door
never shows a raw code to a patron. The staff page imports the same catalogue,
so the words on the door and on the page cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from types import MappingProxyType

from device.config import LANGUAGES
from device.policy import Reason

#: Prompts and notices that are not a tap's reason.
ENTER_PIN = "enter_pin"
PIN_LOCKED = "pin_locked"
#: Booth "no reservation" when the card holds a later one: "{time}" is its local start.
RESERVATION_STARTS = "reservation_starts"
#: Announcements; "{minutes}" is how long self-service has left.
CLOSING = "closing"
SELF_SERVICE_STARTS = "self_service_starts"

_CATALOGUE: dict[str, dict[str, str]] = {
    Reason.GRANTED.value: {"fi": "Tervetuloa", "sv": "Välkommen", "en": "Welcome"},
    Reason.STAFF.value: {"fi": "Tervetuloa", "sv": "Välkommen", "en": "Welcome"},
    Reason.UNKNOWN_CARD.value: {
        "fi": "Korttia ei tunnisteta", "sv": "Kortet känns inte igen", "en": "Card not recognised",
    },
    Reason.BLOCKED.value: {
        "fi": "Kortti ei kelpaa omatoimikirjastoon. Ota yhteys henkilökuntaan",
        "sv": "Kortet gäller inte i meröppet bibliotek. Kontakta personalen",
        "en": "Card not valid for self-service. Please contact staff",
    },
    Reason.UNDERAGE.value: {
        "fi": "Omatoimikirjaston ikäraja ei täyty",
        "sv": "Du uppfyller inte åldersgränsen för meröppet",
        "en": "Below the self-service age limit",
    },
    Reason.TERMS_NOT_ACCEPTED.value: {
        "fi": "Kortti ei kelpaa omatoimikirjastoon: hyväksy käyttöehdot",
        "sv": "Kortet gäller inte i meröppet: godkänn villkoren",
        "en": "Card not valid for self-service: accept the terms first",
    },
    Reason.CLASS_NOT_ALLOWED.value: {
        "fi": "Asiakasryhmäsi ei voi käyttää omatoimikirjastoa. Ota yhteys henkilökuntaan",
        "sv": "Din kundkategori kan inte använda meröppet. Kontakta personalen",
        "en": "Your patron category cannot use self-service. Please contact staff",
    },
    Reason.CARD_EXPIRED.value: {
        "fi": "Kortti on vanhentunut", "sv": "Kortet har gått ut", "en": "The card has expired",
    },
    Reason.CLOSED.value: {
        "fi": "Omatoimiaika on päättynyt", "sv": "Meröppet har stängt", "en": "Self-service hours are over",
    },
    Reason.NO_RESERVATION.value: {
        "fi": "Ei voimassa olevaa varausta", "sv": "Ingen giltig bokning", "en": "No current reservation",
    },
    Reason.WRONG_PIN.value: {"fi": "Väärä PIN-koodi", "sv": "Fel PIN-kod", "en": "Wrong PIN"},
    Reason.PIN_TIMEOUT.value: {
        "fi": "PIN-koodin aika loppui", "sv": "Tiden för PIN-koden gick ut", "en": "PIN entry timed out",
    },
    Reason.UNAVAILABLE.value: {
        "fi": "Korttia ei voida nyt tarkistaa. Yritä uudelleen tai ota yhteys henkilökuntaan",
        "sv": "Kortet kan inte kontrolleras nu. Försök igen eller kontakta personalen",
        "en": "The card cannot be checked right now. Try again or contact staff",
    },
    ENTER_PIN: {"fi": "Syötä PIN-koodi", "sv": "Ange PIN-kod", "en": "Enter your PIN"},
    PIN_LOCKED: {
        "fi": "PIN-koodi lukittu. Yritä myöhemmin", "sv": "PIN-koden är låst. Försök senare",
        "en": "PIN locked. Try again later",
    },
    RESERVATION_STARTS: {
        "fi": "Varaus alkaa klo {time}", "sv": "Bokningen börjar kl. {time}", "en": "Reservation starts at {time}",
    },
    CLOSING: {
        "fi": "Omatoimikirjasto sulkeutuu {minutes} minuutin kuluttua",
        "sv": "Meröppet stänger om {minutes} minuter",
        "en": "The self-service library closes in {minutes} minutes",
    },
    SELF_SERVICE_STARTS: {
        "fi": "Henkilökunnan palveluaika päättyi. Kirjasto on nyt omatoimikäytössä",
        "sv": "Den bemannade tiden är slut. Biblioteket är nu meröppet",
        "en": "Staffed hours are over. The library is now in self-service",
    },
}

CATALOGUE = MappingProxyType({key: MappingProxyType(texts) for key, texts in _CATALOGUE.items()})


def message(key: str | Reason, *, minutes: int | None = None, at: datetime | None = None) -> dict[str, str]:
    """The sentence for ``key`` in every language; ``at`` is a local time, shown as 14.00 in Finnish."""
    texts = CATALOGUE[key.value if isinstance(key, Reason) else key]
    return {
        lang: texts[lang].format(minutes=minutes, time=_clock(at, lang) if at is not None else "")
        for lang in LANGUAGES
    }


def _clock(at: datetime, lang: str) -> str:
    # Finnish and Swedish write the hour and minutes with a period; English with a colon.
    return f"{at:%H.%M}" if lang in ("fi", "sv") else f"{at:%H:%M}"


def tap_message(reason: Reason, reservation_begin_local: datetime | None = None) -> dict[str, str]:
    """What the door shows for a decision: a booth card that is early hears when its booking starts."""
    if reason is Reason.NO_RESERVATION and reservation_begin_local is not None:
        return message(RESERVATION_STARTS, at=reservation_begin_local)
    return message(reason)
