"""What the portal's live pages send: server-sent events (a name and a JSON document) and
keep-alive comments. Their connections wait on the process's change hub
(:mod:`opennimble.store.changes`) and read nothing while nothing changes."""

from __future__ import annotations

from typing import Any

import orjson

KEEPALIVE = 15.0  # seconds without an event after which a comment is sent
KEEPALIVE_LINE = b": keepalive\n\n"  # a comment line keeps idle proxies from closing it


def event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
