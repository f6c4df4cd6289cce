"""The database this test run uses (see tests/support/databases.py) and its clean-up.

``OPENNIMBLE_TEST_DATABASE_URL`` unset: SQLite. Set to a PostgreSQL server: every test
installation gets a database of its own there, dropped at the end of the run. Tests marked
``postgresql`` run only then; tests marked ``sqlite`` (about SQLite itself) or ``host_wide``
(they take something of the whole host for a while, such as X display names: squatting them,
evicting their squatters) only without it. ``make test`` runs the ``host_wide`` tests alone,
after the runs on SQLite and PostgreSQL that it makes side by side (``-m 'not host_wide'``).
"""

from __future__ import annotations

import pathlib
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
        reason="takes something of the whole host for a while: make test runs it alone, on "
        "SQLite, after its runs on SQLite and PostgreSQL"
    )
    for item in items:
        if "postgresql" in item.keywords and not databases.postgresql():
            item.add_marker(skip_pg)
        if ("sqlite" in item.keywords or "host_wide" in item.keywords) and databases.postgresql():
            item.add_marker(skip_sqlite if "sqlite" in item.keywords else skip_host_wide)


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
