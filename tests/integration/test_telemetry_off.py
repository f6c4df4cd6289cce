"""`metrics = false` and `audit = false`: a server that counts and records nothing, and says so
where the metrics would be."""

from __future__ import annotations

import pathlib

import requests

from tests.support.server import Server, cli_lines, running
from tests.support.world import ROLE as ROLE_ARN


def test_metrics_and_audit_can_be_turned_off(tmp_path: pathlib.Path) -> None:
    env = {"OPENNIMBLE_METRICS": "false", "OPENNIMBLE_AUDIT": "false"}
    with running(Server(tmp_path / "data", env=env)) as srv:
        operator = srv.user("operator", operator=True)
        studio = operator.client().create_studio(
            studioName="quiet", displayName="quiet", adminRoleArn=ROLE_ARN, userRoleArn=ROLE_ARN
        )["studio"]
        assert studio["studioName"] == "quiet"
        off = requests.get(srv.endpoint + "/metrics", timeout=10)
        assert off.status_code == 404
        assert "metrics = false" in off.json()["message"]
        assert requests.get(srv.endpoint + "/readyz", timeout=10).status_code == 200
    assert cli_lines(srv.data_dir, "audit", env=env) == []
