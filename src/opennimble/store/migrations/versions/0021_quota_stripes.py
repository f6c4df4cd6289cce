"""quota stripes: each quota counter becomes STRIPES rows, each with its share of the limit, so
that concurrent creates of one studio (or owner) lock different rows; what a counter held is
spread over its stripes as evenly as the limit's shares are

Revision ID: 0021_quota_stripes
Revises: 0020_change_notifications
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021_quota_stripes"
down_revision = "0020_change_notifications"
branch_labels = None
depends_on = None

STRIPES = 8  # store.quota_counters.STRIPES when this migration was written


def _share(total: str, stripe: str) -> str:
    """SQL: the part of ``total`` that stripe ``stripe`` holds (as a limit is shared out)."""
    return f"({total} / {STRIPES} + CASE WHEN {stripe} < {total} % {STRIPES} THEN 1 ELSE 0 END)"


def upgrade() -> None:
    with op.batch_alter_table("quota_counters") as batch:
        batch.add_column(sa.Column("stripe", sa.SmallInteger(), nullable=False, server_default="0"))
        batch.drop_constraint("pk_quota_counters", type_="primary")
        batch.create_primary_key("pk_quota_counters", ["studio_id", "owned_by", "stripe"])
    with op.batch_alter_table("quota_counters") as batch:
        batch.alter_column("stripe", server_default=None)
    others = " UNION ALL ".join(f"SELECT {i} AS i" for i in range(1, STRIPES))
    op.execute(
        "INSERT INTO quota_counters (studio_id, owned_by, stripe, used) "
        f"SELECT q.studio_id, q.owned_by, s.i, {_share('q.used', 's.i')} "
        f"FROM quota_counters q, ({others}) s "
        f"WHERE q.stripe = 0 AND {_share('q.used', 's.i')} > 0"
    )
    op.execute(f"UPDATE quota_counters SET used = {_share('used', '0')} WHERE stripe = 0")


def downgrade() -> None:
    op.execute(  # every counter gets a stripe 0, which takes the sum of its stripes
        "INSERT INTO quota_counters (studio_id, owned_by, stripe, used) "
        "SELECT DISTINCT q.studio_id, q.owned_by, 0, 0 FROM quota_counters q WHERE NOT EXISTS "
        "(SELECT 1 FROM quota_counters z WHERE z.studio_id = q.studio_id "
        "AND z.owned_by = q.owned_by AND z.stripe = 0)"
    )
    op.execute(
        "UPDATE quota_counters SET used = (SELECT sum(o.used) FROM quota_counters o "
        "WHERE o.studio_id = quota_counters.studio_id AND o.owned_by = quota_counters.owned_by) "
        "WHERE stripe = 0"
    )
    op.execute("DELETE FROM quota_counters WHERE stripe != 0")
    with op.batch_alter_table("quota_counters") as batch:
        batch.drop_constraint("pk_quota_counters", type_="primary")
        batch.drop_column("stripe")
        batch.create_primary_key("pk_quota_counters", ["studio_id", "owned_by"])
