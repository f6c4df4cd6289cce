"""The webhook delivery worker: runs with every reconciler (``serve``, ``worker``).

Each round it claims the due deliveries (each the oldest pending one of its webhook and
session, :func:`opennimble.store.webhooks.claim`), POSTs them at once with httpx, signed, and
records each outcome: DELIVERED on a 2xx answer; otherwise the error, and a next attempt after
an exponential back-off (:func:`opennimble.domain.webhooks.retry_delay`), until the delivery
is :data:`~opennimble.domain.webhooks.GIVE_UP_AFTER` old (FAILED). A session's next event waits
for its previous one, so each webhook receives a session's events in order, at least once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from typing import Any

import httpx

from opennimble import clock
from opennimble.domain import webhooks as rules
from opennimble.store import crypto, database
from opennimble.store import webhooks as store

log = logging.getLogger("opennimble.webhooks")
Outcome = tuple[dict[str, Any], int | None, str | None]  # a delivery, its status, its error

BATCH = 32  # deliveries claimed at once (at most one per webhook and session)
POLL = 0.5  # seconds between looks for due deliveries when there were none
GATHER = 0.1  # seconds before the next round after a round that was not full
LEASE = 60 * clock.SECOND  # a claim outlives the request's time limit
TIMEOUT = 10.0  # seconds a receiver may take to answer
ERROR_CHARS = 500  # of a failure's description kept in the log


class Deliverer:
    def __init__(
        self,
        db: database.Database,
        cipher: crypto.Cipher,
        *,
        now: clock.Now,
        host_id: str,
    ) -> None:
        self.db = db
        self.cipher = cipher
        self.now = now
        self.owner = f"{host_id}/{os.getpid()}/{secrets.token_hex(4)}/webhooks"
        self._secrets: dict[str, str] = {}

    async def run(self) -> None:
        """Deliver until cancelled; a failing round is logged and the next one follows."""
        # making a client loads the TLS trust store (tens of ms): not on the event loop
        client = await asyncio.to_thread(httpx.AsyncClient, timeout=TIMEOUT, follow_redirects=False)
        async with client:
            while True:
                try:
                    delivered = await self.round(client)
                except Exception:
                    log.exception("a round of webhook deliveries failed")
                    delivered = 0
                if delivered < BATCH:  # gather more per round: its fixed cost is shared
                    await asyncio.sleep(POLL if not delivered else GATHER)

    async def round(self, client: httpx.AsyncClient) -> int:
        """Claim the due deliveries and attempt each; how many were attempted."""
        claimed, hooks = await self.db.run(self._claim, self.now())
        outcomes = await asyncio.gather(
            *(
                self._attempt(client, c, hooks[c["webhook_id"]])
                for c in claimed
                if c["webhook_id"] in hooks
            )
        )
        if outcomes:
            await self.db.run(self._record, outcomes, self.now())
        return len(claimed)

    def _claim(self, now: int) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        with self.db.read() as conn:
            if not store.due(conn, now):
                return [], {}
        with self.db.write() as conn:
            claimed = store.claim(conn, owner=self.owner, now=now, lease=LEASE, limit=BATCH)
            hooks = store.of_ids(conn, {c["webhook_id"] for c in claimed}) if claimed else {}
        return claimed, hooks

    def _record(self, outcomes: list[Outcome], now: int) -> None:
        with self.db.write() as conn:  # one transaction for the whole round's outcomes
            for delivery, status, error in outcomes:
                values = _outcome(delivery, status, error, now)
                store.finish(conn, delivery["delivery_id"], self.owner, **values)

    async def _attempt(
        self, client: httpx.AsyncClient, delivery: dict[str, Any], hook: dict[str, Any]
    ) -> Outcome:
        """POST the delivery; (it, the HTTP status if any, what went wrong if anything)."""
        body = delivery["body"].encode()
        timestamp = self.now() // clock.SECOND
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "opennimble-webhooks",
            "X-Opennimble-Event": delivery["type"],
            "X-Opennimble-Event-Id": str(delivery["seq"]),
            "X-Opennimble-Delivery": str(delivery["delivery_id"]),
            rules.SIGNATURE_HEADER: rules.signature(self._secret(hook), timestamp, body),
        }
        try:
            answer = await client.post(hook["url"], content=body, headers=headers)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return delivery, None, error
        if answer.is_success:
            return delivery, answer.status_code, None
        return delivery, answer.status_code, f"HTTP {answer.status_code}: {answer.text[:200]}"

    def _secret(self, hook: dict[str, Any]) -> str:
        if hook["webhook_id"] not in self._secrets:
            self._secrets[hook["webhook_id"]] = self.cipher.decrypt(hook["secret"])
        return self._secrets[hook["webhook_id"]]


def _outcome(
    delivery: dict[str, Any], status: int | None, error: str | None, now: int
) -> dict[str, Any]:
    """The delivery's columns after an attempt: DELIVERED, or the error and the next attempt
    (FAILED once it is too old)."""
    attempts = int(delivery["attempts"]) + 1
    values: dict[str, Any] = {"attempts": attempts, "last_status": status, "updated_at": now}
    if error is None:
        return {**values, "state": "DELIVERED", "last_error": None}
    values["last_error"] = error[:ERROR_CHARS]
    if now - int(delivery["created_at"]) >= rules.GIVE_UP_AFTER:
        values["state"] = "FAILED"
    else:
        values["next_attempt_at"] = now + rules.retry_delay(attempts)
    log.warning(
        "webhook %s: delivery %s of event %s failed (attempt %d): %s",
        delivery["webhook_id"],
        delivery["delivery_id"],
        delivery["seq"],
        attempts,
        error,
    )
    return values
