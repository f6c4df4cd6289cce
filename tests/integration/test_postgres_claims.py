"""Work claiming on PostgreSQL: row locks that skip locked rows, heartbeats, stale-claim
takeover, host binding and capacity, the host lock, and NOTIFY on new work."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa

from opennimble import clock
from opennimble.providers import base
from opennimble.reconciler import loop
from opennimble.store import crypto, database, sessions
from tests.support import rows

pytestmark = pytest.mark.postgresql
SECOND = clock.SECOND


def insert(db: database.Database, count: int, **values: Any) -> list[str]:
    made = [rows.session(**{"created_at": i + 1, **values}) for i in range(count)]
    with db.write() as conn:
        conn.execute(sessions.t.insert(), made)
    return [r["session_id"] for r in made]


def claim(conn: sa.Connection, owner: str, host: str, now: int, **kw: Any) -> list[str]:
    args = {"new": True, "lease": 10 * SECOND, "limit": 5, **kw}
    found = sessions.claim(conn, owner=owner, host_id=host, now=now, **args)
    return [r["session_id"] for r in found]


def test_concurrent_reconcilers_claim_each_session_once(db: database.Database) -> None:
    ids = insert(db, 200)
    claimed: dict[str, list[str]] = {}
    lock = threading.Lock()

    def reconciler(host: str) -> None:
        while True:
            with db.write() as conn:
                got = claim(conn, f"{host}/1", host, now=100)
            if not got:
                return
            with lock:
                for sid in got:
                    claimed.setdefault(sid, []).append(host)

    threads = [threading.Thread(target=reconciler, args=(f"h{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(ids)
    assert all(len(hosts) == 1 for hosts in claimed.values())
    assert len({hosts[0] for hosts in claimed.values()}) > 1  # the work was shared
    with db.read() as conn:
        bound = dict(conn.execute(sa.select(sessions.t.c.session_id, sessions.t.c.host_id)).all())
    assert bound == {sid: hosts[0] for sid, hosts in claimed.items()}


def test_a_claim_skips_locked_rows_instead_of_waiting(db: database.Database) -> None:
    insert(db, 4)
    with db.write() as holding:
        first = claim(holding, "a/1", "a", now=100, limit=2)
        started = time.monotonic()
        with db.write() as other:  # while the first transaction still holds its rows
            second = claim(other, "b/1", "b", now=100, limit=10)
        assert time.monotonic() - started < 1
    assert len(first) == 2 and len(second) == 2 and not set(first) & set(second)


def test_a_stale_claim_is_taken_over_after_its_lease(db: database.Database) -> None:
    [sid] = insert(db, 1)
    with db.write() as conn:
        assert claim(conn, "a/1", "a", now=100, lease=5 * SECOND) == [sid]
    with db.write() as conn:  # alive: a heartbeat renews it
        assert claim(conn, "a/2", "a", now=100 + 4 * SECOND, new=False) == []
        sessions.heartbeat(conn, [sid], "a/1", 100 + 9 * SECOND)
    with db.write() as conn:
        assert claim(conn, "a/2", "a", now=100 + 8 * SECOND, new=False) == []
    with db.write() as conn:  # its holder died: the lease lapses and another takes over
        assert claim(conn, "a/2", "a", now=100 + 10 * SECOND, new=False) == [sid]
        row = sessions.get(conn, sid)
    assert row is not None and row["claimed_by"] == "a/2"


def test_a_bound_session_is_worked_on_only_by_its_host(db: database.Database) -> None:
    [on_a] = insert(db, 1, state="DELETE_IN_PROGRESS", host_id="a")
    [never_provisioned] = insert(db, 1, state="DELETE_IN_PROGRESS")
    with db.write() as conn:
        assert claim(conn, "b/1", "b", now=100, new=True) == []  # deletions are not new work
        assert claim(conn, "b/1", "b", now=100, new=False) == [never_provisioned]
        assert claim(conn, "a/1", "a", now=100, new=False) == [on_a]


class Instant(base.Provider):
    """A test double whose desktops are ready at once."""

    name = "instant"

    def __init__(self) -> None:
        self.started: list[str] = []

    async def start(self, spec: base.DesktopSpec, state: base.ProviderState) -> base.ProviderState:
        self.started.append(spec.session_id)
        return {"session_id": spec.session_id}

    async def poll(self, state: base.ProviderState) -> base.PollResult:
        return base.PollResult(base.Health.READY, endpoint={"host": "h", "port": 1})

    async def stop(
        self, state: base.ProviderState, *, discard_storage: bool = False
    ) -> base.ProviderState:
        return state

    async def delete(self, state: base.ProviderState) -> None:
        return None


CIPHER = crypto.Cipher(crypto.Fernet.generate_key())


def reconciler(db: database.Database, host: str, capacity: int) -> loop.Reconciler:
    return loop.Reconciler(
        db,
        Instant(),
        cipher=CIPHER,
        now=clock.system_now,
        interval=0.05,
        ready_timeout=10,
        max_concurrent=50,
        host_id=host,
        capacity=capacity,
        lease=5,
    )


def states(db: database.Database) -> dict[str, tuple[str, str | None]]:
    t = sessions.t
    with db.read() as conn:
        found = conn.execute(sa.select(t.c.session_id, t.c.state, t.c.host_id)).all()
    return {sid: (state, host) for sid, state, host in found}


async def until(predicate: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_hosts_take_new_sessions_only_while_they_have_capacity(db: database.Database) -> None:
    now = clock.system_now()
    ids = insert(db, 5, created_at=now, work_started_at=now)
    small, large = reconciler(db, "small", 2), reconciler(db, "large", 10)

    async def scenario() -> None:
        running = [asyncio.create_task(small.run())]
        await until(lambda: sum(s == "READY" for s, _ in states(db).values()) == 2)
        await asyncio.sleep(0.3)  # full: it leaves the others alone
        assert (
            sorted(s for s, _ in states(db).values()) == ["CREATE_IN_PROGRESS"] * 3 + ["READY"] * 2
        )
        running.append(asyncio.create_task(large.run()))
        await until(lambda: all(s == "READY" for s, _ in states(db).values()))
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    asyncio.run(scenario())
    hosts = [host for _, host in states(db).values()]
    assert sorted(hosts) == ["large"] * 3 + ["small"] * 2
    assert isinstance(small.provider, Instant) and isinstance(large.provider, Instant)
    assert sorted(small.provider.started + large.provider.started) == sorted(ids)


def test_one_reconciler_per_host(db: database.Database) -> None:
    async def scenario() -> None:
        async with db.listener(lock="host:a"):
            with pytest.raises(database.LockTaken):
                async with db.listener(lock="host:a"):
                    pass
            async with db.listener(lock="host:b"):
                pass
        async with db.listener(lock="host:a"):  # free again once its holder is gone
            pass

    asyncio.run(scenario())


def test_new_work_is_notified_when_committed(db: database.Database) -> None:
    async def scenario() -> list[str]:
        heard: list[str] = []
        async with db.listener(lock="host:x") as listener:

            async def listen() -> None:
                async for payload in listener.notifications():
                    heard.append(payload)

            task = asyncio.create_task(listen())
            insert(db, 1, state="READY")  # no work: no notification
            await asyncio.sleep(0.3)
            assert heard == []
            [sid] = insert(db, 1)
            await until(lambda: heard == ["sessions"], timeout=5)
            with db.write() as conn:
                sessions.transition(conn, sid, ("CREATE_IN_PROGRESS",), state="READY")
                sessions.transition(conn, sid, ("READY",), state="DELETE_IN_PROGRESS")
            await until(lambda: len(heard) == 2, timeout=5)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return heard

    assert asyncio.run(scenario()) == ["sessions", "sessions"]


def test_an_idle_reconciler_is_woken_by_new_work(db: database.Database) -> None:
    idle = loop.Reconciler(
        db,
        Instant(),
        cipher=CIPHER,
        now=clock.system_now,
        interval=60,  # it would not poll again during this test
        ready_timeout=10,
        max_concurrent=5,
        host_id="h",
        lease=300,
    )

    async def scenario() -> float:
        task = asyncio.create_task(idle.run())
        await asyncio.sleep(1)  # started, and idle
        now = clock.system_now()
        insert(db, 1, created_at=now, work_started_at=now)
        started = time.monotonic()
        await until(lambda: [s for s, _ in states(db).values()] == ["READY"], timeout=10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 5


def test_a_reconciler_whose_connection_drops_listens_again_as_the_same_host(
    db: database.Database,
) -> None:
    idle = loop.Reconciler(
        db,
        Instant(),
        cipher=CIPHER,
        now=clock.system_now,
        interval=60,  # only a notification wakes it within this test
        ready_timeout=10,
        max_concurrent=5,
        host_id="dropped",
        lease=300,
    )

    def listeners() -> list[int]:
        """Backends of this database that LISTEN (the reconciler's connection)."""
        with db.read() as conn:
            query = sa.text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE 'LISTEN%'"
            )
            return [int(r[0]) for r in conn.execute(query)]

    async def scenario() -> None:
        task = asyncio.create_task(idle.run())
        await until(lambda: len(listeners()) == 1, timeout=10)
        [first] = listeners()
        with db.write() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        await until(lambda: listeners() not in ([], [first]), timeout=20)
        assert len(listeners()) == 1 and not task.done()  # one connection, still this host's
        now = clock.system_now()
        insert(db, 1, created_at=now, work_started_at=now)
        await until(lambda: [s for s, _ in states(db).values()] == ["READY"], timeout=10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
