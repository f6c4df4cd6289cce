"""What a server creates is private to its user from the start (finding 3 of the trust review):
the data directory and the SQLite database, also when database_url puts it elsewhere."""

from __future__ import annotations

import pathlib
import stat
import tempfile

import pytest

from tests.support import desktops
from tests.support import world as worlds
from tests.support.server import FAST, Server


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


@pytest.mark.xvnc
def test_desktops_work_with_the_data_dir_in_a_private_directory(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A clone in /root (0700) or a `mktemp -d`: the data directory under it is fine, as
    desktop accounts reach nothing in it."""
    clone = pathlib.Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    assert stat.S_IMODE(clone.stat().st_mode) == 0o700
    with worlds.running_world(clone / "opennimble-data", {}) as world:
        studio, artist = world.studio, world.artist
        profile = desktops.stoppable(studio.admin, studio, [artist])
        session_id = desktops.create_session(artist, studio, profile)
        client = artist.client()
        client.get_waiter("streaming_session_ready").wait(
            studioId=studio.studio_id, sessionId=session_id, WaiterConfig=FAST
        )
        record = desktops.record(world.server, session_id)
        assert not str(record["home"]).startswith(str(clone))
        client.delete_streaming_session(studioId=studio.studio_id, sessionId=session_id)
        client.get_waiter("streaming_session_deleted").wait(
            studioId=studio.studio_id, sessionId=session_id, WaiterConfig=FAST
        )
