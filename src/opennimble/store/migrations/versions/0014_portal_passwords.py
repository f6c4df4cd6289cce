"""portal sign-in: users' password hashes and lock-out after repeated failures

Revision ID: 0014_portal_passwords
Revises: 0011_users_disabled
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_portal_passwords"
down_revision = "0011_users_disabled"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("password_hash", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("failed_signins", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("locked_until", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("locked_until")
        batch_op.drop_column("failed_signins")
        batch_op.drop_column("password_hash")
