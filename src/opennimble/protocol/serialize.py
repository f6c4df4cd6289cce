"""Shaping of handler results into rest-json responses, driven by the output shape.

Handlers return plain data (dicts, lists, strings, numbers, timestamps as integer microseconds
since the epoch). Only members of the output shape are written; ``None`` and absent members are
omitted; timestamps become ISO-8601 strings. Members located in headers become headers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
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


# A writer turns a value of a shape into its JSON form; None: the value is written as it is.
# Built once per shape (shapes are compiled once and live as long as the process).
Writer = Callable[[Any], Any]
_writers: dict[int, Writer | None] = {}
_building = threading.Lock()
_UNKNOWN = object()


class Written(dict[str, Any]):
    """A structure's value with its JSON written once (``fragment``, :func:`written`): a
    response's writer puts that JSON in as it is; other readers (the portal calls handlers
    itself) read the value as the dict it is. Read-only: it may be shared by many requests."""

    __slots__ = ("fragment",)
    fragment: orjson.Fragment

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a written value is read-only (it may be shared): copy it to change it")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _read_only
    __ior__ = _read_only


def written(shape: model.Shape, value: dict[str, Any]) -> Written:
    """``value`` of structure ``shape``, with its JSON written now, once."""
    out = Written(value)
    out.fragment = orjson.Fragment(orjson.dumps(_value(shape, value)))
    return out


def _value(shape: model.Shape, value: Any) -> Any:
    write = _writer(shape)
    return value if write is None else write(value)


def _writer(shape: model.Shape) -> Writer | None:
    found = _writers.get(id(shape), _UNKNOWN)
    if found is not _UNKNOWN:
        return found  # type: ignore[return-value]
    with _building:  # published only when complete (other threads read without the lock)
        built: dict[int, Writer | None] = {}
        write = _build(shape, built)
        _writers.update(built)
    return write


def _build(shape: model.Shape, built: dict[int, Writer | None]) -> Writer | None:
    key = id(shape)
    if key in _writers:
        return _writers[key]
    if key in built:
        return built[key]
    kind = shape.type
    write: Writer | None = None
    if kind == "structure":
        cell: list[Writer] = []
        built[key] = lambda value: cell[0](value)  # a recursive shape finds itself
        members = [(n, m.location_name, _build(m.shape, built)) for n, m in shape.members.items()]
        cell.append(_structure(members))
        built[key] = cell[0]
        return cell[0]
    if kind == "list" and shape.member is not None:
        write = _list(_build(shape.member, built))
    elif kind == "map" and shape.value is not None:
        write = _map(_build(shape.value, built))
    elif kind == "timestamp":
        write = _timestamp
    built[key] = write
    return write


def _structure(members: list[tuple[str, str, Writer | None]]) -> Writer:
    """A structure's writer as one generated function (the way ``dataclasses`` builds its
    methods): a line per member, no loop over a table of members. A page of 100 sessions
    (27 members each) is written in half the time the loop took."""
    namespace: dict[str, Any] = {"_iso": clock.iso, "_Written": Written}
    lines = [
        "def structure(value):",
        "    if value.__class__ is _Written:",  # written before (written())
        "        return value.fragment",
        "    get = value.get",
        "    out = {}",
    ]
    for index, (name, location, inner) in enumerate(members):
        lines += [f"    item = get({name!r})", "    if item is not None:"]
        if inner is None:
            written = "item"
        elif inner is _timestamp:  # inlined: a listed session has six
            written = "_iso(item) if isinstance(item, int) else item"
        else:
            namespace[f"_w{index}"] = inner
            written = f"_w{index}(item)"
        lines.append(f"        out[{location!r}] = {written}")
    lines.append("    return out")
    exec("\n".join(lines), namespace)  # the text holds only the model's names, as reprs
    return namespace["structure"]  # type: ignore[no-any-return]


def _list(inner: Writer | None) -> Writer:
    if inner is None:
        return list
    return lambda value: [inner(item) for item in value]


def _map(inner: Writer | None) -> Writer:
    if inner is None:
        return dict
    return lambda value: {key: inner(item) for key, item in value.items()}


def _timestamp(value: Any) -> Any:
    return clock.iso(value) if isinstance(value, int) else value
