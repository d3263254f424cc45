"""One Koha sync: every patron page read and checked first, then the central cards replaced in one transaction.

Nothing is written until the last page has been read and the pages add up to the
X-Total-Count Koha gave: a sync that fails half-way, or during which patrons were
added or removed in Koha (offset paging would then skip or repeat some), changes
nothing and says why; the next one tries again. Only cards whose permissions
changed, and cards gone from Koha, reach the change log, so the branches' rounds
stay small.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from central import db, koha, patrons
from central.config import CentralSettings
from central.koha import Harvest, KohaError
from central.koha_client import KohaClient
from device.cards import load_consortium_key


@dataclass(frozen=True)
class SyncResult:
    pages: int
    harvest: Harvest
    changed: int
    removed: int

    def summary(self) -> str:
        h = self.harvest
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(h.skipped.items())) or "none"
        return (f"Read {h.read} patron(s) from Koha in {self.pages} page(s): {len(h.patrons)} card(s) kept, "
                f"{self.changed} new or changed, {self.removed} removed; skipped: {skipped}.")


def client_for(settings: CentralSettings) -> KohaClient:
    k = settings.koha
    try:
        secret = k.client_secret_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise KohaError(f"[koha] client_secret_file {k.client_secret_file} cannot be read: "
                        f"{getattr(exc, 'strerror', None) or exc}") from None
    if not secret:
        raise KohaError(f"[koha] client_secret_file {k.client_secret_file} is empty")
    return KohaClient(k.base_url, k.client_id, secret)


def sync(settings: CentralSettings, engine, now: datetime, client: KohaClient | None = None) -> SyncResult:
    """Read every patron from Koha and make the central cards match; KohaError says why nothing changed."""
    if settings.koha is None:
        raise KohaError(f"{settings.path} has no [koha] section")
    client = client or client_for(settings)
    try:
        consortium_key = load_consortium_key(settings.consortium_key_file)
    except (OSError, ValueError) as exc:
        raise KohaError(f"the consortium key cannot be read: {exc}") from None
    harvest, total, pages = Harvest(), None, 0
    for page in client.patron_pages(settings.koha.per_page):
        if total is not None and page.total != total:
            raise KohaError(f"Koha's patron count changed during the sync ({total} → {page.total}); the next sync tries again")
        total = page.total
        koha.read_page(page.body, page.number, consortium_key, settings.koha.rules, harvest)
        pages += 1
    if harvest.read != total:
        raise KohaError(f"the pages held {harvest.read} patron(s) but Koha's X-Total-Count said {total}; "
                        "patrons changed during the sync, the next sync tries again")
    try:
        with db.writing(engine) as connection:
            changed, removed = patrons.replace(connection, list(harvest.patrons.values()), now)
    except patrons.EmptySource:
        # An API user limited to an empty library, say: never lock out a whole consortium at once.
        raise KohaError("Koha listed no patron with a card number; the central cards were kept. "
                        "Check the API client's permissions and library limits in Koha") from None
    return SyncResult(pages, harvest, changed, removed)
