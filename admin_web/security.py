"""Security headers for every response, and the access rule every view declares.

Access is deny-by-default: a view is for logged-in staff unless it is marked
``public`` (the login page, the booth board), ``token`` (the API, which checks its
own bearer token) or ``admin``. A new view that forgets to say anything is
therefore protected, and tests/test_web_access.py walks the URL map to prove it.
"""

from __future__ import annotations

from typing import Callable

from flask import Flask, Response, request

PUBLIC, STAFF, ADMIN, TOKEN = "public", "staff", "admin", "token"


def access(level: str) -> Callable:
    """Mark a view function with who may see it."""

    def mark(view: Callable) -> Callable:
        view.access = level
        return view

    return mark


def access_of(app: Flask, endpoint: str | None) -> str:
    if endpoint is None:
        return PUBLIC  # no such route: let Flask answer 404
    if endpoint == "static":
        return PUBLIC
    return getattr(app.view_functions[endpoint], "access", STAFF)


def set_headers(response: Response, frame_ancestors: tuple[str, ...], embeddable: bool) -> Response:
    """A strict policy: only this Pi's own scripts, styles and images, no inline script.

    ``embeddable`` is for the public booth board, which a library may show in a
    frame on its own web site (``[web] board_frame_ancestors``).
    """
    ancestors = " ".join(frame_ancestors) if embeddable and frame_ancestors else "'none'"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), usb=()"
    if ancestors == "'none'":
        response.headers["X-Frame-Options"] = "DENY"
    if request.endpoint != "static":
        # Staff pages show live state and personal work; never keep them in a shared cache.
        response.headers.setdefault("Cache-Control", "no-store")
    return response
