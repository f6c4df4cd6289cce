from __future__ import annotations

from collections.abc import Iterator

import pytest

from opennimble.store import database


@pytest.fixture
def db(database_url: str) -> Iterator[database.Database]:
    """A database of the backend under test, migrated to the newest schema."""
    handle = database.Database(database_url)
    handle.upgrade()
    yield handle
    handle.dispose()
