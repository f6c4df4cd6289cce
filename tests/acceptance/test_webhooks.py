"""Webhooks: a receiver started here gets every event of a session's life, in order, signed;
also the events of a session that lived while the receiver was down, once it is back."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from tests.support import databases, desktops, lifecycle
from tests.support import receiver as receivers
from tests.support import server as support
from tests.support import world as worlds
from tests.support.lifecycle import LIFE

pytestmark = pytest.mark.xvnc

SECRET = "a-receiver's-shared-secret-0123456789"


@pytest.fixture(scope="module")
def profile(world: worlds.World) -> str:
    return desktops.stoppable(world.studio.admin, world.studio, [world.artist])


@pytest.fixture(scope="module")
def hook(world: worlds.World, tmp_path_factory: pytest.TempPathFactory) -> Any:
    secret_file = tmp_path_factory.mktemp("secret") / "webhook-secret"
    secret_file.write_text(SECRET + "\n")
    with receivers.running(SECRET) as receiver:
        added = support.cli(
            world.server.data_dir,
            *("webhooks", "add", "--studio", world.studio.studio_id, "--url", receiver.url),
            *("--events", "session.*,stream.created", "--secret-file", str(secret_file)),
        )
        assert "secret" not in added  # the operator's own secret is not echoed
        receiver.webhook_id = added["webhookId"]
        yield receiver


def live(world: worlds.World, profile: str) -> str:
    """A session's whole life: create, READY, a stream, stop, start, delete."""
    session_id = lifecycle.begin(world.artist, world.studio, profile)
    lifecycle.finish(world.artist, world.studio, session_id)
    return session_id


def check_life(receiver: receivers.Receiver, world: worlds.World, session_id: str) -> None:
    receiver.wait_for(
        lambda got: any(
            e["sessionId"] == session_id and e["type"] == "session.deleted" for e in got
        )
    )
    got = receiver.events(session_id)
    assert [e["type"] for e in got] == LIFE
    numbers = [e["sequence"] for e in got]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert all(r["valid"] for r in receiver.received), "a delivery's signature did not verify"
    assert {e["studioId"] for e in got} == {world.studio.studio_id}
    assert {e["ownedBy"] for e in got} == {world.artist.user_id}
    ready = got[1]
    assert ready["detail"]["state"] == "READY"
    assert ready["detail"]["previousState"] == "CREATE_IN_PROGRESS"
    assert got[3]["detail"]["updatedBy"] == world.artist.user_id
    stream = got[2]["detail"]
    assert stream["createdBy"] == world.artist.user_id and stream["streamId"]
    headers = [r["headers"] for r in receiver.received if r["body"]["sessionId"] == session_id]
    assert [h["X-Opennimble-Event"] for h in headers] == LIFE
    assert [int(h["X-Opennimble-Event-Id"]) for h in headers] == numbers


def test_a_session_life_arrives_in_order_and_signed(
    world: worlds.World, profile: str, hook: receivers.Receiver
) -> None:
    session_id = live(world, profile)
    check_life(hook, world, session_id)
    log = listing(world, "deliveries", hook.webhook_id)
    assert [d["type"] for d in log if d["sessionId"] == session_id] == LIFE
    assert {d["state"] for d in log} == {"DELIVERED"} and {d["lastStatus"] for d in log} == {204}


def test_a_receiver_down_for_a_while_gets_the_backlog_in_order(
    world: worlds.World, profile: str, hook: receivers.Receiver
) -> None:
    hook.stop()
    session_id = live(world, profile)  # the whole life while nobody listens
    pending = deliveries(world, hook.webhook_id, "PENDING")
    assert [d["type"] for d in pending if d["sessionId"] == session_id] == LIFE
    head = next(d for d in pending if d["sessionId"] == session_id)
    assert head["attempts"] >= 1 and "Connect" in (head["lastError"] or ""), head
    assert all(d["attempts"] == 0 for d in pending[1:]), "a later event went before its turn"
    hook.start()  # it comes back: the backlog arrives, in order
    check_life(hook, world, session_id)
    delivered = deliveries(world, hook.webhook_id, "DELIVERED")
    assert [d["type"] for d in delivered if d["sessionId"] == session_id] == LIFE


def test_webhook_mistakes_are_said_clearly(world: worlds.World, tmp_path: pathlib.Path) -> None:
    short = tmp_path / "short"
    short.write_text("tiny")
    cases = [
        (["--url", "ftp://example.invalid/", "--events", "*"], "--url"),
        (["--url", "http://127.0.0.1:9/", "--events", "session.redy"], "session.redy"),
        (["--url", "http://127.0.0.1:9/", "--events", "*", "--secret-file", str(short)], "16"),
    ]
    for extra, named in cases:
        out = run(world, "webhooks", "add", "--studio", world.studio.studio_id, *extra)
        assert out.returncode != 0 and named in out.stderr and "Traceback" not in out.stderr
    out = run(world, "webhooks", "add", "--studio", "nope", "--url", "http://x/", "--events", "*")
    assert out.returncode == 1 and "--studio" in out.stderr, out.stderr
    out = run(world, "webhooks", "delete", "wh-nothing")
    assert out.returncode == 1 and "wh-nothing" in out.stderr
    made = support.cli(
        world.server.data_dir,
        *("webhooks", "add", "--studio", world.foreign.studio_id, "--url", "http://127.0.0.1:9/"),
        *("--events", "backup.*"),
    )
    assert len(made["secret"]) >= 16  # made here: shown once
    listed = listing(world, "list", "--studio", world.foreign.studio_id)
    assert [w["webhookId"] for w in listed] == [made["webhookId"]]
    assert "secret" not in listed[0]
    support.cli(world.server.data_dir, "webhooks", "delete", made["webhookId"])
    assert listing(world, "list", "--studio", world.foreign.studio_id) == []


def deliveries(world: worlds.World, webhook_id: str, state: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = listing(world, "deliveries", webhook_id, "--state", state)
    return found


def listing(world: worlds.World, *args: str) -> Any:
    """``opennimble webhooks ARGS``, its JSON output."""
    out = run(world, "webhooks", *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def run(world: worlds.World, *args: str) -> subprocess.CompletedProcess[str]:
    data_dir = world.server.data_dir.resolve()
    return subprocess.run(
        [sys.executable, "-m", "opennimble", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, **databases.env_for(data_dir)},
    )
