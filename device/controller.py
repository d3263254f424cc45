"""The device's main loop: taps in, decisions out, doors driven, everything logged.

One thread owns the doors and the database connection. Readers and gpiozero post
work onto its queue; the loop also runs the door timers, picks up staff commands
and follows the schedule. A decision is committed to the database *before* the
relay is energised, so a power cut can lose an unlock but never an unlocked door's
record. If the database cannot be written, only staff are let in and the events
wait in memory until it can.

With a ``[sip2]`` section, an entrance tap first asks the library system about the
card (``sync.sip2.Sip2Checker``) and refreshes the patron cache with the answer.
The check runs on a worker thread, so the loop goes on meanwhile; the tap is
decided when the answer comes or its budget runs out (short for a card the cache
can decide), then from the cache as without SIP2. A late answer still refreshes
the cache.

A door that asks for a PIN keeps the tap waiting as state in this loop, not as a
blocking read: keys arrive on the queue like taps, the timeout is checked at each
tick, and the slow PIN check (SIP2 or PBKDF2) runs on a thread of its own whose
answer comes back through the queue. Other doors, timers and commands go on.

The building extras (announcements, lights, alarm, occupancy) follow the hours at
each tick; see ``device.building`` and ``device.announcements``.
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from device import announcements, events, messages, staff_copy
from device.announcements import Player, SoundPlayer
from device.building import BuildingOutputs, Occupancy, PeopleCounter, alarm_armed, closed_since, lights_on
from device.cards import CardNumberError, card_key, load_consortium_key
from device.config import BUILDING, BuildingConfig, Config, DoorConfig, Sip2Settings, looks_like_an_option
from device.display import Display
from device.door import Door
from device.events import Event
from device.heartbeat import HEARTBEAT_SECONDS, KEY as HEARTBEAT_KEY
from device.keypad import build_keypad
from device.pins import LockoutRule, PinEntry, VerifierError, load_pepper, locked_until, pin_matches, remember_pin
from device.policy import Decision, DoorState, Patron, PinResult, Reason, Reservation, decide, fresh, open_to_all
from device.store import Command, Store
from device.visits import RepeatTaps
from sync.sip2 import Sip2Checker, Sip2Config

if TYPE_CHECKING:
    from device.readers.base import ReaderLoop

log = logging.getLogger("omaovi.device")

TICK_SECONDS = 0.1
COMMAND_POLL_SECONDS = 0.25
HOURS_POLL_SECONDS = 2.0
RETENTION_SECONDS = 3600.0
NO_SHOW_POLL_SECONDS = 30.0
#: A tap not decided within this many seconds of the read is dropped, not acted on.
MAX_TAP_AGE_SECONDS = 3.0
#: Events that could not be written are kept in memory up to this many.
MAX_PENDING_EVENTS = 10_000
ANNOUNCE_POLL_SECONDS = 1.0
#: An announcement found due later than this (the loop stalled, the clock jumped) is skipped.
MAX_ANNOUNCEMENT_DELAY = timedelta(seconds=30)
#: How the PIN step ended, as written to a tap event's detail.
_PIN_DETAIL = {PinResult.OK: "ok", PinResult.WRONG: "wrong", PinResult.TIMEOUT: "timeout", None: "unchecked"}
#: While the database cannot be written, the loop retries the waiting events this
#: often (a tap tries at once anyway): retrying at every tick would try to write
#: thousands of events ten times a second on a full disk.
STORAGE_RETRY_SECONDS = 1.0
#: How often the staff cards are copied into memory, for taps while the database cannot be read.
STAFF_CARDS_POLL_SECONDS = 60.0
#: How often the readers' counts of dropped reads are written for /metrics (only when they changed).
READER_COUNTS_SECONDS = 5.0
#: How long a card with a fresh cache entry waits for the library system before it is
#: decided from the cache; the late answer still refreshes the entry. Cards without a
#: fresh entry wait for the whole check (``[sip2] timeout``), since the cache cannot decide them.
SIP2_FRESH_BUDGET_SECONDS = 0.2
#: Past the check's own timeout, what a card without a fresh entry waits at most, in
#: case the check is held up behind another on its worker.
SIP2_BUDGET_MARGIN_SECONDS = 0.5
#: A device that started without a writable database tries to open it again this often,
#: so that fixing the owner (or the file system) ends the storage-failed mode with no restart.
REOPEN_SECONDS = 10.0


@dataclass(frozen=True)
class TapResult:
    door: DoorConfig
    decision: Decision
    event: Event


@dataclass
class PinWait:
    """A tap waiting for its PIN. The raw card number stays here, in memory, for this one tap."""

    key: str
    number: str
    patron: Patron | None
    reservations: list[Reservation]
    entry: PinEntry
    deadline: float
    checking: bool = False
    #: The verifier kept from the library system's last "right PIN" for this card, while young enough.
    sip2_verifier: str | None = field(default=None, repr=False)


@dataclass
class Sip2Wait:
    """A tap waiting for the library system's answer, or for its budget to run out."""

    door_id: str
    key: str
    number: str
    patron: Patron | None
    timer: threading.Timer | None = None
    decided: bool = False


class Controller:
    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        consortium_key: bytes | None = None,
        pin_factory=None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        on_tap: Callable[[TapResult], None] | None = None,
        start_readers: bool = True,
        keep_unpushed_events: bool = False,
        sip2: Sip2Checker | None = None,
        player: Player | None = None,
        pepper: bytes | None = None,
        storage_error: str | None = None,
        reopen: Callable[[], Store] | None = None,
    ):
        """``keep_unpushed_events``: a branch with a central service deletes only the
        old events the service already has, so a long outage loses nothing.

        ``sip2``: the library system to ask at entrance taps (see ``sip2_checker``);
        the caller owns it and closes it.

        ``player`` plays announcements (default: ``aplay``/``espeak-ng``); ``pepper``
        is the branch PIN pepper (default: read from ``pin.pepper_file``).

        ``storage_error``: why the database could not be opened for writing at start;
        ``store`` is then a read-only stand-in and the device starts in the
        storage-failed mode (staff cards only, events in memory). ``reopen`` opens
        the real database, tried every REOPEN_SECONDS until it works.
        """
        self.config = config
        self.store = store
        self.sip2 = sip2
        #: The SIP2 check runs here, off the loop, so door timers and staff commands never wait for it.
        self._sip2_worker = ThreadPoolExecutor(1, thread_name_prefix="sip2") if sip2 is not None else None
        self.key = consortium_key if consortium_key is not None else load_consortium_key(config.consortium_key_file)
        # Read before any pin is touched: a device told to check PINs does not start without its pepper.
        self.pepper = pepper if pepper is not None or config.pin is None else load_pepper(config.pin.pepper_file)
        self.clock = clock
        self.wall = wall
        self.on_tap = on_tap
        self.keep_unpushed_events = keep_unpushed_events
        self._queue: queue.Queue[Callable[[], None]] = queue.Queue()
        #: The newest undecided read per door: (card number, when it was read, how many older reads it replaced).
        self._waiting_taps: dict[str, tuple[str, float, int]] = {}
        self._waiting_lock = threading.Lock()
        self._pending: list[Event] = []
        #: When writing first failed, and how many waiting events were dropped since; None while writes work.
        self._storage_failed_at: datetime | None = None
        self._storage_dropped = 0
        self._storage_retry_at = 0.0
        self._reopen = reopen
        self._reopen_at = 0.0
        self._staff_copy = staff_copy.copy_path(config.database)
        self._staff_keys: frozenset[str] = frozenset()
        self._copied_staff_keys: frozenset[str] | None = None
        self._refresh_staff_keys()
        self._hours_revision = -1
        self.schedule = store.schedule(config.tz)
        if storage_error is not None:
            self._storage_failed_at = self.wall()
            self._pending = [self._device_event(events.STORAGE_FAILED, {"error": storage_error, "at_start": True})]
        self.doors: dict[str, Door] = {}
        for door_cfg in config.doors:
            self.doors[door_cfg.id] = Door(
                door_cfg,
                emit=self._emitter(door_cfg),
                post=self._queue.put,
                clock=clock,
                wall=wall,
                pin_factory=pin_factory,
            )
        self._door_status: dict[str, dict] = {}
        self._shown_sip2: dict | None = None
        self._last_polled: dict[str, float] = {}
        self._resume_standing_commands()
        self._start_extras(pin_factory, player)
        #: door id -> the ReaderLoop reading its cards.
        self._readers: dict[str, ReaderLoop] = {}
        if start_readers:
            self._start_readers()
        self._started_at: str | None = None
        self.stopped = threading.Event()

    # -- input from other threads ---------------------------------------------
    def submit_tap(self, door_id: str, number: str) -> None:
        """Thread-safe: a reader saw ``number`` at ``door_id``.

        Only the newest read of each door waits to be decided. A reader that floods
        the loop (a broken reader, numbers replayed into it) then costs one decision
        at a time, and whoever holds a card there now is answered next instead of
        behind thousands of reads that would only be dropped as too late.
        """
        read_at = self.clock()
        with self._waiting_lock:
            earlier = self._waiting_taps.get(door_id)
            replaced = 0 if earlier is None else earlier[2] + 1
            self._waiting_taps[door_id] = (number, read_at, replaced)
        if earlier is None:
            self._queue.put(lambda: self._tap_waiting(door_id))

    def _tap_waiting(self, door_id: str) -> None:
        with self._waiting_lock:
            number, read_at, replaced = self._waiting_taps.pop(door_id)
        if replaced:
            # One line per decision, not per replaced read: a flooding reader must not flood the journal too.
            log.info("door %s: %d earlier read(s) replaced by a newer one before the loop took them; deciding the newest",
                     door_id, replaced, extra={"door": door_id, "event_type": "tap_replaced"})
        self.tap(door_id, number, read_at=read_at)

    def call(self, work: Callable[[], object], timeout: float = 5.0):
        """Run ``work`` on the controller thread and wait for its result (for the demo console)."""
        done = threading.Event()
        box: dict = {}

        def run():
            try:
                box["value"] = work()
            finally:
                done.set()

        self._queue.put(run)
        if not done.wait(timeout):
            raise TimeoutError("the device loop did not answer")
        return box.get("value")

    # -- the loop -------------------------------------------------------------
    def run(self, stop: threading.Event | None = None, on_tick: Callable[[], None] | None = None) -> None:
        stop = stop or self.stopped
        self._started_at = events.utc_text(self.wall())
        self._follow_schedule()
        while not stop.is_set():
            deadline = self.clock() + TICK_SECONDS
            while True:
                remaining = deadline - self.clock()
                try:
                    work = self._queue.get(timeout=max(0.0, remaining))
                except queue.Empty:
                    break
                self._run_safely(work)
                if self.clock() >= deadline:
                    break
            self._periodic()
            if on_tick is not None:
                on_tick()

    def step(self) -> None:
        """The work waiting now, then one round of periodic work, on the calling thread.

        For driving the device by hand with a simulated clock (a whole day of
        hours in a second); ``run`` is this with real waiting in between.
        """
        while True:
            try:
                work = self._queue.get_nowait()
            except queue.Empty:
                break
            self._run_safely(work)
        self._periodic()

    def _periodic(self) -> None:
        now = self.clock()
        last = self._last_polled
        self._run_safely(self._tick)
        for name, interval, work in (
            ("commands", COMMAND_POLL_SECONDS, self._run_commands),
            ("hours", HOURS_POLL_SECONDS, self._reload_hours),
            ("retention", RETENTION_SECONDS, self._apply_retention),
            ("no_shows", NO_SHOW_POLL_SECONDS, self._report_no_shows),
            ("announce", ANNOUNCE_POLL_SECONDS, self._announce),
            ("lockouts", ANNOUNCE_POLL_SECONDS, self._publish_lockouts),
            ("heartbeat", HEARTBEAT_SECONDS, self._heartbeat),
            ("reader_counts", READER_COUNTS_SECONDS, self._publish_dropped_reads),
            ("staff", STAFF_CARDS_POLL_SECONDS, self._refresh_staff_keys),
            ("sip2", ANNOUNCE_POLL_SECONDS, self._publish_sip2),
        ):
            if now - last.get(name, -1e9) >= interval:
                last[name] = now
                self._run_safely(work)

    def close(self) -> None:
        for reader in self._readers.values():
            reader.stop()
        for part in (*self.keypads.values(), *self.displays.values(), *self.counters.values(), self.building):
            part.close()
        for door in self.doors.values():
            door.close()
        if isinstance(self.player, SoundPlayer):
            self.player.close()
        if self._started_at is not None:
            # The relays are released: say so at once rather than after three missed heartbeats.
            self._set_status(HEARTBEAT_KEY, self._heartbeat_value() | {"stopped_at": events.utc_text(self.wall())})
        if self._sip2_worker is not None:
            self._sip2_worker.shutdown(wait=False, cancel_futures=True)

    # -- one tap --------------------------------------------------------------
    def tap(self, door_id: str, number: str, read_at: float | None = None) -> TapResult | None:
        """Decide, record, then act. The raw number lives only in this call, and while the
        library system is asked, in the tap's ``Sip2Wait``.

        None when the tap is not decided yet: waiting for a PIN, or for the library
        system's answer (or its budget), after which the loop decides it.
        """
        door_cfg = self.config.door(door_id)
        door = self.doors[door_id]
        if read_at is not None and self.clock() - read_at > MAX_TAP_AGE_SECONDS:
            # The patron has given up and left; opening now would open for whoever is there.
            log.warning("door %s: dropped a tap that waited %.1f s to be decided", door_id, self.clock() - read_at,
                        extra={"door": door_id, "event_type": "tap_too_late"})
            return None
        try:
            key = card_key(self.key, number)
        except CardNumberError as exc:
            log.warning(
                "door %s: ignored a read that is not a card number (%s)", door_id, exc.__class__.__name__,
                extra={"door": door_id, "event_type": "not_a_card_number"},
            )
            return None
        now = self.wall()
        try:
            patron = self.store.patron(key, now.astimezone(self.config.tz).date())
        except sqlite3.Error as exc:
            return self._act(door_cfg, self._decide_from_memory(key, now, exc), key, now)
        if self._sip2_may_matter(door_cfg, door, patron, now):
            if self.sip2.breaker.state == "open":
                # An outage: no answer would come, so none is waited for, not even a thread hop.
                return self._decide_tap(door_cfg, key, number, patron, self._no_answer(now), now)
            self._ask_sip2(door_cfg, key, number, patron, now)
            return None
        return self._decide_tap(door_cfg, key, number, patron, Reason.UNKNOWN_CARD, now)

    def _decide_tap(
        self, door_cfg: DoorConfig, key: str, number: str, patron: Patron | None, unknown: Reason, now: datetime
    ) -> TapResult | None:
        """The decision without the PIN, then the PIN step where it is asked."""
        door = self.doors[door_cfg.id]
        try:
            reservations = self.store.reservations_for(key, door_cfg.resource, now) if door_cfg.kind == "booth" else []
        except sqlite3.Error as exc:
            return self._act(door_cfg, self._decide_from_memory(key, now, exc), key, now)
        decision = decide(
            key, door_cfg, now, self.schedule, patron, reservations, self.config.policy, DoorState(lockdown=door.lockdown),
            unknown=unknown,
        )
        if self._pin_needed(door_cfg, decision):
            return self._ask_pin(door_cfg, decision, key, number, patron, reservations, now)
        return self._act(door_cfg, decision, key, now)

    def _act(
        self, door_cfg: DoorConfig, decision: Decision, key: str, now: datetime, notice: str | None = None, **detail
    ) -> TapResult:
        """Record a decision, then open or refuse, tell the patron and count the entry.

        ``notice``: a catalogue message to show instead of the reason's own.
        """
        door = self.doors[door_cfg.id]
        event = self._event(door_cfg, events.TAP, now, decision, key, detail, notice)
        if not self._record(event) and decision.granted and decision.reason is not Reason.STAFF:
            # No record, no entry: only staff pass while the database cannot be written.
            decision = Decision(False, Reason.UNAVAILABLE, decision.mode)
            event = self._event(door_cfg, events.TAP, now, decision, key, detail, uuid=event.uuid)
            self._pending[-1] = event
            notice = None
        if decision.granted:
            door.grant()
            if door_cfg.kind == "entrance":
                self.occupancy.granted(door_cfg.id)
        else:
            door.deny()
        self._show(door_cfg.id, self._tap_message(decision, notice))
        log.info(
            "tap door=%s granted=%s reason=%s mode=%s event=%s",
            door_cfg.id, decision.granted, decision.reason.value, decision.mode, event.uuid,
            extra={"door": door_cfg.id, "event_type": events.TAP, "reason": decision.reason.value},
        )
        result = TapResult(door_cfg, decision, event)
        if self.on_tap is not None:
            self.on_tap(result)
        self._publish_door(door_cfg.id)
        return result

    def _tap_message(self, decision: Decision, notice: str | None = None) -> dict[str, str]:
        if notice is not None:
            return messages.message(notice)
        begin = decision.reservation.begin.astimezone(self.config.tz) if decision.reservation else None
        return messages.tap_message(decision.reason, begin)

    def _show(self, door_id: str, texts: dict[str, str]) -> None:
        display = self.displays.get(door_id)
        if display is not None:
            display.show(texts)

    # -- the PIN step ---------------------------------------------------------
    def _pin_needed(self, door_cfg: DoorConfig, decision: Decision) -> bool:
        """A PIN is asked only where the card alone would open: never of staff, and
        never at a door that stands open to all anyway."""
        pin = self.config.pin
        return (
            pin is not None and door_cfg.id in self._keypads_working and decision.granted
            and decision.reason is Reason.GRANTED and pin.required_in(decision.mode)
            and not open_to_all(door_cfg, decision.mode, self.config.policy)
        )

    def _ask_pin(self, door_cfg, decision, key, number, patron, reservations, now) -> TapResult | None:
        """Refuse a locked-out card at once; otherwise start waiting for its PIN (None: not decided yet)."""
        if self._locked_until(key, now) is not None:
            refused = Decision(False, Reason.WRONG_PIN, decision.mode)
            return self._act(door_cfg, refused, key, now, notice=messages.PIN_LOCKED, pin="locked_out")
        # A wait being checked is decided when its answer comes; one still being
        # typed ends as a timeout, unless it is the same card tapped again.
        earlier = self._pin_waits.pop(door_cfg.id, None)
        if earlier is not None and not earlier.checking and earlier.key != key:
            self._pin_decided(door_cfg, earlier, PinResult.TIMEOUT)
        pin = self.config.pin
        self._pin_waits[door_cfg.id] = PinWait(
            key, number, patron, reservations, PinEntry(pin.length, pin.enter_key, pin.reset_key),
            deadline=self.clock() + pin.timeout, sip2_verifier=self._kept_verifier(key, now),
        )
        self.doors[door_cfg.id].prompt_pin()
        self._show(door_cfg.id, messages.message(messages.ENTER_PIN))
        log.info("door %s: waiting for a PIN", door_cfg.id, extra={"door": door_cfg.id, "event_type": "pin_asked"})
        return None

    def key_pressed(self, door_id: str, key: str) -> None:
        """A key on ``door_id``'s keypad (on the loop thread). Keys with no PIN asked are ignored."""
        wait = self._pin_waits.get(door_id)
        if wait is None or wait.checking:
            return
        pin = wait.entry.press(key)
        if pin is None:
            return
        wait.checking = True

        def check() -> None:
            result, library_says = self._check_pin(wait, pin)
            self._queue.put(lambda: self._pin_checked(door_id, wait, result))
            if library_says is not None:
                self._keep_pin(wait.key, pin if library_says else None)

        threading.Thread(target=check, name=f"pin check {door_id}", daemon=True).start()

    def _check_pin(self, wait: PinWait, pin: str) -> tuple[PinResult | None, bool | None]:
        """Off the loop thread: the library system's word when it gives one, else the cached verifiers.

        Returns the result (None when nothing can tell: offline and no verifier for
        the card) and the library system's own verdict, None without one.
        """
        if self.sip2 is not None:
            try:
                answer = self.sip2.check(wait.number, pin)
            except Exception as exc:  # noqa: BLE001 - a bug in the check must not lose the tap
                log.error("SIP2 PIN check raised %s; trying the cached verifier", type(exc).__name__)
                answer = None
            if answer is not None and answer.pin_ok is not None:
                return (PinResult.OK if answer.pin_ok else PinResult.WRONG), answer.pin_ok
        verifiers = [v for v in (wait.patron.pin_verifier if wait.patron else None, wait.sip2_verifier) if v]
        if not verifiers or self.pepper is None:
            return None, None
        try:
            # Either is the patron's PIN: the central service's, or the one the library system last accepted.
            return (PinResult.OK if any(pin_matches(pin, v, self.pepper) for v in verifiers) else PinResult.WRONG), None
        except VerifierError as exc:
            log.error("the cached PIN verifier of a card is unusable: %s", exc)
            return None, None

    def _keep_pin(self, key: str, pin: str | None) -> None:
        """Off the loop thread, after the door has its answer: keep a peppered verifier of
        a PIN the library system accepted (``pin``), or forget the kept one (None)."""
        if pin is None:
            self._queue.put(lambda: self._store_pin_verifier(key, None))
        elif self.pepper is not None:
            verifier = remember_pin(pin, self.pepper)
            self._queue.put(lambda: self._store_pin_verifier(key, verifier))

    def _store_pin_verifier(self, key: str, verifier: str | None) -> None:
        try:
            if verifier is None:
                self.store.forget_sip2_pin_verifier(key)
            else:
                self.store.keep_sip2_pin_verifier(key, verifier, self.wall())
        except sqlite3.Error as exc:
            log.error("cannot keep or forget a card's PIN verifier: %s", exc)

    def _kept_verifier(self, key: str, now: datetime) -> str | None:
        """The verifier kept from the library system, if it accepted the PIN within max_offline_age."""
        if self.sip2 is None:
            return None
        try:
            return self.store.sip2_pin_verifier(key, since=now - self.config.policy.max_offline_age)
        except sqlite3.Error as exc:
            log.error("cannot read a card's kept PIN verifier: %s", exc)
            return None

    def _pin_checked(self, door_id: str, wait: PinWait, result: PinResult | None) -> None:
        """The answer for a typed PIN. Each wait being checked gets exactly one, so each is
        decided once, even if another card has started a new wait at the door meanwhile."""
        if self._pin_waits.get(door_id) is wait:
            del self._pin_waits[door_id]
        self._pin_decided(self.config.door(door_id), wait, result)

    def _pin_decided(self, door_cfg: DoorConfig, wait: PinWait, result: PinResult | None) -> TapResult:
        """Decide the tap again with the PIN's outcome: the hours may have moved on meanwhile."""
        if result is None:
            now = self.wall()
            return self._act(door_cfg, Decision(False, Reason.UNAVAILABLE, self.schedule.mode_at(now)), wait.key, now,
                             pin=_PIN_DETAIL[result])
        return self._decide_again(door_cfg, wait, result, _PIN_DETAIL[result])

    def _decide_again(self, door_cfg: DoorConfig, wait: PinWait, pin: PinResult | None, pin_detail: str) -> TapResult:
        """The waiting tap decided now with ``pin`` (None: by card alone), and acted on."""
        now = self.wall()
        decision = decide(
            wait.key, door_cfg, now, self.schedule, wait.patron, wait.reservations, self.config.policy,
            DoorState(lockdown=self.doors[door_cfg.id].lockdown), pin=pin,
        )
        tap = self._act(door_cfg, decision, wait.key, now, pin=pin_detail)
        if pin is PinResult.WRONG:
            self._note_lockout(door_cfg, wait.key, now)
        return tap

    def _expire_pin_waits(self) -> None:
        now = self.clock()
        for door_id, wait in list(self._pin_waits.items()):
            if not wait.checking and now >= wait.deadline:
                del self._pin_waits[door_id]
                self._pin_decided(self.config.door(door_id), wait, PinResult.TIMEOUT)

    def _locked_until(self, key: str, now: datetime) -> datetime | None:
        """When the card's lockout ends, from the event log. A log that cannot be read
        locks nobody out: the tap goes on, and is refused as unavailable if its
        decision cannot be written either."""
        rule = self._lockout_rule
        try:
            failures = self.store.wrong_pins(now - rule.lookback, key).get(key, [])
        except sqlite3.Error as exc:
            log.error("cannot count the card's wrong PINs: %s", exc)
            return None
        return locked_until(failures, now, rule)

    def _note_lockout(self, door_cfg: DoorConfig, key: str, now: datetime) -> None:
        """After a wrong PIN: log and show the lockout it starts, once."""
        until = self._locked_until(key, now)
        if until is None or self._lockouts.get(key) == until:
            return
        self._lockouts[key] = until
        self._record(self._door_event(door_cfg, events.PIN_LOCKOUT, {"until": events.utc_text(until)}, key))
        log.warning("door %s: a card is locked out of PIN entry until %s", door_cfg.id, until.isoformat(),
                    extra={"door": door_cfg.id, "event_type": events.PIN_LOCKOUT})
        self._publish_lockouts()

    def _clear_lockout(self, command: Command) -> None:
        """Staff let a card type its PIN again (the patron showed who they are at the desk).

        The ``pin_lockout_cleared`` event is the lasting record: the wrong PINs
        before it no longer count (``Store.wrong_pins``), after a restart too.
        """
        if self.config.pin is None:
            self.store.finish_command(command.id, "refused: this device does not ask for PINs")
            return
        event = self._building_event(events.PIN_LOCKOUT_CLEARED, {"by": command.requested_by, "command": command.id},
                                     command.card_key)
        self.store.finish_command(command.id, "done", event)
        self._lockouts.pop(command.card_key, None)
        log.info("a card's PIN lockout was cleared by %s (command %d)", command.requested_by, command.id,
                 extra={"door": BUILDING, "event_type": events.PIN_LOCKOUT_CLEARED})
        self._publish_lockouts()

    def _load_lockouts(self) -> None:
        """The lockouts still running, from the event log, so a restart shows them on the staff page."""
        now = self.wall()
        rule = self._lockout_rule
        for key, failures in self.store.wrong_pins(now - rule.lookback).items():
            if (until := locked_until(failures, now, rule)) is not None:
                self._lockouts[key] = until
        self._publish_lockouts()

    def _publish_lockouts(self) -> None:
        if self.config.pin is None:
            return
        now = self.wall()
        self._lockouts = {key: until for key, until in self._lockouts.items() if until > now}
        shown = sorted(({"card_key": k, "until": events.utc_text(u)} for k, u in self._lockouts.items()),
                       key=lambda item: item["until"])
        if shown != self._shown_lockouts:
            self._shown_lockouts = shown
            self._set_status("pin_lockouts", shown)

    def _decide_from_memory(self, key: str, now: datetime, exc: sqlite3.Error) -> Decision:
        """The database cannot be read: staff cards, kept in memory, still open the door and
        everyone else is told "unavailable" at once, rather than the tap vanishing unanswered."""
        log.error("cannot read the patron cache (%s); only staff cards open", exc, extra={"event_type": "storage_unreadable"})
        mode = self.schedule.mode_at(now)
        if key in self._staff_keys:
            return Decision(True, Reason.STAFF, mode)
        return Decision(False, Reason.UNAVAILABLE, mode)

    def _refresh_staff_keys(self) -> None:
        """Keep a copy of this branch's staff cards for taps while the database cannot be read;
        when it cannot be read now either, the last copy stays. A changed set is also
        written beside the database, for a start at which it cannot be read."""
        try:
            self._staff_keys = frozenset(row["card_key"] for row in self.store.staff_cards())
        except sqlite3.Error as exc:
            log.error("cannot read the staff cards (%s); keeping the %d known", exc, len(self._staff_keys))
            return
        if self._staff_keys != self._copied_staff_keys:
            self._copied_staff_keys = self._staff_keys
            try:
                staff_copy.save(self._staff_copy, self._staff_keys)
            except OSError as exc:
                log.error("cannot write the staff card copy %s: %s", self._staff_copy, exc)

    @property
    def storage_warning(self) -> str | None:
        """What the staff must know while the device cannot write its database, else None."""
        if self._storage_failed_at is None:
            return None
        waiting = sum(1 for event in self._pending if event.type != events.STORAGE_FAILED)
        return (f"STORAGE FAILED since {self._storage_failed_at:%Y-%m-%d %H:%M} UTC: only staff cards open, "
                f"{waiting} events wait in memory; run omaovi doctor")

    def _sip2_may_matter(self, door_cfg: DoorConfig, door: Door, patron: Patron | None, now: datetime) -> bool:
        """Whether the library system's answer could change this tap's decision.

        Every check may cost the patron at the door up to the timeout, so it is
        made only where ``decide()`` would look at the patron's permissions: not
        at a booth (the reservation decides), not in lockdown or closed hours, not
        while the entrance stands unlocked for staffed hours, and not for staff
        cards and this branch's own blocks, which win over any answer (a staff
        card need not be a library card at all).
        """
        if self.sip2 is None or door_cfg.kind != "entrance" or door.lockdown:
            return False
        if patron is not None and (patron.local_staff or patron.local_block or patron.staff):
            return False
        mode = self.schedule.mode_at(now)
        return mode != "closed" and not open_to_all(door_cfg, mode, self.config.policy)

    def _ask_sip2(self, door_cfg: DoorConfig, key: str, number: str, patron: Patron | None, now: datetime) -> None:
        """Start the check on the SIP2 worker; the tap is decided by its answer or when its budget runs out.

        A card with a fresh cache entry gets a short budget: the cache can decide it,
        so no patron waits long for a library system that has gone silent. Either
        way the loop goes on meanwhile.
        """
        assert self.sip2 is not None and self._sip2_worker is not None
        wait = Sip2Wait(door_cfg.id, key, number, patron)
        if patron is not None and fresh(patron, now, self.config.policy):
            budget = SIP2_FRESH_BUDGET_SECONDS
        else:
            # Never past the age at which a tap is no longer acted on.
            budget = min(self.sip2.client.config.timeout + SIP2_BUDGET_MARGIN_SECONDS, MAX_TAP_AGE_SECONDS)
        wait.timer = threading.Timer(budget, lambda: self._queue.put(lambda: self._sip2_budget_over(wait)))
        wait.timer.daemon = True
        future = self._sip2_worker.submit(self._check_card, number)
        wait.timer.start()
        future.add_done_callback(lambda done: self._queue.put(lambda: self._sip2_answered(wait, done)))

    def _check_card(self, number: str):
        """On the SIP2 worker: the library system's answer, or None."""
        try:
            return self.sip2.check(number)
        except Exception as exc:  # noqa: BLE001 - a bug in the check must not stop the door
            # The type only: a message could quote the card number.
            log.error("SIP2 check raised %s; deciding from the cache", type(exc).__name__,
                      extra={"event_type": "sip2_error"})
            return None

    def _sip2_answered(self, wait: Sip2Wait, done: Future) -> None:
        """The answer, on the loop: it refreshes the cache, and decides the tap unless its budget ran out first."""
        if wait.timer is not None:
            wait.timer.cancel()
        now = self.wall()
        patron, unknown = self._use_answer(wait.key, wait.patron, None if done.cancelled() else done.result(), now)
        if not wait.decided:
            wait.decided = True
            self._decide_tap(self.config.door(wait.door_id), wait.key, wait.number, patron, unknown, now)

    def _sip2_budget_over(self, wait: Sip2Wait) -> None:
        if wait.decided:
            return
        wait.decided = True
        log.info("door %s: no answer from the library system within the budget; deciding from the cache",
                 wait.door_id, extra={"door": wait.door_id, "event_type": "sip2_budget_over"})
        now = self.wall()
        self._decide_tap(self.config.door(wait.door_id), wait.key, wait.number, wait.patron, self._no_answer(now), now)

    def _use_answer(self, key: str, patron: Patron | None, result, now: datetime) -> tuple[Patron | None, Reason]:
        """The cached patron refreshed with the library system's answer, and what a card
        with no entry is: ``unknown_card`` when the library system said so (nothing is
        cached then) or the cache is known complete, else ``unavailable``.

        The answer is used for this tap even if it cannot be written to the cache.
        SIP2 carries no age, so ``age_ok_from`` (and the staff flag) stay as cached:
        a card the cache does not know gets no age and is ``underage`` in
        self-service hours until the central service or a CSV import supplies it.
        """
        if result is None:
            return patron, self._no_answer(now)
        if not result.known:
            return None, Reason.UNKNOWN_CARD
        refreshed = replace(
            patron or Patron(card_key=key),
            self_service=result.self_service, blocked_reason=result.blocked_reason,
            valid_until=result.valid_until, fetched_at=now, class_refused=result.class_refused,
        )
        try:
            self.store.refresh_patron(
                key, self_service=result.self_service, blocked_reason=result.blocked_reason,
                valid_until=result.valid_until, fetched_at=now, source="sip2", class_refused=result.class_refused,
            )
        except sqlite3.Error as exc:
            log.error("cannot write the SIP2 answer to the patron cache: %s", exc)
        return refreshed, Reason.UNKNOWN_CARD

    def _no_answer(self, now: datetime) -> Reason:
        """A card with no entry, when the library system gave no answer."""
        return Reason.UNKNOWN_CARD if self._cache_complete(now) else Reason.UNAVAILABLE

    def _cache_complete(self, now: datetime) -> bool:
        """Whether a card missing from the cache is truly unknown: a full snapshot of
        every card, kept up to date within ``max_offline_age``."""
        try:
            complete = self.store.patrons_complete_at()
        except sqlite3.Error:
            return False
        return complete is not None and now - complete <= self.config.policy.max_offline_age

    def _event(
        self, door_cfg: DoorConfig, type_: str, now: datetime, decision: Decision, key: str, detail: dict,
        notice: str | None = None, **extra,
    ) -> Event:
        # The patron saw the Finnish text first; the staff page translates the reason itself.
        detail = {**detail, "message": self._tap_message(decision, notice)["fi"]}
        if decision.reservation is not None:
            detail |= {"reservation": decision.reservation.id, "begin": events.utc_text(decision.reservation.begin)}
            if decision.granted and self._first_use(door_cfg, decision.reservation):
                reservation = decision.reservation
                detail[events.BOOTH_MINUTES] = int((reservation.end - reservation.begin).total_seconds() // 60)
        return Event(
            ts=now, door=door_cfg.id, type=type_, reason=decision.reason.value, mode=decision.mode,
            card_key=key, door_kind=door_cfg.kind, detail=detail,
            not_a_visit=decision.reason is Reason.GRANTED and self._not_a_visit(door_cfg, key, now), **extra,
        )

    def _not_a_visit(self, door_cfg: DoorConfig, key: str, now: datetime) -> bool:
        """Whether a granted tap is no new physical visit: a booth is inside the library, a
        people counter counts the people at its door, and a card's repeat is the same visit."""
        if door_cfg.kind == "booth":
            return False  # counted as a booth use, never as a visit
        return door_cfg.id in self.counters or self._repeat_taps.is_repeat(key, now)

    def _first_use(self, door_cfg: DoorConfig, reservation: Reservation) -> bool:
        """Whether this grant is the reservation's first, so its minutes count as booth hours.

        If the log cannot be read the minutes are left uncounted rather than the
        tap failing: the door matters more than the figure.
        """
        if any(e.reason == "granted" and e.detail.get("reservation") == reservation.id for e in self._pending):
            return False
        try:
            # Early entry is at most an hour, so a day before the begin finds every earlier use.
            return not self.store.reservation_used(door_cfg.id, reservation.id, reservation.begin - timedelta(days=1))
        except sqlite3.Error as exc:
            log.error("cannot read whether reservation %s was used already: %s", reservation.id, exc)
            return False

    def _record(self, *new: Event) -> bool:
        """Write the events waiting in memory and the new ones; on failure keep them all.

        With no new events this is the retry from the loop's tick, which stays
        quiet while the database is still failing. The first failure queues a
        ``storage_failed`` event stamped with its time, and the first write that
        works again adds ``storage_recovered`` saying how many events waited and
        how many were lost, so the log shows the outage once the disk has room.
        """
        batch = self._pending + list(new)
        if self._storage_failed_at is not None:
            waited = sum(1 for event in self._pending if event.type != events.STORAGE_FAILED)
            batch.append(self._device_event(events.STORAGE_RECOVERED, {
                "since": events.utc_text(self._storage_failed_at), "waited": waited, "dropped": self._storage_dropped,
            }))
        try:
            self.store.record(batch)
        except sqlite3.Error as exc:
            if self._storage_failed_at is None:
                self._storage_failed_at = self.wall()
                batch = [self._device_event(events.STORAGE_FAILED, {"error": str(exc)})] + batch
            else:
                batch.pop()  # this attempt's storage_recovered
            dropped = max(0, len(batch) - MAX_PENDING_EVENTS)
            self._storage_dropped += dropped
            if new:
                log.error("cannot write events (%s); %d waiting in memory%s", exc, len(batch) - dropped,
                          f", {dropped} oldest dropped" if dropped else "", extra={"event_type": events.STORAGE_FAILED})
            self._pending = batch[dropped:]
            self._storage_retry_at = self.clock() + STORAGE_RETRY_SECONDS
            return False
        if self._storage_failed_at is not None:
            log.warning("the database can be written again; wrote %d events that had waited in memory, %d were lost",
                        waited, self._storage_dropped, extra={"event_type": events.STORAGE_RECOVERED})
            self._storage_failed_at, self._storage_dropped = None, 0
        self._pending = []
        return True

    def _device_event(self, type_: str, detail: dict) -> Event:
        now = self.wall()
        return Event(ts=now, door=events.DEVICE, type=type_, mode=self.schedule.mode_at(now), detail=detail)

    def _door_event(self, door_cfg: DoorConfig, type_: str, detail: dict, key: str | None = None) -> Event:
        """An event that is not a tap decision, stamped now with the hours' mode."""
        return self._stamped(door_cfg.id, door_cfg.kind, type_, detail, key)

    def _building_event(self, type_: str, detail: dict, key: str | None = None) -> Event:
        """An event about the building as a whole, under the door id ``building``."""
        return self._stamped(BUILDING, BUILDING, type_, detail, key)

    def _stamped(self, door: str, kind: str, type_: str, detail: dict, key: str | None = None) -> Event:
        now = self.wall()
        return Event(
            ts=now, door=door, type=type_, mode=self.schedule.mode_at(now), card_key=key, door_kind=kind, detail=detail,
        )

    def _emitter(self, door_cfg: DoorConfig) -> Callable[[str, dict], None]:
        def emit(type_: str, detail: dict) -> None:
            self._record(self._door_event(door_cfg, type_, detail))
            log.info("door=%s event=%s", door_cfg.id, type_, extra={"door": door_cfg.id, "event_type": type_})
            self._publish_door(door_cfg.id)
            self._door_happened(door_cfg, type_)

        return emit

    # -- the extras: keypads, displays, building, announcements ---------------
    def _start_extras(self, pin_factory, player: Player | None) -> None:
        cfg = self.config
        self._pin_waits: dict[str, PinWait] = {}
        self._lockouts: dict[str, datetime] = {}
        self._shown_lockouts: list | None = None
        self._status_cache: dict[str, object] = {}
        if cfg.pin is not None:
            self._lockout_rule = LockoutRule(cfg.pin.max_wrong, cfg.pin.wrong_window, cfg.pin.lockout)
            self._load_lockouts()
        self.keypads = {}
        #: Doors whose keypad works now (only these ask for a PIN), and those whose keypad has failed since start.
        self._keypads_working: set[str] = set()
        self._keypads_failed: set[str] = set()
        self.counters = {}
        self._repeat_taps = RepeatTaps(timedelta(minutes=cfg.policy.repeat_tap_minutes))
        for d in cfg.doors:
            if d.keypad is not None:
                self._add_part(self.keypads, d.id, f"the keypad of door {d.id} (it opens by card alone)",
                               lambda d=d: self._keypad(d, pin_factory))
            if d.counter_in_pin is not None:
                self._add_part(self.counters, d.id, f"the people counter of door {d.id}",
                               lambda d=d: self._counter(d, pin_factory))
        self.displays = {d.id: Display(d.display, d.id) for d in cfg.doors if d.display is not None}
        self.occupancy = Occupancy(frozenset(self.counters))
        self.building = self._optional(
            "the lights and alarm relays", lambda: BuildingOutputs(cfg.building, pin_factory=pin_factory)
        ) or BuildingOutputs(BuildingConfig())
        now = self.wall()
        self._mode, self._closed_since = self.schedule.mode_at(now), closed_since(self.schedule, now)
        self.player = player if player is not None or cfg.announcements is None else SoundPlayer()
        self._announced_upto = now
        if cfg.announcements is not None:
            self._announcement_defaults = announcements.default_settings(cfg.announcements)
            try:
                self.store.set_announcement_settings(self._announcement_defaults, keep_existing=True)
            except sqlite3.Error as exc:  # the config's values serve until the disk is back
                log.error("cannot save the default announcement settings: %s", exc)
        self._publish_occupancy()

    def _optional(self, what: str, build: Callable[[], object]) -> object | None:
        """An optional part, or None when it cannot be set up: the doors start without it."""
        try:
            return build()
        except Exception as exc:  # noqa: BLE001 - gpiozero and serial raise many kinds
            log.error("cannot use %s: %s: %s", what, type(exc).__name__, exc, extra={"event_type": "part_failed"})
            return None

    def _add_part(self, parts: dict, door_id: str, what: str, build: Callable[[], object]) -> None:
        part = self._optional(what, build)
        if part is not None:
            parts[door_id] = part

    def _keypad(self, door_cfg: DoorConfig, pin_factory):
        post = self._queue.put
        return build_keypad(
            door_cfg.keypad, lambda key: post(lambda: self.key_pressed(door_cfg.id, key)),
            lambda works, detail: post(lambda: self._keypad_status(door_cfg, works, detail)),
            enter_key=self.config.pin.enter_key if self.config.pin else "#", pin_factory=pin_factory,
        )

    def _keypad_status(self, door_cfg: DoorConfig, works: bool, detail: str) -> None:
        """A keypad that cannot be used puts its door into card-only mode, loudly, until it works again."""
        door_id = door_cfg.id
        extra = {"door": door_id, "event_type": events.KEYPAD_ONLINE if works else events.KEYPAD_OFFLINE}
        if works:
            again = door_id in self._keypads_failed
            self._keypads_working.add(door_id)
            log.log(logging.WARNING if again else logging.INFO, "the keypad of door %s works%s: %s; the door asks "
                    "for card + PIN", door_id, " again" if again else "", detail, extra=extra)
        else:
            self._keypads_working.discard(door_id)
            self._keypads_failed.add(door_id)
            log.error("cannot use the keypad of door %s: %s; the door opens by card alone, without a PIN, "
                      "until the keypad works again", door_id, detail, extra=extra)
        self._set_status(f"keypad:{door_id}", {"works": works, "detail": detail})
        self._record(self._door_event(door_cfg, extra["event_type"], {"detail": detail}))
        if not works:
            self._keypad_gone(door_cfg)

    def _keypad_gone(self, door_cfg: DoorConfig) -> None:
        """The patron typing a PIN when the keypad went away is let in by card alone, as the
        next one will be, rather than left waiting for keys that cannot come."""
        wait = self._pin_waits.get(door_cfg.id)
        if wait is not None and not wait.checking:
            del self._pin_waits[door_cfg.id]
            self._decide_again(door_cfg, wait, None, "no_keypad")

    def _counter(self, door_cfg: DoorConfig, pin_factory) -> PeopleCounter:
        post = self._queue.put
        return PeopleCounter(
            door_cfg.counter_in_pin, door_cfg.counter_out_pin,
            lambda: post(lambda: self._counted(door_cfg.id, self._person_in)),
            lambda: post(lambda: self._counted(door_cfg.id, self.occupancy.person_out)),
            pin_factory=pin_factory,
        )

    def _publish_sip2(self) -> None:
        """The library system as this device meets it (``Sip2Checker.state``), for doctor,
        ``/api/v1/status``, ``/metrics`` and the Today page; written when it changes."""
        if self.sip2 is None:
            return
        state = {key: events.utc_text(value) if isinstance(value, datetime) else value
                 for key, value in self.sip2.state().items()}
        if state != self._shown_sip2:
            self._shown_sip2 = state
            self._set_status("sip2", state)

    def _set_status(self, key: str, value) -> None:
        try:
            self.store.set_status(key, value)
        except sqlite3.Error as exc:
            log.error("cannot write the %s status: %s", key, exc)

    def _counted(self, door_id: str, count: Callable[[str], None]) -> None:
        count(door_id)
        self._publish_occupancy()

    def _person_in(self, door_id: str) -> None:
        """One more person inside, and one more physical visit in the statistics."""
        self.occupancy.person_in(door_id)
        try:
            self.store.add_count(self.wall(), door_id, events.PEOPLE_IN)
        except sqlite3.Error as exc:
            log.error("cannot count a person in at door %s: %s", door_id, exc)

    def _door_happened(self, door_cfg: DoorConfig, type_: str) -> None:
        """Door events that move the occupancy estimate (entrances only: booths are inside)."""
        if door_cfg.kind != "entrance":
            return
        if type_ == events.DOOR_OPENED:
            self.occupancy.opened(door_cfg.id)
        elif type_ == events.EXIT:
            self.occupancy.exit_pressed(door_cfg.id)
        elif type_ == events.DOOR_CLOSED:
            tailgate = self.occupancy.closed(door_cfg.id)
            if tailgate is not None:
                people_in, grants = tailgate
                self._record(self._door_event(door_cfg, events.TAILGATING, {"people_in": people_in, "grants": grants}))
                log.warning("door %s: %d people went in on %d granted cards", door_cfg.id, people_in, grants,
                            extra={"door": door_cfg.id, "event_type": events.TAILGATING})
        self._publish_occupancy()

    def _publish_occupancy(self) -> None:
        if self._status_cache.get("occupancy") != self.occupancy.count:
            self._status_cache["occupancy"] = self.occupancy.count
            self._set_status("occupancy", {"count": self.occupancy.count})

    def _follow_building(self) -> None:
        """Closing and opening: the people-left check, the estimate's reset, the lights and the alarm."""
        now = self.wall()
        mode = self.schedule.mode_at(now)
        if mode != self._mode:
            if mode == "closed":
                self._closed_since = now
                if self.occupancy.count > 0:
                    self._record(self._building_event(events.PEOPLE_INSIDE_AFTER_CLOSE, {"count": self.occupancy.count}))
                    log.warning("%d people may still be inside at closing; the alarm is not armed",
                                self.occupancy.count, extra={"event_type": events.PEOPLE_INSIDE_AFTER_CLOSE})
            elif self._mode == "closed":
                # A new opening starts from zero, so a miscount never outlives one night.
                self._closed_since = None
                self.occupancy.reset()
                self._publish_occupancy()
            self._mode = mode
        b = self.config.building
        shut = all(not door.unlocked and not door.is_open for door in self.doors.values())
        lights = lights_on(mode, self._closed_since, now, timedelta(minutes=b.lights_off_after))
        armed = alarm_armed(mode, self._closed_since, now, timedelta(minutes=b.alarm_arm_after), self.occupancy.count, shut)
        for change in self.building.set(lights=lights, armed=armed):
            self._record(self._building_event(events.BUILDING_OUTPUT, {"change": change}))
            log.info("building: %s", change, extra={"event_type": events.BUILDING_OUTPUT})
        if self.building.lights is not None or self.building.alarm is not None:
            state = {"lights": lights, "alarm_armed": armed}
            if self._status_cache.get("building") != state:
                self._status_cache["building"] = state
                self._set_status("building", state)

    def _announce(self) -> None:
        """Play and log each announcement that came due since the last look."""
        now = self.wall()
        # A clock set forward (a Pi without a battery clock getting NTP time after
        # boot) must not replay the evening's announcements in one burst.
        since, self._announced_upto = max(self._announced_upto, now - MAX_ANNOUNCEMENT_DELAY), now
        if self.config.announcements is None:
            return
        settings = self._announcement_settings()
        files = self.config.announcements.files
        for item in announcements.due(self.schedule, since, now, settings["first_minutes"], settings["every_minutes"]):
            texts = announcements.spoken(item, settings)
            self.player.play([(lang, text, files.get(item.kind, {}).get(lang)) for lang, text in texts.items()])
            detail = {"kind": item.kind, "at": events.utc_text(item.at), "text": texts}
            if item.minutes is not None:
                detail["minutes"] = item.minutes
            self._record(self._building_event(events.ANNOUNCEMENT, detail))
            log.info("announcement %s", item.kind, extra={"event_type": events.ANNOUNCEMENT})

    def _announcement_settings(self) -> dict:
        """The staff page's settings, or the config's when what is saved cannot be used."""
        saved = self.store.announcement_settings()
        try:
            announcements.offsets(int(saved["first_minutes"]), int(saved["every_minutes"]))
            for kind in self._announcement_defaults["texts"]:
                for text in saved["texts"][kind].values():
                    text.format(minutes=0)
                    if looks_like_an_option(text):
                        raise ValueError("a text begins with a dash")
            return saved
        except (TypeError, KeyError, ValueError, AttributeError, IndexError) as exc:
            log.error("the saved announcement settings are unusable (%s); using the config's", type(exc).__name__)
            return self._announcement_defaults

    # -- periodic work --------------------------------------------------------
    def _tick(self) -> None:
        if self._reopen is not None and self.clock() >= self._reopen_at:
            self._reopen_store()
        if self._pending and self.clock() >= self._storage_retry_at:
            self._record()
        self._follow_schedule()
        for door_id, door in self.doors.items():
            self._run_safely(door.tick)  # one broken door must not stop the others' timers
            self._publish_door(door_id)
        self._run_safely(self._expire_pin_waits)
        self._run_safely(self._follow_building)

    def _reopen_store(self) -> None:
        """Swap the read-only stand-in for the real database once it opens for writing,
        then write the events that waited (with ``storage_recovered``) at once."""
        self._reopen_at = self.clock() + REOPEN_SECONDS
        try:
            store = self._reopen()
        except (sqlite3.Error, OSError):
            return  # said loudly at start; the status keeps saying it
        stand_in, self.store, self._reopen = self.store, store, None
        stand_in.close()
        log.warning("the database %s can be opened for writing now; reading the hours and staff cards from it",
                    self.config.database, extra={"event_type": events.STORAGE_RECOVERED})
        self._hours_revision = -1
        self._reload_hours()
        self._refresh_staff_keys()
        self._record()

    def _follow_schedule(self) -> None:
        mode = self.schedule.mode_at(self.wall())
        for door in self.doors.values():
            door.set_schedule_unlocked(open_to_all(door.cfg, mode, self.config.policy))

    def _run_commands(self) -> None:
        """Each command is marked done, with its event, before the door acts on it:
        if the database cannot be written the command is not carried out at all,
        rather than being carried out again every poll."""
        for command in self.store.pending_commands():
            if command.action == "clear_pin_lockout":
                self._clear_lockout(command)
                continue
            door = self.doors.get(command.door)
            if door is None:
                self.store.finish_command(command.id, f"unknown door {command.door!r}")
                continue
            if command.action == "hold" and (command.until is None or command.until <= self.wall()):
                self.store.finish_command(command.id, "refused: hold needs a time in the future")
                continue
            detail = {"action": command.action, "by": command.requested_by, "command": command.id}
            if command.until is not None:
                detail["until"] = events.utc_text(command.until)
            self.store.finish_command(command.id, "done", self._door_event(door.cfg, events.COMMAND, detail))
            if command.action == "pulse":
                door.pulse()
            elif command.action == "hold":
                door.hold(command.until)
            elif command.action == "lockdown":
                door.set_lockdown()
            elif command.action == "release":
                door.release()
            log.info(
                "command %s on door=%s by %s", command.action, door.cfg.id, command.requested_by,
                extra={"door": door.cfg.id, "event_type": events.COMMAND},
            )
            self._publish_door(door.cfg.id)

    def _resume_standing_commands(self) -> None:
        """Lockdowns and holds live in the doors' memory. After a restart (a power cut,
        a crash, an update) they are taken up again from the commands already carried
        out, so a locked-down building does not open to every card on the schedule."""
        try:
            standing = self.store.standing_commands()
        except sqlite3.Error as exc:
            log.error("cannot read the doors' lockdowns and holds: %s", exc)
            return
        now = self.wall()
        for command in standing:
            door = self.doors.get(command.door)
            if door is None:
                continue
            if command.action == "lockdown":
                door.set_lockdown()
                log.warning("door %s: still locked down (command %d by %s)", command.door, command.id, command.requested_by,
                            extra={"door": command.door, "event_type": events.COMMAND})
            elif command.until is not None and command.until > now:
                door.hold(command.until)
                log.info("door %s: still held unlocked until %s (command %d)", command.door, events.utc_text(command.until), command.id,
                         extra={"door": command.door, "event_type": events.COMMAND})

    def _reload_hours(self) -> None:
        revision = self.store.hours_revision()
        if revision != self._hours_revision:
            # Remember the revision only once its hours are loaded, so a failed load is retried.
            self.schedule = self.store.schedule(self.config.tz)
            self._hours_revision = revision

    def _heartbeat(self) -> None:
        """Tell the staff page and monitoring the loop is running: without this they
        cannot tell a quiet night from a stopped device (see device.heartbeat)."""
        try:
            self.store.set_status(HEARTBEAT_KEY, self._heartbeat_value())
        except sqlite3.Error as exc:
            log.error("cannot write the heartbeat: %s", exc)

    def _heartbeat_value(self) -> dict:
        return {"pid": os.getpid(), "started_at": self._started_at}

    def _publish_dropped_reads(self) -> None:
        for door_id, loop in self._readers.items():
            count = loop.dropped_reads
            if self._status_cache.get(f"reader_dropped:{door_id}") != count:
                self._status_cache[f"reader_dropped:{door_id}"] = count
                self._set_status(f"reader_dropped:{door_id}", count)

    def _report_no_shows(self) -> None:
        """Log each booth reservation whose holder has not come, once, so the
        central service may free the slot for someone else."""
        now = self.wall()
        begun_before = now - timedelta(minutes=self.config.policy.no_show_minutes)
        for door_cfg in self.config.doors:
            if door_cfg.kind != "booth":
                continue
            for reservation in self.store.no_shows(door_cfg.resource, door_cfg.id, begun_before, now):
                if any(e.detail.get("reservation") == reservation.id for e in self._pending):
                    continue  # already logged, waiting in memory for the database
                detail = {"reservation": reservation.id, "begin": events.utc_text(reservation.begin)}
                self._record(self._door_event(door_cfg, events.RESERVATION_NO_SHOW, detail, reservation.card_key))
                log.info("booth %s: reservation %s is a no-show", door_cfg.id, reservation.id,
                         extra={"door": door_cfg.id, "event_type": events.RESERVATION_NO_SHOW})

    def _apply_retention(self) -> None:
        cutoff = self.wall() - timedelta(days=self.config.policy.event_retention_days)
        purge = self.store.purge_pushed_events if self.keep_unpushed_events else self.store.purge_events
        deleted = purge(cutoff)
        if deleted:
            log.info("deleted %d events older than %d days (their counts stay)", deleted, self.config.policy.event_retention_days)

    def _publish_door(self, door_id: str) -> None:
        status = self.doors[door_id].status()
        if self._door_status.get(door_id) != status:
            self._door_status[door_id] = status
            try:
                self.store.set_status(f"door:{door_id}", status)
            except sqlite3.Error as exc:
                log.error("cannot write door status: %s", exc)

    def _run_safely(self, work: Callable[[], object]) -> None:
        """One failing piece of work must not stop the door."""
        try:
            work()
        except Exception:  # noqa: BLE001 — logged with traceback, the loop goes on
            log.exception("error in the device loop")

    # -- readers --------------------------------------------------------------
    def _start_readers(self) -> None:
        from device.readers import build_reader
        from device.readers.base import ReaderLoop

        for door_cfg in self.config.doors:
            if door_cfg.reader is None:
                continue
            loop = ReaderLoop(
                build_reader(door_cfg.reader),
                on_card=lambda number, door_id=door_cfg.id: self.submit_tap(door_id, number),
                uid_format=self.config.uid_format,
                dedupe_seconds=door_cfg.reader.dedupe_seconds,
                on_status=lambda online, detail, door_id=door_cfg.id: self._queue.put(
                    lambda: self._reader_status(door_id, online, detail)
                ),
            )
            loop.start()
            self._readers[door_cfg.id] = loop

    def _reader_status(self, door_id: str, online: bool, detail: str) -> None:
        self.store.set_status(f"reader:{door_id}", {"online": online, "detail": detail})
        type_ = events.READER_ONLINE if online else events.READER_OFFLINE
        self._record(self._door_event(self.config.door(door_id), type_, {"detail": detail}))


def sip2_checker(settings: Sip2Settings) -> Sip2Checker:
    """The checker for a ``[sip2]`` section, with the login password read from its file.

    Raises ValueError or OSError naming the file when the password cannot be read:
    a device that was told to ask the library system should not start without it.
    """
    password = _read_password(settings.password_file)
    return Sip2Checker(Sip2Config(
        host=settings.host, port=settings.port, username=settings.username, password=password,
        institution=settings.institution, profile=settings.profile, location=settings.location,
        terminal_password=settings.terminal_password, tls=settings.tls, tls_verify=settings.tls_verify,
        tls_ca_file=str(settings.tls_ca_file) if settings.tls_ca_file else None,
        timeout=settings.timeout, allowed_classes=settings.allowed_classes,
        blocking_status=settings.blocking_status, breaker_failures=settings.breaker_failures,
        breaker_cooldown=settings.breaker_cooldown, card_number_form=settings.card_number_form,
    ))


def _read_password(path: Path) -> str:
    try:
        password = Path(path).read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"sip2.password_file {path}: must be UTF-8 text") from None
    except OSError as exc:
        raise OSError(f"sip2.password_file {path}: cannot be read: {exc.strerror}") from None
    if not password or "\n" in password or "|" in password or "\r" in password:
        raise ValueError(f"sip2.password_file {path}: must hold the SIP2 password on one line, without '|'")
    return password
