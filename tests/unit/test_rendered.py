"""The memory of listed sessions' JSON: written once per row, bounded."""

from __future__ import annotations

from typing import Any

import orjson

from opennimble.api.rendered import Rendered


def test_a_row_is_written_once_and_another_row_anew() -> None:
    written: list[tuple[Any, ...]] = []

    def write(values: tuple[Any, ...]) -> orjson.Fragment:
        written.append(values)
        return orjson.Fragment(orjson.dumps(list(values)))

    rendered = Rendered()
    row = ("ss-1", "READY", '{"shot":"010"}', 1_700_000_000_000_000)
    changed = ("ss-1", "READY", '{"shot":"020"}', 1_700_000_000_000_000)
    first = rendered.get(row, write)
    assert rendered.get(tuple(row), write) is first  # the same values read again
    assert orjson.loads(orjson.dumps(rendered.get(changed, write)))[2] == '{"shot":"020"}'
    assert written == [row, changed]


def test_the_memory_starts_again_when_full() -> None:
    rendered = Rendered(kept=3)
    for n in range(10):
        rendered.get((n,), lambda values: orjson.Fragment(b"{}"))
        assert len(rendered) <= 3
