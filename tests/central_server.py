"""A central service for tests, on 127.0.0.1, following docs/central-protocol.md.

It is deliberately small and literal, so a consortium reading it sees the protocol
from the other side: bearer tokens, paged lists with opaque cursors, snapshots then
changes, 410 for a forgotten cursor, idempotent event upload by uuid. Tests steer it
through plain attributes: put items in a feed, switch on an outage, queue a raw
answer, shift its clock.
"""

from __future__ import annotations

import json
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable
from urllib.parse import parse_qs, urlsplit


class Feed:
    """A list that the protocol pages: every put is one change, numbered from 1.

    A cursor ``d:V`` means "changes after version V". A snapshot taken at version V
    pages with ``s:V:offset`` and ends with ``d:V``, so changes made while a
    snapshot is being read are picked up by the next round, not lost.
    """

    def __init__(self, key: str):
        self.key = key
        self.log: list[dict] = []
        #: Delta cursors older than this version answer 410 Gone.
        self.oldest = 0

    def put(self, *items: dict) -> None:
        self.log.extend(dict(item) for item in items)

    def forget_cursors(self) -> None:
        """As if the central service compacted its change log: every old cursor is gone."""
        self.oldest = len(self.log)

    def state(self, version: int) -> list[dict]:
        current: dict[str, dict] = {}
        for item in self.log[:version]:
            if item.get("deleted"):
                current.pop(item[self.key], None)
            else:
                current[item[self.key]] = item
        return [current[key] for key in sorted(current)]

    def page(self, cursor: str | None, size: int) -> tuple[int, dict]:
        if cursor is None:
            return self._snapshot_page(len(self.log), 0, size)
        kind, _, rest = cursor.partition(":")
        if kind == "s":
            version, offset = (int(part) for part in rest.split(":"))
            return self._snapshot_page(version, offset, size)
        if kind == "d":
            version = int(rest)
            if version < self.oldest:
                return 410, {"error": "cursor expired; start a snapshot"}
            changes = self.log[version:version + size]
            end = version + len(changes)
            return 200, {"items": changes, "cursor": f"d:{end}", "more": end < len(self.log)}
        return 400, {"error": "unknown cursor"}

    def _snapshot_page(self, version: int, offset: int, size: int) -> tuple[int, dict]:
        items = self.state(version)
        chunk = items[offset:offset + size]
        more = offset + size < len(items)
        cursor = f"s:{version}:{offset + size}" if more else f"d:{version}"
        return 200, {"items": chunk, "cursor": cursor, "more": more}


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
        self.patrons = Feed("card_key")
        self.reservations = Feed("id")
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
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
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
                    days = [server.hours[d] for d in sorted(server.hours) if query["from"] <= d <= query["to"]]
                    return self._json(200, {"items": days})
                if (method, stream) == ("POST", "events"):
                    return self._events(json.loads(body))
                return self._json(404, {"error": "no such endpoint"})

            def _events(self, document: dict) -> None:
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
