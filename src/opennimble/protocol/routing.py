"""Dispatch of (method, path) to a model operation, through a trie built from the model.

Each operation's ``requestUri`` is split into segments; literal segments are trie edges and
``{label}`` segments a wildcard edge that binds the percent-decoded segment. Lookup costs one
dict access per segment, whatever the number of operations.
"""

from __future__ import annotations

import dataclasses

from opennimble.protocol import model, parse


@dataclasses.dataclass
class _Node:
    literal: dict[str, _Node] = dataclasses.field(default_factory=dict)
    label: str | None = None
    wildcard: _Node | None = None
    operations: dict[str, model.Operation] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Match:
    operation: model.Operation
    path_params: dict[str, str]


class NoRoute(Exception):
    """No operation has this path; ``allowed`` lists the methods the path has, if any."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        super().__init__("no route")
        self.allowed = allowed


class Router:
    def __init__(self, operations: dict[str, model.Operation]) -> None:
        self._root = _Node()
        for op in operations.values():
            self._add(op)

    def _add(self, op: model.Operation) -> None:
        node = self._root
        for segment in _segments(op.request_uri.split("?", 1)[0]):
            if segment.startswith("{") and segment.endswith("}"):
                label = segment[1:-1].rstrip("+")
                if node.wildcard is None:
                    node.wildcard = _Node(label=label)
                node = node.wildcard
            else:
                node = node.literal.setdefault(segment, _Node())
        node.operations[op.method] = op

    def match(self, method: str, raw_path: str) -> Match:
        """Find the operation for a request; raise :class:`NoRoute` when there is none."""
        node: _Node | None = self._root
        params: dict[str, str] = {}
        for segment in _segments(raw_path):
            assert node is not None
            nxt = node.literal.get(segment)
            if nxt is None and node.wildcard is not None and segment:
                nxt = node.wildcard
                params[nxt.label or ""] = parse.unquote(segment, f"the path's {nxt.label}")
            node = nxt
            if node is None:
                raise NoRoute(())
        assert node is not None
        op = node.operations.get(method)
        if op is None:
            raise NoRoute(tuple(sorted(node.operations)))
        return Match(op, params)


def _segments(path: str) -> list[str]:
    return path.strip("/").split("/") if path.strip("/") else []
