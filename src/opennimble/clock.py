"""Time, in one place, so that tests can control it.

Timestamps are kept as integer microseconds since the Unix epoch (UTC): exact, ordered and
portable across SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable

Micros = int
Now = Callable[[], Micros]


def system_now() -> Micros:
    return time.time_ns() // 1000


def to_datetime(value: Micros) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(value / 1_000_000, tz=datetime.UTC)


def iso(value: Micros) -> str:
    """ISO-8601 in UTC with millisecond precision, as AWS services answer."""
    return to_datetime(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


MINUTE: Micros = 60_000_000
SECOND: Micros = 1_000_000
HOUR: Micros = 60 * MINUTE
