"""The table of operation handlers, filled by the ``@handler`` decorator.

Each handler is named after its operation in snake case (``create_streaming_session`` for
CreateStreamingSession); the decorator derives the operation name from the function name and
checks that the model has it, so the table cannot drift from the model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from opennimble.api.context import Context
from opennimble.protocol import model

Params = dict[str, Any]
Result = dict[str, Any]
Handler = Callable[[Context, Params], Result]

HANDLERS: dict[str, Handler] = {}


def operation_name(function_name: str) -> str:
    name = "".join(part.capitalize() for part in function_name.split("_"))
    return re.sub("Sso", "SSO", name)


def handler(fn: Handler) -> Handler:
    name = operation_name(fn.__name__)
    if name not in model.operations():
        raise LookupError(f"{fn.__name__} names no operation of the model ({name})")
    HANDLERS[name] = fn
    return fn
