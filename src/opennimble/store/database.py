"""The database handle: engine set-up, transactions, schema upgrades and wake-up notifications.

Two databases are supported:

* SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL``, so that a commit
  acknowledged to a client survives a crash of the process or the machine. Write transactions
  begin with ``BEGIN IMMEDIATE`` so that concurrent writers (the server, the CLI) queue on the
  busy timeout instead of failing on a lock upgrade. One server runs per SQLite database.
* PostgreSQL (``postgresql://user@host:5432/dbname``, driven by psycopg 3) is shared by any
  number of API servers and workers. Transactions run at READ COMMITTED; the work queue uses
  row locks (``FOR UPDATE SKIP LOCKED``, see :mod:`opennimble.store.sessions`), singleton chores
  use transaction-scoped advisory locks, and a trigger NOTIFYs :data:`WORK_CHANNEL` whenever
  a session or resource gets work, which wakes idle reconcilers (:meth:`Database.listener`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import pathlib
import re
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, ParamSpec, TypeVar

import alembic.command
import alembic.config
import orjson
import psycopg
import sqlalchemy as sa
from psycopg import sql

from opennimble.store.threads import StoreThreads

MIGRATIONS = pathlib.Path(__file__).parent / "migrations"
# the channel on which PostgreSQL announces new work (see schema.WAKE_DDL)
WORK_CHANNEL = "opennimble_work"
# the channel on which PostgreSQL announces committed changes that live views show: the
# payload is a topic of store.changes (see schema.CHANGE_DDL)
CHANGE_CHANNEL = "opennimble_changes"
# where a write transaction notes the topics it changed (conn.info), announced after commit
CHANGED = "opennimble_changed"
# the topic of a change to what the access rules read (users, keys, memberships, studios);
# the other topics are studio ids (a change to a session of that studio)
ACCESS_TOPIC = ""
# a listener checks its connection when no notification came for this long (seconds)
LISTEN_CHECK = 30.0
# how long taking a host's lock waits for a holder that is going away
LOCK_WAIT = 3.0
POOL_SIZE = 10  # PostgreSQL connections a process keeps (and as many more at peaks)
# threads that run store work for the event loop (Database.run): on PostgreSQL
# ``database_threads`` (each waits on the network, and each takes the GIL back for every
# answer: on a 2-core host with the database local, 4 served ~15% more Gets and creates than
# 10; a database farther away wants more); on SQLite one, which keeps its connection (an
# embedded query costs microseconds: more threads would only contend for the GIL and the write
# lock; measured in bench/README.md)
POOL_THREADS = 4
# how long a store thread keeps an answer while it runs brief work queued behind it, to wake
# the loop once for several (see store/threads.py): CPython's switch interval, the time a
# thread that waits for the GIL lets pass before it asks for it. SQLite's one thread keeps
# answers behind any work (its work takes microseconds; measured in bench/README.md);
# PostgreSQL's threads only behind reads (Database.run_read), as a write may wait on a lock
LINGER = 0.005
# a PostgreSQL connection idle this long (seconds) is pinged before its next use: a store
# thread's kept reader, and a pooled connection at checkout
IDLE_PING = 1.0
_IDLE_SINCE = "opennimble_idle_since"  # a pooled connection's record.info: when checked in
# conn.info's flag of a SQLite read in autocommit mode (Database.read(snapshot=False))
_AUTOCOMMIT = "opennimble_autocommit"
P = ParamSpec("P")
T = TypeVar("T")


def normalize_url(url: str) -> str:
    """Accept the plain URLs users copy from database docs and pick our driver."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def is_sqlite(url: str) -> bool:
    """Whether a database URL (as users write it) names an SQLite database."""
    return sa.engine.make_url(normalize_url(url)).get_backend_name() == "sqlite"


class Database:
    def __init__(self, url: str, threads: int = POOL_THREADS) -> None:
        """``threads``: the store threads of ``run`` on PostgreSQL (SQLite has one)."""
        self.url = normalize_url(url)
        self.threads = max(1, min(threads, POOL_SIZE))
        backend = sa.engine.make_url(self.url).get_backend_name()
        self.is_sqlite = backend == "sqlite"
        self.is_postgresql = backend == "postgresql"
        self.engine = self._create_engine()
        # SQLite has one writer at a time: the threads of this process queue here, waking as
        # soon as the write before them ends, instead of polling in SQLite's busy handler
        self._write_lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self.is_sqlite else contextlib.nullcontext()
        )
        self._reader = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._threads: StoreThreads | None = None
        self._threads_lock = threading.Lock()
        self._readers: set[sa.Connection] = set()  # the store threads' (PostgreSQL)
        # SQLite's store thread keeps its connection (no pool checkout and reset per transaction)
        self._kept = threading.local()
        # called, in the committing thread, with the topics a write transaction changed
        # (:func:`changed`), once it is committed (see store/changes.py)
        self.on_commit: list[Callable[[frozenset[str]], None]] = []

    async def run(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``work`` (which opens its own transactions) off the event loop, in the
        process's store threads, and return its result: no database call blocks the loop
        (a lock wait, a slow query, a network round trip)."""
        return await self._hop(self.is_sqlite, work, *args, **kwargs)

    async def run_read(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """:meth:`run` for work that only reads in autocommit mode (:meth:`read` with
        ``snapshot=False``: it waits on no lock), whose answer may be handed back to the loop
        with others (store/threads.py)."""
        return await self._hop(True, work, *args, **kwargs)

    async def _hop(self, brief: bool, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        threads = self._threads or self._start_threads()
        run = threads.run_brief if brief else threads.run
        if kwargs:
            return await run(lambda: work(*args, **kwargs))
        return await run(work, *args)

    def _start_threads(self) -> StoreThreads:
        with self._threads_lock:
            if self._threads is None:
                count = 1 if self.is_sqlite else self.threads
                self._threads = StoreThreads(
                    count,
                    "opennimble-store",
                    initializer=self._store_thread,
                    linger=LINGER,
                )
            return self._threads

    def _store_thread(self) -> None:
        self._kept.keep = self.is_sqlite
        self._kept.keep_reader = self.is_postgresql

    @contextlib.contextmanager
    def _kept_reader(self) -> Iterator[sa.Connection]:
        """PostgreSQL: a store thread's own autocommit connection for reads, kept from one
        read to the next: no pool checkout with its ping and its isolation level set and
        reset per read, and the hot statements stay prepared on the server (measured: a Get
        cost 280 us of CPU with a pooled connection). A connection idle for
        ``IDLE_PING`` seconds is pinged before use, as the pool pings at checkout;
        one that fails is dropped (the next read connects afresh). Other threads take a
        pooled connection."""
        if not getattr(self._kept, "keep_reader", False):
            with self._reader.connect() as pooled:
                yield pooled
            return
        conn = self._fresh_reader()
        try:
            yield conn
        except BaseException as exc:
            if isinstance(exc, (psycopg.OperationalError, sa.exc.OperationalError)) or (
                _broken(conn)
            ):
                self._drop_reader(conn)
            raise
        finally:
            self._kept.reader_used = time.monotonic()
            if not conn.closed and conn.in_transaction():  # SQLAlchemy's autobegin
                conn.rollback()

    def _fresh_reader(self) -> sa.Connection:
        conn: sa.Connection | None = getattr(self._kept, "reader", None)
        if conn is not None and not (conn.closed or conn.invalidated or _broken(conn)):
            idle = time.monotonic() - getattr(self._kept, "reader_used", 0.0)
            if idle < IDLE_PING or _answers(conn.connection.driver_connection):
                return conn
        if conn is not None:
            self._drop_reader(conn)
        conn = self._kept.reader = self._reader.connect()
        with self._threads_lock:
            self._readers.add(conn)
        return conn

    def _drop_reader(self, conn: sa.Connection) -> None:
        self._kept.reader = None
        with self._threads_lock:
            self._readers.discard(conn)
        with contextlib.suppress(Exception):  # a broken connection may fail to close cleanly
            conn.invalidate()
            conn.close()

    def _close_kept(self) -> None:
        conn = getattr(self._kept, "conn", None)
        if conn is not None:
            self._kept.conn = None
            conn.close()

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sa.Connection]:
        """A connection: on SQLite's store thread the one it keeps, otherwise from the pool."""
        if not getattr(self._kept, "keep", False):
            with self.engine.connect() as pooled:
                yield pooled
            return
        kept: sa.Connection | None = getattr(self._kept, "conn", None)
        if kept is None or kept.closed or kept.invalidated:
            kept = self._kept.conn = self.engine.connect()
        try:
            yield kept
        except BaseException:
            if kept.invalidated:
                self._close_kept()
            raise

    def _create_engine(self) -> sa.Engine:
        if not self.is_sqlite:
            engine = sa.create_engine(
                self.url,
                pool_size=POOL_SIZE,
                max_overflow=POOL_SIZE,
                json_serializer=json_text,
                json_deserializer=json_value,  # psycopg's loader of JSON takes it
                # the hot statements prepare their own (store/libpq.py); psycopg's, once it has
                # any, are all deallocated after every rollback, ours with them
                connect_args={"prepare_threshold": None},
            )
            sa.event.listen(engine, "checkin", _idle_since)
            sa.event.listen(engine, "checkout", _ping_if_idle)
            return engine
        path = self.url.split(":///", 1)[1] if ":///" in self.url else ""
        if path and path != ":memory:":
            pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
        # timeout: how long a connection waits for another's write lock (SQLite's busy handler)
        engine = sa.create_engine(
            self.url,
            connect_args={"timeout": 30},
            json_serializer=json_text,
            json_deserializer=json_value,
        )
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
        if path and path != ":memory:":
            existing = _ExistingFileOnly(pathlib.Path(path).exists())
            sa.event.listen(engine, "do_connect", existing.do_connect)
            sa.event.listen(engine, "connect", existing.connected)
        return engine

    @contextlib.contextmanager
    def read(self, *, snapshot: bool = True) -> Iterator[sa.Connection]:
        """A transaction for reading (no write lock).

        On SQLite a consistent snapshot. On PostgreSQL each statement sees what was committed
        when it began (READ COMMITTED gives no more inside a transaction), so reads run in
        autocommit mode: no BEGIN and COMMIT round trips. ``snapshot=False`` asks for that on
        SQLite too (each statement its own snapshot, as on PostgreSQL): no BEGIN and COMMIT,
        two calls into SQLite that each hand the GIL to the other threads and back.
        """
        if self.is_postgresql:
            with self._kept_reader() as conn:
                yield conn
            return
        if snapshot:
            with self._connect() as conn, conn.begin():
                yield conn
            return
        with self._connect() as conn:
            # a flag on the connection's info, not an execution option: setting one runs
            # SQLAlchemy's option events, ~8 us a time on every read
            info = conn.info
            info[_AUTOCOMMIT] = True
            try:
                yield conn
            finally:
                info[_AUTOCOMMIT] = False
                if conn.in_transaction():  # SQLAlchemy's autobegin: no BEGIN was sent
                    conn.rollback()

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A transaction for reading and writing; committed on success, rolled back on error.

        On PostgreSQL, work registered with :func:`before_commit` runs last, just before the
        commit (SQLite's group commit runs pieces of work in savepoints, which such work would
        outlive: there it runs at once)."""
        with self._write_lock, self._connect() as conn:
            conn.execution_options(opennimble_write=True)
            committed = False
            try:
                with conn.begin():
                    last: dict[str, tuple[int, Callable[[sa.Connection], None]]] = {}
                    if self.is_postgresql:
                        conn.info[_LAST] = (conn.get_transaction(), last)
                    yield conn
                    for _, work in sorted(last.values(), key=lambda found: found[0]):
                        work(conn)
                committed = True
            finally:
                conn.info.pop(_LAST, None)
                conn.execution_options(opennimble_write=False)
                topics = conn.info.pop(CHANGED, None)
            if committed and topics:
                for announce in self.on_commit:
                    announce(frozenset(topics))

    def upgrade(self) -> None:
        """Create or upgrade the schema to the newest migration.

        On PostgreSQL an advisory lock serializes servers that start at the same moment.
        """
        with self.engine.begin() as conn:
            if self.is_postgresql:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_key("migrations"))))
            config = alembic_config(self.url)
            config.attributes["connection"] = conn
            alembic.command.upgrade(config, "head")

    @contextlib.asynccontextmanager
    async def listener(
        self, *, lock: str | None, channel: str = WORK_CHANNEL
    ) -> AsyncIterator[Listener]:
        """A dedicated PostgreSQL connection that holds the lock ``lock`` (if given) and
        LISTENs on ``channel`` for as long as the context lasts.

        The lock is a session-level advisory lock: it is released when the connection ends,
        also when the process is killed. Raises :class:`LockTaken` if another connection holds
        it.
        """
        if not self.is_postgresql:
            raise RuntimeError("a listener needs PostgreSQL")
        conn = await psycopg.AsyncConnection.connect(libpq_url(self.url), autocommit=True)
        async with conn:
            if lock is not None:
                await _advisory_lock(conn, lock)
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            yield Listener(conn)
            if lock is not None:
                with contextlib.suppress(psycopg.Error):
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(lock),))

    def dispose(self) -> None:
        if self._threads is not None:
            if self.is_sqlite:  # its one thread closes the connection it keeps
                self._threads.call(self._close_kept)
            self._threads.shutdown()
            self._threads = None
        with self._threads_lock:
            readers, self._readers = self._readers, set()
        for conn in readers:  # the store threads' kept readers (PostgreSQL)
            with contextlib.suppress(Exception):
                conn.close()
        self.engine.dispose()


class LockTaken(Exception):
    """Another process holds the lock."""

    def __init__(self, name: str) -> None:
        super().__init__(f"another process holds the lock {name!r}")
        self.name = name


class Listener:
    """Notifications on a channel, from a connection opened by :meth:`Database.listener`."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    async def notifications(self) -> AsyncIterator[str]:
        """Yield the payload of every notification; raise when the connection fails.

        A connection that stays silent is checked every :data:`LISTEN_CHECK` seconds.
        """
        while True:
            async for note in self._conn.notifies(timeout=LISTEN_CHECK):
                yield note.payload
            await self._conn.execute("SELECT 1")  # a dead connection raises here


async def _advisory_lock(conn: psycopg.AsyncConnection[Any], name: str) -> None:
    """Take the session-level lock ``name``, waiting up to :data:`LOCK_WAIT` seconds: the
    server releases the lock of a connection that just ended (a killed process) a moment
    later."""
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(name),))
        row = await cursor.fetchone()
        if row and row[0]:
            return
        if time.monotonic() >= deadline:
            raise LockTaken(name)
        await asyncio.sleep(0.1)


def changed(conn: sa.Connection, topic: str) -> None:
    """Note that this write transaction changed ``topic`` (a studio's sessions, access): the
    process announces it once the transaction commits (:attr:`Database.on_commit`), to the
    live views of this process (other processes hear it from PostgreSQL's NOTIFY)."""
    topics: set[str] | None = conn.info.get(CHANGED)
    if topics is None:
        conn.info[CHANGED] = {topic}
    else:
        topics.add(topic)


_LAST = "opennimble_before_commit"


def before_commit(
    conn: sa.Connection, key: str, work: Callable[[sa.Connection], None], order: int = 0
) -> bool:
    """Run ``work(conn)`` at the end of this transaction, just before its commit, once per
    ``key`` (the first registration wins), in ``order`` (then as registered); False (nothing
    registered) when the transaction offers no such place (SQLite, or not a
    :meth:`Database.write`): then the caller does its work at once. For work that takes a
    lock others queue on: it is held from there to the commit only."""
    found = conn.info.get(_LAST)
    if found is None or found[0] is not conn.get_transaction():
        return False
    found[1].setdefault(key, (order, work))
    return True


def try_lock(conn: sa.Connection, name: str) -> bool:
    """Take the lock ``name`` for the rest of the transaction, if nobody else holds it.

    For chores that one process at a time should do. On SQLite there is one process per
    database (and write transactions are serialized anyway): always True.
    """
    if conn.dialect.name != "postgresql":
        return True
    return bool(conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(lock_key(name)))).scalar())


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for ``name``."""
    digest = hashlib.sha256(b"opennimble:" + name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def libpq_url(url: str) -> str:
    """The plain ``postgresql://`` form of a SQLAlchemy URL, for psycopg itself."""
    return sa.engine.make_url(url).set(drivername="postgresql").render_as_string(False)


def alembic_config(url: str) -> alembic.config.Config:
    config = alembic.config.Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _broken(conn: sa.Connection) -> bool:
    """Whether the driver knows its connection is gone (psycopg: after an error on it)."""
    if conn.closed or conn.invalidated:
        return True
    driver = conn.connection.driver_connection
    return driver is None or bool(getattr(driver, "broken", False) or driver.closed)


def _idle_since(_dbapi_connection: Any, record: Any) -> None:
    record.info[_IDLE_SINCE] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """At a pooled PostgreSQL connection's checkout: a round trip if it sat idle for
    ``IDLE_PING`` seconds (a server restarted meanwhile has closed it); one that does not
    answer is replaced (the pool connects afresh). SQLAlchemy's ``pool_pre_ping`` pinged at
    every checkout: one round trip more for every write transaction, 1 of a create's 16."""
    since = record.info.get(_IDLE_SINCE)
    if since is None or time.monotonic() - since < IDLE_PING:
        return  # just connected, or in use a moment ago
    if not _answers(record.driver_connection):
        raise sa.exc.DisconnectionError("an idle pooled connection did not answer")


def _answers(driver: Any) -> bool:
    """A round trip on an idle driver connection (ended, if it is not in autocommit mode)."""
    try:
        assert driver is not None
        driver.execute("SELECT 1")
        driver.rollback()  # nothing in autocommit mode
    except Exception:
        return False
    return True


class _ExistingFileOnly:
    """Once an SQLite database file exists (or this engine made it), connections open it
    read-write and never create it: a file moved away while the server runs makes them fail
    (the database is unreachable, as /readyz says), instead of each new connection making an
    empty database that the pool would keep after the real file came back."""

    def __init__(self, exists: bool) -> None:
        self.exists = exists

    def do_connect(self, _dialect: Any, _record: Any, cargs: list[Any], cparams: Any) -> None:
        if self.exists and cargs and not str(cargs[0]).startswith("file:"):
            cargs[0] = "file:" + urllib.parse.quote(str(cargs[0])) + "?mode=rw"
            cparams["uri"] = True

    def connected(self, _dbapi_connection: Any, _record: Any) -> None:
        self.exists = True


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# a run of 20 digits may be an integer past 64 bits, which orjson would read as a float; a
# text with fewer than 20 digits in all holds none (counting them by deleting them is a tenth
# of the search's cost, and most columns' texts have only a few)
_LONG_NUMBER = re.compile(rb"\d{20}")
_DIGITS = b"0123456789"


def json_value(text: str | bytes) -> Any:
    """A JSON column's value from its text (:func:`json_text`'s counterpart): orjson, the
    standard library where a number may be an integer past 64 bits."""
    data = text.encode() if isinstance(text, str) else text
    digits = len(data) - len(data.translate(None, _DIGITS))
    if digits >= 20 and _LONG_NUMBER.search(data) is not None:
        return json.loads(data)
    return orjson.loads(data)


def json_text(value: Any) -> str:
    """A JSON column's value as stored: orjson, a tenth of the standard library's cost (the
    session's row has four JSON columns); the standard library for what orjson refuses
    (integers past 64 bits)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


def _sqlite_begin(conn: sa.Connection) -> None:
    if conn.info.get(_AUTOCOMMIT, False):
        return  # Database.read(snapshot=False): each statement its own transaction
    options = conn.get_execution_options()
    immediate = options.get("opennimble_write", False)
    # on the driver: through exec_driver_sql it cost ~20 us of SQLAlchemy's statement
    # machinery, a tenth of a whole read request
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
