"""users can be disabled (refused like deleted ones, kept with their keys)

Revision ID: 0011_users_disabled
Revises: 0008_sealed_vnc_passwords
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_users_disabled"
down_revision = "0008_sealed_vnc_passwords"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("disabled")
