"""/healthz says the process answers; /readyz says whether it can serve, and turns unready
when the database goes away and ready again when it returns."""

from __future__ import annotations

import contextlib
import pathlib
import time
from collections.abc import Iterator

import psycopg
import requests
import sqlalchemy as sa
from psycopg import sql

from tests.support import databases
from tests.support.server import Server


def readiness(server: Server) -> tuple[int, list[str]]:
    answer = requests.get(f"{server.endpoint}/readyz", timeout=30)
    return answer.status_code, answer.json()["problems"]


def eventually(server: Server, status: int) -> list[str]:
    deadline = time.monotonic() + 20
    while True:
        code, problems = readiness(server)
        if code == status or time.monotonic() > deadline:
            assert code == status, problems
            return problems
        time.sleep(0.2)


@contextlib.contextmanager
def database_away(server: Server) -> Iterator[None]:
    """The installation's database goes away while the server runs, then comes back."""
    if not databases.postgresql():
        path = server.data_dir / "opennimble.db"
        away = server.data_dir / "moved-by-the-operator.db"
        path.rename(away)
        try:
            yield
        finally:
            away.rename(path)
        return
    url = databases.url_for(server.data_dir)
    name = sa.engine.make_url(url).database
    admin = databases.server_url()
    assert admin and name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name))
        )
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        try:
            yield
        finally:
            conn.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
                    sql.Identifier(name)
                )
            )


def test_ready_until_the_database_goes_away(tmp_path: pathlib.Path) -> None:
    server = Server(tmp_path / "data")
    server.start()
    try:
        assert requests.get(f"{server.endpoint}/healthz", timeout=10).json() == {"status": "ok"}
        assert readiness(server) == (200, [])
        with database_away(server):
            problems = eventually(server, 503)
            assert any("database" in problem for problem in problems), problems
            # alive all the same: a restart would not help
            assert requests.get(f"{server.endpoint}/healthz", timeout=10).ok
        assert eventually(server, 200) == []
    finally:
        server.stop()
