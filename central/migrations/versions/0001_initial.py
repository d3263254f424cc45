"""The first central schema: branches and their tokens, patrons, bookings, hours, events.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from central.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

CARD_KEY = sa.String(64)
NAME = sa.String(200)

#: Two confirmed bookings of one booth may never overlap, whatever the timing: on
#: PostgreSQL an exclusion constraint on the time range, on SQLite triggers (every
#: SQLite write is serialised, so the check and the write cannot interleave).
_PG_NO_OVERLAP = """
ALTER TABLE reservations ADD CONSTRAINT reservations_no_overlap
EXCLUDE USING gist (branch_id WITH =, resource WITH =, tstzrange("begin", "end") WITH &&)
WHERE (state = 'confirmed')
"""
_SQLITE_NO_OVERLAP = """
CREATE TRIGGER reservations_no_overlap_{when} BEFORE {when} ON reservations
WHEN NEW.state = 'confirmed' AND EXISTS (
    SELECT 1 FROM reservations AS other
    WHERE other.branch_id = NEW.branch_id AND other.resource = NEW.resource
      AND other.state = 'confirmed' AND other.id != NEW.id
      AND other."begin" < NEW."end" AND NEW."begin" < other."end")
BEGIN
    SELECT RAISE(ABORT, 'reservations_no_overlap');
END
"""


def upgrade() -> None:
    op.create_table(
        "service",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("cursor_key", sa.String(64), nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
    )
    op.create_table(
        "branches",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", NAME, nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False, server_default="Europe/Helsinki"),
    )
    op.create_table(
        "branch_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("branch_id", sa.String(64), sa.ForeignKey("branches.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("last_used", UTCDateTime),
        sa.Column("revoked", UTCDateTime),
    )
    op.create_table(
        "patrons",
        sa.Column("card_key", CARD_KEY, primary_key=True),
        sa.Column("self_service", sa.Boolean, nullable=False),
        sa.Column("blocked_reason", NAME),
        sa.Column("valid_until", sa.Date),
        sa.Column("age_ok_from", sa.Date),
        sa.Column("staff", sa.Boolean, nullable=False),
        sa.Column("pin_verifier", sa.String(300)),
        sa.Column("updated", UTCDateTime, nullable=False),
    )
    op.create_table(
        "patron_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("card_key", CARD_KEY, nullable=False),
        sa.Column("mark", sa.String(16), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "resources",
        sa.Column("branch_id", sa.String(64), sa.ForeignKey("branches.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("resource", sa.String(64), primary_key=True),
        sa.Column("name", NAME, nullable=False),
    )
    op.create_table(
        "reservations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("branch_id", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(64), nullable=False),
        sa.Column("card_key", CARD_KEY, nullable=False),
        sa.Column("begin", UTCDateTime, nullable=False),
        sa.Column("end", UTCDateTime, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("updated", UTCDateTime, nullable=False),
        sa.CheckConstraint('"end" > "begin"', name="ends_after_it_begins"),
        sa.CheckConstraint("state IN ('confirmed', 'cancelled')", name="known_state"),
    )
    op.create_index("ix_reservations_branch_resource_begin", "reservations", ["branch_id", "resource", "begin"])
    op.create_table(
        "reservation_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("branch_id", sa.String(64), nullable=False),
        sa.Column("reservation_id", sa.String(64), nullable=False),
        sa.Column("mark", sa.String(16), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_reservation_log_branch_id_seq", "reservation_log", ["branch_id", "seq"])
    op.create_table(
        "log_horizon",
        sa.Column("log", sa.String(32), primary_key=True),
        sa.Column("oldest_seq", sa.Integer, nullable=False),
    )
    op.create_table(
        "weekly_hours",
        sa.Column("branch_id", sa.String(64), sa.ForeignKey("branches.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("weekday", sa.Integer, primary_key=True),
        sa.Column("start_minute", sa.Integer, primary_key=True),
        sa.Column("end_minute", sa.Integer, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
    )
    op.create_table(
        "hours_exceptions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("branch_id", sa.String(64), sa.ForeignKey("branches.id", ondelete="CASCADE"), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("start_minute", sa.Integer),
        sa.Column("end_minute", sa.Integer),
        sa.Column("mode", sa.String(16)),
        sa.Column("note", NAME),
    )
    op.create_index("ix_hours_exceptions_branch_id_day", "hours_exceptions", ["branch_id", "day"])
    op.create_table(
        "events",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("branch_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.Column("door", sa.String(64), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("reason", sa.String(40)),
        sa.Column("mode", sa.String(16)),
        sa.Column("card_key", CARD_KEY),
        sa.Column("detail", sa.Text),
        sa.Column("received", UTCDateTime, nullable=False),
    )
    op.create_index("ix_events_branch_id_ts", "events", ["branch_id", "ts"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(_PG_NO_OVERLAP)
    else:
        op.execute(_SQLITE_NO_OVERLAP.format(when="INSERT"))
        op.execute(_SQLITE_NO_OVERLAP.format(when="UPDATE"))


def downgrade() -> None:
    raise NotImplementedError("the central database only moves forward; restore a backup to go back")
