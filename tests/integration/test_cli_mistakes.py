"""Common mistakes with the command line end in a message that names what is wrong and how to
fix it, and a non-zero exit status: never a traceback, never a new installation by accident."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

import boto3
import pytest

from tests.support import databases
from tests.support.server import REGION, announced, reachable


def opennimble(
    *args: str, cwd: pathlib.Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opennimble", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_an_unknown_log_level(tmp_path: pathlib.Path) -> None:
    result = opennimble(
        "serve", "--data-dir", str(tmp_path / "d"), env={"OPENNIMBLE_LOG_LEVEL": "verbose"}
    )
    refused(result, "`log_level`", "OPENNIMBLE_LOG_LEVEL", "'verbose'", "debug, info, warning")


def test_the_readme_eula_example_with_a_missing_file(tmp_path: pathlib.Path) -> None:
    settings = tmp_path / "opennimble.toml"
    missing = tmp_path / "eulas" / "maya.txt"
    settings.write_text(
        f'[eulas.maya2024]\nname = "Autodesk Maya 2024"\nfile = "{missing}"\n'
        'images = ["ami-0a1b2c3d"]\n'
    )
    result = opennimble("serve", "--config", str(settings), "--data-dir", str(tmp_path / "d"))
    refused(result, "`eulas.maya2024`", str(missing), "No such file or directory")


def test_a_settings_file_that_is_missing_or_not_toml(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "nope.toml"
    refused(opennimble("db", "upgrade", "--config", str(missing)), str(missing))
    broken = tmp_path / "broken.toml"
    broken.write_text("port = \n")
    refused(opennimble("db", "upgrade", "--config", str(broken)), "is not valid TOML")


def test_a_data_dir_that_cannot_be_created(tmp_path: pathlib.Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    data = blocker / "data"
    result = opennimble("users", "create", "alice", "--init", "--data-dir", str(data))
    refused(result, f"cannot create the data directory {data}", "--data-dir")
    served = opennimble("serve", "--port", "0", "--data-dir", str(data))
    refused(served, f"cannot create the data directory {data}")


def test_a_data_dir_that_is_a_file(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    data.write_text("")
    env = {"OPENNIMBLE_DATA_DIR": str(data)}
    refused(opennimble("users", "create", "alice", "--init", env=env), "is a file", str(data))
    refused(opennimble("serve", "--port", "0", env=env), "is a file", str(data))


def test_a_command_elsewhere_does_not_create_an_installation(tmp_path: pathlib.Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = databases.env_for(elsewhere / "opennimble-data")
    created = opennimble("users", "create", "alice", cwd=elsewhere, env=env)
    refused(created, "no opennimble installation", "--data-dir", "--init")
    refused(opennimble("keys", "create", "alice", cwd=elsewhere, env=env), "--init")
    assert list(elsewhere.iterdir()) == []
    # asked to, it creates one; then the other commands find it
    user = opennimble("users", "create", "alice", "--init", cwd=elsewhere, env=env)
    assert user.returncode == 0, user.stderr
    user_id = json.loads(user.stdout)["userId"]
    key = opennimble("keys", "create", user_id, cwd=elsewhere, env=env)
    assert key.returncode == 0 and json.loads(key.stdout)["userId"] == user_id


def test_serve_on_a_taken_port(tmp_path: pathlib.Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = opennimble("serve", "--demo", "--port", port, "--data-dir", str(tmp_path / "d"))
    refused(result, f"port {port}", "another program listens there", "--port")
    assert "boto3" not in result.stdout  # no snippet for an endpoint it does not serve


@pytest.mark.timeout(120)
def test_the_demo_names_the_endpoint_it_serves(tmp_path: pathlib.Path) -> None:
    """Rerun on another port, the demo's credentials and snippet follow the server."""
    data = reachable(tmp_path / "data")
    for _ in range(2):
        server = start_demo(data)
        try:
            endpoint, output = announced(server)
            credentials = json.loads((data / "demo-credentials.json").read_text())
            assert credentials["endpointUrl"] == endpoint
            assert f'endpoint_url="{endpoint}"' in output
            artist = credentials["users"]["artist"]
            nimble = boto3.client(
                "nimble",
                endpoint_url=credentials["endpointUrl"],
                region_name=REGION,
                aws_access_key_id=artist["accessKeyId"],
                aws_secret_access_key=artist["secretAccessKey"],
            )
            sessions = nimble.list_streaming_sessions(studioId=credentials["studioId"])
            assert sessions["sessions"] == []
        finally:
            server.send_signal(signal.SIGTERM)
            server.communicate(timeout=20)


def start_demo(data: pathlib.Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "opennimble", "serve", "--demo", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **databases.env_for(data), "OPENNIMBLE_DATA_DIR": str(data)},
    )


def test_the_server_refuses_to_start_with_a_bad_oidc_setting(tmp_path: pathlib.Path) -> None:
    data = str(tmp_path / "d")
    no_client = json.dumps({"issuer": "https://sso.example.com/realms/studio"})
    refused(
        opennimble("serve", "--port", "0", "--data-dir", data, env={"OPENNIMBLE_OIDC": no_client}),
        "invalid settings",
        "`oidc.client_id` (from OPENNIMBLE_OIDC): missing",
        "/portal/signin/oidc/callback",
    )
    settings = tmp_path / "opennimble.toml"
    settings.write_text(
        '[oidc]\nissuer = "sso.example.com"\nclient_id = "c"\nclient_secret = "s"\n'
    )
    refused(
        opennimble("serve", "--port", "0", "--config", str(settings), "--data-dir", data),
        f"`oidc.issuer` (in {settings})",
        "'sso.example.com' is not an issuer URL",
        "https://keycloak.example.com/realms/studio",
    )
    assert not (tmp_path / "d" / "opennimble.db").exists()
