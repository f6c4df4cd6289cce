"""Nothing blocks the server's event loop: under concurrent reads and writes through the API,
and the CLI writing to the database meanwhile, no callback holds the loop over 50 ms
(asyncio's debug mode reports each one that does, see tests/support/slow_callbacks.py)."""

from __future__ import annotations

import pathlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import world as worlds
from tests.support.server import User, cli
from tests.support.slow_callbacks import ARMED, SlowCallbackServer

SECONDS = 6.0
CLIENTS = 2  # boto3 clients in this process (each costs the machine about as much as the server)
CLI_PAUSE = 0.3  # seconds between the CLI's writes (each CLI run is a Python process starting)


@pytest.fixture
def srv(tmp_path: pathlib.Path) -> Iterator[SlowCallbackServer]:
    server = SlowCallbackServer(tmp_path / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_no_callback_holds_the_loop_under_load(srv: SlowCallbackServer) -> None:
    assert ARMED in srv.log()
    started = len(srv.slow_callbacks())  # the start-up (migrations, checks) comes before serving
    operator, admin, artist = (
        srv.user("operator", operator=True),
        srv.user("admin"),
        srv.user("artist"),
    )
    studio = worlds.create_studio(operator, admin, [artist])
    sid = studio.studio_id
    arn = admin.client().get_studio(studioId=sid)["studio"]["arn"]
    done: list[int] = []
    failures: list[BaseException] = []
    stop = time.monotonic() + SECONDS

    def load(user: User, index: int) -> None:
        client, calls = user.client(), 0
        try:
            while time.monotonic() < stop:
                client.get_studio(studioId=sid)
                client.list_streaming_sessions(studioId=sid)
                client.get_launch_profile(studioId=sid, launchProfileId=studio.launch_profile_id)
                if user is admin:  # a write transaction
                    client.tag_resource(resourceArn=arn, tags={f"k{index}": str(calls)})
                calls += 1
        except BaseException as exc:  # reported by the test's thread
            failures.append(exc)
        done.append(calls)

    def cli_writes() -> None:
        # another process takes the database's write lock again and again meanwhile
        while time.monotonic() < stop:
            cli(srv.data_dir, "users", "disable", "operator", env=srv.env)
            cli(srv.data_dir, "users", "enable", "operator", env=srv.env)
            time.sleep(CLI_PAUSE)

    users: list[Any] = [admin, artist] * (CLIENTS // 2)
    threads = [threading.Thread(target=load, args=(u, i)) for i, u in enumerate(users)]
    threads.append(threading.Thread(target=cli_writes))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    assert sum(done) > 0
    assert srv.slow_callbacks()[started:] == []
