"""What a session card shows and offers, from the API's view of a session and the lifecycle's
rules (the API decides in the end, and says why when it refuses)."""

from __future__ import annotations

from typing import Any

from opennimble import clock
from opennimble.domain import lifecycle

ACTIONS = {
    "open": frozenset({"READY"}),
    "stop": lifecycle.STOPPABLE,
    "start": lifecycle.STARTABLE,
    "delete": lifecycle.DELETABLE,
}


def actions(session: dict[str, Any]) -> list[str]:
    offered = [name for name, states in ACTIONS.items() if session.get("state") in states]
    # a READY session has a stopAt only when its launch profile lets it stop (lifecycle.timers);
    # otherwise it is only ever deleted
    if not session.get("stopAt"):
        offered = [name for name in offered if name != "stop"]
    return offered


def fingerprint(session: dict[str, Any]) -> tuple[Any, ...]:
    """What changes the card: a new one is sent live when this differs."""
    shown = ("state", "statusCode", "statusMessage", "stopAt", "terminateAt", "updatedAt")
    backups = tuple(b["backupId"] for b in session.get("backups", ()))
    return (*(session.get(key) for key in shown), backups)


def when(micros: int | None) -> str:
    """A time of the API's views, for people: UTC, to the second."""
    if not micros:
        return ""
    return clock.to_datetime(micros).strftime("%Y-%m-%d %H:%M:%S UTC")
