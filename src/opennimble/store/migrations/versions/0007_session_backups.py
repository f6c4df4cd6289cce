"""backups of streaming sessions' storage

Revision ID: 0007_session_backups
Revises: 0006_eulas_catalogue
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_session_backups"
down_revision = "0006_eulas_catalogue"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_backups_studio_id_created_at_backup_id": ["studio_id", "created_at", "backup_id"],
    "ix_backups_studio_id_owned_by_created_at_backup_id": [
        "studio_id",
        "owned_by",
        "created_at",
        "backup_id",
    ],
    "ix_backups_session_id_state": ["session_id", "state"],
    "ix_backups_deleted_at": ["deleted_at"],
}


def upgrade() -> None:
    op.create_table(
        "backups",
        sa.Column("backup_id", sa.String(length=64), nullable=False),
        sa.Column("studio_id", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("launch_profile_id", sa.String(length=64), nullable=False),
        sa.Column("owned_by", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("status_code", sa.String(length=64), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("deleted_at", sa.BigInteger(), nullable=True),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("provider_state", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("backup_id", name=op.f("pk_backups")),
    )
    with op.batch_alter_table("backups", schema=None) as batch_op:
        for name, columns in INDEXES.items():
            batch_op.create_index(batch_op.f(name), columns, unique=False)


def downgrade() -> None:
    with op.batch_alter_table("backups", schema=None) as batch_op:
        for name in INDEXES:
            batch_op.drop_index(batch_op.f(name))
    op.drop_table("backups")
