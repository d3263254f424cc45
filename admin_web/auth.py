"""Logging in and out, the first-run page, the language switch and the user's own account.

``init_app`` installs the one access check every request passes (see security.py):
it finds the session's user, sends anonymous visitors to the login page and
refuses admin pages to staff.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, flash, g, redirect, render_template, request, session, url_for

from admin_web import accounts, audit, branch, store
from admin_web.i18n import gettext as _
from admin_web.security import ADMIN, PUBLIC, STAFF, access, access_of

bp = Blueprint("auth", __name__)


def init_app(app: Flask) -> None:
    app.before_request(_check_access)
    app.context_processor(lambda: {"user": g.get("user")})


def _check_access():
    level = access_of(current_app, request.endpoint)
    g.user = _session_user()
    if level in (PUBLIC, "token"):
        return None
    if g.user is None:
        if not accounts.has_users(store()):
            return redirect(url_for("auth.first_run"))
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?") if request.method == "GET" else None))
    if level == ADMIN and not g.user.is_admin:
        abort(403)
    return None


def _session_user() -> accounts.User | None:
    session_id = session.get("sid")
    if not session_id:
        return None
    web = branch().config.web
    user = accounts.session_user(
        store(), session_id, idle=timedelta(minutes=web.session_idle_minutes), max_age=timedelta(hours=web.session_max_hours)
    )
    if user is None:
        session.pop("sid", None)
    return user


def actor() -> str:
    """The name the audit log gives the current staff member."""
    return g.user.username


def log_action(action: str, target: str = "", **detail) -> None:
    """Audit one staff action by the logged-in user.

    A view calls it in the same ``with store().conn:`` block as the change it
    records, so that the change and its entry are one transaction: a crash or a
    failed insert cannot leave a change nobody is recorded as having made.
    """
    audit.record(store(), actor(), action, target, detail or None, request.remote_addr)


def safe_next(target: str | None) -> str:
    """Only a path on this site, else the start page.

    A ``next`` pointing elsewhere would make the login page an open redirect; one
    with a line break or another control character cannot be a Location header.
    """
    start = url_for("today.index") if "today.index" in current_app.view_functions else "/"
    if not target or not target.isprintable():
        return start
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return start
    return target


@bp.route("/login", methods=["GET", "POST"])
@access(PUBLIC)
def login():
    if not accounts.has_users(store()):
        return redirect(url_for("auth.first_run"))
    address = request.remote_addr or "unknown"
    error, status = None, 200
    if request.method == "POST":
        username = request.form.get("username", "").strip().lower()
        wait = accounts.begin_attempt(store(), address, username)
        if wait is not None:
            minutes = max(1, -(-int(wait.total_seconds()) // 60))
            error, status = _("Too many failed logins. Try again in %(minutes)d minutes.", minutes=minutes), 429
        else:
            user = accounts.authenticate(store(), username, request.form.get("password", ""))
            if user is None:
                known = accounts.get_user(store(), username) is not None
                with store().conn:
                    audit.record(store(), username if known else "(unknown user)", "login.failed", address=address)
                error, status = _("Wrong username or password."), 401
            else:
                accounts.attempt_succeeded(store(), user.username)
                language = session.get("lang")
                session.clear()  # nothing from before the login survives it
                session.permanent = True
                with store().conn:
                    session_id = accounts.start_session(store(), user.username)
                    audit.record(store(), user.username, "login", address=address)
                session["sid"] = session_id
                if language:
                    session["lang"] = language
                return redirect(safe_next(request.args.get("next")))
    return render_template("auth/login.html", error=error), status


@bp.route("/first-run")
@access(PUBLIC)
def first_run():
    if accounts.has_users(store()):
        return redirect(url_for("auth.login"))
    return render_template("auth/first_run.html", config_path=branch().config.path)


@bp.route("/logout", methods=["POST"])
@access(STAFF)
def logout():
    with store().conn:
        log_action("logout")
        accounts.end_session(store(), session["sid"])
    session.clear()
    return redirect(url_for("auth.login"))


@bp.route("/language", methods=["POST"])
@access(PUBLIC)
def language():
    choice = request.form.get("language")
    if choice not in accounts.LANGUAGES:
        abort(400)
    session["lang"] = choice
    if g.user is not None:
        accounts.set_language(store(), g.user.username, choice)
    return redirect(safe_next(request.form.get("next")))


@bp.route("/account", methods=["GET", "POST"])
@access(STAFF)
def account():
    """The user's own password; the language is switched from every page's header."""
    error, status = None, 200
    if request.method == "POST":
        current = request.form.get("current_password", "")
        new, again = request.form.get("new_password", ""), request.form.get("new_password_again", "")
        if accounts.authenticate(store(), g.user.username, current) is None:
            error, status = _("The current password is wrong."), 400
        elif new != again:
            error, status = _("The new passwords do not match."), 400
        else:
            try:
                with store().conn:
                    accounts.set_password(store(), g.user.username, new)
                    log_action("account.password", g.user.username)
                    # Changing the password ended every session, this one too: log in afresh.
                    session_id = accounts.start_session(store(), g.user.username)
            except accounts.AccountError as exc:
                error, status = account_error_text(exc), 400
            else:
                session["sid"] = session_id
                flash(_("Your password was changed."), "ok")
                return redirect(url_for("auth.account"))
    return render_template("auth/account.html", error=error, min_length=accounts.MIN_PASSWORD_LENGTH), status


def account_error_text(exc: accounts.AccountError) -> str:
    """The staff page's words for an AccountError."""
    texts = {
        "bad_username": _("A username is 2-32 lowercase letters, digits, '.', '_' or '-'."),
        "bad_role": _("Unknown role."),
        "short_password": _("The password must be at least %(length)d characters long.", length=accounts.MIN_PASSWORD_LENGTH),
        "password_is_username": _("The password must not be the username."),
        "user_exists": _("That username is already taken."),
        "no_such_user": _("There is no such user."),
        "last_admin": _("The last admin cannot be disabled."),
        "last_admin_role": _("The last admin must stay an admin."),
        "bad_language": _("Unknown language."),
    }
    return texts.get(exc.code, str(exc))
