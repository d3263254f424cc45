"""The public booth board: is the booth free now, and when today is it free?

For a screen in the lobby or a frame on the library's web site, so it needs no
login and shows nothing personal: times only, never a card or a reservation id.
It reloads itself once a minute with a meta refresh, which the page's strict
CSP allows without any script.
"""

from __future__ import annotations

from flask import Blueprint, g, render_template, request

from admin_web import branch, branch_now, store
from admin_web.accounts import LANGUAGES
from admin_web.security import PUBLIC, access

#: The blueprint's name is what lets the board, and only the board, be framed (see security.py).
bp = Blueprint("board", __name__, url_prefix="/board")

REFRESH_SECONDS = 60


@bp.before_request
def _language_asked_for():
    """``?lang=fi|sv|en`` picks the language, for a screen whose browser cannot be set."""
    if request.args.get("lang") in LANGUAGES:
        g.page_language = request.args["lang"]


@bp.route("")
@access(PUBLIC)
def index():
    config, db = branch().config, store()
    now = branch_now.utc_now()
    today = now.astimezone(config.tz).date()
    schedule = db.schedule(config.tz)
    context = {
        "now": now,
        "today": today,
        "mode": branch_now.mode_now(schedule, now),
        "hours": [segment for segment in branch_now.day_segments(schedule, today) if segment.mode != "closed"],
        "booths": branch_now.booths_now(config, db, schedule, now),
        "refresh_seconds": REFRESH_SECONDS,
    }
    return render_template("board/index.html", **context)
