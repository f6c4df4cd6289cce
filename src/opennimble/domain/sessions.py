"""Rules for new streaming sessions: who may own them, and what they run."""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa

from opennimble import errors
from opennimble.domain import access, components, eulas, quotas, resources, tags
from opennimble.domain.identity import Caller
from opennimble.protocol import validate
from opennimble.store import database, users
from opennimble.store import resources as resource_store
from opennimble.store import sessions as session_store

Row = dict[str, Any]

# settings a session copies from its launch profile's stream configuration
COPIED = (
    "automaticTerminationMode",
    "sessionPersistenceMode",
    "maxSessionLengthInMinutes",
    "maxStoppedSessionLengthInMinutes",
    "volumeConfiguration",
    "clipboardMode",
)


@dataclasses.dataclass(frozen=True)
class Plan:
    """A validated request for a new session."""

    launch_profile: Row
    owned_by: str
    ec2_instance_type: str
    streaming_image_id: str
    attrs: dict[str, Any]


def plan(
    conn: sa.Connection,
    caller: Caller,
    studio_id: str,
    params: dict[str, Any],
) -> Plan:
    """Check a CreateStreamingSession request against the spec's rules (the quotas are taken
    by :func:`count_against_quotas`, once the session is written). The plan's launch profile
    and image are rows this process remembers (shared: not to be changed)."""
    access.studio(conn, caller, studio_id)
    profile = resources.remembered_live(
        conn, resources.LAUNCH_PROFILE, studio_id, params["launchProfileId"]
    )
    admin = access.is_admin(conn, caller, studio_id)
    if not admin and not access.is_launch_profile_user(
        conn, caller.user_id, profile["resource_id"]
    ):
        raise access.denied(
            caller,
            f"create sessions from launch profile {profile['resource_id']}",
            "only its members and admins may",
        )
    owned_by = params.get("ownedBy") or caller.user_id
    if owned_by != caller.user_id and not admin:
        raise access.denied(
            caller,
            f"create a session owned by {owned_by}",
            "only the operator or a studio ADMINISTRATOR may",
        )
    if profile["state"] != "READY":
        raise errors.ConflictException(
            f"Launch profile {profile['resource_id']} is {profile['state']}, not READY",
            context={"resourceId": profile["resource_id"]},
        )
    stream = profile["attrs"]["streamConfiguration"]
    problems = _owner_problems(conn, caller, studio_id, profile, owned_by)
    problems += tags.problems(params.get("tags") or {})
    instance_type = params.get("ec2InstanceType") or stream["ec2InstanceTypes"][0]
    if instance_type not in stream["ec2InstanceTypes"]:
        problems.append(
            (
                "ec2InstanceType",
                f"Value '{instance_type}' at 'ec2InstanceType' is "
                f"not one of the launch profile's instance types "
                f"{stream['ec2InstanceTypes']}",
            )
        )
    image_id = params.get("streamingImageId") or stream["streamingImageIds"][0]
    if image_id not in stream["streamingImageIds"]:
        problems.append(
            (
                "streamingImageId",
                f"Value '{image_id}' at 'streamingImageId' is not "
                f"one of the launch profile's images {stream['streamingImageIds']}",
            )
        )
    if problems:
        raise validate.exception(problems)
    image = resources.remembered_live(conn, resources.STREAMING_IMAGE, studio_id, image_id)
    if image["state"] != "READY":
        raise validate.exception(
            [("streamingImageId", f"Streaming image {image_id} is {image['state']}, not READY")]
        )
    eulas.require_accepted(conn, studio_id, owned_by, image)
    attrs = {key: stream[key] for key in COPIED if key in stream}
    attrs["ec2ImageId"] = image["attrs"]["ec2ImageId"]
    backup = stream.get("sessionBackup") or {}
    attrs["backupMode"] = backup.get("mode", "DEACTIVATED")
    attrs["maxBackupsToRetain"] = backup.get("maxBackupsToRetain", 0)
    return Plan(profile, owned_by, instance_type, image_id, attrs)


def count_against_quotas(
    conn: sa.Connection,
    plan: Plan,
    studio_id: str,
    session_id: str,
    limits: quotas.Quotas = quotas.DEFAULTS,
) -> None:
    """Count the new session against the studio's and the owner's quotas, or refuse (which
    rolls the transaction back). The counters' rows taken (one stripe of each counter) stay
    locked from there until the commit, and a create that picks the same stripe waits: on
    PostgreSQL they are taken at the very end of the transaction (``database.before_commit``,
    before its events), after the rest of the request's statements (its audit entry, its
    idempotency record), so that the wait lasts the commit and little else; on SQLite, whose
    writes are serialized anyway, now.
    """

    def take(conn: sa.Connection) -> None:
        quotas.take_session(conn, limits, studio_id, plan.owned_by)

    if not database.before_commit(conn, f"quotas:{session_id}", take, QUOTAS_LAST):
        take(conn)


QUOTAS_LAST = 50  # the quotas' place among the work at a transaction's end: before its events


def _owner_problems(
    conn: sa.Connection, caller: Caller, studio_id: str, profile: Row, owned_by: str
) -> list[validate.Problem]:
    """The owner must have standing in the studio: a member of the launch profile or an
    ADMINISTRATOR of the studio. Being an operator counts only for one's own sessions, so that
    nobody creates sessions owned by an operator who is not a member. The caller's own session
    was checked already (a member of the launch profile or an admin, or refused)."""
    if owned_by == caller.user_id:
        return []
    owner = users.get_user(conn, owned_by)
    if owner is None:
        return [("ownedBy", f"Value '{owned_by}' at 'ownedBy' is not a user of the identity store")]
    operator = bool(owner["operator"]) and owned_by == caller.user_id
    owner_caller = Caller(owner["user_id"], owner["name"], operator)
    if access.is_admin(conn, owner_caller, studio_id) or access.is_launch_profile_user(
        conn, owned_by, profile["resource_id"]
    ):
        return []
    return [
        (
            "ownedBy",
            f"Value '{owned_by}' at 'ownedBy' is not a member of launch profile "
            f"{profile['resource_id']} nor an administrator of the studio",
        )
    ]


def requested(conn: sa.Connection, caller: Caller, studio_id: str, session_id: str) -> Row:
    """The session a request names, if the caller may act on it (see :func:`readable`)."""
    row = session_store.get(conn, session_id, studio_id)
    return readable(conn, caller, studio_id, row, session_id)


def requested_listed(
    conn: sa.Connection, caller: Caller, studio_id: str, session_id: str
) -> tuple[Any, ...]:
    """The session a request names as listings read it (``session_store.get_listed``), if the
    caller may act on it (see :func:`readable`)."""
    values, generation = session_store.get_listed(conn, session_id, studio_id)
    if generation is not None:
        access.seen(conn, generation)
    owner = None if values is None else values[session_store.LISTED_OWNER]
    _may_act(conn, caller, studio_id, owner, session_id)
    assert values is not None
    return values


def readable(
    conn: sa.Connection, caller: Caller, studio_id: str, session: Row | None, session_id: str
) -> Row:
    """A session the caller may act on: its owner's, or any for an admin."""
    _may_act(conn, caller, studio_id, None if session is None else session["owned_by"], session_id)
    assert session is not None
    return session


def _may_act(
    conn: sa.Connection, caller: Caller, studio_id: str, owner: str | None, session_id: str
) -> None:
    """Refuse a caller outside the studio, a session that is not there (``owner`` None) and
    a caller who is neither its owner nor an admin."""
    access.studio(conn, caller, studio_id)
    if owner is None:
        raise errors.not_found("Streaming session", session_id)
    action = f"act on streaming session {session_id}"
    access.require_owner_or_admin(conn, caller, studio_id, owner, action, "its owner")


RUN_CONTEXTS = ("SYSTEM_INITIALIZATION", "USER_INITIALIZATION")


@dataclasses.dataclass(frozen=True)
class InitializationScript:
    """A LINUX initialization script that runs when the session's desktop starts."""

    component: str  # the studio component's name
    run_context: str  # one of RUN_CONTEXTS
    script: str
    parameters: tuple[tuple[str, str], ...]  # the component's scriptParameters
    privileged: bool = False  # a system script an operator wrote: it may run as root


def initialization_scripts(conn: sa.Connection, session: Row) -> list[InitializationScript]:
    """The LINUX initialization scripts of the studio components of the session's launch
    profile, as they are now: components in the launch profile's order, each component's
    scripts in its order. Deleted components (and a deleted launch profile) have none."""
    studio_id = session["studio_id"]
    kind = resources.LAUNCH_PROFILE.name
    profile = resource_store.get(conn, kind, session["launch_profile_id"], studio_id)
    if profile is None or profile["state"] in resources.GONE:
        return []
    found = []
    wanted = profile["attrs"].get("studioComponentIds", [])
    for component in resources.present(conn, resources.STUDIO_COMPONENT, studio_id, wanted):
        attrs = component["attrs"]
        parameters = tuple((p["key"], p["value"]) for p in attrs.get("scriptParameters", []))
        trusted = components.operator_written(attrs)
        found += [
            InitializationScript(
                component["name"],
                script["runContext"],
                script["script"],
                parameters,
                privileged=trusted and script["runContext"] == "SYSTEM_INITIALIZATION",
            )
            for script in attrs.get("initializationScripts", [])
            if script.get("platform") == "LINUX"
            and script.get("runContext") in RUN_CONTEXTS
            and script.get("script")
        ]
    return found
