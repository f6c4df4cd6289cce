"""quota counters: sessions per studio and per (studio, owner), counted from the sessions

Revision ID: 0019_quota_counters
Revises: 0018_lifecycle_events
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_quota_counters"
down_revision = "0018_lifecycle_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quota_counters",
        sa.Column("studio_id", sa.String(length=64), nullable=False),
        sa.Column("owned_by", sa.String(length=64), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("studio_id", "owned_by", name=op.f("pk_quota_counters")),
    )
    # the sessions that count (every state but DELETED), per studio and per owner
    op.execute(
        "INSERT INTO quota_counters (studio_id, owned_by, used) "
        "SELECT studio_id, '', count(*) FROM sessions WHERE state != 'DELETED' "
        "GROUP BY studio_id"
    )
    op.execute(
        "INSERT INTO quota_counters (studio_id, owned_by, used) "
        "SELECT studio_id, owned_by, count(*) FROM sessions WHERE state != 'DELETED' "
        "GROUP BY studio_id, owned_by"
    )


def downgrade() -> None:
    op.drop_table("quota_counters")
