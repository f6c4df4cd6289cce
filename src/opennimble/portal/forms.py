"""Forms made from the model: an operation's input shape gives the fields, their widgets, the
parsing of what the browser posts, and where each of the API's problems is shown.

Nothing here knows a field by name. A field's name in the form is its path in the input, in the
validator's spelling (``streamConfiguration.maxSessionLengthInMinutes``, a row of a list of
structures ``initializationScripts.2.member.script``), so a ValidationException's problem goes
next to the field whose path is the longest prefix of the problem's path. What the browser
posts is turned into the operation's parameters by the shape's types only: the API validates
them (model constraints and domain rules alike) and its answer is what the page shows.

Widgets by shape: a string with an enum is a select; a string a text input (a text area when it
may be long); a number a number input; a boolean a checkbox; a list of strings checkboxes (of
its enum, or of the ``choices`` the page gives for that path), else one text input of
comma-separated values; a structure a fieldset; a list of structures rows (the existing ones and
an empty one). Members in the URI, idempotency tokens and maps (tags) are not in forms.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from opennimble import errors
from opennimble.protocol import model

Choices = Mapping[str, list[tuple[str, str]]]  # path -> (value, label) to pick from
LONG_TEXT = 1000  # strings that may be longer than this get a text area
_ROW = re.compile(r"^(\d+)\.member\.")


@dataclasses.dataclass
class Field:
    path: str
    label: str
    kind: str  # text, textarea, number, select, checks, csv, checkbox, group, rows
    required: bool = False
    hint: str = ""
    value: Any = None
    options: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    children: list[Field] = dataclasses.field(default_factory=list)
    rows: list[list[Field]] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)


def members(shape: model.Shape) -> list[model.Member]:
    """The members of an input shape that a form shows."""
    return [
        m
        for m in shape.members.values()
        if m.location != "uri" and not m.idempotency_token and m.shape.type != "map"
    ]


def label(name: str) -> str:
    """``maxSessionLengthInMinutes`` -> ``Max session length in minutes``."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).split()
    text = " ".join(w if w.isupper() and len(w) > 1 else w.lower() for w in words)
    return text[:1].upper() + text[1:]


# ---- building the fields


def build(
    shape: model.Shape,
    values: Mapping[str, Any] | None = None,
    choices: Choices | None = None,
    problems: list[tuple[str, str]] | None = None,
) -> tuple[list[Field], list[str]]:
    """The fields of ``shape``'s form filled with ``values`` (the input's structure), and
    ``problems`` placed on their fields; returns the fields and the problems no field shows."""
    fields = _fields(members(shape), shape.required, values or {}, choices or {}, "")
    index = {f.path: f for f in _walk(fields)}
    unplaced = []
    for path, message in problems or []:
        field = _owner(index, path)
        if field is None:
            unplaced.append(message)
        else:
            field.errors.append(message)
    return fields, unplaced


def _fields(
    found: list[model.Member],
    required: frozenset[str],
    values: Mapping[str, Any],
    choices: Choices,
    prefix: str,
) -> list[Field]:
    return [
        _field(m.shape, prefix + m.name, m.name, m.name in required, values.get(m.name), choices)
        for m in ordered(found, required)
    ]


FIRST = ("name", "displayName", "description")  # what people fill in first, where present


def ordered(found: list[model.Member], required: frozenset[str]) -> list[model.Member]:
    """The order a form shows members in: the name and description first, then the required
    ones, then the optional ones, each in the model's order (which is alphabetical)."""

    def rank(member: model.Member) -> int:
        if member.name in FIRST:
            return FIRST.index(member.name)
        return len(FIRST) + (0 if member.name in required else 1)

    return sorted(found, key=rank)  # stable: the model's order within a rank


def _field(
    shape: model.Shape, path: str, name: str, required: bool, value: Any, choices: Choices
) -> Field:
    field = Field(path, label(name), "text", required, _hint(shape))
    if shape.type == "structure":
        field.kind = "group"
        given = value if isinstance(value, Mapping) else {}
        field.children = _fields(
            list(shape.members.values()), shape.required, given, choices, path + "."
        )
        if shape.union:
            field.hint = "set one of these"
    elif shape.type == "list" and shape.member is not None and shape.member.type == "structure":
        field.kind = "rows"
        item = shape.member
        existing = [v for v in value or [] if isinstance(v, Mapping)] + [{}]
        field.rows = [
            _fields(list(item.members.values()), item.required, row, choices, f"{path}.{i}.member.")
            for i, row in enumerate(existing, start=1)
        ]
    elif shape.type == "list":
        item_enum = shape.member.enum if shape.member is not None else frozenset()
        options = list(choices.get(path, [])) or [(v, v) for v in sorted(item_enum)]
        field.value = [str(v) for v in value or []]
        if options:
            field.kind, field.options = "checks", options
        else:
            field.kind, field.value = "csv", ", ".join(field.value)
    elif shape.enum:
        field.kind, field.options = "select", [(v, v) for v in sorted(shape.enum)]
        field.value = "" if value is None else str(value)
    elif shape.type in ("integer", "long", "float", "double"):
        field.kind, field.value = "number", "" if value is None else str(value)
    elif shape.type == "boolean":
        field.kind, field.value = "checkbox", bool(value)
    else:
        field.kind = "textarea" if (shape.max or 0) > LONG_TEXT else "text"
        field.value = "" if value is None else str(value)
    return field


def _hint(shape: model.Shape) -> str:
    parts = []
    if shape.type in ("integer", "long") and (shape.min is not None or shape.max is not None):
        parts.append(f"{shape.min} to {shape.max}")
    if shape.type == "string" and shape.max:
        parts.append(f"at most {shape.max} characters")
    if shape.type == "list" and shape.max:
        parts.append(f"at most {shape.max}")
    return "; ".join(parts)


def _walk(fields: list[Field]) -> list[Field]:
    out = []
    for field in fields:
        out.append(field)
        out += _walk(field.children)
        for row in field.rows:
            out += _walk(row)
    return out


def _owner(index: dict[str, Field], path: str) -> Field | None:
    """The field whose path is the longest prefix of ``path`` (a list item's problem belongs to
    its list)."""
    while path:
        if path in index:
            return index[path]
        if "." not in path:
            return None
        path = path.rsplit(".", 1)[0]
    return None


# ---- parsing what the browser posts


def parse(shape: model.Shape, form: Any) -> dict[str, Any]:
    """The operation's parameters from a posted form (a multi-dict), by ``shape``'s types.

    Empty text is left out (the API's default applies); lists of the top level are always
    given (unticking every box means none); a structure or a row with nothing filled in is left
    out. Text a number field cannot be read as stays text, for the API to refuse by name."""
    out: dict[str, Any] = {}
    for m in members(shape):
        value = _value(m.shape, m.name, form)
        if value is not None and (m.shape.type == "list" or not _empty(value)):
            out[m.name] = value
    return out


def _value(shape: model.Shape, path: str, form: Any) -> Any:
    if shape.type == "structure":
        found = {}
        for name, m in shape.members.items():
            value = _value(m.shape, f"{path}.{name}", form)
            if not _empty(value):
                found[name] = value
        return found or None
    if shape.type == "list" and shape.member is not None and shape.member.type == "structure":
        start = path + "."
        indices = sorted(
            {
                int(row.group(1))
                for key in form
                if key.startswith(start) and (row := _ROW.match(key[len(start) :]))
            }
        )
        rows = [_value(shape.member, f"{path}.{i}.member", form) for i in indices]
        return [row for row in rows if row]
    if shape.type == "list":
        given = [str(v) for v in form.getlist(path)]
        if len(given) == 1 and not (shape.member and shape.member.enum):
            given = given[0].split(",")  # a comma-separated text input
        return [v.strip() for v in given if v.strip()]
    if shape.type == "boolean":
        return path in form or None
    text = str(form.get(path) or "").strip()
    if not text:
        return None
    if shape.type in ("integer", "long"):
        try:
            return int(text)
        except ValueError:
            return text
    if shape.type in ("float", "double"):
        try:
            return float(text)
        except ValueError:
            return text
    return text


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def problems(exc: errors.ServiceError) -> list[tuple[str, str]]:
    """Each problem of an API refusal with its field path ("" where it names none)."""
    if isinstance(exc, errors.ValidationException) and exc.problems:
        return list(exc.problems)
    return [("", f"{exc.code or type(exc).__name__}: {exc.message}")]
