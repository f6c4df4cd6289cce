"""lifecycle events, webhooks and their deliveries

Revision ID: 0018_lifecycle_events
Revises: 0017_access_generation
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_lifecycle_events"
down_revision = "0017_access_generation"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DELIVERY_INDEXES = {
    "ix_webhook_deliveries_state_next_attempt_at": ["state", "next_attempt_at"],
    "ix_webhook_deliveries_webhook_id_session_id_state_delivery_id": [
        "webhook_id",
        "session_id",
        "state",
        "delivery_id",
    ],
    "ix_webhook_deliveries_webhook_id_delivery_id": ["webhook_id", "delivery_id"],
    "ix_webhook_deliveries_updated_at": ["updated_at"],
}


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("studio_id", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("owned_by", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_events")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_events_time"), "events", ["time"], unique=False)
    op.create_table(
        "webhooks",
        sa.Column("webhook_id", sa.String(length=64), nullable=False),
        sa.Column("studio_id", sa.String(length=64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("webhook_id", name=op.f("pk_webhooks")),
    )
    op.create_index(op.f("ix_webhooks_studio_id"), "webhooks", ["studio_id"], unique=False)
    op.create_table(
        "webhook_deliveries",
        sa.Column("delivery_id", SEQ, autoincrement=True, nullable=False),
        sa.Column("webhook_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("claim_expires_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("delivery_id", name=op.f("pk_webhook_deliveries")),
        sqlite_autoincrement=True,
    )
    for name, columns in DELIVERY_INDEXES.items():
        op.create_index(op.f(name), "webhook_deliveries", columns, unique=False)


def downgrade() -> None:
    for name in DELIVERY_INDEXES:
        op.drop_index(op.f(name), table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index(op.f("ix_webhooks_studio_id"), table_name="webhooks")
    op.drop_table("webhooks")
    op.drop_index(op.f("ix_events_time"), table_name="events")
    op.drop_table("events")
