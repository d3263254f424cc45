"""The staff page and the API for the central office: a Flask app over the shared database.

The web process never touches hardware. It reads what the device and sync write
(door states, events, counts, sync state) and asks the device to act by writing
a row to ``commands``, which the device picks up within a few hundred milliseconds.
"""

from __future__ import annotations

import os
import secrets
import threading
from datetime import timedelta
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, Request, abort, current_app, render_template, request, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect

from admin_web.proxies import ClientAddress
from admin_web.i18n import lazy_gettext as _l
from device.config import Config
from device.store import Store

csrf = CSRFProtect()

#: The largest request the page accepts. The biggest upload is a patron CSV, held
#: whole in memory (see InMemoryUploads): 32 MB is about 800,000 patrons with the
#: usual columns, or 250,000 with PIN verifiers, more than a large branch's export,
#: and still little beside the memory of a Raspberry Pi.
MAX_UPLOAD_MB = 32

#: The header's menu: endpoint, label, admin only. An area not built into this
#: version is left out of the menu rather than linked to a 404.
MAIN_NAV = (
    ("today.index", _l("Today"), False),
    ("hours.index", _l("Hours"), False),
    ("events.index", _l("Events"), False),
    ("stats.index", _l("Statistics"), False),
    ("doors.index", _l("Doors"), False),
    ("cards.index", _l("Cards"), True),
    ("users.index", _l("Users"), True),
    ("board.index", _l("Booth board"), False),
)


class InMemoryUploads(Request):
    """Keeps an uploaded file in memory, however big it is.

    Werkzeug writes an upload over 500 KB to a temporary file, and a patron CSV is
    full of raw card numbers, which are never to be written on the Pi, not even in
    /tmp. MAX_CONTENT_LENGTH bounds the memory one upload can take.
    """

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return BytesIO()


class Branch:
    """What every request needs: the branch's config and a database connection per thread.

    Waitress serves requests from a few threads; an SQLite connection must not be
    shared between threads mid-transaction, and opening one per request would be
    wasted work, so each thread keeps its own.
    """

    def __init__(self, config: Config):
        self.config = config
        self._local = threading.local()
        config.database.parent.mkdir(parents=True, exist_ok=True)
        Store(config.database).close()  # migrate once, before any request

    @property
    def store(self) -> Store:
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = Store(self.config.database, migrate=False)
        return store


def branch() -> Branch:
    return current_app.extensions["omaovi"]


def store() -> Store:
    return branch().store


def load_or_create_secret(path: Path) -> bytes:
    """The key that signs session cookies; made on first start, readable by its owner only.

    An empty file is what a power cut during the first start leaves behind, so it
    is treated as missing; the new key is written whole and flushed to disk before
    it takes the file's name, so a cut now leaves the old file or the whole key.
    """
    try:
        secret = path.read_bytes().strip()
    except FileNotFoundError:
        secret = b""
    if not secret:
        secret = secrets.token_hex(32).encode()
        path.parent.mkdir(parents=True, exist_ok=True)
        new = path.with_name(path.name + ".new")
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secret + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(new, path)
    if len(secret) < 32:
        raise ValueError(f"{path}: the web secret key must be at least 32 characters; delete the file to make a new one")
    return secret


def create_app(config: Config, *, secret_key: bytes | None = None, testing: bool = False) -> Flask:
    from admin_web import accounts, auth, i18n, security

    app = Flask(__name__)
    app.request_class = InMemoryUploads
    web = config.web
    app.config.update(
        TESTING=testing,
        SECRET_KEY=secret_key or load_or_create_secret(web.secret_key_file),
        SESSION_COOKIE_NAME="omaovi_session",
        SESSION_COOKIE_SECURE=web.secure_cookies,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=web.session_max_hours),
        # The cookie set at login expires when the session does (web_sessions keeps
        # the idle and maximum ages), so re-signing it on every answer bought nothing
        # but 0.3 ms of the Today page's 3 (benchmark P6).
        SESSION_REFRESH_EACH_REQUEST=False,
        MAX_CONTENT_LENGTH=MAX_UPLOAD_MB * 1024 * 1024,
        # The token is bound to the session, which expires on its own.
        WTF_CSRF_TIME_LIMIT=None,
    )
    app.extensions["omaovi"] = Branch(config)
    i18n.init_app(app)
    # Before CSRF: a visitor who is not logged in is sent to the login page, whatever he posts.
    auth.init_app(app)
    # Before CSRF too: a body the server refused (admin_web/bodies.py) is not there to read.
    app.before_request(_refused_body)
    csrf.init_app(app)
    for blueprint in _blueprints():
        app.register_blueprint(blueprint)
    app.jinja_env.globals.update(
        branch_id=config.branch,
        has_endpoint=lambda endpoint: endpoint in app.view_functions,
        main_nav=lambda: MAIN_NAV,
    )
    if web.trusted_proxies:
        app.wsgi_app = ClientAddress(app.wsgi_app, web.trusted_proxies)
    app.register_error_handler(413, _too_large)
    app.register_error_handler(CSRFError, _form_refused)
    app.register_error_handler(accounts.Busy, _busy)
    app.after_request(
        lambda response: security.set_headers(response, web.board_frame_ancestors, embeddable=request.blueprint == "board")
    )
    return app


def _refused_body():
    from admin_web.bodies import refused_limit

    if refused_limit(request.environ) is not None:
        abort(413)


def _too_large(error):
    """A refused upload explained in the user's language, with the way back to the page it came from."""
    from admin_web.bodies import refused_limit

    limit = refused_limit(request.environ)
    return render_template(
        "too_large.html", max_mb=MAX_UPLOAD_MB, max_kb=limit // 1024 if limit and limit < MAX_UPLOAD_MB * 1024 * 1024 else None,
        back=_back_url(),
    ), 413


def _busy(error):
    """Other password checks keep the server busy: the user is asked to try again in a moment."""
    response = current_app.make_response((render_template("busy.html", back=_back_url()), 429))
    response.headers["Retry-After"] = "5"
    return response


def _form_refused(error):
    """A form whose CSRF token is missing or stale, explained instead of Werkzeug's English "Bad Request".

    Nearly always the form was open so long that the session behind its token
    ended (a tablet left on the desk), or the user logged in again in another tab.
    """
    return render_template("form_refused.html", back=_back_url()), 400


def _back_url() -> str:
    """The page a refused request came from: its Referer on this site, else the page itself or its area's first page."""
    from admin_web.auth import safe_next

    referrer = urlsplit(request.referrer or "")
    if referrer.netloc == request.host and referrer.path.startswith("/"):
        return safe_next(referrer.path + (f"?{referrer.query}" if referrer.query else ""))
    if current_app.url_map.bind_to_environ(request.environ).test(request.path, method="GET"):
        return request.path
    back = f"{request.blueprint}.index"
    if request.blueprint == "auth":
        back = "auth.login"
    return url_for(back) if back in current_app.view_functions else "/"


def _blueprints() -> list:
    """Every area of the page; each module has one blueprint and its own templates folder."""
    from admin_web import announcements, api, auth, board, cards, doors, events, hours, stats, today, users

    return [auth.bp, cards.bp, api.bp, events.bp, stats.bp, today.bp, doors.bp, board.bp, hours.bp, users.bp, announcements.bp]
