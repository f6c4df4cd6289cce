"""Binding of an HTTP request to an operation's input, by each member's model location.

Members located in ``uri`` come from the path, ``querystring`` from the query, ``header`` from
the headers, everything else from the JSON body. Values keep the types they arrive with (query
and header strings are converted by the member's shape type); :mod:`validate` checks them.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

import orjson

from opennimble import errors
from opennimble.protocol import model


def parse_input(
    op: model.Operation,
    path_params: Mapping[str, str],
    query_string: str,
    headers: Mapping[str, str],
    body: bytes,
) -> dict[str, Any]:
    """Build the operation's input parameters (member name -> value)."""
    query = parse_query(query_string)
    document = _json_body(body)
    params: dict[str, Any] = {}
    for name, member in op.input.members.items():
        if member.location == "uri":
            raw: Any = path_params.get(member.location_name)
        elif member.location == "querystring":
            values = query.get(member.location_name)
            raw = _from_query(member, values) if values is not None else None
        elif member.location == "header":
            header = headers.get(member.location_name.lower())
            what = f"the header {member.location_name}"
            raw = _convert(member.shape.type, utf8(header, what)) if header is not None else None
        else:
            raw = document.get(member.location_name)
        if raw is not None:
            params[name] = raw
    return params


def parse_query(query_string: str) -> dict[str, list[str]]:
    """The query's values by name, decoded exactly as SigV4's canonical query reads them:
    percent-escapes only, a ``+`` stays a plus (``application/x-www-form-urlencoded`` would
    make it a space, so that ``a+b`` and ``a%2Bb``, which sign alike, meant two things)."""
    query: dict[str, list[str]] = {}
    if not query_string:
        return query
    for pair in query_string.split("&"):
        name, _, value = pair.partition("=")
        key = unquote(name, "a query parameter name")
        query.setdefault(key, []).append(unquote(value, f"the query parameter {key}"))
    return query


def unquote(text: str, what: str) -> str:
    """A percent-encoded URL component as text; a ValidationException naming ``what`` when
    its bytes are not UTF-8 (never a silent replacement character)."""
    if "%" not in text and text.isascii():
        return text  # nothing to decode
    try:
        value = urllib.parse.unquote(text, errors="strict")
    except UnicodeError:
        value = "\udcff"  # refused just below
    return utf8(value, what)


def utf8(text: str, what: str) -> str:
    """``text`` if it is all UTF-8 (bytes that were not arrive as lone surrogates); else a
    ValidationException naming ``what``."""
    try:
        text.encode("utf-8")
    except UnicodeError:
        what = what[0].upper() + what[1:]
        raise errors.ValidationException(f"{what} is not valid UTF-8") from None
    return text


def _json_body(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.ValidationException(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise errors.ValidationException("The request body must be a JSON object")
    return document


def _from_query(member: model.Member, values: list[str]) -> Any:
    if member.shape.type == "list" and member.shape.member is not None:
        return [_convert(member.shape.member.type, v) for v in values]
    return _convert(member.shape.type, values[-1])


_INTEGER = re.compile(r"-?[0-9]+", re.ASCII)


def _convert(type_name: str, value: str) -> Any:
    """Convert a query or header string by its shape type. A value that does not convert stays
    a string, so that validation reports it with every other problem of the request."""
    if type_name in ("integer", "long") and _INTEGER.fullmatch(value):
        return int(value)
    if type_name == "boolean" and value in ("true", "false"):
        return value == "true"
    return value
