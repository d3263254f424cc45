"""The central service's Flask app: the protocol for the branches (and, later, the pages for people)."""

from __future__ import annotations

import threading

from flask import Flask
from sqlalchemy import Engine

from central import db, protocol
from central.config import CentralSettings


def create_app(settings: CentralSettings, engine: Engine | None = None) -> Flask:
    engine = engine or db.open_engine(settings.database_url)
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=protocol.MAX_EVENTS_BODY, JSON_SORT_KEYS=False)
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    app.extensions["omaovi.central"] = protocol.Service(settings, engine, threading.BoundedSemaphore(settings.protocol.max_concurrent))
    app.register_blueprint(protocol.bp)
    return app
