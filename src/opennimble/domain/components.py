"""Whose studio components' ``SYSTEM_INITIALIZATION`` scripts may run as root.

A studio ADMINISTRATOR's power stops at their studio, so their scripts never run with more
privilege than the desktops they configure: a component's system scripts run as root only if
an operator wrote the component, that is, if it was created by an operator and changed only by
operators since (an operator's update that sets both ``initializationScripts`` and
``scriptParameters`` vouches for a component anyone made). Every other component's system
scripts run unprivileged, as the session owner's account, before the desktop starts.

The mark is kept with the component's attributes under a name the model does not have, so
that no request can set it and no answer shows it. Components from before the mark existed
have none and count as not written by an operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opennimble.domain.identity import Caller

OPERATOR_WRITTEN = "opennimble.operatorWritten"  # not a member of the model: never shown
VOUCHING = frozenset({"initializationScripts", "scriptParameters"})


def on_create(caller: Caller) -> dict[str, bool]:
    """The mark of a component ``caller`` creates."""
    return {OPERATOR_WRITTEN: caller.operator}


def on_update(
    caller: Caller, attrs: Mapping[str, Any], changes: Mapping[str, Any]
) -> dict[str, bool]:
    """The mark of a component (now ``attrs``) after ``caller`` changes ``changes`` of it."""
    written = caller.operator and (operator_written(attrs) or changes.keys() >= VOUCHING)
    return {OPERATOR_WRITTEN: written}


def operator_written(attrs: Mapping[str, Any]) -> bool:
    """Whether an operator wrote the component: its system scripts may run as root."""
    return attrs.get(OPERATOR_WRITTEN) is True
