"""Sessions written once: each process keeps the sessions it listed or was asked for (a
ListStreamingSessions, a GetStreamingSession), as views with their JSON
(``serialize.Written``), keyed by the session's row exactly as the database gave it.

A session costs ~5 us to decode, view and write (its JSON columns, 27 members, six
timestamps), a page of 100 half a millisecond; an admin's dashboard lists the same sessions
again and again, a render farm's wrangler polls them, and most of them change rarely. The key
is every value the view reads (``store.sessions.LISTED``, its JSON columns as text), so an
entry can never be stale: a changed session is another key, written anew, and the old one is
dropped with the rest when the memory is full. Nothing to invalidate, the same on every server.

What a session's JSON depends on besides its row must be in the key too: here only the
installation (its ARNs), which owns the memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opennimble.protocol import serialize

# the most sessions kept (a view and its JSON, ~3 KB each: ~25 MB at most); then the memory
# starts again
KEPT = 8192

Values = tuple[Any, ...]


class Rendered:
    """A bounded memory of written sessions, by their listed row."""

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._written: dict[Values, serialize.Written] = {}

    def __len__(self) -> int:
        return len(self._written)

    def get(
        self, values: Values, write: Callable[[Values], serialize.Written]
    ) -> serialize.Written:
        """The session of ``values`` as JSON: remembered, or ``write(values)`` remembered."""
        found = self._written.get(values)
        if found is None:
            if len(self._written) >= self._kept:
                self._written.clear()
            found = self._written[values] = write(values)
        return found
