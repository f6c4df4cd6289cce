"""Per-caller request rate limits: one token bucket per user.

Each request of a user takes a token from that user's bucket; the bucket holds at most
``burst`` tokens and refills at ``rate`` tokens per second. A request that finds the bucket
empty answers ThrottlingException (429), which every AWS SDK retries with back-off. The buckets
live in the server process: with several servers each one enforces the rate on its own.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from opennimble import errors
from opennimble.domain.identity import Caller


class Throttle:
    def __init__(
        self, rate: float, burst: int, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        """``rate`` requests per second per caller (0: no limit), ``burst`` at once."""
        self.rate = rate
        self.burst = burst
        self._monotonic = monotonic
        self._buckets: dict[str, tuple[float, float]] = {}  # user id -> (tokens, when)
        self._lock = threading.Lock()  # handlers run in threads on PostgreSQL

    def admit(self, caller: Caller) -> None:
        """Take a token for ``caller`` or raise ThrottlingException."""
        if self.rate <= 0:
            return
        with self._lock:
            now = self._monotonic()
            tokens, when = self._buckets.get(caller.user_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - when) * self.rate)
            admitted = tokens >= 1
            self._buckets[caller.user_id] = (tokens - 1 if admitted else tokens, now)
        if not admitted:
            wait = math.ceil((1 - tokens) / self.rate * 1000)
            raise errors.ThrottlingException(
                f"Rate exceeded for user {caller.name} ({caller.user_id}): at most "
                f"{self.rate:g} requests per second (bursts of {self.burst}); retry in {wait} ms",
                code="ThrottlingException",
                context={"limit": f"{self.rate:g}/s", "retryAfterMs": str(wait)},
            )
