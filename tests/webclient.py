"""A branch and logged-in browsers for the staff page tests.

The app runs with CSRF protection on, as in production: ``WebClient.post`` sends
the token the page itself carries, and tests/test_web_auth.py shows a post
without it is refused.
"""

from __future__ import annotations

import re
from pathlib import Path

from flask.testing import FlaskClient

from admin_web import accounts, create_app
from device import config as config_mod
from device.store import Store

BRANCH_CONFIG = """\
branch = "kallio"
timezone = "Europe/Helsinki"
database = "omaovi.db"
consortium_key_file = "consortium.key"

[web]
secret_key_file = "web-secret.key"

[[doors]]
id = "entrance"
name = "Main entrance"
kind = "entrance"
lock_pin = 17
contact_pin = 27
exit_button_pin = 22

[[doors]]
id = "booth"
name = "Work booth"
kind = "booth"
resource = "smartblock-1"
lock_pin = 5
contact_pin = 6
"""

PASSWORDS = {"admin": "admin-password-1", "staff": "staff-password-1"}

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def write_branch(directory: Path, extra: str = "") -> config_mod.Config:
    """A branch config with an entrance and a booth, and its consortium key, in ``directory``."""
    (directory / "consortium.key").write_text("k" * 32 + "\n")
    path = directory / "omaovi.toml"
    path.write_text(BRANCH_CONFIG + extra)
    return config_mod.load(path)


def make_app(config: config_mod.Config, with_users: bool = True):
    app = create_app(config, testing=True)
    if with_users:
        store = Store(config.database)
        for role, password in PASSWORDS.items():
            accounts.add_user(store, role, password, role)
        store.close()
    return app


class WebClient(FlaskClient):
    def csrf_token(self) -> str:
        """The token from a page every visitor may load; it is bound to this client's session."""
        html = self.get("/login", follow_redirects=True).get_data(as_text=True)
        return _CSRF.search(html).group(1)

    def post(self, *args, **kwargs):
        """A form post carrying the page's CSRF token unless the test sets ``csrf_token`` itself."""
        data = kwargs.get("data")
        if isinstance(data, dict) and "csrf_token" not in data:
            kwargs["data"] = {**data, "csrf_token": self.csrf_token()}
        return super().post(*args, **kwargs)

    def login(self, username: str, password: str | None = None):
        return self.post("/login", data={"username": username, "password": password or PASSWORDS[username]})


def blueprint_routes(app, blueprint: str, placeholder: str = "x"):
    """Every (method, url) of one blueprint, each URL argument filled with ``placeholder``."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(f"{blueprint}."):
            url = re.sub(r"<[^>]+>", placeholder, rule.rule)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield method, url


def rule_url(app, rule, **values) -> str:
    """A URL of ``rule`` with a plausible value for each argument, unless ``values`` gives one.

    An any() argument gets its first choice, an int 1 and any other "entrance",
    the one id every test branch has.
    """
    from werkzeug.routing import AnyConverter, IntegerConverter

    for argument, converter in rule._converters.items():
        if argument in values:
            continue
        if isinstance(converter, AnyConverter):
            values[argument] = sorted(converter.items)[0]
        elif isinstance(converter, IntegerConverter):
            values[argument] = 1
        else:
            values[argument] = "entrance"
    return app.url_map.bind("localhost").build(rule.endpoint, values)
