"""Time, in one place, so that tests can control it.

Timestamps are kept as integer microseconds since the Unix epoch (UTC): exact, ordered and
portable across SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime
import functools
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
    seconds, micros = divmod(value, 1_000_000)
    return f"{_iso_second(seconds)}.{micros // 1000:03d}Z"


@functools.lru_cache(maxsize=4096)
def _iso_second(seconds: int) -> str:
    return to_datetime(seconds * 1_000_000).strftime("%Y-%m-%dT%H:%M:%S")


MINUTE: Micros = 60_000_000
SECOND: Micros = 1_000_000
HOUR: Micros = 60 * MINUTE
