"""What a handler gets besides its input: the transaction, the caller and the installation."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import sqlalchemy as sa

from opennimble.domain import ids, paging, stream_tokens
from opennimble.domain.identity import Caller
from opennimble.domain.quotas import Quotas


@dataclasses.dataclass(frozen=True)
class Installation:
    """Settings and services shared by every request."""

    region: str
    account_id: str
    public_url: str
    page_size: int
    codec: paging.TokenCodec
    stream_tokens: stream_tokens.StreamTokens
    wake_reconciler: Callable[[], None]
    quotas: Quotas = dataclasses.field(default_factory=Quotas)

    def arn(self, resource_type: str, resource_id: str) -> str:
        return ids.arn(self.region, self.account_id, resource_type, resource_id)


@dataclasses.dataclass(frozen=True)
class Context:
    conn: sa.Connection
    caller: Caller
    now: int
    install: Installation
