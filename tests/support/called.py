"""Which operations the acceptance suite calls through boto3, and with what outcome.

:func:`install` hooks botocore's ``after-call`` event of every nimble client created from the
default boto3 session (the clients of :class:`tests.support.server.User`), so each answered call
is recorded with its HTTP status. The suite's last test compares the operations that got a
successful answer with the committed list ``tests/acceptance/tested-operations.txt``, which
feeds the *tested* column of docs/operations.md.
"""

from __future__ import annotations

import collections
import pathlib
from typing import Any

import boto3
import botocore
import botocore.waiter

TESTED_LIST = pathlib.Path(__file__).parents[1] / "acceptance" / "tested-operations.txt"

STATUSES: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
WAITED: set[str] = set()  # waiters (boto3's names) that reached their success state
_wait = botocore.waiter.Waiter.wait


def _record(http_response: Any, model: Any, **_: Any) -> None:
    STATUSES[model.name][int(http_response.status_code)] += 1


def install() -> None:
    """Record every call of nimble clients made from the default boto3 session from now on."""
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    events = boto3.DEFAULT_SESSION.events
    events.unregister("after-call.nimble", _record, unique_id="opennimble-called")
    events.register("after-call.nimble", _record, unique_id="opennimble-called")
    botocore.waiter.Waiter.wait = _recording_wait  # type: ignore[method-assign]


def _recording_wait(self: botocore.waiter.Waiter, **kwargs: Any) -> None:
    _wait(self, **kwargs)  # raises WaiterError unless the waiter succeeded
    WAITED.add(botocore.xform_name(self.name))


def succeeded() -> set[str]:
    """Operations that got at least one 2xx answer."""
    return {name for name, counts in STATUSES.items() if any(200 <= s < 300 for s in counts)}


def committed() -> set[str]:
    return {line.strip() for line in TESTED_LIST.read_text().splitlines() if line.strip()}
