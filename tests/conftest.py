"""The database this test run uses (see tests/support/databases.py) and its clean-up.

``OPENNIMBLE_TEST_DATABASE_URL`` unset: SQLite. Set to a PostgreSQL server: every test
installation gets a database of its own there, dropped at the end of the run. Tests marked
``postgresql`` run only then; tests marked ``sqlite`` (about SQLite itself) or ``host_wide``
(they take something of the whole host for a while, such as every X display name, which
would disturb the other run going on at the same time) only without it. A ``host_wide``
test also holds a lock file of the host for its duration, and tests marked ``x_names`` (they
need some X display names free) hold it shared: they wait for each other across both runs.
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import tempfile
from collections.abc import Iterator

import pytest

from tests.support import databases


def pytest_report_header(config: pytest.Config) -> str:
    return f"opennimble test database: {databases.backend()}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_pg = pytest.mark.skip(
        reason=f"needs PostgreSQL: set {databases.ENV} (make test does when one is reachable)"
    )
    skip_sqlite = pytest.mark.skip(reason="about SQLite; this run tests PostgreSQL")
    skip_host_wide = pytest.mark.skip(
        reason="takes something of the whole host for a while: the SQLite run has it, not this "
        "one (make test runs both at once)"
    )
    for item in items:
        if "postgresql" in item.keywords and not databases.postgresql():
            item.add_marker(skip_pg)
        if ("sqlite" in item.keywords or "host_wide" in item.keywords) and databases.postgresql():
            item.add_marker(skip_sqlite if "sqlite" in item.keywords else skip_host_wide)


HOST_WIDE_LOCK = pathlib.Path(tempfile.gettempdir()) / "opennimble-tests-host-wide.lock"


@pytest.fixture(autouse=True)
def _host_wide_lock(request: pytest.FixtureRequest) -> Iterator[None]:
    """Exclusive for a ``host_wide`` test, shared for an ``x_names`` one (see above)."""
    if request.node.get_closest_marker("host_wide") is not None:
        operation = fcntl.LOCK_EX
    elif request.node.get_closest_marker("x_names") is not None:
        operation = fcntl.LOCK_SH
    else:
        yield
        return
    fd = os.open(HOST_WIDE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)


@pytest.fixture(scope="session", autouse=True)
def _drop_test_databases() -> Iterator[None]:
    yield
    if databases.postgresql():
        databases.drop_all()


@pytest.fixture
def database_url(tmp_path: pathlib.Path) -> Iterator[str]:
    """A new, empty database of the backend under test, dropped after the test."""
    url = databases.fresh_url(tmp_path)
    yield url
    if databases.postgresql():
        databases.drop(url)
