"""The command line: users and keys, as other tools call them."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from tests.support import databases
from tests.support.server import cli


def test_users_and_keys(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    operator = cli(data, "users", "create", "boss", "--operator", "--init")
    assert set(operator) >= {"userId", "name", "operator", "identityStoreId"}
    assert operator["operator"] is True and operator["name"] == "boss"
    artist = cli(data, "users", "create", "artist")
    assert artist["operator"] is False
    assert artist["identityStoreId"] == operator["identityStoreId"]
    key = cli(data, "keys", "create", str(artist["userId"]))
    assert key["userId"] == artist["userId"]
    assert key["accessKeyId"].startswith("AKIA") and len(key["secretAccessKey"]) == 40
    # secrets are encrypted at rest
    stored = databases.stored_text(data)
    assert key["accessKeyId"].encode() in stored
    assert key["secretAccessKey"].encode() not in stored


def test_clear_errors(tmp_path: pathlib.Path) -> None:
    data = str(tmp_path / "data")
    base = [sys.executable, "-m", "opennimble"]
    env = {**os.environ, **databases.env_for(pathlib.Path(data))}
    subprocess.run(
        [*base, "users", "create", "dup", "--init", "--data-dir", data],
        check=True,
        capture_output=True,
        env=env,
    )
    again = subprocess.run(
        [*base, "users", "create", "dup", "--data-dir", data],
        capture_output=True,
        text=True,
        env=env,
    )
    assert again.returncode != 0 and "exists already" in again.stderr
    nobody = subprocess.run(
        [*base, "keys", "create", "no-such-user", "--data-dir", data],
        capture_output=True,
        text=True,
        env=env,
    )
    assert nobody.returncode != 0 and "no user" in nobody.stderr


def test_a_database_password_on_the_command_line_is_refused(tmp_path: pathlib.Path) -> None:
    """Every user of the machine (every artist's desktop) can read command lines in /proc: a
    password there would give them the database."""
    url = "postgresql://opennimble:s3cret@127.0.0.1:5432/opennimble"
    for command in (["serve"], ["worker"], ["users", "create", "someone"]):
        refused = subprocess.run(
            [sys.executable, "-m", "opennimble", *command, "--database-url", url],
            capture_output=True,
            text=True,
            env={**os.environ, "OPENNIMBLE_DATA_DIR": str(tmp_path / "data")},
        )
        assert refused.returncode == 2, command
        assert "--database-url must not carry a password" in refused.stderr
        assert "OPENNIMBLE_DATABASE_URL" in refused.stderr


def test_portal_passwords(tmp_path: pathlib.Path) -> None:
    data = str(tmp_path / "data")
    env = {**os.environ, **databases.env_for(pathlib.Path(data))}

    def run(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "opennimble", *args, "--data-dir", data]
        return subprocess.run(command, input=stdin, capture_output=True, text=True, env=env)

    short = run("users", "create", "bob", "--password-stdin", "--init", stdin="short\n")
    assert short.returncode != 0 and "password: must be at least 8 characters" in short.stderr
    # the refused password created no user either
    created = run("users", "create", "bob", "--password-stdin", stdin="a long password\n")
    assert created.returncode == 0, created.stderr
    changed = run("users", "passwd", "bob", stdin="another long one\n")
    assert changed.returncode == 0 and '"passwordSet": true' in changed.stdout
    nobody = run("users", "passwd", "nobody", stdin="another long one\n")
    assert nobody.returncode != 0 and "no user named 'nobody'" in nobody.stderr
    stored = databases.stored_text(pathlib.Path(data))
    assert b"a long password" not in stored and b"$argon2id$" in stored
