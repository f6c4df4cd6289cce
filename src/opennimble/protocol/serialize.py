"""Shaping of handler results into rest-json responses, driven by the output shape.

Handlers return plain data (dicts, lists, strings, numbers, timestamps as integer microseconds
since the epoch). Only members of the output shape are written; ``None`` and absent members are
omitted; timestamps become ISO-8601 strings. Members located in headers become headers.
"""

from __future__ import annotations

from typing import Any

import orjson

from opennimble import clock, errors
from opennimble.protocol import model

Headers = list[tuple[bytes, bytes]]
JSON_TYPE = b"application/json"


def response(op: model.Operation, result: dict[str, Any]) -> tuple[int, Headers, bytes]:
    """Status, headers and body of a successful call of ``op``."""
    headers: Headers = [(b"content-type", JSON_TYPE)]
    document: dict[str, Any] = {}
    for name, member in op.output.members.items():
        value = result.get(name)
        if value is None:
            continue
        if member.location == "header":
            headers.append((member.location_name.lower().encode(), str(value).encode()))
        elif member.location == "statusCode":
            continue
        else:
            document[member.location_name] = _value(member.shape, value)
    if op.response_code == 204 and not document:
        return 204, headers[1:], b""
    return op.response_code, headers, orjson.dumps(document)


def error_response(error: errors.ServiceError) -> tuple[int, Headers, bytes]:
    """Status, headers and body of an error, readable by every AWS SDK."""
    headers: Headers = [
        (b"content-type", JSON_TYPE),
        (b"x-amzn-errortype", error.error_type.encode()),
    ]
    return error.status, headers, orjson.dumps(error.body())


def _value(shape: model.Shape, value: Any) -> Any:
    kind = shape.type
    if kind == "structure":
        return {
            member.location_name: _value(member.shape, value[name])
            for name, member in shape.members.items()
            if value.get(name) is not None
        }
    if kind == "list" and shape.member is not None:
        return [_value(shape.member, item) for item in value]
    if kind == "map" and shape.value is not None:
        return {key: _value(shape.value, item) for key, item in value.items()}
    if kind == "timestamp":
        return clock.iso(value) if isinstance(value, int) else value
    return value
