"""the audit trail: who did what to which resource, when, from where, with what outcome

Revision ID: 0016_audit_trail
Revises: 0014_portal_passwords
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_audit_trail"
down_revision = "0014_portal_passwords"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column(
            "entry_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(length=128), nullable=True),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("user_name", sa.String(length=128), nullable=True),
        sa.Column("persona", sa.String(length=32), nullable=False),
        sa.Column("access_key_id", sa.String(length=128), nullable=True),
        sa.Column("client", sa.String(length=128), nullable=True),
        sa.Column("studio_id", sa.String(length=256), nullable=True),
        sa.Column("resource_id", sa.String(length=2048), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_audit")),
    )
    op.create_index(op.f("ix_audit_at"), "audit", ["at"], unique=False)
    op.create_index(op.f("ix_audit_studio_id_at"), "audit", ["studio_id", "at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_studio_id_at"), table_name="audit")
    op.drop_index(op.f("ix_audit_at"), table_name="audit")
    op.drop_table("audit")
