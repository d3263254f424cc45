"""``omaovi sync``: the branch's conversation with the consortium's central service.

Four streams, each on its own so one failing never stops the others:

- ``events``: the outbox. Events go up in ``seq`` order, in batches, and are marked
  sent only after a 2xx answer; a crash in between sends them again and the central
  service drops the duplicates by uuid. Nothing is lost and nothing is counted twice.
- ``patrons``: the permission cache. The first round, or one after ``410 Gone``, is a
  full snapshot written into a staging table page by page and swapped in at once;
  later rounds apply only changes. The door keeps deciding from the old cache the
  whole time.
- ``reservations``: the booth bookings, the same way but small enough to swap in one
  transaction.
- ``hours``: dated hours in the Kirkanta shape, only when the config says the hours
  are managed centrally.

The protocol is in docs/central-protocol.md and docs/central-openapi.yaml. An answer
that is malformed or larger than ``max_response_bytes`` is refused whole: the log
line and the stream's sync state name the stream and the problem, and the data on
the device stays as it was. Sync never touches hardware and never holds the
database for longer than one page.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import requests

from device.cards import mask_numbers
from device.config import CentralConfig, Config, load_with_central
from device.pins import load_pepper
from device.events import parse_utc
from device.store import Store
from sync.central_parse import (
    MalformedAnswer,
    parse_event_ack,
    parse_hours_page,
    parse_patron_page,
    parse_reservation_page,
)
from sync.kirkanta import KirkantaError, parse_schedules

log = logging.getLogger("omaovi.sync")

STREAMS = ("events", "patrons", "reservations", "hours")
#: Events per POST. Small enough that one answer is quick, large enough that a
#: day's backlog after an outage goes up in a few requests.
EVENT_BATCH = 500
#: How far ahead hours are fetched.
HOURS_DAYS = 60
#: The longest time between full patron snapshots (see SyncRunner._sync_patrons).
SNAPSHOT_EVERY = timedelta(hours=24)
#: A server clock further off than this from ours is worth a warning: the events'
#: times and the hours both depend on the Pi's clock being right.
DRIFT_WARNING = timedelta(seconds=60)
#: Pages one round follows at most, so a service that always says "more" cannot
#: keep sync busy forever.
MAX_PAGES = 100_000
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
#: The longest Retry-After honoured within a round; a longer one ends the round
#: and the next round tries again.
RETRY_AFTER_CAP = 900.0
USER_AGENT = "omaovi-sync/1"


class SyncError(Exception):
    """One stream's round failed; the message goes to the log and the stream's sync state."""


class AnswerRejected(SyncError):
    """An answer was malformed or too large; nothing in it was applied."""


class TokenRefused(SyncError):
    """The central service does not accept this branch's token (401 or 403)."""


class CursorGone(SyncError):
    """410 Gone: the central service forgot the cursor, so a full snapshot is needed."""


class RequestRefused(SyncError):
    """400: the central service says the request itself is malformed; ``answer`` is its JSON (or None)."""

    def __init__(self, message: str, answer: dict | None):
        super().__init__(message)
        self.answer = answer


class Stopped(Exception):
    """``run_forever`` was asked to stop while waiting to retry."""


class CentralClient:
    """HTTP to the central service: timeouts, retries with backoff and jitter, size caps.

    ``sleep`` waits between attempts and returns True when the wait was cut short
    by a stop request (``threading.Event.wait`` does exactly that); tests pass a
    function that records the wait instead. ``stopped`` is asked before every
    request, so a stop also ends a round that is paging through a long answer.
    """

    def __init__(
        self,
        central: CentralConfig,
        branch: str,
        token: str,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], bool | None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        rng: Callable[[], float] = random.random,
        max_attempts: int = 5,
        stopped: Callable[[], bool] = lambda: False,
    ):
        self.central = central
        self.stopped = stopped
        self.prefix = f"{central.base_url}/v1/branches/{branch}"
        self.session = session or requests.Session()
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "User-Agent": USER_AGENT}
        self.sleep = sleep
        self.clock = clock
        self.rng = rng
        self.max_attempts = max_attempts
        #: Server time minus our time, from the last answer's Date header.
        self.drift: timedelta | None = None

    def get(self, stream: str, params: dict | None = None) -> bytes:
        return self._request("GET", stream, params=params or {})

    def post(self, stream: str, document: dict) -> bytes:
        return self._request("POST", stream, json=document)

    def _request(self, method: str, stream: str, **kwargs) -> bytes:
        url = f"{self.prefix}/{stream}"
        problem = ""
        for attempt in range(1, self.max_attempts + 1):
            if self.stopped():
                raise Stopped()
            try:
                response = self.session.request(
                    method, url, headers=self.headers, timeout=self.central.timeout, stream=True, allow_redirects=False, **kwargs
                )
            except requests.RequestException as exc:
                problem = f"no answer from {url}: {_exception_text(exc)}"
                wait = self._backoff(attempt)
            else:
                with response:
                    self._check_clock(response)
                    status = response.status_code
                    if 200 <= status < 300:
                        return self._read(response)
                    if status in (401, 403):
                        raise TokenRefused(
                            f"the central service refused this branch's token (HTTP {status} from {method} {url}); "
                            f"check central.token_file ({self.central.token_file})"
                        )
                    if status == 410:
                        raise CursorGone(f"HTTP 410 Gone from {method} {url}: the cursor has expired")
                    if status == 400:
                        answer, text = _error_answer(response)
                        said = answer.get("error") if answer else None
                        raise RequestRefused(f"HTTP 400 from {method} {url}: {said or text}", answer)
                    problem = f"HTTP {status} from {method} {url}"
                    if status == 429 or status >= 500:
                        # A service that is down for maintenance or overloaded says when to come
                        # back (503 with Retry-After); asking sooner only adds to its load.
                        wait = _retry_after(response.headers.get("Retry-After"), self.clock())
                        if wait is None:
                            wait = self._backoff(attempt)
                        elif wait > RETRY_AFTER_CAP:
                            raise SyncError(f"{problem}: asked to wait {wait:.0f} s; trying again next round")
                    elif status == 408:
                        wait = self._backoff(attempt)
                    else:
                        raise SyncError(f"{problem}: {_snippet(response)}")
            if attempt == self.max_attempts:
                break
            log.warning("central sync: %s: %s; retrying in %.1f s (attempt %d of %d)", stream, problem, wait, attempt + 1, self.max_attempts)
            if self.sleep(wait):
                raise Stopped()
        raise SyncError(f"{problem} (gave up after {self.max_attempts} attempts)")

    def _backoff(self, attempt: int) -> float:
        """Exponential, capped, with jitter so a consortium's devices do not retry in step."""
        ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
        return ceiling * (0.5 + self.rng() / 2)

    def _read(self, response: requests.Response) -> bytes:
        """The body, refused as soon as it passes ``max_response_bytes`` (after decompression)."""
        cap = self.central.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise AnswerRejected(f"the answer is {int(declared):_} bytes, more than max_response_bytes = {cap:_}")
        body = bytearray()
        try:
            for chunk in response.iter_content(chunk_size=256 * 1024):
                body += chunk
                if len(body) > cap:
                    raise AnswerRejected(f"the answer passed max_response_bytes = {cap:_} and was cut off unread")
        except requests.RequestException as exc:
            raise SyncError(f"the answer broke off after {len(body):_} bytes: {_exception_text(exc)}") from None
        return bytes(body)

    def _check_clock(self, response: requests.Response) -> None:
        header = response.headers.get("Date")
        if not header:
            return
        try:
            server = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return
        if server.tzinfo is None:
            server = server.replace(tzinfo=timezone.utc)
        self.drift = server - self.clock()


class SyncRunner:
    """One branch's sync: ``run_once`` for a single round, ``run_forever`` for the service."""

    def __init__(
        self,
        store: Store,
        config: Config,
        central: CentralConfig,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], bool | None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        rng: Callable[[], float] = random.random,
        max_attempts: int = 5,
        event_batch: int = EVENT_BATCH,
        stop: threading.Event | None = None,
    ):
        """``stop``: set it (from a signal handler) to end a round at once, even
        while it waits to retry; ``run_forever`` takes its own."""
        self.store = store
        self.config = config
        self.central = central
        self.session = session or requests.Session()
        self._stop = stop or threading.Event()
        self._sleep = sleep
        self.clock = clock
        self.rng = rng
        self.max_attempts = max_attempts
        self.event_batch = event_batch
        #: PIN verifiers are kept only where the branch asks for PINs, peppered on arrival.
        self.pin_pepper = load_pepper(config.pin.pepper_file) if config.pin is not None else None

    @classmethod
    def from_config_file(cls, path: str | Path, **kwargs) -> "SyncRunner":
        """The runner ``omaovi sync --config FILE`` uses; ConfigError when the file has no [central]."""
        config, central = load_with_central(path, required=True)
        return cls(Store(config.database), config, central, **kwargs)

    @property
    def streams(self) -> tuple[str, ...]:
        return STREAMS if self.central.hours_managed_centrally else STREAMS[:-1]

    def run_once(self) -> dict[str, str | None]:
        """Sync every stream once; returns each stream's error, or None where it went well."""
        results: dict[str, str | None] = {}
        try:
            token = read_token(self.central.token_file)
        except SyncError as exc:
            for stream in self.streams:
                results[stream] = self._failed(stream, exc)
            return results
        client = CentralClient(
            self.central, self.config.branch, token, session=self.session,
            sleep=self._sleep or self._stop.wait, clock=self.clock, rng=self.rng, max_attempts=self.max_attempts,
            stopped=self._stop.is_set,
        )
        refused: TokenRefused | None = None
        try:
            for stream in self.streams:
                if refused is not None:
                    results[stream] = self._failed(stream, refused)
                    continue
                try:
                    getattr(self, f"_sync_{stream}")(client)
                    results[stream] = None
                except TokenRefused as exc:
                    refused = exc
                    results[stream] = self._failed(stream, exc)
                except SyncError as exc:
                    results[stream] = self._failed(stream, exc)
                except sqlite3.Error as exc:
                    results[stream] = self._failed(stream, SyncError(f"database error: {exc}"))
        except Stopped:
            log.info("central sync: stopped before the round was done; the next round carries on")
        finally:
            self._report_drift(client.drift)
        return results

    def run_forever(self, stop_event: threading.Event) -> None:
        """Run a round every ``interval`` seconds until ``stop_event`` is set.

        A stop request also cuts short a backoff wait, so ``systemctl stop`` does not
        hang on a central service that is down.
        """
        own_stop, self._stop = self._stop, stop_event
        log.info("central sync: %s every %d s for branch %s", self.central.base_url, self.central.interval, self.config.branch)
        self._clear_cut_snapshot()
        try:
            while not stop_event.is_set():
                try:
                    self.run_once()
                except Exception:  # one bad round must not end the service; the traceback is logged
                    log.exception("central sync: the round failed unexpectedly")
                stop_event.wait(self.central.interval)
        finally:
            self._stop = own_stop

    def _clear_cut_snapshot(self) -> None:
        """A patron snapshot cut by a kill or a power cut leaves tables behind that
        the door never reads. They are cleared away when the service starts rather
        than at the next snapshot, which may be a day away, so the database has
        their space back for events and the next snapshot at once."""
        try:
            removed = self.store.discard_patron_snapshot()
        except sqlite3.Error as exc:
            log.warning("central sync: patrons: cannot clear away a snapshot cut short (%s); the next snapshot will clear it away", exc)
            return
        if removed:
            log.info("central sync: patrons: cleared away %d cards of a snapshot cut short", removed)

    # -- streams --------------------------------------------------------------
    def _sync_events(self, client: CentralClient) -> None:
        sent = 0
        set_aside: dict[int, str] = {}
        while True:
            rows = self.store.events_to_push(self.event_batch)
            if not rows:
                break
            try:
                sent += self._push(client, rows)
            except RequestRefused as refused:
                set_aside |= self._set_aside(client, rows, refused)
        if sent:
            log.info("central sync: events: sent %d", sent)
        if set_aside:
            self.store.set_status("sync:events_quarantined", len(self.store.quarantined_events()))
            first = next(iter(set_aside.values()))
            raise SyncError(f"{len(set_aside)} event(s) refused as malformed and set aside; the others were sent. First: {first}")
        self.store.note_sync_success("events", self.clock())

    def _push(self, client: CentralClient, rows: list[dict]) -> int:
        ack = self._parse("events", parse_event_ack, client.post("events", {"events": [event_json(r) for r in rows]}))
        if ack.accepted + ack.duplicates != len(rows):
            log.warning(
                "central sync: events: sent %d, the central service reports %d accepted and %d duplicates",
                len(rows), ack.accepted, ack.duplicates,
            )
        self.store.mark_events_pushed(rows[-1]["seq"], self.clock())
        return len(rows)

    def _set_aside(self, client: CentralClient, rows: list[dict], refused: RequestRefused) -> dict[int, str]:
        """A batch refused as malformed: set aside exactly the events the service named; returns them.

        An answer that names none of them (an older or stricter service) is handled by
        sending the batch one event at a time: then each refusal is its event's. Either
        way one bad event can never hold up the outbox, and nothing else is lost."""
        named = _refused_events(refused.answer, rows)
        if not named and len(rows) > 1:
            for row in rows:
                try:
                    self._push(client, [row])
                except RequestRefused as alone:
                    named[row["seq"]] = _refusal_text(alone, row)
        elif not named:
            named = {rows[0]["seq"]: str(refused)[:500]}
        self.store.quarantine_events(named, self.clock())
        return named

    def _sync_patrons(self, client: CentralClient) -> None:
        """Changes since the cursor, or a full snapshot when there is none or it is due.

        A change round confirms every entry but rewrites only the changed ones;
        ``Store.patron`` counts unchanged entries as fresh as the last successful
        round. The daily snapshot is a reconciliation: it repairs whatever a change
        feed may have lost (a bug or a restored backup on the central side), and
        costs the door nothing.
        """
        state = self.store.sync_state("patrons")
        cursor = state["cursor"] if state else None
        if cursor and self._snapshot_due(state):
            log.info("central sync: patrons: taking the periodic full snapshot")
            cursor = None
        if cursor:
            try:
                self._patron_changes(client, cursor)
                return
            except CursorGone:
                log.warning("central sync: patrons: the central service no longer knows our cursor (410); taking a full snapshot")
                self.store.forget_sync_cursor("patrons")
        self._patron_snapshot(client)

    def _snapshot_due(self, state: dict) -> bool:
        last = state.get("last_snapshot")
        return last is None or self.clock() - parse_utc(last) >= SNAPSHOT_EVERY

    def _patron_changes(self, client: CentralClient, cursor: str) -> None:
        changed = deleted = 0
        for _ in range(MAX_PAGES):
            now = self.clock()
            page = self._parse("patrons", parse_patron_page, client.get("patrons", {"cursor": cursor}), now, self.pin_pepper)
            self._check_progress("patrons", cursor, page.cursor, page.more)
            self.store.apply_patron_changes(page.upserts, page.deleted, source="central", stream="patrons", cursor=page.cursor, at=now)
            changed, deleted, cursor = changed + len(page.upserts), deleted + len(page.deleted), page.cursor
            if not page.more:
                break
        if changed or deleted:
            log.info("central sync: patrons: %d changed, %d deleted", changed, deleted)

    def _patron_snapshot(self, client: CentralClient) -> None:
        self.store.begin_patron_snapshot()
        try:
            cursor: str | None = None
            staged = 0
            for _ in range(MAX_PAGES):
                page = self._parse(
                    "patrons", parse_patron_page, client.get("patrons", {"cursor": cursor} if cursor else {}), self.clock(),
                    self.pin_pepper,
                )
                if cursor is not None:
                    self._check_progress("patrons", cursor, page.cursor, page.more)
                staged += self.store.stage_patrons(page.upserts, source="central")
                cursor = page.cursor
                if not page.more:
                    break
            else:
                raise AnswerRejected(f"the snapshot did not end within {MAX_PAGES} pages")
            live = self.store.patron_count()
            if staged == 0 and live > 0:
                raise AnswerRejected(f"the snapshot has no patrons; refusing to empty a cache of {live}")
            count = self.store.commit_patron_snapshot(stream="patrons", cursor=cursor, at=self.clock())
        except BaseException:
            self.store.discard_patron_snapshot()
            raise
        log.info("central sync: patrons: full snapshot of %d swapped in", count)

    def _sync_reservations(self, client: CentralClient) -> None:
        state = self.store.sync_state("reservations")
        cursor = state["cursor"] if state else None
        if cursor:
            try:
                for _ in range(MAX_PAGES):
                    page = self._parse("reservations", parse_reservation_page, client.get("reservations", {"cursor": cursor}))
                    self._check_progress("reservations", cursor, page.cursor, page.more)
                    self.store.apply_reservation_changes(page.reservations, stream="reservations", cursor=page.cursor, at=self.clock())
                    cursor = page.cursor
                    if not page.more:
                        return
                return
            except CursorGone:
                log.warning("central sync: reservations: the central service no longer knows our cursor (410); taking a full snapshot")
                self.store.forget_sync_cursor("reservations")
        everything = []
        cursor = None
        for _ in range(MAX_PAGES):
            page = self._parse("reservations", parse_reservation_page, client.get("reservations", {"cursor": cursor} if cursor else {}))
            if cursor is not None:
                self._check_progress("reservations", cursor, page.cursor, page.more)
            everything.extend(page.reservations)
            cursor = page.cursor
            if not page.more:
                break
        else:
            raise AnswerRejected(f"the snapshot did not end within {MAX_PAGES} pages")
        self.store.replace_reservations(everything, stream="reservations", cursor=cursor, at=self.clock())
        log.info("central sync: reservations: full snapshot of %d", len(everything))

    def _sync_hours(self, client: CentralClient) -> None:
        today = self.clock().astimezone(self.config.tz).date()
        params = {"from": today.isoformat(), "to": (today + timedelta(days=HOURS_DAYS)).isoformat()}
        items: list = []
        for _ in range(MAX_PAGES):
            page_items, cursor, more = self._parse("hours", parse_hours_page, client.get("hours", params))
            items.extend(page_items)
            if not more:
                break
            if cursor == params.get("cursor"):
                raise AnswerRejected(f"the answer says more pages follow but returned the same cursor {cursor!r}")
            params = {**params, "cursor": cursor}
        else:
            raise AnswerRejected(f"the hours did not end within {MAX_PAGES} pages")
        try:
            days = parse_schedules({"items": items})
        except KirkantaError as exc:
            raise AnswerRejected(f"rejected the hours: {exc}; the hours are unchanged") from None
        if days:
            self.store.set_exceptions(days, note="central", source="central")
        self.store.note_sync_success("hours", self.clock())

    # -- helpers --------------------------------------------------------------
    def _parse(self, stream: str, parser, body: bytes, *args):
        try:
            return parser(body, *args)
        except MalformedAnswer as exc:
            what = "the cache is unchanged" if stream in ("patrons", "reservations") else "nothing was applied"
            raise AnswerRejected(f"rejected the answer: {exc}; {what}") from None

    @staticmethod
    def _check_progress(stream: str, before: str, after: str, more: bool) -> None:
        if more and after == before:
            raise AnswerRejected(f"the answer says more pages follow but returned the same cursor {before!r}")

    def _failed(self, stream: str, exc: Exception) -> str:
        """Log and keep a stream's error; its text goes to the Today page and the API, so no card number is left in it."""
        message = mask_numbers(str(exc))
        log.error("central sync: %s: %s", stream, message)
        self.store.note_sync_error(stream, message, self.clock())
        return message

    def _report_drift(self, drift: timedelta | None) -> None:
        if drift is None:
            return
        seconds = round(drift.total_seconds())
        if abs(drift) > DRIFT_WARNING:
            log.warning(
                "central sync: this device's clock is %d s %s the central service's; check NTP (timedatectl)",
                abs(seconds), "behind" if seconds > 0 else "ahead of",
            )
        self.store.set_status("sync:clock_drift_seconds", seconds)


def read_token(path: Path) -> str:
    """The bearer token, read each round so a replaced token file takes effect without a restart."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise SyncError(f"cannot read the token file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SyncError(f"cannot read the token file {path}: {exc}") from None
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        raise SyncError(f"the token file {path} must hold one token on one line")
    return token


def event_json(row: dict) -> dict:
    """An events row as the central service receives it (see docs/central-protocol.md)."""
    return {
        "uuid": row["uuid"],
        "seq": row["seq"],
        "ts": parse_utc(row["ts"]).isoformat().replace("+00:00", "Z"),
        "door": row["door"],
        "type": row["type"],
        "reason": row["reason"],
        "mode": row["mode"],
        "card_key": row["card_key"],
        "detail": json.loads(row["detail"]) if row["detail"] else None,
    }


def _retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is true too, and float() refuses it
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, (moment - now).total_seconds())


def _error_answer(response: requests.Response) -> tuple[dict | None, str]:
    """A 400's body, read up to a small cap: its JSON object (None when it is not one) and its start as text."""
    try:
        body = b"".join(response.iter_content(chunk_size=64 * 1024))[:1_000_000]
    except requests.RequestException:
        return None, "(no body)"
    text = " ".join(body[:300].decode("utf-8", "replace").split())[:200] or "(no body)"
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        return None, text
    return (answer if isinstance(answer, dict) else None), text


def _refused_events(answer: dict | None, rows: list[dict]) -> dict[int, str]:
    """seq -> the service's reason, for each event of the batch that the answer names by uuid."""
    problems = answer.get("problems") if answer else None
    if not isinstance(problems, list):
        return {}
    seq_of = {row["uuid"]: row["seq"] for row in rows}
    named = {}
    for problem in problems:
        if isinstance(problem, dict) and problem.get("uuid") in seq_of:
            named[seq_of[problem["uuid"]]] = str(problem.get("error") or "refused")[:500]
    return named


def _refusal_text(refused: RequestRefused, row: dict) -> str:
    named = _refused_events(refused.answer, [row])
    return named.get(row["seq"]) or str(refused)[:500]


def _snippet(response: requests.Response) -> str:
    """The start of an error answer, so the log says what the service complained about."""
    try:
        text = next(response.iter_content(chunk_size=300), b"").decode("utf-8", "replace")
    except requests.RequestException:
        return "(no body)"
    text = " ".join(text.split())
    return text[:200] or "(no body)"


def _exception_text(exc: Exception) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "cannot connect"
    return type(exc).__name__
