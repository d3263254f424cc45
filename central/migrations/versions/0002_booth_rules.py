"""Per-booth booking rules, and the rules the desk set aside for a booking.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: The defaults of central/booking_rules.py BoothRules: booths already added get them.
_RULES = (
    ("min_minutes", sa.Integer, "60"),
    ("max_minutes", sa.Integer, "240"),
    ("slot_minutes", sa.Integer, "30"),
    ("within", sa.String(16), "both"),
    ("days_ahead", sa.Integer, "14"),
    ("max_bookings", sa.Integer, "2"),
    ("cancel_until_minutes", sa.Integer, "0"),
)


def upgrade() -> None:
    # batch mode: SQLite can add a CHECK constraint only by rebuilding the table.
    with op.batch_alter_table("resources") as table:
        for name, kind, default in _RULES:
            table.add_column(sa.Column(name, kind, nullable=False, server_default=default))
        table.create_check_constraint("known_within", "within IN ('self_service', 'staffed', 'both')")
        table.create_check_constraint("sane_lengths", "slot_minutes > 0 AND min_minutes >= slot_minutes AND max_minutes >= min_minutes")
    # A plain ADD COLUMN: rebuilding reservations would drop its SQLite overlap triggers.
    op.add_column("reservations", sa.Column("overrides", sa.String(200)))


def downgrade() -> None:
    raise NotImplementedError("the central database only moves forward; restore a backup to go back")
