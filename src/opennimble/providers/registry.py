"""Finding providers by entry point name (group ``opennimble.providers``)."""

from __future__ import annotations

import importlib.metadata

from opennimble import config
from opennimble.providers import base

GROUP = "opennimble.providers"


def names() -> list[str]:
    return sorted(ep.name for ep in importlib.metadata.entry_points(group=GROUP))


def load(settings: config.Settings) -> base.Provider:
    """Build the provider the settings name, from its ``from_settings`` class method."""
    found = importlib.metadata.entry_points(group=GROUP, name=settings.provider)
    if not found:
        raise LookupError(f"no provider named {settings.provider!r}; installed: {names()}")
    cls = next(iter(found)).load()
    if not (isinstance(cls, type) and issubclass(cls, base.Provider)):
        raise TypeError(f"provider {settings.provider!r} is not a Provider subclass")
    return cls.from_settings(settings)
