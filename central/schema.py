"""The central database, as SQLAlchemy Core tables that run on SQLite and PostgreSQL.

Nothing personal is stored: a card is its ``card_key`` only, as on the branch. Every
change to a card's permissions or to a booking is also a row in a change log, whose
running number is what the branches' cursors point into; each log row carries a
random ``mark`` so that a cursor from before a database restore can be told apart
from one the restored database issued itself (see central/cursors.py).

This module is the model that the queries use; the DDL that creates it lives in the
Alembic migrations, and a test checks that the two agree.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)


class UTCDateTime(TypeDecorator):
    """A moment in UTC on both engines.

    SQLite keeps no offset, so every value is written as naive UTC and read back with
    UTC attached; PostgreSQL keeps ``timestamptz``. Code above this layer only ever
    sees aware datetimes."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("a naive datetime cannot be stored: give it a time zone")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


CARD_KEY = String(64)
#: Short texts typed by staff or sent by a device: names, notes, door ids.
NAME = String(200)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: One row, made with the database: the key that signs its cursors (central/cursors.py).
service = Table(
    "service",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("cursor_key", String(64), nullable=False),
    Column("created", UTCDateTime, nullable=False),
)

branches = Table(
    "branches",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", NAME, nullable=False),
    Column("timezone", String(64), nullable=False, server_default="Europe/Helsinki"),
)

#: Each branch's device tokens, stored as SHA-256: a database copy gives no working token.
branch_tokens = Table(
    "branch_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("branch_id", ForeignKey("branches.id", ondelete="CASCADE"), nullable=False),
    Column("name", NAME, nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created", UTCDateTime, nullable=False),
    Column("last_used", UTCDateTime),
    Column("revoked", UTCDateTime),
)

patrons = Table(
    "patrons",
    metadata,
    Column("card_key", CARD_KEY, primary_key=True),
    Column("self_service", Boolean, nullable=False),
    Column("blocked_reason", NAME),
    Column("valid_until", Date),
    Column("age_ok_from", Date),
    Column("staff", Boolean, nullable=False),
    Column("pin_verifier", String(300)),
    Column("updated", UTCDateTime, nullable=False),
)

#: One row per change of a card: ``seq`` is what a patrons cursor points at.
patron_log = Table(
    "patron_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("card_key", CARD_KEY, nullable=False),
    Column("mark", String(16), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    sqlite_autoincrement=True,
)

#: Bookable resources (work booths); ``resource`` is the booth door's ``resource`` in the branch config.
resources = Table(
    "resources",
    metadata,
    Column("branch_id", ForeignKey("branches.id", ondelete="CASCADE"), primary_key=True),
    Column("resource", String(64), primary_key=True),
    Column("name", NAME, nullable=False),
    # Its booking rules (central/booking_rules.py BoothRules, with the same defaults).
    Column("min_minutes", Integer, nullable=False, server_default="60"),
    Column("max_minutes", Integer, nullable=False, server_default="240"),
    Column("slot_minutes", Integer, nullable=False, server_default="30"),
    Column("within", String(16), nullable=False, server_default="both"),
    Column("days_ahead", Integer, nullable=False, server_default="14"),
    Column("max_bookings", Integer, nullable=False, server_default="2"),
    Column("cancel_until_minutes", Integer, nullable=False, server_default="0"),
    CheckConstraint("within IN ('self_service', 'staffed', 'both')", name="known_within"),
    CheckConstraint("slot_minutes > 0 AND min_minutes >= slot_minutes AND max_minutes >= min_minutes", name="sane_lengths"),
)

reservations = Table(
    "reservations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("branch_id", String(64), nullable=False),
    Column("resource", String(64), nullable=False),
    Column("card_key", CARD_KEY, nullable=False),
    Column("begin", UTCDateTime, nullable=False),
    Column("end", UTCDateTime, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Column("updated", UTCDateTime, nullable=False),
    #: The rules the desk set aside for this booking, comma-separated (booking_rules.DESK_OVERRIDABLE); NULL for none.
    Column("overrides", String(200)),
    CheckConstraint('"end" > "begin"', name="ends_after_it_begins"),
    CheckConstraint("state IN ('confirmed', 'cancelled')", name="known_state"),
    Index("ix_reservations_branch_resource_begin", "branch_id", "resource", "begin"),
)

#: One row per change of a booking, per branch: ``seq`` is what a reservations cursor points at.
reservation_log = Table(
    "reservation_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("branch_id", String(64), nullable=False),
    Column("reservation_id", String(64), nullable=False),
    Column("mark", String(16), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_reservation_log_branch_id_seq", "branch_id", "seq"),
    sqlite_autoincrement=True,
)

#: The oldest log position a cursor may still point at, per log (see central/compaction).
log_horizon = Table(
    "log_horizon",
    metadata,
    Column("log", String(32), primary_key=True),
    Column("oldest_seq", Integer, nullable=False),
)

#: A branch's weekly pattern: local times in minutes from midnight, as on the device.
weekly_hours = Table(
    "weekly_hours",
    metadata,
    Column("branch_id", ForeignKey("branches.id", ondelete="CASCADE"), primary_key=True),
    Column("weekday", Integer, primary_key=True),
    Column("start_minute", Integer, primary_key=True),
    Column("end_minute", Integer, nullable=False),
    Column("mode", String(16), nullable=False),
)

#: Dated exceptions; a day with no periods here but a row with ``start_minute`` NULL is closed all day.
hours_exceptions = Table(
    "hours_exceptions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("branch_id", ForeignKey("branches.id", ondelete="CASCADE"), nullable=False),
    Column("day", Date, nullable=False),
    Column("start_minute", Integer),
    Column("end_minute", Integer),
    Column("mode", String(16)),
    Column("note", NAME),
    Index("ix_hours_exceptions_branch_id_day", "branch_id", "day"),
)

#: Door events as the branches sent them, once each by uuid.
events = Table(
    "events",
    metadata,
    Column("uuid", String(36), primary_key=True),
    Column("branch_id", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("ts", UTCDateTime, nullable=False),
    Column("door", String(64), nullable=False),
    Column("type", String(40), nullable=False),
    Column("reason", String(40)),
    Column("mode", String(16)),
    Column("card_key", CARD_KEY),
    Column("detail", Text),
    Column("received", UTCDateTime, nullable=False),
    Index("ix_events_branch_id_ts", "branch_id", "ts"),
)
