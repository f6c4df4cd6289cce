"""Whose word on the client's address the server takes: by default nobody's X-Forwarded-For
(anyone reaching the port could name any address in the logs and the audit trail); with
`forwarded_allow_ips`, the named proxies'."""

from __future__ import annotations

import pathlib
import time

import pytest
import requests

from tests.support.server import Server, cli_lines, running

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
        deadline, entries = time.monotonic() + 10, []
        while not entries and time.monotonic() < deadline:
            entries = cli_lines(srv.data_dir, "audit", env=env)
            time.sleep(0.2)
    assert [(e["operation"], e["outcome"], e["client"]) for e in entries] == [
        ("CreateStudio", "refused", recorded)
    ]
