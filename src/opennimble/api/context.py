"""What a handler gets besides its input: the transaction, the caller and the installation."""

from __future__ import annotations

import dataclasses
from typing import Protocol

import sqlalchemy as sa

from opennimble.api.rendered import Rendered
from opennimble.domain import ids, paging, stream_tokens
from opennimble.domain.identity import Caller
from opennimble.domain.quotas import Quotas


class Wake(Protocol):
    """Ask this process's reconciler for a pass; ``housekeeping=False``: a session has work
    (claiming is enough), not a resource (the housekeeping advances those)."""

    def __call__(self, housekeeping: bool = True) -> None: ...


def no_wake(housekeeping: bool = True) -> None:
    """No reconciler in this process: the database's NOTIFY wakes the workers (PostgreSQL), or
    the server's reconciler polls (SQLite)."""


@dataclasses.dataclass(frozen=True)
class Installation:
    """Settings and services shared by every request."""

    region: str
    account_id: str
    public_url: str
    page_size: int
    codec: paging.TokenCodec
    stream_tokens: stream_tokens.StreamTokens
    wake_reconciler: Wake
    quotas: Quotas = dataclasses.field(default_factory=Quotas)
    # the sessions this process listed, written (api/rendered.py)
    rendered: Rendered = dataclasses.field(default_factory=Rendered)

    def arn(self, resource_type: str, resource_id: str) -> str:
        return ids.arn(self.region, self.account_id, resource_type, resource_id)


@dataclasses.dataclass(frozen=True)
class Context:
    conn: sa.Connection
    caller: Caller
    now: int
    install: Installation
