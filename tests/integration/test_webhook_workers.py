"""Several webhook delivery workers on one database share the deliveries: each event reaches
the receiver once, a session's events in order; a receiver that fails gets retries with
back-off, and the delivery log says why."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from cryptography.fernet import Fernet

from opennimble import clock
from opennimble.reconciler import webhooks
from opennimble.store import crypto, database, events
from opennimble.store import webhooks as store
from tests.support import receiver as receivers

SECRET = "integration-secret-0123456789"
SESSIONS, PER_SESSION = 12, 6


def register(db: database.Database, cipher: crypto.Cipher, url: str) -> None:
    with db.write() as conn:
        store.insert(
            conn,
            {
                "webhook_id": "wh-1",
                "studio_id": "studio",
                "url": url,
                "event_types": ["session.*"],
                "secret": cipher.encrypt(SECRET),
                "created_at": 1,
            },
        )


def record_events(db: database.Database) -> None:
    """PER_SESSION events of each of SESSIONS sessions, interleaved across sessions."""
    for n in range(PER_SESSION):
        for s in range(SESSIONS):
            with db.write() as conn:
                events.serialize(conn)
                events.record(
                    conn,
                    "session.ready",
                    time=clock.system_now(),
                    studio_id="studio",
                    session_id=f"s{s}",
                    owned_by="u",
                    detail={"n": n},
                )


async def deliver_with(workers: list[webhooks.Deliverer], until: Any, timeout: float) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        deadline = asyncio.get_running_loop().time() + timeout
        while not until():
            assert asyncio.get_running_loop().time() < deadline, "not delivered in time"
            await asyncio.gather(*(w.round(client) for w in workers))


def test_several_workers_deliver_each_event_once_in_order(db: database.Database) -> None:
    cipher = crypto.Cipher(Fernet.generate_key())
    with receivers.running(SECRET) as receiver:
        register(db, cipher, receiver.url)
        record_events(db)
        workers = [
            webhooks.Deliverer(db, cipher, now=clock.system_now, host_id=f"h{i}") for i in range(4)
        ]
        total = SESSIONS * PER_SESSION
        asyncio.run(deliver_with(workers, lambda: len(receiver.received) >= total, 60))
        got = receiver.events()
    assert all(r["valid"] for r in receiver.received)
    numbers = [e["sequence"] for e in got]
    assert len(numbers) == total == len(set(numbers)), "an event was delivered twice"
    for s in range(SESSIONS):
        mine = [e["detail"]["n"] for e in got if e["sessionId"] == f"s{s}"]
        assert mine == list(range(PER_SESSION)), f"session s{s} out of order: {mine}"
    with db.read() as conn:
        states = {r["state"] for r in store.log(conn, "wh-1", None, 1000)}
    assert states == {"DELIVERED"}


def test_a_failing_receiver_is_retried_with_back_off(db: database.Database) -> None:
    cipher = crypto.Cipher(Fernet.generate_key())
    now = [1_000 * clock.SECOND]

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="maintenance")

    register(db, cipher, "http://receiver.invalid/hook")
    with db.write() as conn:
        for type_ in ("session.ready", "session.stopped"):
            events.record(
                conn,
                type_,
                time=now[0],
                studio_id="studio",
                session_id="s",
                owned_by="u",
                detail={},
            )
    worker = webhooks.Deliverer(db, cipher, now=lambda: now[0], host_id="h")

    async def rounds() -> list[int]:
        attempted = []
        async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
            for step in (0, 0, 1, 1, 2, 4):  # seconds moved before each round
                now[0] += step * clock.SECOND
                attempted.append(await worker.round(client))
        return attempted

    assert asyncio.run(rounds()) == [1, 0, 1, 0, 1, 1]  # after 1 s, then 2 s, then 4 s
    with db.read() as conn:
        log = store.log(conn, "wh-1", None, 10)
    head, second = log
    assert head["state"] == "PENDING" and head["attempts"] == 4
    assert head["last_status"] == 503 and "maintenance" in head["last_error"]
    assert second["attempts"] == 0, "the session's next event went before the first"
