from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from tests.support import called, clocked, slurm
from tests.support import server as support
from tests.support import world as worlds

LAST = "test_operations_tested"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[worlds.World]:
    """A server (page size 3, so paging shows with few sessions) and a studio set up through
    the API, on the provider the run asks for (``OPENNIMBLE_TEST_PROVIDER``: local, or slurm on
    a cluster of its own). At the end every session is deleted and no desktop may be left
    running."""
    data_dir: pathlib.Path = tmp_path_factory.mktemp("acceptance") / "data"
    # modules run many sessions of one artist at once: the per-owner cap is tested on its own
    env = {"OPENNIMBLE_PAGE_SIZE": "3", "OPENNIMBLE_PROVIDERS__LOCAL__MAX_DESKTOPS_PER_OWNER": "16"}
    with slurm.chosen_provider() as provider:
        server = support.Server(data_dir, env={**env, **provider})
        with worlds.served(server) as built:
            yield built


@pytest.fixture(scope="module")
def clock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[clocked.ControlledClock]:
    """A clock for the module's server (``Server(clock=...)``); boto3 in this process signs
    with it while the module runs."""
    with clocked.signing(tmp_path_factory.mktemp("clock")) as controlled:
        yield controlled


@pytest.fixture(scope="session", autouse=True)
def record_operations_called() -> None:
    """Record which operations the suite calls through boto3 (see tests/support/called.py)."""
    called.install()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The check of the operations the suite exercised runs after every other test."""
    last = [i for i in items if i.module is not None and i.module.__name__.endswith(LAST)]
    items[:] = [i for i in items if i not in last] + last
