"""How big a request body each visitor may send, decided from the headers alone.

Waitress reads a whole request body into memory before the app sees the request,
so a limit checked by the app (Flask's MAX_CONTENT_LENGTH) comes too late: six
anonymous 60 MB posts at once took the staff page past its unit's MemoryMax=256M.
The server therefore asks ``limit_for_headers`` as soon as a request's headers
are in (admin_web/serve.py), and throws away whatever is beyond the limit
without keeping it. The page then answers the request, without its body, with
``refused_limit`` set: 413 in the user's language, or the login page.

Only a logged-in admin may send a big body (the patron CSV); staff send forms and
a Kirkanta JSON file, a visitor who is not logged in only the login form.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta

from flask import Flask
from itsdangerous import BadData
from werkzeug.http import parse_cookie

from admin_web import MAX_UPLOAD_MB, accounts

#: The login and language forms are a few hundred bytes.
ANONYMOUS_BODY = 8 * 1024
#: Hours forms, notes, and a Kirkanta JSON file (a branch's year is about 100 kB).
STAFF_BODY = 1024 * 1024
#: The patron CSV (see MAX_UPLOAD_MB), the only big upload.
ADMIN_BODY = MAX_UPLOAD_MB * 1024 * 1024
#: The request header the server sets when it refused a body, with the limit as its
#: value, in waitress's spelling; the server drops any such header a client sends.
REFUSED_HEADER = "OMAOVI_BODY_REFUSED"


def limit_for(user: accounts.User | None) -> int:
    if user is None:
        return ANONYMOUS_BODY
    return ADMIN_BODY if user.is_admin else STAFF_BODY


def limit_for_headers(app: Flask, cookie_header: str | None) -> int:
    """The limit for the user whose session cookie came with the request.

    Called only for a body bigger than ANONYMOUS_BODY, so the common small form
    costs no session lookup here.
    """
    value = parse_cookie(cookie_header or "").get(app.config["SESSION_COOKIE_NAME"])
    if not value:
        return limit_for(None)
    serializer = app.session_interface.get_signing_serializer(app)
    try:
        session_id = serializer.loads(value, max_age=int(app.permanent_session_lifetime.total_seconds())).get("sid")
    except (BadData, AttributeError):
        return limit_for(None)
    if not isinstance(session_id, str):
        return limit_for(None)
    branch = app.extensions["omaovi"]
    web = branch.config.web
    try:
        user = accounts.session_user(
            branch.store, session_id,
            idle=timedelta(minutes=web.session_idle_minutes), max_age=timedelta(hours=web.session_max_hours),
        )
    except sqlite3.Error:
        # The database is locked or broken (this runs in the server's own thread,
        # which must not fail): the smallest limit, and the page will say why.
        user = None
    return limit_for(user)


def refused_limit(environ: dict) -> int | None:
    """The limit a refused body went over, or None when the body came through whole."""
    value = environ.get("HTTP_" + REFUSED_HEADER)
    return int(value) if value else None
