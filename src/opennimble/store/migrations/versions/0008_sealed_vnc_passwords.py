"""no desktop password in clear: drop the VNC passwords stored in sessions' endpoints and states

Endpoints now keep a desktop's password sealed with the installation key (``sealedPassword``),
which migrations do not have. The clear passwords are removed; the reconciler gives each READY
session its endpoint again, sealed, at its next check of the desktop (the provider still knows
the password). Downgrading keeps the sealed passwords: streams then fail to authenticate until
the sessions are started again.

Revision ID: 0008_sealed_vnc_passwords
Revises: 0007_session_backups
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008_sealed_vnc_passwords"
down_revision = "0007_session_backups"
branch_labels = None
depends_on = None

SESSIONS = sa.table(
    "sessions",
    sa.column("session_id", sa.String()),
    sa.column("endpoint", sa.JSON()),
    sa.column("provider_state", sa.JSON()),
)
CLEAR = "password"


def _without_password(value: Any) -> Any:
    if isinstance(value, dict) and CLEAR in value:
        return {key: item for key, item in value.items() if key != CLEAR}
    return value


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(SESSIONS)).mappings().all()
    for row in rows:
        endpoint = _without_password(row["endpoint"])
        state = _without_password(row["provider_state"])
        if endpoint is row["endpoint"] and state is row["provider_state"]:
            continue
        conn.execute(
            SESSIONS.update()
            .where(SESSIONS.c.session_id == row["session_id"])
            .values(endpoint=endpoint, provider_state=state)
        )


def downgrade() -> None:
    pass  # nothing to restore: the clear passwords are gone for good
