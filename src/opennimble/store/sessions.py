"""Streaming sessions: rows, filtered pages, compare-and-set transitions and work claims.

Work is claimed from this table by the reconcilers of any number of processes: a claim names
its holder and lapses unless renewed by heartbeats, and a session is bound to the workstation
host that runs its desktop (``host_id``), so that only that host's reconciler works on it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from opennimble.store import database, events, generations, hot, id_lists, paging, schema

Row = dict[str, Any]
t = schema.sessions


class SessionState(enum.StrEnum):
    """A streaming session's state: the model's ``StreamingSessionState`` (a unit test holds
    them equal). Members are strings: rows keep plain strings and compare equal to them."""

    CREATE_IN_PROGRESS = "CREATE_IN_PROGRESS"
    READY = "READY"
    DELETE_IN_PROGRESS = "DELETE_IN_PROGRESS"
    DELETED = "DELETED"
    STOP_IN_PROGRESS = "STOP_IN_PROGRESS"
    STOPPED = "STOPPED"
    START_IN_PROGRESS = "START_IN_PROGRESS"
    CREATE_FAILED = "CREATE_FAILED"
    DELETE_FAILED = "DELETE_FAILED"
    STOP_FAILED = "STOP_FAILED"
    START_FAILED = "START_FAILED"


S = SessionState
# states in which the reconciler has something to do
WORK_STATES = (
    S.CREATE_IN_PROGRESS.value,
    S.DELETE_IN_PROGRESS.value,
    S.STOP_IN_PROGRESS.value,
    S.START_IN_PROGRESS.value,
)
# the work of a session that needs a host (all but a deletion)
NEW_WORK_STATES = tuple(state for state in WORK_STATES if state != S.DELETE_IN_PROGRESS)
# states in which a session's desktop occupies its host (counted against the host's capacity)
HOLDING_STATES = (*WORK_STATES, S.READY.value)
# the most sessions one claim takes (a reconciler asks for what it has room for, at most this)
CLAIM_AT_MOST = 64
# the reconciler's bookkeeping: never shown by the API, so listings do not read (or decode) it
BOOKKEEPING = frozenset(
    {
        "provider",
        "provider_state",
        "endpoint",
        "work_started_at",
        "attempts",
        "next_attempt_at",
        "claimed_by",
        "claim_expires_at",
        "host_id",
        "deleted_at",
    }
)
SHOWN = [c for c in t.c if c.name not in BOOKKEEPING]
# the listings' columns: SHOWN's, the JSON ones as their text on both databases, so that a
# listed row's values are hashable (the key of what the API makes of a row: api/rendered.py)
# and decoded only where needed (listed_row)
_JSON_SHOWN = frozenset(c.name for c in SHOWN if isinstance(c.type, sa.JSON))
LISTED: list[sa.ColumnElement[Any]] = [
    sa.cast(c, sa.Text).label(c.name) if c.name in _JSON_SHOWN else c for c in SHOWN
]
LISTED_NAMES = tuple(c.name for c in SHOWN)
_LISTED_JSON = tuple(i for i, c in enumerate(SHOWN) if c.name in _JSON_SHOWN)
# listed_row decodes the JSON columns only: SQLite would give a boolean as 0 or 1
assert not any(isinstance(c.type, sa.Boolean) for c in SHOWN), "decode it in listed_row"
_LISTED_KEY = (LISTED_NAMES.index("created_at"), LISTED_NAMES.index("session_id"))
# where a listed session's owner is
LISTED_OWNER = LISTED_NAMES.index("owned_by")

# the read path's statements (see store/hot.py)
_by_id: sa.BindParameter[str] = sa.bindparam("session_id")
_get = hot.Statement(sa.select(t).where(t.c.session_id == _by_id))
_get_in = hot.Statement(
    sa.select(t).where(t.c.session_id == _by_id, t.c.studio_id == sa.bindparam("studio_id"))
)
_get_listed = hot.Statement(
    sa.select(*LISTED, generations.column().label("access_generation")).where(
        t.c.session_id == _by_id, t.c.studio_id == sa.bindparam("studio_id")
    )
)
_pages: dict[tuple[bool, bool, bool], hot.Statement] = {}


# on the driver (store/hot.py): through SQLAlchemy's execution the insert was ~10% of a
# create's time in the group commit's thread
_INSERT = hot.Insert(t)


def insert(conn: sa.Connection, row: Row) -> None:
    """Insert a new session, and record the event of its first state."""
    events.serialize(conn)
    _INSERT.execute(conn, row)
    events.session_changed(conn, row, None, row)


def get(conn: sa.Connection, session_id: str, studio_id: str | None = None) -> Row | None:
    if studio_id is None:
        return _get.first(conn, session_id=session_id)
    return _get_in.first(conn, session_id=session_id, studio_id=studio_id)


def get_listed(
    conn: sa.Connection, session_id: str, studio_id: str
) -> tuple[tuple[Any, ...] | None, int | None]:
    """The session as listings read it (the values of :data:`LISTED`, undecoded: the same
    values as in a page, the key of what the API makes of them) and the access generation,
    read in the same statement (None, None: there is no such session)."""
    found = _get_listed.tuples(conn, session_id=session_id, studio_id=studio_id)
    if not found:
        return None, None
    values = found[0]
    return values[:-1], generations.counted(values[-1])


def page(
    conn: sa.Connection,
    studio_id: str,
    *,
    owned_by: str | None,
    created_by: str | None,
    session_ids: list[str] | None,
    after: paging.Key | None,
    limit: int,
    states: Iterable[str] | None = None,
    launch_profile_id: str | None = None,
    newest_first: bool = False,
) -> paging.Page[paging.Row]:
    """A page of the sessions (the columns the API shows: :data:`SHOWN`) that match. The API's
    listings (oldest first, no state or launch profile filter) use statements built once."""
    if states is None and launch_profile_id is None and not newest_first:
        found = listed(
            conn,
            studio_id,
            owned_by=owned_by,
            created_by=created_by,
            session_ids=session_ids,
            after=after,
            limit=limit,
        )
        return paging.Page([listed_row(values) for values in found.rows], found.next_key)
    where = [t.c.studio_id == studio_id]
    if owned_by is not None:
        where.append(t.c.owned_by == owned_by)
    if created_by is not None:
        where.append(t.c.created_by == created_by)
    if session_ids is not None:
        where.append(t.c.session_id.in_(session_ids))
    if states is not None:
        where.append(t.c.state.in_(list(states)))
    if launch_profile_id is not None:
        where.append(t.c.launch_profile_id == launch_profile_id)
    return paging.fetch(
        conn, t, "session_id", where, after, limit, SHOWN, newest_first=newest_first
    )


# a page of sessions as the driver gave them: each the values of LISTED (JSON as text), the
# same values for the same row on every read (listed_row decodes one)
Listed = paging.Page[tuple[Any, ...]]


def listed(
    conn: sa.Connection,
    studio_id: str,
    *,
    owned_by: str | None,
    created_by: str | None,
    after: paging.Key | None,
    limit: int,
    session_ids: list[str] | None = None,
) -> Listed:
    """The API's listings (oldest first; by owner, by creator, of ``session_ids`` or all): a
    page of sessions undecoded, on statements built once but for ``session_ids`` (an ``IN``
    list of any length)."""
    if session_ids is not None:
        where = [t.c.studio_id == studio_id, t.c.session_id.in_(session_ids)]
        if owned_by is not None:
            where.append(t.c.owned_by == owned_by)
        if created_by is not None:
            where.append(t.c.created_by == created_by)
        found = paging.fetch(conn, t, "session_id", where, after, limit, LISTED)
        return paging.Page([tuple(row.values()) for row in found.rows], found.next_key)
    statement = _page_statement(owned_by is not None, created_by is not None, after is not None)
    params: dict[str, Any] = {
        "studio_id": studio_id,
        "owned_by": owned_by,
        "created_by": created_by,
    }
    if after is not None:
        params.update(after_created=after[0], after_id=after[1])
    created, ident = _LISTED_KEY
    return paging.cut(
        statement.tuples(conn, **params, limit=limit + 1),
        limit,
        lambda last: (int(last[created]), str(last[ident])),
    )


def listed_row(values: tuple[Any, ...]) -> Row:
    """A listed session's row, as :func:`page` gives it (its JSON columns decoded)."""
    row = dict(zip(LISTED_NAMES, values, strict=True))
    for index in _LISTED_JSON:
        name = LISTED_NAMES[index]
        row[name] = database.json_value(row[name])
    return row


def _page_statement(owned: bool, created: bool, after: bool) -> hot.Statement:
    """The page query of one combination of filters, built once."""
    key = (owned, created, after)
    found = _pages.get(key)
    if found is None:
        where = [t.c.studio_id == sa.bindparam("studio_id")]
        if owned:
            where.append(t.c.owned_by == sa.bindparam("owned_by"))
        if created:
            where.append(t.c.created_by == sa.bindparam("created_by"))
        if after:
            where.append(paging.after_bound(t, "session_id"))
        query = (
            sa.select(*LISTED)
            .where(*where)
            .order_by(t.c.created_at, t.c.session_id)
            .limit(sa.bindparam("limit", type_=sa.Integer))
        )
        found = _pages[key] = hot.Statement(query)
    return found


def transition(
    conn: sa.Connection, session_id: str, from_states: Iterable[str], **values: Any
) -> bool:
    """Set ``values`` if the session is in one of ``from_states`` (compare and set); a change
    of ``state`` records its event (:mod:`opennimble.store.events`) in the same transaction."""
    from_states = tuple(from_states)
    params = _params(session_id, values, from_states)
    if "state" not in values or not events.recording():  # no event: a plain compare-and-set
        statement = _update_statement(tuple(values), len(from_states), returning=False)
        return conn.execute(statement, params).rowcount == 1
    events.serialize(conn)
    found: Row | None
    if len(from_states) == 1:  # one statement: the previous state is known
        found = _moving_statement(tuple(values)).first(conn, **params)
        previous = from_states[0]
    else:  # lock and read the row first, for its previous state
        where = (t.c.session_id == session_id, t.c.state.in_(from_states))
        row = conn.execute(sa.select(t.c.state, *_ABOUT).where(*where).with_for_update()).first()
        found = None if row is None else dict(row._mapping)
        if found is not None:
            conn.execute(_update_statement(tuple(values), len(from_states), False), params)
            previous = found["state"]
    if found is None:
        return False
    events.session_changed(conn, {**found, "session_id": session_id}, previous, values)
    return True


def update(conn: sa.Connection, session_id: str, **values: Any) -> None:
    conn.execute(_update_statement(tuple(values), 0, returning=False), _params(session_id, values))


# what an event needs of the session it describes (transition's RETURNING)
_ABOUT = (t.c.studio_id, t.c.owned_by, t.c.launch_profile_id, t.c.updated_at)
# UPDATEs of sessions by id, one per (columns set, number of states compared, RETURNING), built
# once: building one per call costs several times its execution (see quota_counters)
_updates: dict[tuple[tuple[str, ...], int, bool], sa.Update] = {}


# a change of state from one known state (the reconciler's and the API's usual transition):
# one UPDATE ... RETURNING per set of columns, run on the driver (store/hot.py): through
# SQLAlchemy's execution, its RETURNING cost more than the rest of the event
_moving: dict[tuple[str, ...], hot.Statement] = {}


def _moving_statement(columns: tuple[str, ...]) -> hot.Statement:
    found = _moving.get(columns)
    if found is None:
        found = _moving[columns] = hot.Statement(_update_statement(columns, 1, returning=True))
    return found


def _params(
    session_id: str, values: dict[str, Any], from_states: tuple[str, ...] = ()
) -> dict[str, Any]:
    # (bound parameters of an UPDATE may not take its columns' names: hence the prefixes)
    params = {f"v_{k}": v for k, v in values.items()}
    params["p_session_id"] = session_id
    for i, state in enumerate(from_states):
        params[f"p_from{i}"] = state
    return params


def _update_statement(columns: tuple[str, ...], states: int, returning: bool) -> sa.Update:
    key = (columns, states, returning)
    found = _updates.get(key)
    if found is None:
        where = [t.c.session_id == sa.bindparam("p_session_id")]
        if states:
            where.append(
                t.c.state.in_(
                    [sa.bindparam(f"p_from{i}", type_=t.c.state.type) for i in range(states)]
                )
            )
        found = t.update().where(*where).values({c: sa.bindparam(f"v_{c}") for c in columns})
        if returning:
            found = found.returning(*_ABOUT)
        _updates[key] = found
    return found


def claim(
    conn: sa.Connection,
    *,
    owner: str,
    host_id: str,
    new: bool,
    now: int,
    lease: int,
    limit: int,
    exclude: Iterable[str] = (),
    created_before: int | None = None,
) -> list[Row]:
    """Claim up to ``limit`` due sessions for ``owner``; return them.

    ``new=False``: the work of sessions bound to ``host_id`` (the earliest due first), then
    deletions of sessions that never got a desktop (bound to no host). ``new=True``: sessions
    bound to no host that need a desktop, the longest waiting first; the claim binds them to
    ``host_id``, where their desktop will run. A session is due when it is in a work state,
    its next attempt has come, and nobody holds a live claim on it (a claim whose holder
    stopped sending heartbeats lapses at ``claim_expires_at``). ``created_before``: only
    sessions created before then. At most ``CLAIM_AT_MOST`` sessions per queue.

    On PostgreSQL the candidates are locked with ``FOR UPDATE SKIP LOCKED``, so concurrent
    reconcilers claim disjoint sessions without waiting for each other; on SQLite the write
    transaction is serialized and the conditions make it a compare-and-set.
    """
    if created_before is not None and not new:
        raise ValueError("created_before applies to the new sessions' claim only")
    queues = ("new",) if new else ("host", "deletions")
    values = {
        "owner": owner,
        "on_host": host_id,
        "now": now,
        "until": now + lease,
        "exclude": list(exclude),
        "created_before": created_before,
    }
    claimed: list[Row] = []
    for queue in queues:
        if limit - len(claimed) <= 0:
            break
        statement = _claims[(queue, created_before is not None)]
        claimed += statement.rows(conn, **values, limit=limit - len(claimed))
    return claimed


WORK_QUEUES = ("bound", "new", "deletions")


def work_queue(name: str) -> tuple[sa.ColumnElement[bool], ...]:
    """The condition of a work queue (store/schema.py's partial indexes, whose conditions name
    the states as constants, as this does): ``bound``, the work of sessions bound to a host;
    ``new``, of those that wait for one; ``deletions``, of those that never got one."""
    unbound = t.c.host_id.is_(None)
    return {
        "bound": (t.c.host_id.is_not(None), id_lists.is_one_of(t.c.state, WORK_STATES)),
        "new": (unbound, id_lists.is_one_of(t.c.state, NEW_WORK_STATES)),
        "deletions": (unbound, t.c.state == id_lists.constant(S.DELETE_IN_PROGRESS.value)),
    }[name]


def _claim(queue: str, created_before: bool) -> hot.Statement:
    """The claim of one queue (store/schema.py's work queues): ``host``, the work of the
    sessions bound to a host; ``deletions``, of sessions bound to none; ``new``, the sessions
    that wait for a host.

    Built once (building it was most of the cost of the reconciler's claims, which on SQLite
    run in the group commit's thread), and hot, so prepared once per connection on PostgreSQL
    (parsing and planning it took ~0.6 ms of PostgreSQL's CPU per claim); the sessions to leave
    out are one parameter (store/id_lists.py). Each queue's condition is one partial index's
    and its order that index's, so that a claim reads the rows it takes whatever the planner's
    statistics say (they are seldom of a moment with sessions waiting: with 1,000 waiting, a
    claim whose plan read and sorted them all took 2-17 ms of PostgreSQL's CPU).
    """
    if queue == "host":
        which = (*work_queue("bound"), t.c.host_id == sa.bindparam("on_host"))
    else:
        which = work_queue(queue)
    # the new work by age, the rest by when it is due (the indexes' orders)
    order = (t.c.created_at,) if queue == "new" else (t.c.next_attempt_at, t.c.created_at)
    now = sa.bindparam("now", type_=sa.BigInteger)
    candidates = (
        sa.select(t.c.session_id)
        .where(
            *which,
            t.c.next_attempt_at <= now,
            sa.or_(t.c.claimed_by.is_(None), t.c.claim_expires_at < now),
            id_lists.not_among(t.c.session_id, "exclude"),
            t.c.created_at < sa.bindparam("created_before") if created_before else sa.true(),
        )
        .order_by(*order)
        # A constant: a prepared statement's plan is made for any parameter, and PostgreSQL
        # plans a LIMIT given as a parameter as if it took a tenth of the rows (then reading
        # and sorting them all looks cheaper than reading the queue in its order). The rows
        # are locked as the outer LIMIT takes them: only ``limit`` are.
        .limit(sa.literal_column(str(CLAIM_AT_MOST), sa.Integer))
        .with_for_update(skip_locked=True)
        .subquery()
    )
    first = sa.select(candidates.c.session_id).limit(sa.bindparam("limit", type_=sa.Integer))
    return hot.Statement(
        t.update()
        .where(t.c.session_id.in_(first))
        .values(
            claimed_by=sa.bindparam("owner"),
            claim_expires_at=sa.bindparam("until"),
            host_id=sa.bindparam("on_host"),
        )
        .returning(*t.c)
    )


# (queue, with created_before): the variants claim() runs
_claims = {
    key: _claim(*key)
    for key in (("host", False), ("deletions", False), ("new", False), ("new", True))
}
_HOLDING = (
    sa.select(sa.literal(1))
    .where(t.c.host_id == sa.bindparam("on_host"), id_lists.is_one_of(t.c.state, HOLDING_STATES))
    .limit(sa.bindparam("at_most", type_=sa.Integer))
    .subquery()
)
_ON_HOST = hot.Statement(sa.select(sa.func.count()).select_from(_HOLDING))


def count_on_host(conn: sa.Connection, host_id: str, at_most: int) -> int:
    """Sessions whose desktop occupies ``host_id`` now (its capacity in use), counted up to
    ``at_most`` (the host's capacity: the count stops there instead of reading every READY
    session of the host, 0.9 ms at 20,000)."""
    return int(_ON_HOST.scalar(conn, on_host=host_id, at_most=at_most))


_HEARTBEAT = hot.Statement(
    t.update()
    .where(id_lists.among(t.c.session_id, "ids"), t.c.claimed_by == sa.bindparam("owner"))
    .values(claim_expires_at=sa.bindparam("until", type_=sa.BigInteger))
)


def heartbeat(conn: sa.Connection, session_ids: list[str], owner: str, until: int) -> None:
    """Renew ``owner``'s claims on ``session_ids`` until ``until``."""
    if session_ids:
        _HEARTBEAT.execute(conn, ids=session_ids, owner=owner, until=until)


_RELEASE = hot.Statement(
    t.update()
    .where(id_lists.among(t.c.session_id, "ids"), t.c.claimed_by == sa.bindparam("owner"))
    .values(claimed_by=sa.null(), claim_expires_at=sa.null())
)


def release(conn: sa.Connection, session_ids: list[str], owner: str) -> None:
    """Drop ``owner``'s claims on ``session_ids``."""
    if session_ids:
        _RELEASE.execute(conn, ids=session_ids, owner=owner)


def release_all(conn: sa.Connection, host_id: str | None = None) -> None:
    """Drop the claims of every reconciler, or of those that ran on ``host_id``."""
    query = t.update().where(t.c.claimed_by.is_not(None))
    if host_id is not None:
        query = query.where(t.c.host_id == host_id)
    conn.execute(query.values(claimed_by=None, claim_expires_at=None))


def adopt_all(conn: sa.Connection, host_id: str) -> None:
    """Bind every session that is not DELETED to ``host_id`` (a database with one host)."""
    query = t.update().where(
        t.c.state != "DELETED", sa.or_(t.c.host_id.is_(None), t.c.host_id != host_id)
    )
    conn.execute(query.values(host_id=host_id))


def expired_timers(conn: sa.Connection, now: int, limit: int) -> list[Row]:
    """READY or STOPPED sessions whose stop or termination time has come (two index range
    scans: the cost does not grow with the number of sessions)."""
    found: dict[str, Row] = {}
    for query in _EXPIRED:
        for r in conn.execute(query, {"now": now, "limit": limit}):
            found.setdefault(r.session_id, dict(r._mapping))
    return list(found.values())[:limit]


def _expired() -> tuple[sa.Select[Any], sa.Select[Any]]:
    # the state is compared through an expression, so that no planner (SQLite's would) scans
    # every READY session by the state index instead of the timer's index
    state = sa.func.coalesce(t.c.state, "")
    now, limit = sa.bindparam("now", type_=sa.BigInteger), sa.bindparam("limit", type_=sa.Integer)
    terminate = sa.select(t).where(t.c.terminate_at <= now, state.in_(("READY", "STOPPED")))
    stop = sa.select(t).where(t.c.stop_at <= now, state == "READY")
    return terminate.limit(limit), stop.limit(limit)


_EXPIRED = _expired()  # built once: the housekeeping reads them at every pass


def purge_deleted(conn: sa.Connection, before: int) -> list[str]:
    state = sa.func.coalesce(t.c.state, "")  # by the deleted_at index (see expired_timers)
    query = sa.select(t.c.session_id).where(t.c.deleted_at < before, state == "DELETED")
    ids = [str(r[0]) for r in conn.execute(query)]
    if ids:
        conn.execute(schema.streams.delete().where(schema.streams.c.session_id.in_(ids)))
        conn.execute(t.delete().where(t.c.session_id.in_(ids)))
    return ids


def ids_not_deleted(conn: sa.Connection, host_id: str | None = None) -> set[str]:
    """Ids of the sessions that are not DELETED (of those bound to ``host_id`` if given)."""
    query = sa.select(t.c.session_id).where(t.c.state != "DELETED")
    if host_id is not None:
        query = query.where(t.c.host_id == host_id)
    return {str(r[0]) for r in conn.execute(query)}


def in_states(conn: sa.Connection, states: Iterable[str], host_id: str | None = None) -> list[Row]:
    """Sessions in ``states`` (of those bound to ``host_id`` if given)."""
    query = sa.select(t).where(t.c.state.in_(tuple(states)))
    if host_id is not None:
        query = query.where(t.c.host_id == host_id)
    return [dict(r._mapping) for r in conn.execute(query)]


def owner_mark(conn: sa.Connection, studio_ids: list[str], owned_by: str) -> tuple[int, int]:
    """(how many, the sum of their updated_at) of the sessions ``owned_by`` owns in these
    studios: it changes whenever one of them changes state (every state change sets
    ``updated_at``), appears or is purged. Read by the (studio_id, owned_by) index."""
    t = schema.sessions
    query = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(t.c.updated_at), 0)).where(
        t.c.studio_id.in_(studio_ids), t.c.owned_by == owned_by
    )
    count, total = conn.execute(query).one()
    return int(count), int(total)
