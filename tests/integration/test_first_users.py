"""The first users of an installation made at the same moment by several processes (scripts
running `opennimble users create` side by side): every one is made, and all name the same
identity store, which the first of them creates."""

from __future__ import annotations

import threading

from opennimble import clock
from opennimble.domain import identity
from opennimble.store import database

WRITERS = 8


def test_users_made_at_once_share_one_new_identity_store(db: database.Database) -> None:
    # a handle each, as separate processes have (one handle's writes queue on its own lock)
    handles = [database.Database(db.url) for _ in range(WRITERS)]
    start = threading.Barrier(WRITERS)
    made: dict[int, dict[str, object]] = {}
    failed: dict[int, BaseException] = {}

    def create(n: int) -> None:
        start.wait()
        try:
            with handles[n].write() as conn:
                made[n] = identity.create_user(conn, f"user{n}", False, clock.system_now())
        except BaseException as exc:
            failed[n] = exc

    threads = [threading.Thread(target=create, args=(n,)) for n in range(WRITERS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for handle in handles:
            handle.dispose()
    assert not failed, failed
    stores = {user["identityStoreId"] for user in made.values()}
    assert len(made) == WRITERS and len(stores) == 1
    with db.read() as conn:
        assert stores == {identity.identity_store_id(conn)}
