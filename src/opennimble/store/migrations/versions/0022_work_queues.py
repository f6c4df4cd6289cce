"""work queues: partial indexes of the sessions with work to do (bound to a host, new, unbound
deletions), in the order the reconciler's claims take them, so that a claim reads the rows it
takes, not every session that waits; they replace the index of the sessions by state and next
attempt, and the index of the sessions' hosts holds the bound ones only

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

# store.schema's conditions when this migration was written
SESSION_WORK = (
    "state IN ('CREATE_IN_PROGRESS', 'DELETE_IN_PROGRESS', 'STOP_IN_PROGRESS', 'START_IN_PROGRESS')"
)
BOUND_WORK = f"host_id IS NOT NULL AND {SESSION_WORK}"
NEW_WORK = (
    "host_id IS NULL AND state IN ('CREATE_IN_PROGRESS', 'STOP_IN_PROGRESS', 'START_IN_PROGRESS')"
)
UNBOUND_DELETION = "host_id IS NULL AND state = 'DELETE_IN_PROGRESS'"
BOUND = "host_id IS NOT NULL"

# name, condition, columns (as in store/schema.py)
INDEXES = (
    ("ix_sessions_host_work", BOUND_WORK, ["host_id", "next_attempt_at", "created_at"]),
    ("ix_sessions_new_work", NEW_WORK, ["created_at"]),
    ("ix_sessions_unbound_deletions", UNBOUND_DELETION, ["next_attempt_at", "created_at"]),
)


def _create(name: str, columns: list[str], where: str | None) -> None:
    condition = None if where is None else sa.text(where)
    op.create_index(name, "sessions", columns, postgresql_where=condition, sqlite_where=condition)


def upgrade() -> None:
    # the index of the sessions' hosts holds the bound ones only: a claim of the sessions
    # bound to none, whose planner knows nothing of how many wait, may not take it for theirs
    op.drop_index("ix_sessions_host_id_state", table_name="sessions")
    _create("ix_sessions_host_id_state", ["host_id", "state"], BOUND)
    for name, where, columns in INDEXES:
        _create(name, columns, where)
    # the work by state, which the queues replace (a planner that knew nothing of the sessions
    # waiting took it, and read and sorted them all)
    op.drop_index("ix_sessions_state_next_attempt_at", table_name="sessions")


def downgrade() -> None:
    _create("ix_sessions_state_next_attempt_at", ["state", "next_attempt_at"], None)
    for name, _, _ in reversed(INDEXES):
        op.drop_index(name, table_name="sessions")
    op.drop_index("ix_sessions_host_id_state", table_name="sessions")
    _create("ix_sessions_host_id_state", ["host_id", "state"], None)
