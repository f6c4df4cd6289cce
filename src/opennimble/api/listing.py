"""Paged listings: page size from ``maxResults`` (where modelled) and signed ``nextToken``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from opennimble.api.context import Context
from opennimble.domain import paging as tokens
from opennimble.store import paging

Row = dict[str, Any]
R = TypeVar("R")


def page(
    ctx: Context,
    params: dict[str, Any],
    listing: tuple[object, ...],
    fetch: Callable[[paging.Key | None, int], paging.Page[R]],
) -> tuple[list[R], str | None]:
    """Fetch the page the request asks for; return its rows and the next page's token."""
    name = tokens.listing_id(ctx.caller.user_id, *listing)
    after = None
    if params.get("nextToken"):
        after = ctx.install.codec.decode(name, params["nextToken"])
    limit = min(int(params.get("maxResults") or ctx.install.page_size), ctx.install.page_size)
    result = fetch(after, limit)
    token = ctx.install.codec.encode(name, result.next_key) if result.next_key else None
    return result.rows, token
