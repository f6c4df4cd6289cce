from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from tests.support import server as support
from tests.support import world as worlds


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[worlds.World]:
    """A server (page size 3, so paging shows with few sessions) and a studio set up through
    the API. At the end every session is deleted and no desktop may be left running."""
    data_dir: pathlib.Path = tmp_path_factory.mktemp("acceptance") / "data"
    srv = support.Server(data_dir, env={"OPENNIMBLE_PAGE_SIZE": "3"})
    srv.start()
    try:
        built = worlds.build(srv)
        yield built
        worlds.delete_all_sessions(built)
    finally:
        srv.stop()
        leftovers = support.live_desktops(data_dir)
        support.kill_all(leftovers)
    assert leftovers == [], f"desktops left running: {leftovers}"
