"""The server's Prometheus metrics that code records as things happen (requests, provisioning,
stream connections); what the database holds is collected at scrape time (``health``).

One registry per process, served at ``/metrics``.
"""

from __future__ import annotations

from typing import Any

import prometheus_client

REGISTRY = prometheus_client.CollectorRegistry(auto_describe=True)

REQUESTS = prometheus_client.Counter(
    "opennimble_requests",
    "Requests of the nimble API by operation, HTTP status and caller persona.",
    ["operation", "status", "persona"],
    registry=REGISTRY,
)
REQUEST_SECONDS = prometheus_client.Histogram(
    "opennimble_request_duration_seconds",
    "Time to answer a request of the nimble API, by operation and caller persona.",
    ["operation", "persona"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
PROVISIONING_SECONDS = prometheus_client.Histogram(
    "opennimble_provisioning_duration_seconds",
    "Time a reconciler took to bring a session through create, start, stop or delete.",
    ["action"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)
ACTIONS = {
    "CREATE_IN_PROGRESS": "create",
    "START_IN_PROGRESS": "start",
    "STOP_IN_PROGRESS": "stop",
    "DELETE_IN_PROGRESS": "delete",
}


def persona(caller: object | None) -> str:
    """``operator``, ``user`` (any other authenticated user) or ``anonymous`` (refused before
    the caller was known)."""
    if caller is None:
        return "anonymous"
    return "operator" if getattr(caller, "operator", False) else "user"


# the children of REQUESTS and REQUEST_SECONDS by (operation, status, persona): ``labels()``
# validates and looks its labels up under a lock on every call; the set of keys is bounded by
# the model's operations, the statuses and the personas
_REQUEST_CHILDREN: dict[tuple[str, int, str], tuple[Any, Any]] = {}


def request(operation: str, status: int, caller: object | None, seconds: float) -> None:
    who = persona(caller)
    key = (operation, status, who)
    children = _REQUEST_CHILDREN.get(key)
    if children is None:
        children = (
            REQUESTS.labels(operation, str(status), who),
            REQUEST_SECONDS.labels(operation, who),
        )
        _REQUEST_CHILDREN[key] = children
    children[0].inc()
    children[1].observe(seconds)


def provisioned(state: str, seconds: float) -> None:
    """A reconciler finished the work of a session that was in ``state``."""
    action = ACTIONS.get(state)
    if action is not None:
        PROVISIONING_SECONDS.labels(action).observe(seconds)
