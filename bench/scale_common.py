"""What the scale benchmarks share: installations on SQLite or PostgreSQL (API servers and
workers), the instant provider, bulk rows, and signed requests replayed with wrk.

PostgreSQL: ``OPENNIMBLE_BENCH_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/
postgres``) names the server; each installation gets a database of its own there, dropped at
the end.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import pathlib
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import botocore.credentials
import psycopg
import sqlalchemy as sa
from psycopg import sql
from tests.support import rows
from tests.support import server as support
from tests.support import world as worlds
from tests.support.cluster import Worker

from bench import api_latency
from opennimble.store import schema

HERE = pathlib.Path(__file__).resolve().parent
PG_SERVER = os.environ.get(
    "OPENNIMBLE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# the API's own limits are off: the benchmarks measure the machinery, not the quotas
UNLIMITED = {
    "OPENNIMBLE_THROTTLE_RATE": "0",
    "OPENNIMBLE_MAX_SESSIONS_PER_OWNER": "100000000",
    "OPENNIMBLE_MAX_SESSIONS_PER_STUDIO": "100000000",
    "OPENNIMBLE_LOG_LEVEL": "warning",
}


def log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


# --- the instant provider --------------------------------------------------------------------


def instant_provider_path(workdir: pathlib.Path) -> pathlib.Path:
    """A directory that, on a process's PYTHONPATH, registers ``bench.instant`` as the provider
    ``instant`` (entry point group ``opennimble.providers``) for that process only."""
    dist = workdir / "entry-points" / "opennimble_bench_instant-0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: opennimble-bench-instant\nVersion: 0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[opennimble.providers]\ninstant = bench.instant:InstantProvider\n"
    )
    return dist.parent


# --- databases -------------------------------------------------------------------------------


def create_pg_database() -> str:
    name = f"opennimble_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return sa.engine.make_url(PG_SERVER).set(database=name).render_as_string(False)


def drop_pg_database(url: str) -> None:
    name = sa.engine.make_url(url).database or ""
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(statement.format(sql.Identifier(name)))


def pg_reachable() -> bool:
    try:
        psycopg.connect(PG_SERVER, connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


def backends(names: str) -> list[str]:
    """The databases of ``--backends`` (comma-separated) to measure: PostgreSQL only if its
    server answers (otherwise the run says so and skips it)."""
    chosen = []
    for backend in names.split(","):
        if backend == "postgresql" and not pg_reachable():
            log(f"no PostgreSQL at {PG_SERVER}: skipped")
            continue
        chosen.append(backend)
    return chosen


# --- installations ---------------------------------------------------------------------------


@dataclasses.dataclass
class Installation:
    """API servers and workers on one database, with a studio set up through the API."""

    backend: str  # "sqlite" or "postgresql"
    workdir: pathlib.Path
    database_url: str
    env: dict[str, str]
    servers: list[support.Server] = dataclasses.field(default_factory=list)
    workers: list[Worker] = dataclasses.field(default_factory=list)
    world: worlds.World | None = None

    @property
    def studio_id(self) -> str:
        assert self.world is not None
        return self.world.studio.studio_id

    def add_server(
        self, *, reconciler: bool = True, http_server: str = "uvicorn"
    ) -> support.Server:
        index = len(self.servers)
        env = dict(self.env)
        if not reconciler:
            env["OPENNIMBLE_RECONCILER"] = "false"
        if http_server != "uvicorn":
            env["OPENNIMBLE_HTTP_SERVER"] = http_server
        srv = support.Server(self.workdir / f"server{index}", env=env)
        srv.start()
        self.servers.append(srv)
        return srv

    def add_worker(self) -> Worker:
        index = len(self.workers)
        worker = Worker(self.workdir / f"host{index}", f"bench-host{index}", self.env, self.workdir)
        worker.start()
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for process in [*self.servers, *self.workers]:
            process.stop()

    def engine(self) -> sa.Engine:
        url = self.database_url.replace("postgresql://", "postgresql+psycopg://")
        return sa.create_engine(url)

    def count(self, where: str = "TRUE") -> int:
        engine = self.engine()
        try:
            with engine.connect() as conn:
                return int(
                    conn.execute(
                        sa.text(f"SELECT count(*) FROM sessions WHERE {where}")
                    ).scalar_one()
                )
        finally:
            engine.dispose()


@contextlib.contextmanager
def installation(
    backend: str, workdir: pathlib.Path, *, provider: str = "instant", **extra: str
) -> Iterator[Installation]:
    """A fresh installation (no process started yet) whose settings go to every process."""
    workdir.mkdir(parents=True, exist_ok=True)
    url = create_pg_database() if backend == "postgresql" else f"sqlite:///{workdir / 'db.sqlite'}"
    path = os.pathsep.join([str(instant_provider_path(workdir)), str(HERE.parent)])
    env = {
        **UNLIMITED,
        "OPENNIMBLE_DATABASE_URL": url,
        "OPENNIMBLE_KEY_FILE": str(workdir / "secret.key"),
        "OPENNIMBLE_PROVIDER": provider,
        "PYTHONPATH": path,
        **extra,
    }
    made = Installation(backend, workdir, url, env)
    try:
        yield made
    finally:
        made.stop()
        if backend == "postgresql":
            drop_pg_database(url)


def build_world(made: Installation) -> worlds.World:
    made.world = worlds.build(made.servers[0])
    return made.world


def credentials(user: support.User) -> botocore.credentials.Credentials:
    return botocore.credentials.Credentials(user.access_key_id, user.secret_access_key)


# --- bulk rows -------------------------------------------------------------------------------


def session_rows(
    studio_id: str, count: int, owners: list[str], start: int = 0, **values: Any
) -> Iterator[dict[str, Any]]:
    """``count`` READY sessions of ``studio_id`` owned in turn by ``owners``, bound to a host
    that no reconciler runs (so nothing works on them), one microsecond apart."""
    base = rows.session(
        **{
            "studio_id": studio_id,
            "state": "READY",
            "status_code": "STREAMING_SESSION_READY",
            "host_id": "bench-filler",
            "attempts": 0,
            "next_attempt_at": 0,
            **values,
        }
    )
    for i in range(start, start + count):
        owner = owners[i % len(owners)]
        yield {
            **base,
            "session_id": f"bench{i:017d}",
            "owned_by": owner,
            "created_by": owner,
            "created_at": 1_700_000_000_000_000 + i,
            "updated_at": 1_700_000_000_000_000 + i,
        }


def bulk_insert(
    made: Installation, generated: Iterable[dict[str, Any]], batch: int = 50_000
) -> float:
    """Insert rows into ``sessions`` in bulk (COPY on PostgreSQL, executemany in one transaction
    on SQLite); returns the seconds it took."""
    started = time.monotonic()
    columns = [c.name for c in schema.sessions.columns]
    json_columns = {c.name for c in schema.sessions.columns if isinstance(c.type, sa.JSON)}

    def values(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple("{}" if name in json_columns else row.get(name) for name in columns)

    if made.backend == "postgresql":
        with psycopg.connect(made.database_url) as conn, conn.cursor() as cursor:
            names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
            statement = sql.SQL("COPY sessions ({}) FROM STDIN").format(names)
            with cursor.copy(statement) as copy:
                for row in generated:
                    copy.write_row(values(row))
            cursor.execute("ANALYZE sessions")
    else:
        path = made.database_url.split(":///", 1)[1]
        conn = sqlite3.connect(path)
        try:
            marks = ", ".join("?" for _ in columns)
            statement = f"INSERT INTO sessions ({', '.join(columns)}) VALUES ({marks})"
            chunk: list[tuple[Any, ...]] = []
            conn.execute("BEGIN")
            for row in generated:
                chunk.append(values(row))
                if len(chunk) >= batch:
                    conn.executemany(statement, chunk)
                    chunk = []
            conn.executemany(statement, chunk)
            conn.execute("COMMIT")
            # no ANALYZE: opennimble never runs it on SQLite, whose planner then goes by its
            # index heuristics (statistics of a table bulk-loaded in one state would mislead
            # it into scans); the bulk load's write-ahead log goes into the database now
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    return time.monotonic() - started


# --- load ------------------------------------------------------------------------------------


def wrk_args(threads: int, connections: int) -> argparse.Namespace:
    return argparse.Namespace(threads=threads, connections=connections)


def replay(
    servers: list[support.Server],
    signed: list[tuple[str, str, dict[str, str], bytes]],
    *,
    seconds: float,
    connections: int,
) -> list[api_latency.Run]:
    """Replay ``signed`` against every server at once (wrk per server, ``connections`` each);
    the requests are split between the servers (in Lua files removed once wrk is done)."""
    with tempfile.TemporaryDirectory(prefix="opennimble-bench-") as name:
        tmp = pathlib.Path(name)
        share = max(1, len(signed) // len(servers))
        files = []
        for i, srv in enumerate(servers):
            part = signed[i * share : (i + 1) * share] or signed
            path = tmp / f"requests{i}.lua"
            api_latency.write_requests(path, [fix_host(r, srv.port) for r in part])
            files.append(path)
        procs = [
            _spawn_wrk(srv.port, path, seconds, connections)
            for srv, path in zip(servers, files, strict=True)
        ]
        return [_finish_wrk(p, srv.port) for p, srv in zip(procs, servers, strict=True)]


def fix_host(
    request: tuple[str, str, dict[str, str], bytes], port: int
) -> tuple[str, str, dict[str, str], bytes]:
    headers = request[2]
    if headers.get("Host") != f"127.0.0.1:{port}":
        raise ValueError("requests must be signed for the server they go to")
    return request


def _spawn_wrk(
    port: int, path: pathlib.Path, seconds: float, connections: int
) -> subprocess.Popen[str]:
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
        "-s", str(api_latency.WRK_SCRIPT), f"http://127.0.0.1:{port}/", "--", str(path),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish_wrk(process: subprocess.Popen[str], port: int) -> api_latency.Run:
    out, err = process.communicate(timeout=600)
    line = next((x for x in out.splitlines() if x.startswith("BENCH-RESULT ")), None)
    if process.returncode != 0 or line is None:
        raise api_latency.BenchError(f"wrk against {port} failed: {err or out}")
    fields = {k: int(v) for k, v in (part.split("=") for part in line.split()[1:])}
    problems = {
        k: fields[k]
        for k in ("non200", "connect", "read", "write", "status", "timeout")
        if fields[k]
    }
    if problems:
        raise api_latency.BenchError(f"wrk against {port}: {problems}")
    return api_latency.Run(
        fields["requests"], fields["duration_us"] / 1e6, fields["bytes"], fields["p50_us"],
        fields["p90_us"], fields["p99_us"], fields["max_us"], 0.0, 0.0, 0.0,
    )  # fmt: skip


def total_rps(runs: list[api_latency.Run]) -> float:
    return sum(run.rps for run in runs)


def median(values: list[float]) -> float:
    return statistics.median(values)
