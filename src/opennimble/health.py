"""``/healthz`` (the process answers), ``/readyz`` (it can serve: database reachable, schema
current, reconciler passing where one runs) and ``/metrics`` (Prometheus text format).

The database's view (sessions by studio and state, desktops per host, the reconciler's queue)
is collected at scrape time, in a thread: a scrape never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import alembic.script
import orjson
import prometheus_client
import sqlalchemy as sa
from prometheus_client import core

from opennimble import clock, metrics
from opennimble.reconciler import loop
from opennimble.store import database, stats

PATHS = ("/healthz", "/readyz", "/metrics")
CHECK_TIMEOUT = 5.0


class Health:
    def __init__(
        self,
        db: database.Database,
        reconciler: loop.Reconciler | None,
        stream_connections: Callable[[], int],
        now: clock.Now = clock.system_now,
        serve_metrics: bool = True,
    ) -> None:
        """``serve_metrics``: False answers /metrics with a 404 saying they are off."""
        self.db = db
        self.serve_metrics = serve_metrics
        self.reconciler = reconciler
        self.now = now
        self.heads = set(
            alembic.script.ScriptDirectory.from_config(database.alembic_config(db.url)).get_heads()
        )
        self.sqlite_file = _sqlite_file(db)
        self.sqlite_inode = self.sqlite_file.stat().st_ino if self.sqlite_file else None
        self.registry = prometheus_client.CollectorRegistry(auto_describe=False)
        self.registry.register(_DatabaseCollector(db, now, stream_connections))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope["path"]
        if path == "/healthz":
            await _respond(send, 200, "application/json", orjson.dumps({"status": "ok"}))
        elif path == "/readyz":
            problems = await self.problems()
            body = {"status": "not ready" if problems else "ready", "problems": problems}
            await _respond(send, 503 if problems else 200, "application/json", orjson.dumps(body))
        elif not self.serve_metrics:
            off = {"message": "metrics are off on this server (the setting metrics = false)"}
            await _respond(send, 404, "application/json", orjson.dumps(off))
        else:
            text = await asyncio.to_thread(self.exposition)
            await _respond(send, 200, prometheus_client.CONTENT_TYPE_LATEST, text)

    def exposition(self) -> bytes:
        return prometheus_client.generate_latest(
            metrics.REGISTRY
        ) + prometheus_client.generate_latest(self.registry)

    async def problems(self) -> list[str]:
        """Why this server cannot serve now (empty: ready)."""
        problems = []
        try:
            versions = await asyncio.wait_for(
                asyncio.to_thread(self._versions), timeout=CHECK_TIMEOUT
            )
            if versions != self.heads:
                problems.append(
                    f"the database schema is at {sorted(versions)}, this server needs "
                    f"{sorted(self.heads)}: run `opennimble db upgrade`"
                )
        except Exception as exc:
            problems.append(f"the database is unreachable: {_reason(exc)}")
        problems += self._sqlite_problems()
        problems += self._reconciler_problems()
        return problems

    def _versions(self) -> set[str]:
        with self.db.read() as conn:
            return stats.schema_versions(conn)

    def _sqlite_problems(self) -> list[str]:
        if self.sqlite_file is None:
            return []
        try:
            status = self.sqlite_file.stat()
        except OSError as exc:
            return [f"the database file {self.sqlite_file} is gone: {exc.strerror}"]
        if status.st_ino != self.sqlite_inode:
            return [f"the database file {self.sqlite_file} was replaced since the server started"]
        if not os.access(self.sqlite_file, os.R_OK | os.W_OK):
            return [f"the database file {self.sqlite_file} is not readable and writable"]
        return []

    def _reconciler_problems(self) -> list[str]:
        if self.reconciler is None:
            return []
        age = time.monotonic() - self.reconciler.last_tick
        limit = max(10.0, 5 * self.reconciler.interval)
        if age > limit:
            return [f"the reconciler has not made a pass for {age:.0f} s"]
        return []


class _DatabaseCollector:
    """Metrics read from the database at each scrape (nothing if it cannot be read)."""

    def __init__(self, db: database.Database, now: clock.Now, streams: Callable[[], int]):
        self.db, self.now, self.streams = db, now, streams

    def collect(self) -> Iterator[core.Metric]:
        connections = core.GaugeMetricFamily(
            "opennimble_stream_connections", "Stream websocket connections open on this server."
        )
        connections.add_metric([], self.streams())
        yield connections
        up = core.GaugeMetricFamily("opennimble_database_up", "The database answered the scrape.")
        try:
            families = list(self._from_database())
        except sa.exc.SQLAlchemyError:
            families = []
        up.add_metric([], 1 if families else 0)
        yield up
        yield from families

    def _from_database(self) -> Iterator[core.Metric]:
        now = self.now()
        with self.db.read() as conn:
            by_state = stats.sessions_by_studio_and_state(conn)
            hosts = stats.desktops_by_host(conn)
            waiting, oldest = stats.queue(conn, now)
        sessions = core.GaugeMetricFamily(
            "opennimble_sessions",
            "Streaming sessions by studio and state.",
            labels=["studio", "state"],
        )
        for studio, state, count in by_state:
            sessions.add_metric([studio, state], count)
        yield sessions
        desktops = core.GaugeMetricFamily(
            "opennimble_desktops", "Desktops each workstation host runs.", labels=["host"]
        )
        for host, count in hosts:
            desktops.add_metric([host], count)
        yield desktops
        queue = core.GaugeMetricFamily(
            "opennimble_reconciler_queue_depth", "Sessions with work that no reconciler holds."
        )
        queue.add_metric([], waiting)
        yield queue
        age = core.GaugeMetricFamily(
            "opennimble_reconciler_oldest_claim_age_seconds",
            "Seconds since the oldest work that a reconciler holds a claim on began (0: none).",
        )
        age.add_metric([], 0 if oldest is None else max(0, now - oldest) / 1e6)
        yield age


def _sqlite_file(db: database.Database) -> pathlib.Path | None:
    if not db.is_sqlite:
        return None
    name = sa.engine.make_url(db.url).database
    return pathlib.Path(name) if name and name != ":memory:" else None


def _reason(exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {CHECK_TIMEOUT:.0f} s"
    original = getattr(exc, "orig", None)
    return str(original or exc).strip().splitlines()[0]


async def _respond(send: Any, status: int, content_type: str, body: bytes) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
