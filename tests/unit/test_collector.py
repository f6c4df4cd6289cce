"""The collector's settings for serving: start-up's objects are left out of every collection."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from opennimble import collector


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def _visited(obj: object) -> bool:
    """Whether a collection of the oldest generation would traverse ``obj``."""
    return any(o is obj for o in gc.get_objects())


@pytest.mark.usefixtures("unfrozen")
def test_settle_freezes_what_lives_after_collecting_start_up_garbage() -> None:
    alive = _Cycle()
    garbage = weakref.ref(_Cycle())  # unreachable at once, freed only by a collection
    assert garbage() is not None and _visited(alive)
    collector.settle()
    assert garbage() is None  # collected, not kept forever
    assert not _visited(alive)  # frozen: no collection looks at it again
    later = _Cycle()
    assert _visited(later)  # what requests make is still collected
