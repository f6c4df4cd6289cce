"""the access generation: a counter bumped with every change the access rules read

Revision ID: 0017_access_generation
Revises: 0016_audit_trail
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_access_generation"
down_revision = "0016_audit_trail"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "generations",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_generations")),
    )
    op.bulk_insert(table, [{"name": "access", "value": 1}])


def downgrade() -> None:
    op.drop_table("generations")
