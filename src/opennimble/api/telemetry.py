"""What each API request leaves behind: its log event and its metrics."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
import uuid
from typing import Any

from opennimble import logs, metrics

log = logging.getLogger("opennimble.access")
CALLER = "opennimble.caller"  # the ASGI scope's key of the authenticated caller
REQUEST_ID_HEADER = b"x-amzn-requestid"  # botocore shows it as ResponseMetadata.RequestId
CREDENTIAL = re.compile(rb"Credential=([A-Za-z0-9]{1,128})/")


# request ids: UUID-shaped (as AWS's), a random prefix per process (with version 4's and the
# variant's bits) and a counter in the last 48 bits: unique, and a fifth of uuid4()'s cost
_PREFIX = str(uuid.uuid4())[:24]
_COUNTER = itertools.count(int.from_bytes(os.urandom(4)))


def new_request_id() -> str:
    return f"{_PREFIX}{next(_COUNTER) & 0xFFFFFFFFFFFF:012x}"


def finished(
    scope: Any, request_id: str, operation: str, status: int, started: float, count: bool = True
) -> None:
    """Log the request (one event) and, with ``count``, count it in the metrics."""
    seconds = time.perf_counter() - started
    caller = scope.get(CALLER)
    if count:
        metrics.request(operation, status, caller, seconds)
    if not log.isEnabledFor(logging.INFO):  # its fields are not built for nothing
        return
    client = scope.get("client")
    log.info(
        "%s %s %s %d",
        scope["method"],
        scope["path"],
        operation,
        status,
        extra=logs.fields(
            event="request",
            request_id=request_id,
            operation=operation,
            status=status,
            caller=getattr(caller, "user_id", None),
            caller_name=getattr(caller, "name", None),
            access_key_id=access_key_id(scope),
            client=f"{client[0]}:{client[1]}" if client else None,
            duration_ms=round(seconds * 1000, 2),
        ),
    )


def access_key_id(scope: Any) -> str | None:
    """The access key a request was signed with (also when it was refused)."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            found = CREDENTIAL.search(value)
            return found.group(1).decode() if found else None
    return None
