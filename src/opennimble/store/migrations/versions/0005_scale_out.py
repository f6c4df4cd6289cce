"""scale out: sessions bound to a workstation host; NOTIFY on new work (PostgreSQL)

Revision ID: 0005_scale_out
Revises: 0001
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_scale_out"
down_revision = "0001"
branch_labels = None
depends_on = None

# a copy of schema.WAKE_DDL as it was when this migration was written
WAKE_DDL = (
    """CREATE OR REPLACE FUNCTION opennimble_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('opennimble_work', TG_TABLE_NAME);
    RETURN NULL;
END $$""",
    """CREATE TRIGGER sessions_wake AFTER INSERT OR UPDATE OF state ON sessions
    FOR EACH ROW WHEN (right(NEW.state, 12) = '_IN_PROGRESS') EXECUTE FUNCTION opennimble_wake()""",
    """CREATE TRIGGER resources_wake AFTER INSERT OR UPDATE OF state ON resources
    FOR EACH ROW WHEN (right(NEW.state, 12) = '_IN_PROGRESS') EXECUTE FUNCTION opennimble_wake()""",
)


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("host_id", sa.String(length=128), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_sessions_host_id_state"), ["host_id", "state"], unique=False
        )
        # the reconciler's timer and purge passes must not scan every session
        batch_op.create_index(batch_op.f("ix_sessions_terminate_at"), ["terminate_at"])
        batch_op.create_index(batch_op.f("ix_sessions_stop_at"), ["stop_at"])
        batch_op.create_index(batch_op.f("ix_sessions_deleted_at"), ["deleted_at"])
    if op.get_bind().dialect.name == "postgresql":
        for statement in WAKE_DDL:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS resources_wake ON resources")
        op.execute("DROP TRIGGER IF EXISTS sessions_wake ON sessions")
        op.execute("DROP FUNCTION IF EXISTS opennimble_wake()")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sessions_deleted_at"))
        batch_op.drop_index(batch_op.f("ix_sessions_stop_at"))
        batch_op.drop_index(batch_op.f("ix_sessions_terminate_at"))
        batch_op.drop_index(batch_op.f("ix_sessions_host_id_state"))
        batch_op.drop_column("host_id")
