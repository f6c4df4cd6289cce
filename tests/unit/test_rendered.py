"""The memory of listed sessions: each row viewed and written once, bounded."""

from __future__ import annotations

from typing import Any

from opennimble.api.rendered import Rendered
from opennimble.protocol import model, serialize

SESSION = model.shape_named("StreamingSession")


def test_a_row_is_written_once_and_another_row_anew() -> None:
    written: list[tuple[Any, ...]] = []

    def write(values: tuple[Any, ...]) -> serialize.Written:
        written.append(values)
        return serialize.written(SESSION, {"sessionId": values[0], "statusMessage": values[1]})

    rendered = Rendered()
    row = ("ss-1", '{"shot":"010"}')
    changed = ("ss-1", '{"shot":"020"}')
    first = rendered.get(row, write)
    assert rendered.get(tuple(row), write) is first  # the same values read again
    assert rendered.get(changed, write)["statusMessage"] == '{"shot":"020"}'
    assert written == [row, changed]


def test_the_memory_starts_again_when_full() -> None:
    rendered = Rendered(kept=3)
    for n in range(10):
        rendered.get((n,), lambda values: serialize.written(SESSION, {}))
        assert len(rendered) <= 3
