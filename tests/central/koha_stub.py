"""A Koha REST API stub on 127.0.0.1: the OAuth2 token endpoint and ``GET /api/v1/patrons``.

Every answer it gives is first checked against Koha's own definitions
(koha_definitions.json, transcribed from Koha's api/v1/swagger), so what the client
is tested on is what a real Koha sends; a test that wants a broken answer says so
with ``broken_pages``. Paging follows Koha::REST::Plugin::Pagination: ``_page`` and
``_per_page``, ``X-Total-Count``, and one ``Link`` header with prev, next, first
and last joined by commas, each the absolute request URL with its page swapped.
"""

from __future__ import annotations

import json
import secrets
import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import jsonschema_rs

DEFINITIONS = json.loads((Path(__file__).with_name("koha_definitions.json")).read_text(encoding="utf-8"))
CLIENT_ID = "omaovi-central"
CLIENT_SECRET = "s3cret-for-tests-only"


def _validator(name: str):
    schema = {**DEFINITIONS, "$ref": f"#/$defs/{name}"}
    return jsonschema_rs.validator_for(schema, validate_formats=True)


VALIDATE = {name: _validator(name) for name in ("patrons", "oauth_token", "error")}


def koha_patron(patron_id: int, cardnumber: str | None, *, born: date | None, expiry: date | None = None,
                category: str = "ADULT", restricted: bool = False, lost: bool | None = False,
                attributes: dict[str, str] | None = None) -> dict:
    """A patron as Koha sends it, personal data and all; every personal value is unique to the patron."""
    extended = [{"extended_attribute_id": patron_id * 10 + i, "type": code, "value": value}
                for i, (code, value) in enumerate((attributes or {}).items())]
    return {
        "patron_id": patron_id, "cardnumber": cardnumber,
        "surname": f"Virtanenqz{patron_id}", "firstname": f"Ainoqz{patron_id}", "preferred_name": None,
        "middle_name": None, "title": None, "other_name": None, "initials": None, "pronouns": None,
        "street_number": None, "street_type": None, "address": f"Mannerheimintie {patron_id}0 B qz",
        "address2": None, "city": "Helsinki", "state": None, "postal_code": "00100", "country": None,
        "email": f"aino.qz{patron_id}@example.fi", "phone": f"+358 40 7{patron_id:06d}", "mobile": None, "fax": None,
        "secondary_email": None, "secondary_phone": None, "altaddress_street_number": None,
        "altaddress_street_type": None, "altaddress_address": None, "altaddress_address2": None,
        "altaddress_city": None, "altaddress_state": None, "altaddress_postal_code": None, "altaddress_country": None,
        "altaddress_email": None, "altaddress_phone": None,
        "date_of_birth": born.isoformat() if born else None,
        "library_id": "KALLIO", "category_id": category, "date_enrolled": "2019-01-15",
        "expiry_date": expiry.isoformat() if expiry else None, "date_renewed": None,
        "incorrect_address": False, "patron_card_lost": lost, "restricted": restricted,
        "staff_notes": f"muistiinpano qz{patron_id}", "relationship_type": None, "gender": "F", "userid": f"aino{patron_id}",
        "opac_notes": None, "altaddress_notes": None, "statistics_1": None, "statistics_2": None,
        "autorenew_checkouts": True, "altcontact_firstname": None, "altcontact_surname": None,
        "altcontact_address": None, "altcontact_address2": None, "altcontact_city": None, "altcontact_state": None,
        "altcontact_postal_code": None, "altcontact_country": None, "altcontact_phone": None, "sms_number": None,
        "sms_provider_id": None, "privacy": 1, "privacy_guarantor_checkouts": 0, "privacy_guarantor_fines": False,
        "check_previous_checkout": "inherit", "updated_on": "2026-11-30T10:15:00+02:00", "last_seen": None,
        "lang": "fi", "login_attempts": 0, "overdrive_auth_token": None, "anonymized": False,
        "extended_attributes": extended, "checkouts_count": None, "overdues_count": None, "account_balance": None,
        "library": None, "protected": False, "_strings": None,
    }


class KohaStub:
    """Steered through plain attributes; ``requests`` records what the client asked, ``clock`` is the token clock."""

    def __init__(self, patrons: list[dict], *, expires_in: int = 3600, clock=lambda: 0.0):
        self.patrons = patrons
        self.expires_in = expires_in
        self.clock = clock
        self.tokens: dict[str, float] = {}  # token -> when it stops working
        #: page number -> the raw body to send instead (not checked: it is meant to be broken).
        self.broken_pages: dict[int, bytes] = {}
        #: statuses to answer patron requests with before answering properly.
        self.failures: list[int] = []
        #: forget every token after this many patron pages (a Koha restart).
        self.forget_tokens_after: int | None = None
        self.refuse_all_tokens = False
        #: the host the Link URLs name, as a Koha behind a proxy may believe it is (None: the Host header).
        self.link_host: str | None = None
        #: headers sent instead of the computed ones on patron pages; None drops one.
        self.header_overrides: dict[str, str | None] = {}
        self.requests: list[dict] = []
        self.served_401 = 0
        #: answers that did not match Koha's definitions: a broken stub, reported when it closes.
        self.invalid: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> "KohaStub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        assert not self.invalid, f"the stub sent answers a real Koha would not: {self.invalid}"

    def patron_requests(self) -> list[dict]:
        return [r for r in self.requests if r["path"] == "/api/v1/patrons"]

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                stub.requests.append({"path": self.path, "form": form})
                if self.path != "/api/v1/oauth/token":
                    return self._json(404, {"error": "Not found"}, "error")
                if form.get("grant_type") != ["client_credentials"]:
                    return self._json(400, {"error": "unsupported_grant_type"}, "error")
                if form.get("client_id") != [CLIENT_ID] or form.get("client_secret") != [CLIENT_SECRET]:
                    return self._json(403, {"error": "unauthorized_client"}, "error")
                token = secrets.token_hex(16)
                stub.tokens[token] = stub.clock() + stub.expires_in
                self._json(200, {"access_token": token, "token_type": "Bearer", "expires_in": stub.expires_in}, "oauth_token")

            def do_GET(self):
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                auth = self.headers.get("Authorization", "")
                stub.requests.append({"path": parts.path, "query": query, "authorization": auth,
                                      "embed": self.headers.get("x-koha-embed")})
                if parts.path != "/api/v1/patrons":
                    return self._json(404, {"error": "Not found"}, "error")
                if stub.forget_tokens_after is not None and len(stub.patron_requests()) > stub.forget_tokens_after:
                    stub.tokens.clear()
                    stub.forget_tokens_after = None
                token = auth.removeprefix("Bearer ")
                if stub.refuse_all_tokens or stub.tokens.get(token, -1) <= stub.clock():
                    stub.served_401 += 1
                    return self._json(401, {"error": "Authentication failure."}, "error")
                if stub.failures:
                    return self._json(stub.failures.pop(0), {"error": "Something went wrong, check Koha logs for details."}, "error")
                page, per_page = int(query.get("_page", 1)), int(query.get("_per_page", 20))
                items = stub.patrons[(page - 1) * per_page:page * per_page]
                if self.headers.get("x-koha-embed") != "extended_attributes":
                    items = [{k: v for k, v in item.items() if k != "extended_attributes"} for item in items]
                headers = {"X-Total-Count": str(len(stub.patrons)), "Link": self._links(query, page, per_page),
                           **stub.header_overrides}
                headers = {name: value for name, value in headers.items() if value is not None}
                if page in stub.broken_pages:
                    return self._send(200, stub.broken_pages[page], headers)
                self._json(200, items, "patrons", headers)

            def _links(self, query: dict, page: int, per_page: int) -> str:
                pages = -(-len(stub.patrons) // per_page)
                wanted = [("prev", page - 1)] if pages > 1 and page > 1 else []
                wanted += [("next", page + 1)] if pages > 1 and page < pages else []
                wanted += [("first", 1), ("last", pages)]
                base = f"http://{stub.link_host or self.headers['Host']}{urlsplit(self.path).path}"
                return ",".join(f'<{base}?{urlencode({**query, "_page": n, "_per_page": per_page})}>; rel="{rel}"'
                                for rel, n in wanted)

            def _json(self, status: int, document, definition: str, headers: dict | None = None):
                try:
                    VALIDATE[definition].validate(document)  # the stub never says what Koha could not
                except jsonschema_rs.ValidationError as exc:
                    stub.invalid.append(f"{definition}: {exc.message} at {list(exc.instance_path)}")
                    return self._send(418, b"", {})
                self._send(status, json.dumps(document).encode(), headers or {})

            def _send(self, status: int, body: bytes, headers: dict):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        return Handler
