"""The nimble service model, loaded from botocore's data and compiled once for the hot path.

This module is the only place that reads the model files. Everything else asks it for
:class:`Operation` objects, whose input and output :class:`Shape` trees are small immutable
objects built from botocore's shapes (botocore's own Shape objects compute their properties on
every access; these are plain attributes).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

import botocore.loaders
import botocore.model

SERVICE = "nimble"
API_VERSION = "2020-08-01"


@dataclasses.dataclass(eq=False)
class Shape:
    """A compiled model shape. ``members`` is filled for structures (possibly recursively)."""

    name: str
    type: str
    required: frozenset[str] = frozenset()
    members: dict[str, Member] = dataclasses.field(default_factory=dict)
    member: Shape | None = None  # list element
    key: Shape | None = None  # map key
    value: Shape | None = None  # map value
    min: int | None = None
    max: int | None = None
    pattern: re.Pattern[str] | None = None
    enum: frozenset[str] = frozenset()
    sensitive: bool = False
    idempotency_token: bool = False
    union: bool = False  # a structure of which exactly one member is set


@dataclasses.dataclass(eq=False)
class Member:
    name: str
    shape: Shape
    location: str  # "uri" | "querystring" | "header" | "body"
    location_name: str
    idempotency_token: bool = False


@dataclasses.dataclass(frozen=True, eq=False)
class Operation:
    name: str
    method: str
    request_uri: str
    response_code: int
    input: Shape
    output: Shape
    errors: tuple[str, ...]
    idempotent: bool

    @functools.cached_property  # asked on every call of the operation
    def idempotency_member(self) -> Member | None:
        return next((m for m in self.input.members.values() if m.idempotency_token), None)


class _Compiler:
    def __init__(self) -> None:
        self._done: dict[str, Shape] = {}

    def shape(self, src: botocore.model.Shape) -> Shape:
        if src.name in self._done:
            return self._done[src.name]
        meta = src.metadata
        pattern = meta.get("pattern")
        out = Shape(
            name=src.name,
            type=src.type_name,
            min=meta.get("min"),
            max=meta.get("max"),
            pattern=re.compile(pattern) if pattern else None,
            enum=frozenset(getattr(src, "enum", []) or []),
            sensitive=bool(meta.get("sensitive")),
            union=bool(meta.get("union")),
        )
        self._done[src.name] = out  # before members: shapes may be recursive
        if isinstance(src, botocore.model.StructureShape):
            out.required = frozenset(meta.get("required", []))
            out.members = {name: self.member(name, m) for name, m in src.members.items()}
        elif isinstance(src, botocore.model.ListShape):
            out.member = self.shape(src.member)
        elif isinstance(src, botocore.model.MapShape):
            out.key = self.shape(src.key)
            out.value = self.shape(src.value)
        return out

    def member(self, name: str, src: botocore.model.Shape) -> Member:
        ser = src.serialization
        return Member(
            name=name,
            shape=self.shape(src),
            location=ser.get("location", "body"),
            location_name=ser.get("name", name),
            idempotency_token=bool(src.metadata.get("idempotencyToken")),
        )


EMPTY = Shape(name="Empty", type="structure")


@functools.cache
def service_model() -> botocore.model.ServiceModel:
    return botocore.model.ServiceModel(service_document(), service_name=SERVICE)


def service_document() -> dict[str, Any]:
    """The botocore model this server implements, as the JSON document botocore ships."""
    loader = botocore.loaders.Loader()
    data: dict[str, Any] = loader.load_service_model(SERVICE, "service-2", API_VERSION)
    return data


@functools.cache
def operations() -> dict[str, Operation]:
    """Every operation of the model, by name."""
    model = service_model()
    compiler = _Compiler()
    ops: dict[str, Operation] = {}
    for name in model.operation_names:
        src = model.operation_model(name)
        http = src.http
        ops[name] = Operation(
            name=name,
            method=http["method"],
            request_uri=http["requestUri"],
            response_code=int(http.get("responseCode", 200)),
            input=compiler.shape(src.input_shape) if src.input_shape else EMPTY,
            output=compiler.shape(src.output_shape) if src.output_shape else EMPTY,
            errors=tuple(e.name for e in src.error_shapes),
            idempotent=bool(src.metadata.get("idempotent")),
        )
    return ops


def error_statuses() -> dict[str, int]:
    """The model's error shapes and their HTTP status codes."""
    model = service_model()
    out: dict[str, int] = {}
    for name in model.shape_names:
        shape = model.shape_for(name)
        if shape.metadata.get("exception"):
            out[name] = int(shape.metadata["error"]["httpStatusCode"])
    return out


def shape_named(name: str) -> Shape:
    """A compiled shape by name (for tests and tools)."""
    compiler = _Compiler()
    return compiler.shape(service_model().shape_for(name))
