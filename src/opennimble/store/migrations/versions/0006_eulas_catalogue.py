"""the EULA catalogue and its acceptances

Revision ID: 0006_eulas_catalogue
Revises: 0005_scale_out
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_eulas_catalogue"
down_revision = "0005_scale_out"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "eulas",
        sa.Column("eula_id", sa.String(length=22), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("ec2_image_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("eula_id", name=op.f("pk_eulas")),
    )
    op.create_table(
        "eula_acceptances",
        sa.Column("eula_acceptance_id", sa.String(length=64), nullable=False),
        sa.Column("studio_id", sa.String(length=64), nullable=False),
        sa.Column("accepted_by", sa.String(length=64), nullable=False),
        sa.Column("eula_id", sa.String(length=22), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("eula_acceptance_id", name=op.f("pk_eula_acceptances")),
        sa.UniqueConstraint(
            "studio_id",
            "accepted_by",
            "eula_id",
            name=op.f("uq_eula_acceptances_studio_id_accepted_by_eula_id"),
        ),
    )
    op.create_index(
        op.f("ix_eula_acceptances_studio_id_created_at_eula_acceptance_id"),
        "eula_acceptances",
        ["studio_id", "created_at", "eula_acceptance_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_eula_acceptances_studio_id_created_at_eula_acceptance_id"),
        table_name="eula_acceptances",
    )
    op.drop_table("eula_acceptances")
    op.drop_table("eulas")
