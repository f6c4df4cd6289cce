"""/metrics (Prometheus text format, read with prometheus_client's parser) moves as requests
and sessions do."""

from __future__ import annotations

import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.acceptance import test_stream as stream
from tests.support import expect, vnc
from tests.support.server import FAST
from tests.support.world import World


def scrape(world: World) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    answer = requests.get(f"{world.server.endpoint}/metrics", timeout=30)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_by_operation_status_and_persona(world: World) -> None:
    sid = world.studio.studio_id
    before = scrape(world)
    world.artist.client().list_streaming_sessions(studioId=sid)
    world.operator.client().get_studio(studioId=sid)
    expect.error(
        lambda: world.outsider.client().list_streaming_sessions(studioId=sid),
        "AccessDeniedException",
    )
    after = scrape(world)
    for operation, status, persona in (
        ("ListStreamingSessions", "200", "user"),
        ("GetStudio", "200", "operator"),
        ("ListStreamingSessions", "403", "user"),
    ):
        labels = {"operation": operation, "status": status, "persona": persona}
        name = "opennimble_requests_total"
        assert value(after, name, **labels) == value(before, name, **labels) + 1, labels
    histogram = "opennimble_request_duration_seconds_count"
    labels = {"operation": "ListStreamingSessions", "persona": "user"}
    assert value(after, histogram, **labels) == value(before, histogram, **labels) + 2
    assert value(after, "opennimble_database_up") == 1


def test_sessions_desktops_and_provisioning(world: World) -> None:
    sid = world.studio.studio_id
    artist = world.artist.client()
    before = scrape(world)
    session_id = artist.create_streaming_session(
        studioId=sid, launchProfileId=world.studio.launch_profile_id
    )["session"]["sessionId"]
    artist.get_waiter("streaming_session_ready").wait(
        studioId=sid, sessionId=session_id, WaiterConfig=FAST
    )
    ready = scrape(world)
    sessions = "opennimble_sessions"
    assert value(ready, sessions, studio=sid, state="READY") == (
        value(before, sessions, studio=sid, state="READY") + 1
    )
    desktops = sum(v for (name, _), v in ready.items() if name == "opennimble_desktops")
    assert desktops >= 1
    created = "opennimble_provisioning_duration_seconds_count"
    assert value(ready, created, action="create") == value(before, created, action="create") + 1
    assert value(ready, "opennimble_reconciler_queue_depth") >= 0

    artist.delete_streaming_session(studioId=sid, sessionId=session_id)
    artist.get_waiter("streaming_session_deleted").wait(
        studioId=sid, sessionId=session_id, WaiterConfig=FAST
    )
    gone = scrape(world)
    assert value(gone, sessions, studio=sid, state="READY") == value(
        before, sessions, studio=sid, state="READY"
    )
    assert value(gone, created, action="delete") == value(before, created, action="delete") + 1


@pytest.mark.xvnc
def test_stream_connections_are_counted_and_logged(world: World) -> None:
    client = world.artist.client()
    ids = stream.ready_session(client, world.studio.studio_id, world.studio.launch_profile_id)
    url = stream.stream_url(client, ids)
    stream_id = url.split("/streams/")[1].split("/")[0].split("?")[0]
    socket, cookie = stream.admitted(url)
    with stream.connect(socket, cookie) as ws:
        vnc.RfbClient(ws).handshake()
        assert value(scrape(world), "opennimble_stream_connections") == 1
    deadline = time.monotonic() + 10
    while value(scrape(world), "opennimble_stream_connections") != 0:
        assert time.monotonic() < deadline, "the closed connection is still counted"
        time.sleep(0.1)
    with stream.connect(socket, None) as ws:
        assert stream.close_of(ws)[0] == 4001
    client.delete_streaming_session(**ids)
    log = world.server.log()
    for event in ("stream page opened", "stream connection admitted", "stream connection refused"):
        assert any(event in line and f"stream_id={stream_id}" in line for line in log.splitlines())
