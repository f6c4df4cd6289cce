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
    seconds, micros = divmod(value, 1_000_000)
    second = _iso_seconds.get(seconds)
    if second is None:
        second = _iso_second(seconds)
    return second + _MILLIS[micros // 1000]


# every listed session has four timestamps: the seconds' texts are remembered (a dict look-up
# is a fifth of an lru_cache call) and the milliseconds' made once
_MILLIS = tuple(f".{millis:03d}Z" for millis in range(1000))
_iso_seconds: dict[int, str] = {}
_ISO_SECONDS_KEPT = 8192


def _iso_second(seconds: int) -> str:
    text = to_datetime(seconds * 1_000_000).strftime("%Y-%m-%dT%H:%M:%S")
    if len(_iso_seconds) >= _ISO_SECONDS_KEPT:
        _iso_seconds.clear()
    _iso_seconds[seconds] = text
    return text


MINUTE: Micros = 60_000_000
SECOND: Micros = 1_000_000
HOUR: Micros = 60 * MINUTE
