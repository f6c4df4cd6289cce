"""Streaming session backups through boto3: a backup of the session's storage on each stop
(launch profiles with sessionBackup.mode AUTOMATIC), the newest maxBackupsToRetain kept,
GetStreamingSessionBackup and ListStreamingSessionBackups with their owner rules, and
StartStreamingSession with backupId putting a backup's files back."""

from __future__ import annotations

import datetime
import pathlib
from typing import Any

import botocore.exceptions
import pytest

from tests.support import desktops
from tests.support import world as worlds
from tests.support.server import FAST, User

pytestmark = pytest.mark.xvnc

KEEP = 2


@pytest.fixture(scope="module")
def profile(world: worlds.World) -> str:
    """Sessions stop for up to an hour; each stop takes a backup, the 2 newest are kept."""
    return desktops.stoppable(
        world.studio.admin,
        world.studio,
        [world.artist, world.artist2],
        sessionBackup={"mode": "AUTOMATIC", "maxBackupsToRetain": KEEP},
    )


def ready_session(world: worlds.World, user: User, profile: str, **extra: Any) -> str:
    client = user.client()
    session_id = str(
        client.create_streaming_session(
            studioId=world.studio.studio_id, launchProfileId=profile, **extra
        )["session"]["sessionId"]
    )
    wait(client, "streaming_session_ready", world, session_id)
    return session_id


def wait(client: Any, waiter: str, world: worlds.World, session_id: str) -> None:
    client.get_waiter(waiter).wait(
        studioId=world.studio.studio_id, sessionId=session_id, WaiterConfig=FAST
    )


def write_storage(world: worlds.World, session_id: str, text: str) -> pathlib.Path:
    """Write ``work.txt`` in the session's storage, as its owner, on the desktop."""
    desktop = desktops.record(world.server, session_id)
    path = pathlib.Path(desktop["home"]) / "sessions" / session_id / "work.txt"
    done = desktops.run_as(desktop, "sh", "-c", f"echo {text} > {path}")
    assert done.returncode == 0, done.stderr
    return path


def stop(client: Any, world: worlds.World, session_id: str, **extra: Any) -> None:
    client.stop_streaming_session(studioId=world.studio.studio_id, sessionId=session_id, **extra)
    wait(client, "streaming_session_stopped", world, session_id)


def start(client: Any, world: worlds.World, session_id: str, **extra: Any) -> dict[str, Any]:
    session: dict[str, Any] = client.start_streaming_session(
        studioId=world.studio.studio_id, sessionId=session_id, **extra
    )["session"]
    wait(client, "streaming_session_ready", world, session_id)
    return session


def backups_of(client: Any, world: worlds.World, session_id: str, **extra: Any) -> list[Any]:
    """The session's backups, oldest first, through the paginator."""
    pages = client.get_paginator("list_streaming_session_backups").paginate(
        studioId=world.studio.studio_id, **extra
    )
    found = [b for page in pages for b in page["streamingSessionBackups"]]
    return [b for b in found if b["sessionId"] == session_id]


def error(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        call(**kwargs)
    return raised.value.response["Error"]["Code"], raised.value.response["Error"]["Message"]


def test_each_stop_takes_a_backup_and_a_start_restores_one(
    world: worlds.World, profile: str
) -> None:
    artist, sid = world.artist.client(), world.studio.studio_id
    session_id = ready_session(world, world.artist, profile, tags={"show": "pilot"})
    created = artist.get_streaming_session(studioId=sid, sessionId=session_id)["session"]
    assert (created["backupMode"], created["maxBackupsToRetain"]) == ("AUTOMATIC", KEEP)
    assert "startedFromBackupId" not in created

    for version in ("one", "two", "three"):
        work = write_storage(world, session_id, version)
        stop(artist, world, session_id)
        if version != "three":
            start(artist, world, session_id)

    listed = backups_of(artist, world, session_id)
    assert [b["state"] for b in listed] == ["DELETED", "READY", "READY"]  # oldest dropped
    first, second, third = listed
    assert first["statusCode"] == "STREAMING_SESSION_DELETED"
    backup = artist.get_streaming_session_backup(studioId=sid, backupId=second["backupId"])[
        "streamingSessionBackup"
    ]
    assert backup == second
    assert backup["arn"].endswith(f":streaming-session-backup/{backup['backupId']}")
    assert backup["ownedBy"] == world.artist.user_id
    assert backup["launchProfileId"] == profile
    assert backup["tags"] == {"show": "pilot"}
    assert backup["statusCode"] == "STREAMING_SESSION_READY"
    assert isinstance(backup["createdAt"], datetime.datetime)
    assert first["createdAt"] < second["createdAt"] < third["createdAt"]
    archives = world.server.data_dir / "backups" / session_id
    assert sorted(p.stem for p in archives.iterdir()) == sorted(
        [second["backupId"], third["backupId"]]
    )

    code, message = error(
        artist.start_streaming_session,
        studioId=sid,
        sessionId=session_id,
        backupId=first["backupId"],
    )
    assert code == "ConflictException" and "DELETED" in message

    # the storage holds "three" (in the owner's home, which is not mounted while no desktop of
    # the owner runs: nobody changes it meanwhile); a start from the second backup puts "two"
    starting = start(artist, world, session_id, backupId=second["backupId"])
    assert starting["startedFromBackupId"] == second["backupId"]
    assert work.read_text() == "two\n"
    now = artist.get_streaming_session(studioId=sid, sessionId=session_id)["session"]
    assert now["startedFromBackupId"] == second["backupId"]

    stop(artist, world, session_id)  # a fourth backup: "two" is kept, the oldest goes
    plain = start(artist, world, session_id)
    assert "startedFromBackupId" not in plain
    assert work.read_text() == "two\n"  # a plain start keeps the storage as it is
    states = [b["state"] for b in backups_of(artist, world, session_id)]
    assert states == ["DELETED", "DELETED", "READY", "READY"]


def test_owner_rules_and_wrong_backups(world: worlds.World, profile: str) -> None:
    sid = world.studio.studio_id
    artist, artist2 = world.artist.client(), world.artist2.client()
    admin = world.studio.admin.client()
    mine = ready_session(world, world.artist, profile)
    theirs = ready_session(world, world.artist2, profile)
    stop(artist, world, mine)
    stop(artist2, world, theirs)
    (my_backup,) = backups_of(artist, world, mine)
    (their_backup,) = backups_of(artist2, world, theirs)

    # a non-admin sees the backups of the sessions it owns, no others
    assert backups_of(artist2, world, mine) == []
    assert (
        error(artist2.get_streaming_session_backup, studioId=sid, backupId=my_backup["backupId"])[0]
        == "AccessDeniedException"
    )
    code, _ = error(
        artist2.list_streaming_session_backups, studioId=sid, ownedBy=world.artist.user_id
    )
    assert code == "AccessDeniedException"
    owned = artist.list_streaming_session_backups(studioId=sid, ownedBy=world.artist.user_id)
    assert all(b["ownedBy"] == world.artist.user_id for b in owned["streamingSessionBackups"])
    outsider = world.outsider.client()
    assert error(outsider.list_streaming_session_backups, studioId=sid)[0] == (
        "AccessDeniedException"
    )
    # an administrator sees every backup, and filters by owner
    assert backups_of(admin, world, mine) == [my_backup]
    by_owner = backups_of(admin, world, theirs, ownedBy=world.artist2.user_id)
    assert by_owner == [their_backup]
    assert backups_of(admin, world, mine, ownedBy=world.artist2.user_id) == []

    code, _ = error(artist.get_streaming_session_backup, studioId=sid, backupId="no-such-backup")
    assert code == "ResourceNotFoundException"
    code, _ = error(
        artist.start_streaming_session, studioId=sid, sessionId=mine, backupId="no-such-backup"
    )
    assert code == "ResourceNotFoundException"
    code, message = error(
        admin.start_streaming_session,
        studioId=sid,
        sessionId=mine,
        backupId=their_backup["backupId"],
    )
    assert code == "ValidationException" and "backupId" in message and theirs in message

    # tags by ARN, as for the other resources
    arn = my_backup["arn"]
    artist.tag_resource(resourceArn=arn, tags={"keep": "yes"})
    assert artist.list_tags_for_resource(resourceArn=arn)["tags"] == {"keep": "yes"}
    assert error(artist2.list_tags_for_resource, resourceArn=arn)[0] == "AccessDeniedException"

    # deleting a session deletes its backups: they could only be restored into it
    artist.delete_streaming_session(studioId=sid, sessionId=mine)
    wait(artist, "streaming_session_deleted", world, mine)
    (gone,) = backups_of(artist, world, mine)
    assert gone["state"] == "DELETED"
    assert not (world.server.data_dir / "backups" / mine).exists()


def test_no_backups_without_automatic_mode(world: worlds.World) -> None:
    artist = world.artist.client()
    profile = desktops.stoppable(world.studio.admin, world.studio, [world.artist])
    session_id = ready_session(world, world.artist, profile)
    assert (
        artist.get_streaming_session(studioId=world.studio.studio_id, sessionId=session_id)[
            "session"
        ]["backupMode"]
        == "DEACTIVATED"
    )
    stop(artist, world, session_id)
    assert backups_of(artist, world, session_id) == []


def test_a_stop_that_discards_the_storage_backs_it_up_first(
    world: worlds.World, profile: str
) -> None:
    artist = world.artist.client()
    session_id = ready_session(world, world.artist, profile)
    work = write_storage(world, session_id, "precious")
    stop(artist, world, session_id, volumeRetentionMode="DELETE")
    with desktops.home_at_rest(world.server, desktops.record(world.server, session_id)) as home:
        assert not (home / work.relative_to(work.parents[2])).exists()
    (backup,) = backups_of(artist, world, session_id)
    start(artist, world, session_id, backupId=backup["backupId"])
    assert work.read_text() == "precious\n"
