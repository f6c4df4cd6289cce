"""`log_format = "json"`: one JSON line per event, with what an operator needs to follow a
request (request id, operation, caller, access key, client address, status, duration), stream
page opens and refusals, and the shutdown on SIGTERM."""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import boto3
import botocore.config
import pytest
import requests
from botocore.exceptions import ClientError

from tests.support.server import REGION, Server, User


def events(server: Server) -> list[dict[str, Any]]:
    lines = [line for line in server.log().splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


def wait_for(server: Server, event: str, **match: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for found in events(server):
            if found.get("event") == event and all(found.get(k) == v for k, v in match.items()):
                return found
        time.sleep(0.1)
    raise AssertionError(f"no {event} {match} in the log:\n{server.log()[-3000:]}")


def test_json_lines(tmp_path: pathlib.Path) -> None:
    server = Server(tmp_path / "data", env={"OPENNIMBLE_LOG_FORMAT": "json"})
    server.start()
    try:
        operator = server.user("boss", operator=True)
        answer = operator.client().list_studios()
        request_id = answer["ResponseMetadata"]["RequestId"]
        accepted = wait_for(server, "request", request_id=request_id)
        assert accepted["operation"] == "ListStudios" and accepted["status"] == 200
        assert accepted["caller"] == operator.user_id
        assert accepted["access_key_id"] == operator.access_key_id
        assert accepted["client"].startswith("127.0.0.1:")
        assert accepted["duration_ms"] >= 0 and accepted["level"] == "info"

        stranger = User("x", "x", "x", "AKIANOSUCHKEY0000000", "secret" * 6, server)
        with pytest.raises(ClientError) as refused:
            stranger.client().list_studios()
        refused_id = refused.value.response["ResponseMetadata"]["RequestId"]
        logged = wait_for(server, "request", request_id=refused_id)
        assert logged["status"] == 403 and logged["caller"] is None
        assert logged["access_key_id"] == "AKIANOSUCHKEY0000000"

        page = requests.get(f"{server.endpoint}/streams/no-such-stream/?token=x", timeout=10)
        assert page.status_code >= 400
        wait_for(server, "stream_page_refused", stream_id="no-such-stream")
    finally:
        server.stop()
    wait_for(server, "shutdown")
    wait_for(server, "stopped")


def test_text_lines_name_the_key_and_client(tmp_path: pathlib.Path) -> None:
    server = Server(tmp_path / "data")
    server.start()
    try:
        client = boto3.client(
            "nimble",
            endpoint_url=server.endpoint,
            region_name=REGION,
            aws_access_key_id="AKIANOSUCHKEY0000000",
            aws_secret_access_key="secret" * 6,
            config=botocore.config.Config(retries={"max_attempts": 1}),
        )
        with pytest.raises(ClientError):
            client.list_studios()
    finally:
        server.stop()
    line = next(line for line in server.log().splitlines() if "ListStudios 403" in line)
    assert "access_key_id=AKIANOSUCHKEY0000000" in line and "client=127.0.0.1:" in line
