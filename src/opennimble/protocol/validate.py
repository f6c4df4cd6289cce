"""Validation of operation input against the model: every constraint, every problem at once.

Checks ``required``, the type, ``min`` and ``max`` (string and collection lengths, number
values), ``pattern`` and ``enum`` of every member, recursively. All problems are collected and
reported together in one ValidationException, in the wording AWS services use, with the fields'
paths in ``context["fields"]``. Values of sensitive shapes are never echoed.
"""

from __future__ import annotations

from typing import Any

from opennimble import errors
from opennimble.protocol import model

Problem = tuple[str, str]  # (path, message)

_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "long": (int,),
    "boolean": (bool,),
    "float": (int, float),
    "double": (int, float),
    "timestamp": (str, int, float),
    "blob": (str,),
    "structure": (dict,),
    "map": (dict,),
    "list": (list,),
}


def validate(shape: model.Shape, params: dict[str, Any]) -> None:
    """Raise one ValidationException listing every problem of ``params``; else return."""
    problems: list[Problem] = []
    _structure(shape, params, "", problems)
    if problems:
        raise exception(problems)


def exception(problems: list[Problem]) -> errors.ValidationException:
    count = len(problems)
    noun = "error" if count == 1 else "errors"
    text = "; ".join(message for _, message in problems)
    return errors.ValidationException(
        f"{count} validation {noun} detected: {text}",
        context={"fields": ",".join(dict.fromkeys(path for path, _ in problems))},
        problems=problems,
    )


def _structure(shape: model.Shape, value: dict[str, Any], prefix: str, out: list[Problem]) -> None:
    missing = [name for name in shape.required if value.get(name) is None]
    for name in sorted(missing):  # in a stable order (sorted only when some are missing)
        path = prefix + name
        out.append(
            (
                path,
                f"Value null at '{path}' failed to satisfy constraint: Member must not be null",
            )
        )
    for name, member in shape.members.items():
        item = value.get(name)
        if item is not None:
            _value(member.shape, item, prefix + name, out)


def _union(shape: model.Shape, value: dict[str, Any], path: str, out: list[Problem]) -> None:
    if sum(value.get(name) is not None for name in shape.members) != 1:
        names = ", ".join(sorted(shape.members))
        rule = f"Member must have exactly one of its members set ({names})"
        out.append((path, f"Value at '{path}' failed to satisfy constraint: {rule}"))


def _value(shape: model.Shape, value: Any, path: str, out: list[Problem]) -> None:
    if not _has_type(shape, value):
        _fail(shape, value, path, f"Member must be of type {shape.type}", out)
        return
    if shape.type == "structure":
        if shape.union:
            _union(shape, value, path, out)
        _structure(shape, value, path + ".", out)
    elif shape.type == "list":
        _length(shape, value, path, out)
        for i, item in enumerate(value):
            if shape.member is not None:
                _value(shape.member, item, f"{path}.{i + 1}.member", out)
    elif shape.type == "map":
        _length(shape, value, path, out)
        for key, item in value.items():
            if shape.key is not None:
                _value(shape.key, key, f"{path}.key", out)
            if shape.value is not None:
                _value(shape.value, item, f"{path}.{key}", out)
    elif shape.type == "string":
        _string(shape, value, path, out)
    elif shape.type in ("integer", "long", "float", "double"):
        _number(shape, value, path, out)


def _has_type(shape: model.Shape, value: object) -> bool:
    expected = _PY_TYPES.get(shape.type, (object,))
    if shape.type != "boolean" and isinstance(value, bool):
        return False
    return isinstance(value, expected)


def _string(shape: model.Shape, value: str, path: str, out: list[Problem]) -> None:
    if "\x00" in value:  # no text holds one, and PostgreSQL cannot store it
        _fail(shape, value, path, "Member must not contain a NUL character", out)
        return
    _length(shape, value, path, out)
    if shape.pattern is not None and not shape.pattern.fullmatch(value):
        _fail(
            shape,
            value,
            path,
            f"Member must satisfy regular expression pattern: {shape.pattern.pattern}",
            out,
        )
    if shape.enum and value not in shape.enum:
        allowed = ", ".join(sorted(shape.enum))
        _fail(shape, value, path, f"Member must satisfy enum value set: [{allowed}]", out)


def _length(shape: model.Shape, value: Any, path: str, out: list[Problem]) -> None:
    if shape.min is not None and len(value) < shape.min:
        _fail(
            shape, value, path, f"Member must have length greater than or equal to {shape.min}", out
        )
    if shape.max is not None and len(value) > shape.max:
        _fail(shape, value, path, f"Member must have length less than or equal to {shape.max}", out)


def _number(shape: model.Shape, value: float, path: str, out: list[Problem]) -> None:
    if shape.min is not None and value < shape.min:
        _fail(
            shape, value, path, f"Member must have value greater than or equal to {shape.min}", out
        )
    if shape.max is not None and value > shape.max:
        _fail(shape, value, path, f"Member must have value less than or equal to {shape.max}", out)


def _fail(shape: model.Shape, value: Any, path: str, rule: str, out: list[Problem]) -> None:
    shown = "" if shape.sensitive else f" '{_short(value)}'"
    out.append((path, f"Value{shown} at '{path}' failed to satisfy constraint: {rule}"))


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 100 else text[:97] + "..."
