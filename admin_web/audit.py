"""The audit log: who did what on the staff page or the console, and when.

Door commands also reach the event log (the device writes them when it acts);
this log is for every staff action, door commands included, as the staff member
asked for it, so that "who changed the hours?" has an answer.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from device.events import utc_text
from device.store import Store


def record(store: Store, actor: str, action: str, target: str = "", detail: dict | None = None, address: str | None = None) -> None:
    """Write one entry. ``action`` is a short dotted name such as ``hours.weekly`` or ``door.pulse``.

    Inside a ``with store.conn:`` block the entry joins that block's transaction,
    which is how a change and its entry are committed together (see auth.log_action).
    """
    with store.conn:
        store.conn.execute(
            "INSERT INTO audit_log (ts, actor, action, target, detail, address) VALUES (?, ?, ?, ?, ?, ?)",
            (
                utc_text(datetime.now(timezone.utc)), actor, action, target,
                json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str) if detail else None, address,
            ),
        )


def entries(store: Store, limit: int = 100, offset: int = 0, actor: str | None = None) -> list[dict]:
    """Newest first, ``detail`` decoded."""
    sql, params = "SELECT * FROM audit_log", []
    if actor:
        sql += " WHERE actor = ?"
        params.append(actor)
    sql += " ORDER BY id DESC LIMIT ? OFFSET ?"
    params += [limit, offset]
    return [row | {"detail": json.loads(row["detail"]) if row["detail"] else {}} for row in store.db.query(sql, params)]


def actors(store: Store) -> list[str]:
    """Everyone who has an entry, for the audit page's filter; former users too."""
    return [row[0] for row in store.conn.execute("SELECT DISTINCT actor FROM audit_log ORDER BY actor")]
