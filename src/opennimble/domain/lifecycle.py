"""The streaming session state machine and its timers."""

from __future__ import annotations

from typing import Any

from opennimble import clock, errors
from opennimble.domain import persistence
from opennimble.store.sessions import SessionState as S

STATUS = {
    "CREATE_IN_PROGRESS": ("STREAMING_SESSION_CREATE_IN_PROGRESS", "The session is being created"),
    "READY": ("STREAMING_SESSION_READY", "The session is ready"),
    "DELETE_IN_PROGRESS": ("STREAMING_SESSION_DELETE_IN_PROGRESS", "The session is being deleted"),
    "DELETED": ("STREAMING_SESSION_DELETED", "The session is deleted"),
    "STOP_IN_PROGRESS": ("STREAMING_SESSION_STOP_IN_PROGRESS", "The session is being stopped"),
    "STOPPED": ("STREAMING_SESSION_STOPPED", "The session is stopped"),
    "START_IN_PROGRESS": ("STREAMING_SESSION_START_IN_PROGRESS", "The session is being started"),
}

# sets of plain strings (rows hold strings), named by the enum
IN_PROGRESS = frozenset(
    s.value
    for s in (S.CREATE_IN_PROGRESS, S.DELETE_IN_PROGRESS, S.STOP_IN_PROGRESS, S.START_IN_PROGRESS)
)
DELETABLE = frozenset(
    s.value
    for s in (S.READY, S.CREATE_FAILED, S.STOPPED, S.START_FAILED, S.STOP_FAILED, S.DELETE_FAILED)
)
GONE = frozenset({S.DELETE_IN_PROGRESS.value, S.DELETED.value})
STOPPABLE = frozenset({S.READY.value})
STARTABLE = frozenset({S.STOPPED.value})

DEFAULT_MAX_SESSION_MINUTES = 690
DELETED_RETENTION = 24 * clock.HOUR


def enter(state: str, now: int, by: str | None = None) -> dict[str, Any]:
    """Column values for a session entering ``state`` (not for failures: see :func:`fail`)."""
    code, message = STATUS[state]
    values: dict[str, Any] = {
        "state": state,
        "status_code": code,
        "status_message": message,
        "updated_at": now,
    }
    if by is not None:
        values["updated_by"] = by
    return values


def fail(state: str, code: str, message: str, now: int) -> dict[str, Any]:
    return {"state": state, "status_code": code, "status_message": message, "updated_at": now}


def work(now: int) -> dict[str, Any]:
    """Column values that hand a session to the reconciler, with a fresh deadline."""
    return {"work_started_at": now, "attempts": 0, "next_attempt_at": 0}


def stopping(now: int, by: str | None) -> dict[str, Any]:
    """Column values for a session asked to stop (by a user, or by its time limit: None)."""
    return {**enter("STOP_IN_PROGRESS", now, by), **work(now), "stopped_at": now, "stopped_by": by}


def starting(now: int, by: str) -> dict[str, Any]:
    """Column values for a stopped session asked to start again."""
    values = {**enter("START_IN_PROGRESS", now, by), **work(now)}
    return {**values, "started_at": now, "started_by": by, "terminate_at": None}


def stoppable(attrs: dict[str, Any]) -> bool:
    """Whether sessions of these settings may be stopped: a launch profile whose
    ``maxStoppedSessionLengthInMinutes`` is 0 (the default) only lets them be terminated."""
    return int(attrs.get("maxStoppedSessionLengthInMinutes") or 0) > 0


def conflict(session: dict[str, Any], action: str) -> errors.ConflictException:
    return errors.ConflictException(
        f"Cannot {action} streaming session {session['session_id']} while it is {session['state']}",
        context={"resourceId": session["session_id"], "state": session["state"]},
    )


def timers(attrs: dict[str, Any], started_at: int) -> dict[str, int | None]:
    """When a session that became READY at ``started_at`` will be stopped or terminated."""
    max_session = int(attrs.get("maxSessionLengthInMinutes") or DEFAULT_MAX_SESSION_MINUTES)
    max_stopped = int(attrs.get("maxStoppedSessionLengthInMinutes") or 0)
    end = started_at + max_session * clock.MINUTE
    if max_stopped == 0:
        return {"terminate_at": end, "stop_at": None}
    return {"terminate_at": None, "stop_at": end}


def stopped_timer(attrs: dict[str, Any], stopped_at: int) -> int | None:
    """When a session stopped at ``stopped_at`` (when it entered STOP_IN_PROGRESS) will be
    terminated: never when its ``automaticTerminationMode`` is DEACTIVATED (explicitly, or by
    default with session persistence)."""
    max_stopped = int(attrs.get("maxStoppedSessionLengthInMinutes") or 0)
    if persistence.automatic_termination(attrs) == persistence.DEACTIVATED or max_stopped == 0:
        return None
    return stopped_at + max_stopped * clock.MINUTE
