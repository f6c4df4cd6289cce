"""What the database says about the installation's state, for metrics and readiness."""

from __future__ import annotations

import sqlalchemy as sa

from opennimble.store import schema, sessions
from opennimble.store.sessions import HOLDING_STATES

t = schema.sessions


def sessions_by_studio_and_state(conn: sa.Connection) -> list[tuple[str, str, int]]:
    query = sa.select(t.c.studio_id, t.c.state, sa.func.count()).group_by(t.c.studio_id, t.c.state)
    return [(str(studio), str(state), int(n)) for studio, state, n in conn.execute(query)]


def desktops_by_host(conn: sa.Connection) -> list[tuple[str, int]]:
    """Sessions whose desktop occupies each host (the capacity in use)."""
    query = (
        sa.select(t.c.host_id, sa.func.count())
        .where(t.c.host_id.is_not(None), t.c.state.in_(HOLDING_STATES))
        .group_by(t.c.host_id)
    )
    return [(str(host), int(n)) for host, n in conn.execute(query)]


def queue(conn: sa.Connection, now: int) -> tuple[int, int | None]:
    """How many sessions wait for a reconciler (due, unclaimed), and when the oldest live claim
    was taken on work that began then (its ``work_started_at``; None without claims). Counted
    queue by queue, each by its own index (store/schema.py's work queues)."""
    unclaimed = sa.or_(t.c.claimed_by.is_(None), t.c.claim_expires_at < now)
    claimed = sa.and_(t.c.claimed_by.is_not(None), t.c.claim_expires_at >= now)
    due = sa.and_(t.c.next_attempt_at <= now, unclaimed)
    per_queue = sa.union_all(
        *(
            sa.select(
                sa.func.count().filter(due).label("waiting"),
                sa.func.min(t.c.work_started_at).filter(claimed).label("first"),
            ).where(*sessions.work_queue(name))
            for name in sessions.WORK_QUEUES
        )
    ).subquery()
    totals = sa.select(sa.func.sum(per_queue.c.waiting), sa.func.min(per_queue.c.first))
    waiting, first = conn.execute(totals).one()
    return int(waiting or 0), None if first is None else int(first)


def schema_versions(conn: sa.Connection) -> set[str]:
    rows = conn.execute(sa.text("SELECT version_num FROM alembic_version"))
    return {str(version) for (version,) in rows}
