"""work queues: partial indexes of the sessions with work to do, in the order the reconciler's
claims take them, so that a claim reads the rows it takes, not every session that waits

Revision ID: 0022_work_queues
Revises: 0021_quota_stripes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022_work_queues"
down_revision = "0021_quota_stripes"
branch_labels = None
depends_on = None

# store.schema's SESSION_WORK, NEW_WORK and UNBOUND_DELETION when this migration was written
SESSION_WORK = (
    "state IN ('CREATE_IN_PROGRESS', 'DELETE_IN_PROGRESS', 'STOP_IN_PROGRESS', 'START_IN_PROGRESS')"
)
NEW_WORK = f"host_id IS NULL AND {SESSION_WORK}"
UNBOUND_DELETION = "host_id IS NULL AND state = 'DELETE_IN_PROGRESS'"


# name, condition, columns (as in store/schema.py)
INDEXES = (
    ("ix_sessions_host_work", SESSION_WORK, ["host_id", "next_attempt_at", "created_at"]),
    ("ix_sessions_new_work", NEW_WORK, ["next_attempt_at", "created_at"]),
    ("ix_sessions_new_work_by_age", NEW_WORK, ["created_at"]),
    ("ix_sessions_unbound_deletions", UNBOUND_DELETION, ["next_attempt_at", "created_at"]),
)


def upgrade() -> None:
    for name, where, columns in INDEXES:
        condition = sa.text(where)
        op.create_index(
            name, "sessions", columns, postgresql_where=condition, sqlite_where=condition
        )


def downgrade() -> None:
    for name, _, _ in reversed(INDEXES):
        op.drop_index(name, table_name="sessions")
