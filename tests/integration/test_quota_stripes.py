"""The striped quota counters, on the database under test: concurrent takes on one counter
admit exactly its limit, whatever stripes they pick; places given back are taken again; and
transactions that give many places back while creates take them never wait for each other in a
cycle (on PostgreSQL, where they run at once)."""

from __future__ import annotations

import concurrent.futures
import random
import threading
import time

import sqlalchemy as sa

from opennimble.store import database, quota_counters

STUDIO, OWNERS = "studio-1", ["ann", "bob", "cid"]


def take(
    db: database.Database, owner: str, per_studio: int, per_owner: int, pause: float = 0
) -> bool:
    """One session's places (the studio's, then the owner's), as a create takes them;
    ``pause`` seconds in between (a loaded machine)."""

    def work(conn: sa.Connection) -> bool:
        def both(conn: sa.Connection) -> None:
            if not quota_counters.take(conn, STUDIO, quota_counters.STUDIO, per_studio):
                raise LookupError("studio")
            time.sleep(pause)
            if not quota_counters.take(conn, STUDIO, owner, per_owner):
                raise LookupError("owner")

        if not database.before_commit(conn, "take", both, 50):
            both(conn)
        return True

    try:
        with db.write() as conn:
            return work(conn)
    except LookupError:
        return False


def counted(db: database.Database, owner: str) -> int:
    with db.read() as conn:
        return quota_counters.used(conn, STUDIO, owner) or 0


def test_the_shares_of_a_limit_add_up_to_it() -> None:
    for limit in (0, 1, 2, 7, 8, 9, 100, 1001):
        shares = [quota_counters.share(limit, s) for s in range(quota_counters.STRIPES)]
        assert sum(shares) == limit and max(shares) - min(shares) <= 1


def test_concurrent_takes_admit_exactly_the_limit(db: database.Database) -> None:
    attempts, per_studio = 120, 37
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        taken = list(pool.map(lambda i: take(db, OWNERS[i % 3], per_studio, 1000), range(attempts)))
    assert sum(taken) == per_studio
    assert counted(db, quota_counters.STUDIO) == per_studio


def test_places_given_back_are_taken_again(db: database.Database) -> None:
    assert all(take(db, "ann", 3, 3) for _ in range(3))
    assert not take(db, "ann", 3, 3)
    with db.write() as conn:
        quota_counters.give_back(conn, STUDIO, "ann")
        quota_counters.give_back(conn, STUDIO, "ann")
    assert (counted(db, quota_counters.STUDIO), counted(db, "ann")) == (1, 1)
    assert take(db, "ann", 3, 3) and take(db, "ann", 3, 3)
    assert not take(db, "ann", 3, 3)


def test_give_backs_and_takes_at_once_never_deadlock(db: database.Database) -> None:
    """Batches give back places of every counter (as the reconciler's DELETED transitions do,
    several in one transaction) while creates take them: no deadlock (PostgreSQL would abort
    one of the transactions), and the counts stay exact."""
    per = 400
    for _ in range(60):
        assert take(db, random.choice(OWNERS), per, per)
    left = {owner: counted(db, owner) for owner in OWNERS}  # places the givers may give back
    choosing = threading.Lock()
    stop = threading.Event()

    def give_back_batches() -> int:
        given = 0
        while not stop.is_set() and given < 20:
            with choosing:  # a place of each of two owners (and two of the studio's)
                owners = random.sample(sorted(left, key=lambda o: -left[o])[:2], 2)
                for owner in owners:
                    left[owner] -= 1
            with db.write() as conn:
                for owner in owners:
                    quota_counters.give_back(conn, STUDIO, owner)
                    time.sleep(0.002)  # (between the changes of its sessions)
            given += 2
        return given

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        givers = [pool.submit(give_back_batches) for _ in range(2)]
        takers = [pool.submit(take, db, OWNERS[i % 3], per, per, 0.002) for i in range(120)]
        took = sum(f.result(timeout=120) for f in takers)
        stop.set()
        given = sum(f.result(timeout=120) for f in givers)
    assert counted(db, quota_counters.STUDIO) == 60 + took - given
