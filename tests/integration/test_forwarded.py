"""Whose word on the client's address the server takes: by default nobody's X-Forwarded-For
(anyone reaching the port could name any address in the logs and the audit trail); with
`forwarded_allow_ips`, the named proxies'."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest
import requests

from tests.support import databases
from tests.support.server import Server, running

CLAIMED = "203.0.113.9"


@pytest.mark.parametrize(("trusted", "recorded"), [("", "127.0.0.1"), ("127.0.0.1", CLAIMED)])
def test_x_forwarded_for_is_believed_only_from_trusted_proxies(
    tmp_path: pathlib.Path, trusted: str, recorded: str
) -> None:
    env = {"OPENNIMBLE_FORWARDED_ALLOW_IPS": trusted} if trusted else {}
    with running(Server(tmp_path / "data", env=env)) as srv:
        srv.user("operator", operator=True)
        answer = requests.post(
            srv.endpoint + "/2020-08-01/studios",
            json={"studioName": "x", "displayName": "x", "adminRoleArn": "a", "userRoleArn": "u"},
            headers={"X-Forwarded-For": CLAIMED},
            timeout=10,
        )
        assert answer.status_code == 403  # not signed
        data_dir = srv.data_dir.resolve()
        deadline, entries = time.monotonic() + 10, []
        while not entries and time.monotonic() < deadline:
            out = subprocess.run(
                [sys.executable, "-m", "opennimble", "audit", "--data-dir", str(data_dir)],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, **databases.env_for(data_dir), **env},
            ).stdout
            entries = [json.loads(line) for line in out.splitlines()]
            time.sleep(0.2)
    assert [(e["operation"], e["outcome"], e["client"]) for e in entries] == [
        ("CreateStudio", "refused", recorded)
    ]
