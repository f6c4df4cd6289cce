"""Webhooks and their deliveries: registration, the delivery log, and claims on deliveries.

Deliveries are queued by :func:`opennimble.store.events.record`. A delivery can be claimed only
when it is the oldest pending one of its (webhook, session): so a session's events reach a
webhook in order, each after the previous one was delivered (or given up). Claims work like
the sessions' (:func:`opennimble.store.sessions.claim`): ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so several workers claim disjoint deliveries; a claim lapses at
``claim_expires_at``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from opennimble.store import events, schema

Row = dict[str, Any]
hooks = schema.webhooks
d = schema.webhook_deliveries


def insert(conn: sa.Connection, row: Row) -> None:
    events.webhooks_changed(conn)
    conn.execute(hooks.insert().values(row))


def get(conn: sa.Connection, webhook_id: str) -> Row | None:
    row = conn.execute(sa.select(hooks).where(hooks.c.webhook_id == webhook_id)).first()
    return dict(row._mapping) if row else None


def of_ids(conn: sa.Connection, webhook_ids: set[str]) -> dict[str, Row]:
    query = sa.select(hooks).where(hooks.c.webhook_id.in_(tuple(webhook_ids)))
    return {r.webhook_id: dict(r._mapping) for r in conn.execute(query)}


def listed(conn: sa.Connection, studio_id: str | None = None) -> list[Row]:
    query = sa.select(hooks).order_by(hooks.c.created_at, hooks.c.webhook_id)
    if studio_id is not None:
        query = query.where(hooks.c.studio_id == studio_id)
    return [dict(r._mapping) for r in conn.execute(query)]


def delete(conn: sa.Connection, webhook_id: str) -> bool:
    """Remove a webhook and its delivery log (pending deliveries are dropped)."""
    events.webhooks_changed(conn)
    conn.execute(d.delete().where(d.c.webhook_id == webhook_id))
    return conn.execute(hooks.delete().where(hooks.c.webhook_id == webhook_id)).rowcount == 1


def log(conn: sa.Connection, webhook_id: str | None, state: str | None, limit: int) -> list[Row]:
    """The newest ``limit`` deliveries (of one webhook, in one state, if given), oldest first."""
    query = sa.select(d.c.delivery_id, *[c for c in d.c if c.name not in ("body", "delivery_id")])
    if webhook_id is not None:
        query = query.where(d.c.webhook_id == webhook_id)
    if state is not None:
        query = query.where(d.c.state == state)
    rows = conn.execute(query.order_by(d.c.delivery_id.desc()).limit(limit))
    return [dict(r._mapping) for r in reversed(list(rows))]


def due(conn: sa.Connection, now: int) -> bool:
    """Whether some pending delivery's next attempt has come (a cheap read before a claim)."""
    query = sa.select(d.c.delivery_id).where(d.c.state == "PENDING", d.c.next_attempt_at <= now)
    return conn.execute(query.limit(1)).first() is not None


def claim(conn: sa.Connection, *, owner: str, now: int, lease: int, limit: int) -> list[Row]:
    """Claim up to ``limit`` due deliveries, each the oldest pending one of its (webhook,
    session) and not claimed by a live holder; return them, oldest first."""
    earlier = d.alias("earlier")
    waits = (
        sa.exists()
        .where(
            earlier.c.webhook_id == d.c.webhook_id,
            earlier.c.session_id == d.c.session_id,
            earlier.c.state == "PENDING",
            earlier.c.delivery_id < d.c.delivery_id,
        )
        .correlate(d)
    )
    candidates = (
        sa.select(d.c.delivery_id)
        .where(
            d.c.state == "PENDING",
            d.c.next_attempt_at <= now,
            sa.or_(d.c.claimed_by.is_(None), d.c.claim_expires_at < now),
            sa.not_(waits),
        )
        .order_by(d.c.delivery_id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=d)
    )
    query = (
        d.update()
        .where(d.c.delivery_id.in_(candidates))
        .values(claimed_by=owner, claim_expires_at=now + lease)
        .returning(*d.c)
    )
    return sorted((dict(r._mapping) for r in conn.execute(query)), key=lambda r: r["delivery_id"])


def finish(conn: sa.Connection, delivery_id: int, owner: str, **values: Any) -> bool:
    """Record an attempt's outcome and drop ``owner``'s claim (if it still holds it)."""
    query = (
        d.update()
        .where(d.c.delivery_id == delivery_id, d.c.claimed_by == owner)
        .values(claimed_by=None, claim_expires_at=None, **values)
    )
    return conn.execute(query).rowcount == 1
