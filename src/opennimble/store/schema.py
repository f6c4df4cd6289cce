"""The database schema, declared once with SQLAlchemy Core.

Alembic migrations under ``migrations/`` create and change it; a test checks that the migrated
schema equals this declaration on every supported database. Timestamps are integer microseconds
since the epoch (UTC), see :mod:`opennimble.clock`.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Id = sa.String(64)
Micros = sa.BigInteger

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# Counters that servers read on every request to know whether what they remember is still
# true. ``access``: bumped in the same transaction as every change to what the access rules read
# (users, access keys, memberships, a studio's state and attributes), see store/generations.py.
generations = sa.Table(
    "generations",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("operator", sa.Boolean, nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    # a disabled user is refused like a deleted one, and keeps their access keys
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    # portal sign-in: an argon2 hash (None: no password set), failures in a row, locked until
    sa.Column("password_hash", sa.Text, nullable=True),
    sa.Column("failed_signins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", Micros, nullable=False, server_default="0"),
)

access_keys = sa.Table(
    "access_keys",
    metadata,
    sa.Column("access_key_id", sa.String(32), primary_key=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.user_id"), nullable=False),
    sa.Column("secret", sa.Text, nullable=False),  # encrypted with the installation key
    sa.Column("created_at", Micros, nullable=False),
)

# Studios, launch profiles, streaming images and studio components share one shape: a kind, a
# lifecycle state, audit fields and the modelled attributes as given (``attrs``).
resources = sa.Table(
    "resources",
    metadata,
    sa.Column("resource_id", Id, primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("studio_id", Id, nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("status_code", sa.String(64), nullable=False),
    sa.Column("status_message", sa.Text, nullable=False),
    sa.Column("attrs", sa.JSON, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("created_by", Id, nullable=False),
    sa.Column("updated_at", Micros, nullable=False),
    sa.Column("updated_by", Id, nullable=False),
    sa.Index(None, "studio_id", "kind", "created_at", "resource_id"),
    sa.Index(None, "kind", "state"),
)

members = sa.Table(
    "members",
    metadata,
    # scope_id is the studio id for studio members, the launch profile id for its members
    sa.Column("scope_id", Id, primary_key=True),
    sa.Column("principal_id", Id, primary_key=True),
    sa.Column("studio_id", Id, nullable=False),
    sa.Column("persona", sa.String(32), nullable=False),
    sa.Column("identity_store_id", sa.String(64), nullable=False),
    sa.Column("sid", sa.String(64), nullable=False),
    sa.Column("created_at", Micros, nullable=False),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("session_id", Id, primary_key=True),
    sa.Column("studio_id", Id, nullable=False),
    sa.Column("launch_profile_id", Id, nullable=False),
    sa.Column("streaming_image_id", Id, nullable=False),
    sa.Column("ec2_instance_type", sa.String(32), nullable=False),
    sa.Column("owned_by", Id, nullable=False),
    sa.Column("created_by", Id, nullable=False),
    sa.Column("updated_by", Id, nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("status_code", sa.String(64), nullable=False),
    sa.Column("status_message", sa.Text, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("attrs", sa.JSON, nullable=False),  # settings copied from the launch profile
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("updated_at", Micros, nullable=False),
    sa.Column("started_at", Micros),
    sa.Column("started_by", Id),
    sa.Column("stopped_at", Micros),
    sa.Column("stopped_by", Id),
    sa.Column("terminate_at", Micros),
    sa.Column("stop_at", Micros),
    sa.Column("deleted_at", Micros),
    # reconciler bookkeeping
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("provider_state", sa.JSON, nullable=False),
    sa.Column("endpoint", sa.JSON, nullable=False),
    sa.Column("work_started_at", Micros),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", Micros, nullable=False, server_default="0"),
    sa.Column("claimed_by", sa.String(128)),
    sa.Column("claim_expires_at", Micros),
    # the workstation host that runs (or ran) the session's desktop; bound at the first claim
    sa.Column("host_id", sa.String(128)),
    sa.Index(None, "studio_id", "created_at", "session_id"),
    sa.Index(None, "studio_id", "owned_by", "created_at", "session_id"),
    sa.Index(None, "studio_id", "created_by", "created_at", "session_id"),
    # of the sessions bound to a host: a claim of those bound to none never reads it
    sa.Index(
        None,
        "host_id",
        "state",
        postgresql_where=sa.text("host_id IS NOT NULL"),
        sqlite_where=sa.text("host_id IS NOT NULL"),
    ),
    sa.Index(None, "terminate_at"),
    sa.Index(None, "stop_at"),
    sa.Index(None, "deleted_at"),
)
# The reconciler's work queues, in the order its claims take them (store/sessions.py): the
# work of the sessions bound to a host, by when it is due; the new sessions, which wait for a
# host, by age; the deletions of sessions that never got one. Partial: only the sessions with
# work to do. A claim's condition and order are one queue's, so that it reads the rows it
# takes (with 1,000 new sessions waiting, a claim read and sorted them all: 2-17 ms of
# PostgreSQL's CPU). The conditions are constants (store/sessions.py's WORK_STATES, held equal
# by a test), in the claims too: a planner uses a partial index only for a query that implies
# its condition, and a prepared statement's parameters imply nothing.
SESSION_WORK = (
    "state IN ('CREATE_IN_PROGRESS', 'DELETE_IN_PROGRESS', 'STOP_IN_PROGRESS', 'START_IN_PROGRESS')"
)
BOUND_WORK = f"host_id IS NOT NULL AND {SESSION_WORK}"
NEW_WORK = (
    "host_id IS NULL AND state IN ('CREATE_IN_PROGRESS', 'STOP_IN_PROGRESS', 'START_IN_PROGRESS')"
)
UNBOUND_DELETION = "host_id IS NULL AND state = 'DELETE_IN_PROGRESS'"


def _work_queue(name: str, where: str, *columns: str) -> None:
    """A partial index of the sessions, on ``columns``, of the rows where ``where`` holds."""
    condition = sa.text(where)
    sa.Index(
        name,
        *(sessions.c[column] for column in columns),
        postgresql_where=condition,
        sqlite_where=condition,
    )


_work_queue("ix_sessions_host_work", BOUND_WORK, "host_id", "next_attempt_at", "created_at")
_work_queue("ix_sessions_new_work", NEW_WORK, "created_at")
_work_queue("ix_sessions_unbound_deletions", UNBOUND_DELETION, "next_attempt_at", "created_at")

# Backups of sessions' storage (launch profiles with sessionBackup.mode AUTOMATIC): taken by
# the reconciler when a session stops, kept on the session's host, found by provider_state.
backups = sa.Table(
    "backups",
    metadata,
    sa.Column("backup_id", Id, primary_key=True),
    sa.Column("studio_id", Id, nullable=False),
    sa.Column("session_id", Id, nullable=False),
    sa.Column("launch_profile_id", Id, nullable=False),
    sa.Column("owned_by", Id, nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("status_code", sa.String(64), nullable=False),
    sa.Column("status_message", sa.Text, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("updated_at", Micros, nullable=False),
    sa.Column("deleted_at", Micros),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("provider_state", sa.JSON, nullable=False),
    sa.Index(None, "studio_id", "created_at", "backup_id"),
    sa.Index(None, "studio_id", "owned_by", "created_at", "backup_id"),
    sa.Index(None, "session_id", "state"),
    sa.Index(None, "deleted_at"),
)

streams = sa.Table(
    "streams",
    metadata,
    sa.Column("stream_id", Id, primary_key=True),
    sa.Column("session_id", Id, nullable=False, index=True),
    sa.Column("studio_id", Id, nullable=False),
    sa.Column("created_by", Id, nullable=False),
    sa.Column("owned_by", Id, nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("expires_at", Micros, nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("status_code", sa.String(64), nullable=False),
    sa.Column("used_at", Micros),
)

# Quota counters: the sessions (not DELETED) of a studio (owned_by "") and of each owner in
# it, each counter split into ``quota_counters.STRIPES`` rows (``stripe``), each with its share
# of the limit. CreateStreamingSession takes one place with a conditional UPDATE (used < the
# stripe's share) of one stripe, another if that one is full, in its own transaction; a session
# reaching DELETED gives one back. A create costs the same whatever the studio's size, and
# concurrent creates of a studio (or of an owner) mostly lock different rows.
quota_counters = sa.Table(
    "quota_counters",
    metadata,
    sa.Column("studio_id", Id, primary_key=True),
    sa.Column("owned_by", Id, primary_key=True),
    sa.Column("stripe", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("used", sa.Integer, nullable=False),
)

idempotency = sa.Table(
    "idempotency",
    metadata,
    sa.Column("operation", sa.String(64), primary_key=True),
    sa.Column("caller", Id, primary_key=True),
    sa.Column("scope", Id, primary_key=True),
    sa.Column("token", sa.String(64), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("response", sa.JSON, nullable=False),
    sa.Column("created_at", Micros, nullable=False, index=True),
)


# The audit trail: who did what to which resource, from where, with what outcome. Accepted
# changes are written in the transaction of the change; refusals on their own. ``entry_id``
# orders entries (an integer that grows); ``at`` is when (microseconds).
audit = sa.Table(
    "audit",
    metadata,
    sa.Column(
        "entry_id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("at", Micros, nullable=False, index=True),
    sa.Column("operation", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # accepted or refused
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("error_code", sa.String(128)),
    sa.Column("user_id", Id),
    sa.Column("user_name", sa.String(128)),
    sa.Column("persona", sa.String(32), nullable=False),
    sa.Column("access_key_id", sa.String(128)),
    sa.Column("client", sa.String(128)),
    sa.Column("studio_id", sa.String(256)),
    sa.Column("resource_id", sa.String(2048)),
    sa.Column("message", sa.Text),
    sa.Index(None, "studio_id", "at"),
)


# PostgreSQL only: a NOTIFY on the work channel (store.database.WORK_CHANNEL) whenever a session
# or resource enters a state with work for the reconciler, delivered when the transaction
# commits; it wakes idle reconcilers in every process (polling is the fallback).
WAKE_DDL = (
    """CREATE OR REPLACE FUNCTION opennimble_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('opennimble_work', TG_TABLE_NAME);
    RETURN NULL;
END $$""",
    """CREATE TRIGGER sessions_wake AFTER INSERT OR UPDATE OF state ON sessions
    FOR EACH ROW WHEN (right(NEW.state, 12) = '_IN_PROGRESS') EXECUTE FUNCTION opennimble_wake()""",
    """CREATE TRIGGER resources_wake AFTER INSERT OR UPDATE OF state ON resources
    FOR EACH ROW WHEN (right(NEW.state, 12) = '_IN_PROGRESS') EXECUTE FUNCTION opennimble_wake()""",
)
for _statement in WAKE_DDL:
    _ddl = sa.DDL(_statement)  # type: ignore[no-untyped-call]
    sa.event.listen(metadata, "after_create", _ddl.execute_if(dialect="postgresql"))

# The installation's EULA catalogue, mirrored from the settings at every start; an image
# requires the EULAs that list its ec2ImageId.
eulas = sa.Table(
    "eulas",
    metadata,
    sa.Column("eula_id", sa.String(22), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("ec2_image_ids", sa.JSON, nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("updated_at", Micros, nullable=False),
)

# Who accepted which EULA in which studio (accepted_by is the user, studio_id the acceptee).
eula_acceptances = sa.Table(
    "eula_acceptances",
    metadata,
    sa.Column("eula_acceptance_id", Id, primary_key=True),
    sa.Column("studio_id", Id, nullable=False),
    sa.Column("accepted_by", Id, nullable=False),
    sa.Column("eula_id", sa.String(22), nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    sa.UniqueConstraint("studio_id", "accepted_by", "eula_id"),
    sa.Index(None, "studio_id", "created_at", "eula_acceptance_id"),
)

# Lifecycle events (docs/events.md): one row per session state change, stream created and
# backup completed, written in the transaction of the change. ``seq`` is the installation's
# sequence number: allocated in commit order (store.events.serialize), never reused.
Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: the rowid itself

events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", Seq, primary_key=True, autoincrement=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("time", Micros, nullable=False, index=True),
    sa.Column("studio_id", Id, nullable=False),
    sa.Column("session_id", Id, nullable=False),
    sa.Column("owned_by", Id, nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    sqlite_autoincrement=True,  # never reuse the number of a purged event
)

# PostgreSQL only: a NOTIFY on the change channel (store.database.CHANGE_CHANNEL) for every
# event recorded (payload: its studio) and every bump of a generation counter (payload: "",
# a change to what the access rules read), delivered when the transaction commits; the
# change hub of every process (store/changes.py) listens, and wakes its live views.
CHANGE_DDL = (
    """CREATE OR REPLACE FUNCTION opennimble_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'events' THEN
        PERFORM pg_notify('opennimble_changes', NEW.studio_id);
    ELSE
        PERFORM pg_notify('opennimble_changes', '');
    END IF;
    RETURN NULL;
END $$""",
    """CREATE TRIGGER events_changed AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION opennimble_changed()""",
    """CREATE TRIGGER generations_changed AFTER INSERT OR UPDATE ON generations
    FOR EACH ROW EXECUTE FUNCTION opennimble_changed()""",
)
for _statement in CHANGE_DDL:
    _ddl = sa.DDL(_statement)  # type: ignore[no-untyped-call]
    sa.event.listen(metadata, "after_create", _ddl.execute_if(dialect="postgresql"))

# Operators' webhooks: a studio's events of the listed types (patterns) go to ``url``, signed
# with ``secret`` (encrypted with the installation key).
webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("webhook_id", Id, primary_key=True),
    sa.Column("studio_id", Id, nullable=False, index=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("event_types", sa.JSON, nullable=False),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("created_at", Micros, nullable=False),
)

# One event to one webhook: queued with the event, in order per (webhook, session); claimed by
# the delivery workers like sessions are (a lease that lapses).
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("delivery_id", Seq, primary_key=True, autoincrement=True),
    sa.Column("webhook_id", Id, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("session_id", Id, nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", Micros, nullable=False, server_default="0"),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("updated_at", Micros, nullable=False),
    sa.Column("last_status", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("claimed_by", sa.String(128)),
    sa.Column("claim_expires_at", Micros),
    sa.Index(None, "state", "next_attempt_at"),
    sa.Index(None, "webhook_id", "session_id", "state", "delivery_id"),
    sa.Index(None, "webhook_id", "delivery_id"),
    sa.Index(None, "updated_at"),
    sqlite_autoincrement=True,
)
