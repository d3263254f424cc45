"""A day with the central service down: 10,000 taps decided from the cache, then delivered once.

The branch syncs once in the morning, then the central service goes away for a
day: half the hours it answers 503, the other half nothing listens at all. Sync
rounds keep failing every ten minutes while the door takes 10,000 taps on a
simulated clock. Every decision is compared with what the rules say it must be:
a cached card opens while its entry is at most ``max_offline_age`` old and is
refused as ``unavailable`` after that (to the second), while this branch's own
staff cards open all day. When the service comes back one sync round must
deliver every event of the day exactly once.
"""

from __future__ import annotations

import dataclasses
import random
import textwrap
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from socket import socket
from zoneinfo import ZoneInfo

import pytest
import requests
from gpiozero.pins.mock import MockFactory

from device.cards import card_key
from device.config import load_with_central
from device.controller import Controller
from device.schedule import Period
from device.store import Store
from sync.central import SyncRunner
from tests.central_server import CentralServer

KEY = b"outage-test-consortium-key-01234"
TOKEN = "kallio-device-token"
HELSINKI = ZoneInfo("Europe/Helsinki")
MAX_OFFLINE = timedelta(hours=6)
TAPS = 10_000
SYNC_EVERY = timedelta(minutes=10)
#: The morning the last good sync happens, in local time.
MORNING = datetime(2026, 11, 25, 6, 0, tzinfo=HELSINKI).astimezone(timezone.utc)
TODAY = date(2026, 11, 25)


@dataclasses.dataclass(frozen=True)
class Card:
    number: str
    kind: str  # patron, central_staff, local_staff, unknown
    problem: str | None = None  # for a patron: the reason the rules refuse it, or None


def population() -> list[Card]:
    problems = ["blocked", "card_expired", "underage", "terms_not_accepted"] + [None] * 6
    return ([Card(str(40_000_000 + i), "patron", problems[i % 10]) for i in range(400)]
            + [Card(str(41_000_000 + i), "central_staff") for i in range(10)]
            + [Card(str(42_000_000 + i), "local_staff") for i in range(5)]
            + [Card(str(43_000_000 + i), "unknown") for i in range(50)])


def central_item(card: Card) -> dict:
    return {
        "card_key": card_key(KEY, card.number), "deleted": False,
        "self_service": card.problem != "terms_not_accepted" and card.kind == "patron",
        "blocked_reason": "fines" if card.problem == "blocked" else None,
        "valid_until": (TODAY - timedelta(days=1) if card.problem == "card_expired" else TODAY + timedelta(days=365)).isoformat(),
        "age_ok_from": (TODAY + timedelta(days=400) if card.problem == "underage" else date(2000, 1, 1)).isoformat(),
        "staff": card.kind == "central_staff",
    }


def expected(card: Card, at: datetime, synced_at: datetime) -> str:
    """The rules, written out for a branch open for self-service all day."""
    fresh = at - synced_at <= MAX_OFFLINE
    if card.kind == "local_staff":
        return "staff"
    if card.kind == "unknown":
        return "unknown_card"
    if not fresh:
        return "unavailable"
    if card.kind == "central_staff":
        return "staff"
    return card.problem or "granted"


class SimClock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _refused_url() -> str:
    """An address where nothing listens: the connection is refused at once."""
    with socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture
def central():
    with CentralServer(token=TOKEN, page_size=100) as server:
        yield server


def test_a_day_without_the_central_service(tmp_path, central):
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    (tmp_path / "consortium.key").write_bytes(KEY)
    (tmp_path / "central.token").write_text(TOKEN + "\n")
    config_path = tmp_path / "omaovi.toml"
    config_path.write_text(textwrap.dedent(f"""\
        branch = "kallio"
        timezone = "Europe/Helsinki"
        database = "omaovi.db"
        consortium_key_file = "consortium.key"

        [policy]
        max_offline_age = "6h"

        [[doors]]
        id = "entrance"
        kind = "entrance"
        lock_pin = 17

        [central]
        base_url = "{central.url}"
        token_file = "central.token"
        timeout = 2
        """))
    config, central_config = load_with_central(config_path)
    store = Store(config.database)
    store.set_weekly({day: (Period(0, 1440, "self_service"),) for day in range(7)})
    cards = population()
    for card in cards:
        if card.kind == "local_staff":
            store.add_staff_card(card_key(KEY, card.number), "desk", "admin")
    central.patrons.put(*(central_item(card) for card in cards if card.kind in ("patron", "central_staff")))

    clock = SimClock(MORNING)
    session = requests.Session()
    session.trust_env = False
    runner = SyncRunner(store, config, central_config, session=session, sleep=lambda seconds: None, clock=clock, max_attempts=2)
    controller = Controller(config, store, consortium_key=KEY, pin_factory=MockFactory(), wall=clock,
                            start_readers=False, keep_unpushed_events=True)
    context = f"(seed {seed})"
    try:
        assert runner.run_once() == {"events": None, "patrons": None, "reservations": None}
        synced_at = MORNING

        # The day: the service answers 503 in even hours and is not there at all in odd ones.
        central.down = True
        refused = dataclasses.replace(central_config, base_url=_refused_url())
        deadline = synced_at + MAX_OFFLINE
        patron = next(card for card in cards if card.kind == "patron" and card.problem is None)
        taps = sorted([(MORNING + timedelta(seconds=rng.uniform(1, 86_400)), rng.choices(cards, weights=_weights(cards))[0])
                       for _ in range(TAPS - 2)] + [(deadline, patron), (deadline + timedelta(seconds=1), patron)],
                      key=lambda tap: tap[0])
        next_round = MORNING + SYNC_EVERY
        wrong, decided = [], []
        for at, card in taps:
            while next_round <= at:
                clock.now = next_round
                runner.central = refused if (next_round - MORNING) // timedelta(hours=1) % 2 else central_config
                assert all(runner.run_once().values()), f"a sync round succeeded with the service down {context}"
                next_round += SYNC_EVERY
            clock.now = at
            result = controller.tap("entrance", card.number)
            decided.append((at, card, result.decision.reason.value))
            if result.decision.reason.value != expected(card, at, synced_at):
                wrong.append((at.isoformat(), card.kind, card.problem, result.decision.reason.value, expected(card, at, synced_at)))

        assert not wrong, f"{len(wrong)} of {len(taps)} taps were decided against the rules, such as {wrong[:5]} {context}"
        before = Counter(reason for at, _, reason in decided if at <= deadline)
        after = Counter((card.kind, reason) for at, card, reason in decided if at > deadline)
        assert before["granted"] > 1000 and before["staff"] > 50, f"the cache was not used while fresh {context}"
        assert all(reason != "granted" for _, reason in after), f"a stale cache let a patron in {context}"
        assert after[("patron", "unavailable")] > 1000 and after[("central_staff", "unavailable")] > 0, context
        assert after[("local_staff", "staff")] > 50, f"the branch's own staff cards stopped opening {context}"
        assert not central.events and store.unpushed_event_count() == len(taps), context

        # The service comes back: one round delivers the whole day, each event once.
        central.down = False
        runner.central = central_config
        clock.now = MORNING + timedelta(hours=24, minutes=5)
        assert runner.run_once() == {"events": None, "patrons": None, "reservations": None}, context
        events = dict(store.conn.execute("SELECT uuid, seq FROM events").fetchall())
        assert len(events) == len(taps), context
        assert {uuid: event["seq"] for uuid, event in central.events.items()} == events, context
        assert sum(accepted for accepted, _ in central.event_posts) == len(taps), f"an event was sent twice {context}"
        assert sum(duplicates for _, duplicates in central.event_posts) == 0, f"an event was sent twice {context}"
        assert store.sync_state("events")["pushed_upto"] == max(events.values()), context
        assert controller.tap("entrance", patron.number).decision.reason.value == "granted", \
            f"the cache is not trusted again after the service came back {context}"
    finally:
        controller.close()
        store.close()


def _weights(cards: list[Card]) -> list[float]:
    """Mostly patrons; staff and strangers now and then."""
    share = {"patron": 85, "central_staff": 5, "local_staff": 5, "unknown": 5}
    per_kind = Counter(card.kind for card in cards)
    return [share[card.kind] / per_kind[card.kind] for card in cards]
