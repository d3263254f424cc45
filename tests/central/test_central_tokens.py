"""A branch's device token: let in only with it, its use noted at most once a minute."""

from __future__ import annotations

import requests

from central import db, tokens
from harness import BRANCH, RealCentral


def _last_used(central: RealCentral):
    with db.reading(central.engine) as connection:
        return {row.name: row.last_used for row in tokens.listing(connection) if row.branch_id == BRANCH}["pi"]


def test_a_tokens_use_is_noted_once_a_minute_not_at_every_request(tmp_path, database_url):
    with RealCentral(tmp_path, database_url) as central:
        session = requests.Session()
        session.trust_env = False
        session.headers["Authorization"] = f"Bearer {central.token}"
        assert _last_used(central) is None
        assert session.get(f"{central.url}/v1/branches/{BRANCH}/patrons", timeout=30).status_code == 200
        first = _last_used(central)
        assert first is not None, "token-list shows when the branch last came"
        assert session.get(f"{central.url}/v1/branches/{BRANCH}/patrons", timeout=30).status_code == 200
        assert _last_used(central) == first, "a second request within the minute writes nothing"
        with db.writing(central.engine) as connection:
            tokens.revoke(connection, BRANCH, "pi", first)
        assert session.get(f"{central.url}/v1/branches/{BRANCH}/patrons", timeout=30).status_code == 401
