"""What a launch profile's ``sessionPersistenceMode`` allows, and the default it implies.

The model allows ``automaticTerminationMode`` and ``volumeConfiguration`` only when
``sessionPersistenceMode`` is ACTIVATED, and then defaults ``automaticTerminationMode`` to
DEACTIVATED (a stopped session is kept until someone deletes it). Without persistence neither
setting could be honoured, so they are refused rather than silently ignored; the one exception
is ``automaticTerminationMode`` ACTIVATED, which is what such sessions do anyway (and their
default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opennimble.protocol import validate

ACTIVATED = "ACTIVATED"
DEACTIVATED = "DEACTIVATED"


def persistent(settings: Mapping[str, Any]) -> bool:
    """Whether a stream configuration (or a session's copy of it) has session persistence."""
    return settings.get("sessionPersistenceMode") == ACTIVATED


def automatic_termination(settings: Mapping[str, Any]) -> str:
    """The effective ``automaticTerminationMode`` of a stream configuration or of a session's
    copy of it: as given, otherwise DEACTIVATED with persistence and ACTIVATED without."""
    given = settings.get("automaticTerminationMode")
    if given is not None:
        return str(given)
    return DEACTIVATED if persistent(settings) else ACTIVATED


def problems(stream: Mapping[str, Any]) -> list[validate.Problem]:
    """The settings of a new stream configuration that need session persistence it lacks."""
    if persistent(stream):
        return []
    mode = stream.get("sessionPersistenceMode") or DEACTIVATED
    needs = (
        f"is only allowed when streamConfiguration.sessionPersistenceMode is ACTIVATED, not {mode}"
    )
    found: list[validate.Problem] = []
    if stream.get("automaticTerminationMode") == DEACTIVATED:
        path = "streamConfiguration.automaticTerminationMode"
        found.append(
            (
                path,
                f"Value 'DEACTIVATED' at '{path}' {needs}: without session persistence a stopped "
                "session cannot be kept indefinitely",
            )
        )
    if stream.get("volumeConfiguration") is not None:
        path = "streamConfiguration.volumeConfiguration"
        found.append(
            (path, f"'{path}' {needs}: only persistent sessions have a volume to configure")
        )
    return found
