"""The device's main loop: taps in, decisions out, doors driven, everything logged.

One thread owns the doors and the database connection. Readers and gpiozero post
work onto its queue; the loop also runs the door timers, picks up staff commands
and follows the schedule. A decision is committed to the database *before* the
relay is energised, so a power cut can lose an unlock but never an unlocked door's
record. If the database cannot be written, only staff are let in and the events
wait in memory until it can.

With a ``[sip2]`` section, an entrance tap first asks the library system about the
card (``sync.sip2.Sip2Checker``) and refreshes the patron cache with the answer;
with no answer in time the tap is decided from the cache as without SIP2.

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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from device import announcements, events, messages, staff_copy
from device.announcements import Player, SoundPlayer
from device.building import BuildingOutputs, Occupancy, PeopleCounter, alarm_armed, closed_since, lights_on
from device.cards import CardNumberError, card_key, load_consortium_key
from device.config import BUILDING, BuildingConfig, Config, DoorConfig, Sip2Settings
from device.display import Display
from device.door import Door
from device.events import Event
from device.keypad import build_keypad
from device.pins import LockoutRule, PinEntry, VerifierError, load_pepper, locked_until, pin_matches
from device.policy import Decision, DoorState, Patron, PinResult, Reason, Reservation, decide, open_to_all
from device.store import Command, Store
from sync.sip2 import Sip2Checker, Sip2Config

log = logging.getLogger("omaovi.device")

TICK_SECONDS = 0.1
COMMAND_POLL_SECONDS = 0.25
HOURS_POLL_SECONDS = 2.0
RETENTION_SECONDS = 3600.0
NO_SHOW_POLL_SECONDS = 30.0
#: How often the loop tells the staff page it is alive (the page warns after 90 s of silence).
HEARTBEAT_SECONDS = 30.0
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
        self._last_polled: dict[str, float] = {}
        self._resume_standing_commands()
        self._start_extras(pin_factory, player)
        self._readers = []
        if start_readers:
            self._start_readers()
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
            ("staff", STAFF_CARDS_POLL_SECONDS, self._refresh_staff_keys),
        ):
            if now - last.get(name, -1e9) >= interval:
                last[name] = now
                self._run_safely(work)

    def close(self) -> None:
        for reader in self._readers:
            reader.stop()
        for part in (*self.keypads.values(), *self.displays.values(), *self.counters.values(), self.building):
            part.close()
        for door in self.doors.values():
            door.close()
        if isinstance(self.player, SoundPlayer):
            self.player.close()

    # -- one tap --------------------------------------------------------------
    def tap(self, door_id: str, number: str, read_at: float | None = None) -> TapResult | None:
        """Decide, record, then act. The raw number lives only in this call."""
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
            patron, reservations, decision = self._decide(door_cfg, door, key, number, now)
        except sqlite3.Error as exc:
            return self._act(door_cfg, self._decide_from_memory(key, now, exc), key, now)
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
            pin is not None and door_cfg.id in self.keypads and decision.granted
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
            deadline=self.clock() + pin.timeout,
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
            result = self._check_pin(wait, pin)
            self._queue.put(lambda: self._pin_checked(door_id, wait, result))

        threading.Thread(target=check, name=f"pin check {door_id}", daemon=True).start()

    def _check_pin(self, wait: PinWait, pin: str) -> PinResult | None:
        """Off the loop thread: the library system's word when it gives one, else the cached verifier.

        None when neither can tell (offline and no verifier cached for the card).
        """
        if self.sip2 is not None:
            try:
                answer = self.sip2.check(wait.number, pin)
            except Exception as exc:  # noqa: BLE001 - a bug in the check must not lose the tap
                log.error("SIP2 PIN check raised %s; trying the cached verifier", type(exc).__name__)
                answer = None
            if answer is not None and answer.pin_ok is not None:
                return PinResult.OK if answer.pin_ok else PinResult.WRONG
        verifier = wait.patron.pin_verifier if wait.patron is not None else None
        if verifier is None or self.pepper is None:
            return None
        try:
            return PinResult.OK if pin_matches(pin, verifier, self.pepper) else PinResult.WRONG
        except VerifierError as exc:
            log.error("the cached PIN verifier of a card is unusable: %s", exc)
            return None

    def _pin_checked(self, door_id: str, wait: PinWait, result: PinResult | None) -> None:
        """The answer for a typed PIN. Each wait being checked gets exactly one, so each is
        decided once, even if another card has started a new wait at the door meanwhile."""
        if self._pin_waits.get(door_id) is wait:
            del self._pin_waits[door_id]
        self._pin_decided(self.config.door(door_id), wait, result)

    def _pin_decided(self, door_cfg: DoorConfig, wait: PinWait, result: PinResult | None) -> TapResult:
        """Decide the tap again with the PIN's outcome: the hours may have moved on meanwhile."""
        now = self.wall()
        door = self.doors[door_cfg.id]
        if result is None:
            decision = Decision(False, Reason.UNAVAILABLE, self.schedule.mode_at(now))
        else:
            decision = decide(
                wait.key, door_cfg, now, self.schedule, wait.patron, wait.reservations, self.config.policy,
                DoorState(lockdown=door.lockdown), pin=result,
            )
        tap = self._act(door_cfg, decision, wait.key, now, pin=_PIN_DETAIL[result])
        if result is PinResult.WRONG:
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

    def _decide(
        self, door_cfg: DoorConfig, door: Door, key: str, number: str, now: datetime
    ) -> tuple[Patron | None, list[Reservation], Decision]:
        """The patron and reservations as the PIN step needs them, and the decision without the PIN."""
        today = now.astimezone(self.config.tz).date()
        patron = self.store.patron(key, today)
        if self._sip2_may_matter(door_cfg, door, patron, now):
            patron = self._ask_sip2(key, number, patron, now)
        reservations = self.store.reservations_for(key, door_cfg.resource, now) if door_cfg.kind == "booth" else []
        return patron, reservations, decide(
            key, door_cfg, now, self.schedule, patron, reservations, self.config.policy, DoorState(lockdown=door.lockdown)
        )

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
        while the entrance stands unlocked for staffed hours, and not for this
        branch's own staff cards and blocks, which win over any answer.
        """
        if self.sip2 is None or door_cfg.kind != "entrance" or door.lockdown:
            return False
        if patron is not None and (patron.local_staff or patron.local_block):
            return False
        mode = self.schedule.mode_at(now)
        return mode != "closed" and not open_to_all(door_cfg, mode, self.config.policy)

    def _ask_sip2(self, key: str, number: str, patron: Patron | None, now: datetime) -> Patron | None:
        """The cached patron refreshed with the library system's answer, or as cached without one.

        The answer is used for this tap even if it cannot be written to the cache.
        SIP2 carries no age, so ``age_ok_from`` (and the staff flag) stay as cached:
        a card the cache does not know gets no age and is ``underage`` in
        self-service hours until the central service or a CSV import supplies it.
        """
        assert self.sip2 is not None
        try:
            result = self.sip2.check(number)
        except Exception as exc:  # noqa: BLE001 - a bug in the check must not stop the door
            # The type only: a message could quote the card number.
            log.error("SIP2 check raised %s; deciding from the cache", type(exc).__name__,
                      extra={"event_type": "sip2_error"})
            return patron
        if result is None:
            return patron
        fresh = replace(
            patron or Patron(card_key=key),
            self_service=result.self_service, blocked_reason=result.blocked_reason,
            valid_until=result.valid_until, fetched_at=now,
        )
        try:
            self.store.refresh_patron(
                key, self_service=result.self_service, blocked_reason=result.blocked_reason,
                valid_until=result.valid_until, fetched_at=now, source="sip2",
            )
        except sqlite3.Error as exc:
            log.error("cannot write the SIP2 answer to the patron cache: %s", exc)
        return fresh

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
            card_key=key, door_kind=door_cfg.kind, detail=detail, **extra,
        )

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
        self.counters = {}
        for d in cfg.doors:
            if d.keypad is not None:
                self._add_part(self.keypads, d.id, f"the keypad of door {d.id} (it opens by card alone until fixed)",
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
        return build_keypad(
            door_cfg.keypad, lambda key: self._queue.put(lambda: self.key_pressed(door_cfg.id, key)),
            enter_key=self.config.pin.enter_key if self.config.pin else "#", pin_factory=pin_factory,
        )

    def _counter(self, door_cfg: DoorConfig, pin_factory) -> PeopleCounter:
        post = self._queue.put
        return PeopleCounter(
            door_cfg.counter_in_pin, door_cfg.counter_out_pin,
            lambda: post(lambda: self._counted(door_cfg.id, self.occupancy.person_in)),
            lambda: post(lambda: self._counted(door_cfg.id, self.occupancy.person_out)),
            pin_factory=pin_factory,
        )

    def _set_status(self, key: str, value) -> None:
        try:
            self.store.set_status(key, value)
        except sqlite3.Error as exc:
            log.error("cannot write the %s status: %s", key, exc)

    def _counted(self, door_id: str, count: Callable[[str], None]) -> None:
        count(door_id)
        self._publish_occupancy()

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
        """Tell the staff page the loop is running: without this it cannot tell a
        quiet night from a stopped device, and the door states it shows would be stale."""
        try:
            self.store.set_status("device", {"pid": os.getpid(), "started_at": self._started_at})
        except sqlite3.Error as exc:
            log.error("cannot write the heartbeat: %s", exc)

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
            self._readers.append(loop)

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
        breaker_cooldown=settings.breaker_cooldown,
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
