"""Users (admin): staff accounts of the page, and the audit log of what everyone did.

An admin never chooses or sees a user's own password: the page makes a first
password (and a new one at a reset), shows it once to pass on, and the user
changes it on the My account page. The password is not stored in the session,
logged or audited, so reloading the page cannot show it again.
"""

from __future__ import annotations

import re

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from admin_web import accounts, audit, audit_text, branch, store
from admin_web.auth import account_error_text, log_action
from admin_web.i18n import door_labels, gettext as _, role_label
from admin_web.security import ADMIN, access

bp = Blueprint("users", __name__, url_prefix="/users")

AUDIT_PAGE_SIZE = 50


@bp.route("")
@access(ADMIN)
def index():
    return _list_page()


def _list_page(status: int = 200, error: str | None = None):
    return render_template(
        "users/index.html", users=accounts.users(store()), roles=accounts.ROLES, error=error,
        values=request.form if error else {},
    ), status


@bp.route("", methods=["POST"])
@access(ADMIN)
def add():
    username = request.form.get("username", "").strip().lower()
    role = request.form.get("role", "")
    password = accounts.new_password()
    try:
        with store().conn:
            accounts.add_user(store(), username, password, role)
            log_action("users.add", username, role=role)
    except accounts.AccountError as exc:
        return _list_page(400, account_error_text(exc))
    return _show_password(username, password, new_user=True)


@bp.route("/<username>/manage")
@access(ADMIN)
def manage(username: str):
    return _manage_page(_user_or_404(username))


def _manage_page(user: accounts.User, status: int = 200, error: str | None = None):
    return render_template("users/manage.html", person=user, roles=accounts.ROLES, error=error), status


@bp.route("/<username>/role", methods=["POST"])
@access(ADMIN)
def role(username: str):
    user = _user_or_404(username)
    new_role = request.form.get("role", "")
    if user.username == g.user.username:
        return _manage_page(user, 400, _("You cannot change your own role. Ask another admin."))
    try:
        with store().conn:
            accounts.set_role(store(), user.username, new_role)
            log_action("users.role", user.username, role=new_role)
    except accounts.AccountError as exc:
        return _manage_page(user, 400, account_error_text(exc))
    flash(_("%(name)s is now: %(role)s.", name=user.username, role=role_label(new_role)), "ok")
    return redirect(url_for("users.manage", username=user.username))


@bp.route("/<username>/disable", methods=["POST"])
@access(ADMIN)
def disable(username: str):
    return _set_disabled(_user_or_404(username), True)


@bp.route("/<username>/enable", methods=["POST"])
@access(ADMIN)
def enable(username: str):
    return _set_disabled(_user_or_404(username), False)


def _set_disabled(user: accounts.User, disabled: bool):
    if disabled and user.username == g.user.username:
        return _manage_page(user, 400, _("You cannot disable your own account."))
    try:
        with store().conn:
            accounts.set_disabled(store(), user.username, disabled)
            log_action("users.disable" if disabled else "users.enable", user.username)
    except accounts.AccountError as exc:
        return _manage_page(user, 400, account_error_text(exc))
    if disabled:
        flash(_("%(name)s is disabled and was logged out everywhere.", name=user.username), "ok")
    else:
        flash(_("%(name)s can log in again.", name=user.username), "ok")
    return redirect(url_for("users.manage", username=user.username))


@bp.route("/<username>/reset", methods=["POST"])
@access(ADMIN)
def reset(username: str):
    user = _user_or_404(username)
    if user.username == g.user.username:
        return _manage_page(user, 400, _("Change your own password on the My account page."))
    password = accounts.new_password()
    with store().conn:
        accounts.set_password(store(), user.username, password)
        log_action("users.reset", user.username)
    return _show_password(user.username, password, new_user=False)


def _show_password(username: str, password: str, *, new_user: bool):
    """Rendered straight into the POST's answer, never redirected to, so it cannot be shown twice."""
    return render_template("users/password.html", username=username, password=password, new_user=new_user)


@bp.route("/audit")
@access(ADMIN)
def audit_log():
    actor = request.args.get("user") or None
    page = request.args.get("page", "1")
    # ASCII digits only ("²".isdigit() is true) and few enough that the offset fits SQLite.
    page = int(page) if re.fullmatch(r"[1-9][0-9]{0,8}", page) else 1
    rows = audit.entries(store(), limit=AUDIT_PAGE_SIZE + 1, offset=(page - 1) * AUDIT_PAGE_SIZE, actor=actor)
    doors = door_labels(branch().config)
    shown = [
        row | {"target": audit_text.target_text(row, doors), "lines": audit_text.describe(row, doors)}
        for row in rows[:AUDIT_PAGE_SIZE]
    ]
    return render_template(
        "users/audit.html", entries=shown, page=page, has_next=len(rows) > AUDIT_PAGE_SIZE,
        actor=actor, actors=audit.actors(store()),
    )


def _user_or_404(username: str) -> accounts.User:
    user = accounts.get_user(store(), username)
    if user is None:
        abort(404)
    return user
