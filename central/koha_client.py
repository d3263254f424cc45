"""HTTP to Koha's REST API: an OAuth2 client-credentials token, and the patron list page by page.

The token is fetched when first needed, again shortly before Koha said it expires,
and once more if Koha answers 401 anyway (a restarted Koha forgets its tokens).
Koha's ``Link: rel="next"`` is followed by its query only, on the configured URL:
Koha builds that link from the address it believes it has, which behind a proxy
may be another host, and the bearer token must never go anywhere else. A 5xx or a
broken connection is tried again with a growing wait; anything else ends the sync.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator
from urllib.parse import urlsplit

import requests
import urllib3

from central import koha
from central.koha import KohaError, KohaPageError
from sync.json_input import decode_json

USER_AGENT = "omaovi-central/1"
#: A page of 1000 patrons with their attributes is a few MB; this bounds a broken one.
MAX_PAGE_BYTES = 64 * 1024 * 1024
#: Fetch a new token this long before Koha's one runs out.
TOKEN_MARGIN = 30.0
TIMEOUT = (10, 120)


@dataclass(frozen=True)
class Page:
    number: int
    body: bytes
    #: X-Total-Count: how many patrons the whole list has.
    total: int


class KohaClient:
    """``sleep`` and ``clock`` (monotonic seconds) are injected so tests need not wait."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        attempts: int = 4,
        max_page_bytes: int = MAX_PAGE_BYTES,
    ):
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.session = session or requests.Session()
        self.clock = clock
        self.sleep = sleep
        self.attempts = attempts
        self.max_page_bytes = max_page_bytes
        self._token: str | None = None
        self._token_until = 0.0

    def patron_pages(self, per_page: int) -> Iterator[Page]:
        """Every page of ``GET /api/v1/patrons`` with the extended attributes, in patron_id order."""
        url = f"{self.base_url}/api/v1/patrons"
        query: dict | str = {"_page": 1, "_per_page": per_page, "_order_by": "patron_id"}
        number = 1
        while True:
            response = self._api_get(url, query)
            total = response.headers.get("X-Total-Count", "")
            if not total.isdigit():
                raise KohaPageError(f"page {number}: no X-Total-Count header; is this Koha's REST API?")
            yield Page(number, _body(response, self.max_page_bytes), int(total))
            following = response.links.get("next", {}).get("url")
            if not following:
                return
            number += 1
            if number > int(total) // per_page + 2:
                raise KohaPageError(f"page {number}: Koha keeps saying there is a next page past its X-Total-Count of {total}")
            query = urlsplit(following).query

    def _api_get(self, url: str, query) -> requests.Response:
        refreshed = False
        while True:
            if self._token is None or self.clock() >= self._token_until:
                self._fetch_token()
                refreshed = True
            response = self._send("GET", url, params=query, headers={
                "Authorization": f"Bearer {self._token}", "Accept": "application/json",
                "x-koha-embed": "extended_attributes",
            })
            if response.status_code == 401 and not refreshed:
                self._token = None  # Koha forgot the token (a restart): one new token, one more try
                continue
            if response.status_code == 200:
                return response
            raise KohaError(f"GET {url}: {_refusal(response)}")

    def _fetch_token(self) -> None:
        url = f"{self.base_url}/api/v1/oauth/token"
        response = self._send("POST", url, data={
            "grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret,
        }, headers={"Accept": "application/json"})
        if response.status_code != 200:
            raise KohaError(f"POST {url}: {_refusal(response)}; check client_id and client_secret_file in [koha]")
        self._token, lifetime = koha.token(_body(response, self.max_page_bytes))
        self._token_until = self.clock() + max(lifetime - TOKEN_MARGIN, lifetime / 2)

    def _send(self, method: str, url: str, **kwargs) -> requests.Response:
        """The answer, after trying again on a 5xx or a broken connection."""
        kwargs["headers"]["User-Agent"] = USER_AGENT
        problem = ""
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                self.sleep(2.0 ** (attempt - 1))
            try:
                response = self.session.request(method, url, timeout=TIMEOUT, allow_redirects=False, stream=True, **kwargs)
            except requests.RequestException as exc:
                problem = f"no answer ({type(exc).__name__})"
                continue
            if response.status_code < 500:
                return response
            problem = f"HTTP {response.status_code}"
            response.close()
        raise KohaError(f"{method} {url}: {problem}, {self.attempts} times")


def _refusal(response: requests.Response) -> str:
    """What Koha said, from its error object; a 401 or 403 says which permission it needs."""
    status = response.status_code
    said = ""
    try:
        error = decode_json(_body(response, 100_000), KohaError)
        if isinstance(error, dict) and isinstance(error.get("error"), str):
            said = f": {error['error'][:200]}"
    except KohaError:
        pass
    hint = {401: " (the API client was not accepted)",
            403: " (the API client's patron needs the borrowers permission)"}.get(status, "")
    return f"HTTP {status}{hint}{said}"


def _body(response: requests.Response, cap: int) -> bytes:
    """The body, decompressed, refused once it passes ``cap`` (urllib3 reads only that much)."""
    where = f"{response.request.method} {response.url}"
    with response:
        try:
            body = response.raw.read(cap + 1, decode_content=True)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KohaError(f"{where}: the answer broke off ({type(exc).__name__})") from None
    if len(body) > cap:
        raise KohaPageError(f"{where}: the answer is larger than {cap:_} bytes")
    return body
