"""Hypothesis strategies for the input of every operation, derived from the model's shapes.

A value is valid by its shape's constraints (type, enum, pattern, length, range) most of the
time and near-valid otherwise: one past a bound, a value outside the enum or pattern, a value
of another JSON type. Ids come mostly from the installation under test (so that calls reach
the handlers' work, not only the not-found check), sometimes from the shape.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import strategies as st

from opennimble.protocol import model

MAX_ITEMS = 4  # lists and maps: enough to exercise them, small enough to stay fast
OTHER_TYPES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def value(shape: model.Shape, ids: Mapping[str, Sequence[str]], name: str = "") -> Any:
    """A strategy for a value of ``shape`` (the member ``name``, whose real ids are in
    ``ids``): valid mostly, near-valid sometimes."""
    if ids.get(name):
        return st.one_of(st.sampled_from(list(ids[name])), _valid(shape, ids, depth=0))
    return (
        st.one_of(_valid(shape, ids, depth=0), _near(shape))
        if _nearable(shape)
        else _valid(shape, ids, depth=0)
    )


def _nearable(shape: model.Shape) -> bool:
    return shape.type in ("string", "integer", "long", "list", "map")


def _valid(shape: model.Shape, ids: Mapping[str, Sequence[str]], depth: int) -> Any:
    kind = shape.type
    if kind == "string":
        return _string(shape)
    if kind in ("integer", "long"):
        return st.integers(
            shape.min if shape.min is not None else -(2**31),
            shape.max if shape.max is not None else 2**31,
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "timestamp":
        return st.datetimes(datetime.datetime(1970, 1, 2), datetime.datetime(2100, 1, 1)).map(
            lambda d: d.replace(tzinfo=datetime.UTC)
        )
    if kind == "list" and shape.member is not None:
        return st.lists(
            value(shape.member, ids) if depth < 3 else st.just("x"),
            min_size=min(shape.min or 0, MAX_ITEMS),
            max_size=min(shape.max if shape.max is not None else MAX_ITEMS, MAX_ITEMS),
        )
    if kind == "map" and shape.key is not None and shape.value is not None:
        return st.dictionaries(
            _string(shape.key),
            value(shape.value, ids),
            max_size=min(shape.max if shape.max is not None else MAX_ITEMS, MAX_ITEMS),
        )
    if kind == "structure":
        return structure(shape, ids, depth + 1)
    return OTHER_TYPES


def structure(shape: model.Shape, ids: Mapping[str, Sequence[str]], depth: int = 0) -> Any:
    """The structure's required members always (mostly valid), each optional one maybe."""
    required = {n: value(m.shape, ids, n) for n, m in shape.members.items() if n in shape.required}
    optional = {
        n: value(m.shape, ids, n) for n, m in shape.members.items() if n not in shape.required
    }
    if depth > 3:
        return st.fixed_dictionaries(required)
    return st.fixed_dictionaries(required, optional=optional)


def _string(shape: model.Shape) -> Any:
    if shape.enum:
        return st.sampled_from(sorted(shape.enum))
    low = shape.min or 0
    high = shape.max if shape.max is not None else 64
    if shape.pattern is not None:
        return st.from_regex(shape.pattern, fullmatch=True).filter(
            lambda s: low <= len(s) <= max(high, low)
        )
    return st.text(min_size=low, max_size=min(max(high, low), 64))


def _near(shape: model.Shape) -> Any:
    """One step outside the shape: past a bound, outside the enum or pattern, another type."""
    options: list[Any] = [OTHER_TYPES]
    if shape.type == "string":
        options.append(st.text(max_size=80))
        if shape.max is not None and shape.max < 4096:
            options.append(st.just("a" * (shape.max + 1)))
        if shape.min:
            options.append(st.just("a" * (shape.min - 1)))
        if shape.enum:
            options.append(st.sampled_from(sorted(shape.enum)).map(lambda s: s.lower() + "x"))
    if shape.type in ("integer", "long"):
        if shape.min is not None:
            options.append(st.just(shape.min - 1))
        if shape.max is not None:
            options.append(st.just(shape.max + 1))
    if shape.type == "list" and shape.max is not None and shape.max < 100:
        options.append(st.just(["x"] * (shape.max + 1)))
    return st.one_of(*options)
