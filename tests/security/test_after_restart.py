"""The desktops' secrets live in files (VNC password file, X cookie, the provider's record, the
installation key, the database): their owners and modes must hold after the server restarts
(it re-attaches to running desktops) and after a backup is restored into a session, and A's
attempts on them must still fail."""

from __future__ import annotations

import os
import pathlib
import stat

import pytest

from tests.security.conftest import B_SECRET, Scene
from tests.support import desktops
from tests.support.server import FAST

pytestmark = [pytest.mark.xvnc, pytest.mark.security]


def owner_and_mode(path: pathlib.Path) -> tuple[int, int]:
    info = path.lstat()
    return info.st_uid, stat.S_IMODE(info.st_mode)


def check_secrets(scene: Scene) -> None:
    """Each secret file: its owner and mode, and A cannot read it."""
    runtime, b_uid = pathlib.Path(scene.b["runtime_dir"]), scene.b["uid"]
    wanted = {
        runtime / "passwd": (b_uid, 0o600),
        runtime / "Xauthority": (b_uid, 0o600),
        runtime / "desktop.json": (0, 0o600),
        scene.data_dir / "secret.key": (0, 0o600),
    }
    if (scene.data_dir / "opennimble.db").exists():
        wanted[scene.data_dir / "opennimble.db"] = (0, 0o600)
    for path, expected in wanted.items():
        assert owner_and_mode(path) == expected, path
        assert scene.as_a("cat", str(path)).returncode != 0, path
    assert owner_and_mode(runtime) == (0, 0o711)
    assert owner_and_mode(pathlib.Path(scene.b["home"])) == (b_uid, 0o700)


def test_secret_files_hold_after_the_server_restarts(scene: Scene) -> None:
    """A restarted server re-attaches to B's running desktop without loosening any file."""
    check_secrets(scene)
    scene.world.server.stop()
    scene.world.server.start()
    client = scene.world.artist2.client()
    client.get_waiter("streaming_session_ready").wait(
        studioId=scene.world.studio.studio_id, sessionId=scene.b["session_id"], WaiterConfig=FAST
    )
    assert desktops.record(scene.world.server, scene.b["session_id"])["pid"] == scene.b["pid"]
    check_secrets(scene)


def test_a_restored_backup_is_bs_and_closed_to_a(scene: Scene) -> None:
    """StartStreamingSession with B's backup puts its files back as B's, in B's closed home."""
    session_id = scene.b_backup.parent.name
    world, client = scene.world, scene.world.artist2.client()
    (backup,) = client.list_streaming_session_backups(
        studioId=world.studio.studio_id, ownedBy=world.artist2.user_id
    )["streamingSessionBackups"]
    client.start_streaming_session(
        studioId=world.studio.studio_id, sessionId=session_id, backupId=backup["backupId"]
    )
    client.get_waiter("streaming_session_ready").wait(
        studioId=world.studio.studio_id, sessionId=session_id, WaiterConfig=FAST
    )
    restored = desktops.record(world.server, session_id)
    storage = pathlib.Path(restored["home"]) / "sessions" / session_id
    kept = storage / "kept.txt"
    assert kept.read_text() == f"{B_SECRET}\n"
    assert owner_and_mode(storage) == (restored["uid"], 0o700)
    assert os.stat(kept).st_uid == restored["uid"]
    assert scene.as_a("cat", str(kept)).returncode != 0
