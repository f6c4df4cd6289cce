"""change notifications: PostgreSQL NOTIFYs the change channel for every event recorded and
every bump of a generation counter (the live views of every process listen)

Revision ID: 0020_change_notifications
Revises: 0019_quota_counters
"""

from __future__ import annotations

from alembic import op

revision = "0020_change_notifications"
down_revision = "0019_quota_counters"
branch_labels = None
depends_on = None

# a copy of schema.CHANGE_DDL as it was when this migration was written
CHANGE_DDL = (
    """CREATE OR REPLACE FUNCTION opennimble_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'events' THEN
        PERFORM pg_notify('opennimble_changes', NEW.studio_id);
    ELSE
        PERFORM pg_notify('opennimble_changes', '');
    END IF;
    RETURN NULL;
END $$""",
    """CREATE TRIGGER events_changed AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION opennimble_changed()""",
    """CREATE TRIGGER generations_changed AFTER INSERT OR UPDATE ON generations
    FOR EACH ROW EXECUTE FUNCTION opennimble_changed()""",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in CHANGE_DDL:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS generations_changed ON generations")
        op.execute("DROP TRIGGER IF EXISTS events_changed ON events")
        op.execute("DROP FUNCTION IF EXISTS opennimble_changed()")
