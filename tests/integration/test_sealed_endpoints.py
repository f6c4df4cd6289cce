"""A READY session's endpoint keeps its desktop's VNC password only sealed, also for sessions
stored before passwords were sealed (the migration removed their clear password)."""

from __future__ import annotations

import asyncio

from opennimble import clock
from opennimble.domain import endpoints
from opennimble.providers import base
from opennimble.reconciler import actions
from opennimble.store import crypto, database, sessions
from tests.integration.test_postgres_claims import Instant
from tests.support import rows

PASSWORD = "Pa55word"
CIPHER = crypto.Cipher(crypto.Fernet.generate_key())


class Running(Instant):
    """A provider whose every desktop runs, READY, with the same VNC password."""

    async def poll(self, state: base.ProviderState) -> base.PollResult:
        endpoint = {"host": "10.0.0.7", "port": 5901, "password": PASSWORD}
        return base.PollResult(base.Health.READY, endpoint=endpoint)


def test_a_ready_session_stored_without_its_password_gets_it_again_sealed(
    database_url: str,
) -> None:
    db = database.Database(database_url)
    db.upgrade()
    migrated = {"host": "10.0.0.7", "port": 5901}  # what migration 0008 left of the endpoint
    row = rows.session(state="READY", endpoint=migrated)
    with db.write() as conn:
        sessions.insert(conn, row)
    acting = actions.Actions(db, Running(), now=clock.system_now, ready_timeout=10, cipher=CIPHER)
    with db.read() as conn:
        stored = sessions.get(conn, row["session_id"])
    assert stored is not None
    asyncio.run(acting.check_ready(stored))
    with db.read() as conn:
        resealed = sessions.get(conn, row["session_id"])
    db.dispose()
    assert resealed is not None
    assert "password" not in resealed["endpoint"] and PASSWORD not in str(resealed["endpoint"])
    assert endpoints.unseal(resealed["endpoint"], CIPHER) == {**migrated, "password": PASSWORD}
