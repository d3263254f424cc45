"""A central service for tests, on 127.0.0.1, following docs/central-protocol.md.

It is deliberately small and literal, so a consortium reading it sees the protocol
from the other side: bearer tokens, paged lists with opaque cursors, snapshots then
changes, 410 for a forgotten cursor, idempotent event upload by uuid. Tests steer it
through plain attributes: put items in a feed, switch on an outage, queue a raw
answer, shift its clock.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import date, datetime, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable
from urllib.parse import parse_qs, urlsplit

from central.event_batch import BatchRefused, parse_batch


class Feed:
    """A list that the protocol pages: every put is one change, numbered from 1.

    A cursor ``d:E:V`` means "changes after version V" of history E. A snapshot taken
    at version V pages with ``s:E:V:offset`` and ends with ``d:E:V``, so changes made
    while a snapshot is being read are picked up by the next round, not lost. A
    restore starts a new history E, so every older cursor is gone (410).
    """

    def __init__(self, key: str, history: str, current: Callable[[dict], bool] = lambda item: True):
        self.key = key
        #: Names the history in cursors: the stream's letter and a count of restores.
        self.history = history
        #: Which entries a snapshot lists (not cancelled or ended bookings, say).
        self.current = current
        self.log: list[dict] = []
        #: Delta cursors older than this version answer 410 Gone.
        self.oldest = 0
        self.restores = 0

    def put(self, *items: dict) -> None:
        self.log.extend(dict(item) for item in items)

    def forget_cursors(self) -> None:
        """As if the central service compacted its change log: every old cursor is gone."""
        self.oldest = len(self.log)

    def backup(self) -> list[dict]:
        return [dict(item) for item in self.log]

    def restore(self, log: list[dict]) -> None:
        self.log = [dict(item) for item in log]
        self.oldest = 0
        self.restores += 1

    @property
    def epoch(self) -> str:
        return f"{self.history}{self.restores}"

    def state(self, version: int) -> list[dict]:
        current: dict[str, dict] = {}
        for item in self.log[:version]:
            if item.get("deleted"):
                current.pop(item[self.key], None)
            else:
                current[item[self.key]] = item
        return [current[key] for key in sorted(current) if self.current(current[key])]

    def page(self, cursor: str | None, size: int) -> tuple[int, dict]:
        if cursor is None:
            return self._snapshot_page(len(self.log), 0, size)
        try:
            kind, epoch, *numbers = cursor.split(":")
            numbers = [int(number) for number in numbers]
        except ValueError:
            kind, epoch, numbers = "", "", []
        if epoch != self.epoch:
            return 410, {"error": "not a cursor of this history; take a full snapshot"}
        if kind == "s" and len(numbers) == 2 and 0 <= numbers[1] and numbers[0] <= len(self.log):
            return self._snapshot_page(*numbers, size)
        if kind == "d" and len(numbers) == 1 and self.oldest <= numbers[0] <= len(self.log):
            version = numbers[0]
            changes = self.log[version:version + size]
            end = version + len(changes)
            return 200, {"items": changes, "cursor": f"d:{self.epoch}:{end}", "more": end < len(self.log)}
        return 410, {"error": "cursor gone; take a full snapshot"}

    def _snapshot_page(self, version: int, offset: int, size: int) -> tuple[int, dict]:
        items = self.state(version)
        chunk = items[offset:offset + size]
        more = offset + size < len(items)
        cursor = f"s:{self.epoch}:{version}:{offset + size}" if more else f"d:{self.epoch}:{version}"
        return 200, {"items": chunk, "cursor": cursor, "more": more}


def _date(text: str) -> date | None:
    if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    return None


def _bookable(item: dict) -> bool:
    """A booking a snapshot lists: confirmed and not yet ended."""
    end = datetime.fromisoformat(item["end"])
    return item["state"] == "confirmed" and end > datetime.now(timezone.utc)


class Answer:
    """A raw answer to serve once instead of the real one: a status, headers and body chunks."""

    def __init__(self, status: int = 200, body: bytes | Iterable[bytes] = b"", headers: dict | None = None, length: bool = True):
        self.status = status
        self.chunks = [body] if isinstance(body, bytes) else body
        self.headers = headers or {}
        #: Send Content-Length (only possible for a bytes body).
        self.length = length and isinstance(body, bytes)


class CentralServer:
    def __init__(self, branch: str = "kallio", token: str = "kallio-device-token", page_size: int = 2):
        self.branch = branch
        self.token = token
        self.page_size = page_size
        self.patrons = Feed("card_key", "p")
        self.reservations = Feed("id", "r", current=_bookable)
        #: date -> Kirkanta-shaped item.
        self.hours: dict[str, dict] = {}
        #: uuid -> event, in the order first received.
        self.events: dict[str, dict] = {}
        #: One (accepted, duplicates) per successful POST.
        self.event_posts: list[tuple[int, int]] = []
        #: While true every request answers 503.
        self.down = False
        #: The Retry-After header sent with those 503s, if any.
        self.down_retry_after: str | None = None
        #: stream -> answers to serve before the real ones.
        self.queued: dict[str, list[Answer]] = {}
        #: Seconds added to the Date header, to play a server whose clock differs.
        self.clock_offset = 0.0
        #: (method, stream, query) of every request with a valid token.
        self.requests: list[tuple[str, str, dict]] = []
        #: Called as hook(stream, query) before a GET is answered.
        self.hook: Callable[[str, dict], None] | None = None
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "CentralServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def backup(self) -> tuple:
        """Everything the double keeps, as a backup of its database would."""
        return self.patrons.backup(), self.reservations.backup(), dict(self.events)

    def restore(self, backup: tuple) -> None:
        """Back to the backup, with a new history: every cursor issued since is gone."""
        patrons, reservations, events = backup
        self.patrons.restore(patrons)
        self.reservations.restore(reservations)
        self.events = dict(events)

    def queue(self, stream: str, *answers: Answer) -> None:
        self.queued.setdefault(stream, []).extend(answers)

    def gets(self, stream: str) -> list[dict]:
        return [query for method, name, query in self.requests if method == "GET" and name == stream]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep the test output clean
                pass

            def date_time_string(self, timestamp=None) -> str:
                return formatdate((timestamp or time.time()) + server.clock_offset, usegmt=True)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                prefix = f"/v1/branches/{server.branch}/"
                stream = parts.path[len(prefix):] if parts.path.startswith(prefix) else ""
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Authorization") != f"Bearer {server.token}":
                    return self._json(401, {"error": "unknown or missing device token"})
                with server.lock:
                    server.requests.append((method, stream, query))
                    queued = server.queued.get(stream)
                    answer = queued.pop(0) if queued else None
                if server.down:
                    headers = {"Retry-After": server.down_retry_after} if server.down_retry_after else {}
                    return self._raw(Answer(503, b'{"error": "down for maintenance"}', headers))
                if answer is not None:
                    return self._raw(answer)
                if method == "GET" and server.hook:
                    server.hook(stream, query)
                if (method, stream) == ("GET", "patrons"):
                    return self._json(*server.patrons.page(query.get("cursor"), server.page_size))
                if (method, stream) == ("GET", "reservations"):
                    return self._json(*server.reservations.page(query.get("cursor"), server.page_size))
                if (method, stream) == ("GET", "hours"):
                    return self._hours(query)
                if (method, stream) == ("POST", "events"):
                    return self._events(body)
                return self._json(404, {"error": "no such endpoint"})

            def _hours(self, query: dict) -> None:
                for name in ("from", "to"):
                    if _date(query.get(name, "")) is None:
                        return self._json(400, {"error": f"{name}: missing or not a date (YYYY-MM-DD)"})
                if query["to"] < query["from"]:
                    return self._json(400, {"error": "to is before from"})
                days = [server.hours[d] for d in sorted(server.hours) if query["from"] <= d <= query["to"]]
                return self._json(200, {"items": days})

            def _events(self, body: bytes) -> None:
                try:
                    parse_batch(body)
                except BatchRefused as refused:
                    return self._json(400, refused.as_json())
                document = json.loads(body)
                accepted = duplicates = 0
                with server.lock:
                    for event in document["events"]:
                        if event["uuid"] in server.events:
                            duplicates += 1
                        else:
                            server.events[event["uuid"]] = event
                            accepted += 1
                    server.event_posts.append((accepted, duplicates))
                self._json(200, {"accepted": accepted, "duplicates": duplicates})

            def _json(self, status: int, document: dict) -> None:
                self._raw(Answer(status, json.dumps(document).encode(), {"Content-Type": "application/json"}))

            def _raw(self, answer: Answer) -> None:
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if answer.length:
                    self.send_header("Content-Length", str(len(answer.chunks[0])))
                self.end_headers()
                try:
                    for chunk in answer.chunks:
                        self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading, as it should for an oversize answer

        return Handler
