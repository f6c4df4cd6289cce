"""What a server creates is private to its user from the start (finding 3 of the trust review):
the data directory and the SQLite database, also when database_url puts it elsewhere."""

from __future__ import annotations

import stat

import pytest

from tests.support.server import Server


def test_the_database_elsewhere_is_private(tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("db")
    elsewhere.chmod(0o755)  # a shared directory: the file itself must be private
    database = elsewhere / "nested" / "opennimble.db"
    server = Server(
        tmp_path_factory.mktemp("private") / "data",
        env={"OPENNIMBLE_DATABASE_URL": f"sqlite:///{database}"},
    )
    server.start()
    try:
        server.user("operator", operator=True).client().list_studios()
        assert stat.S_IMODE(database.stat().st_mode) == 0o600
        assert stat.S_IMODE(database.parent.stat().st_mode) == 0o700
        data = server.data_dir
        assert not stat.S_IMODE(data.stat().st_mode) & 0o066  # searchable at most
        for entry in data.iterdir():
            mode = stat.S_IMODE(entry.lstat().st_mode)
            assert not mode & 0o077, f"{entry.name} is open to other users ({mode:04o})"
    finally:
        server.stop()
