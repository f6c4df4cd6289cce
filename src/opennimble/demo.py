"""The demo installation that ``make run`` sets up on first start.

Everything goes through the API's own operations (validation, permissions and all), invoked
in-process as the operator: no back door.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
from typing import Any

import click

from opennimble import clock, config
from opennimble.api import app as api_app
from opennimble.domain import identity, passwords
from opennimble.protocol import model
from opennimble.reconciler import housekeeping
from opennimble.store import users

DEMO_FILE = "demo-credentials.json"


def bootstrap(settings: config.Settings, app: api_app.App) -> None:
    path = settings.data_dir / DEMO_FILE
    with app.db.write() as conn:
        if users.count_users(conn) > 0:
            if path.exists():
                _repoint(path, settings)
            return
        now = clock.system_now()
        people = {}
        for name, operator in (("operator", True), ("artist", False)):
            user = identity.create_user(conn, name, operator, now)
            key = identity.create_access_key(conn, app.auth.cipher, str(user["userId"]), now)
            password = secrets.token_urlsafe(12)  # for the studio portal
            passwords.set_password(conn, name, password)
            people[name] = {**user, **key, "portalPassword": password}
    ids = _studio(app, settings, people)
    _complete(app)
    document = {
        "endpointUrl": settings.endpoint_url,
        "region": settings.region,
        "users": people,
        **ids,
    }
    _write(path, document)
    click.echo(_snippet(settings, people["artist"], ids) + f"\n(all credentials: {path})\n")


def _complete(app: api_app.App) -> None:
    """Take the demo's studio, component, image and launch profile to READY now, as the
    reconciler's first pass would: the credentials are written, and the server answers, only
    once the artist can launch a session with them."""
    for _ in range(4):  # a launch profile is ready once what it uses is: one kind a pass
        with app.db.write() as conn:
            if not housekeeping.advance_resources(conn, clock.system_now()):
                return


def _repoint(path: pathlib.Path, settings: config.Settings) -> None:
    """A later start (perhaps on another port): the credentials file and the snippet name the
    endpoint this server really serves."""
    document = json.loads(path.read_text(encoding="utf-8"))
    if document.get("endpointUrl") != settings.endpoint_url:
        document["endpointUrl"] = settings.endpoint_url
        _write(path, document)
    artist = document.get("users", {}).get("artist")
    if artist and "studioId" in document:
        click.echo(_snippet(settings, artist, document), err=True)
    click.echo(f"demo credentials: {path}", err=True)


def _write(path: pathlib.Path, document: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(document, fh, indent=2)


def _studio(app: api_app.App, settings: config.Settings, people: dict[str, Any]) -> dict[str, str]:
    op = identity.Caller(people["operator"]["userId"], "operator", True)

    def call(operation: str, **params: Any) -> dict[str, Any]:
        return app.dispatcher.invoke(model.operations()[operation], op, params)

    role = f"arn:aws:iam::{settings.account_id}:role/opennimble-demo"
    studio = call(
        "CreateStudio",
        studioName="demo",
        displayName="Demo studio",
        adminRoleArn=role,
        userRoleArn=role,
    )["studio"]
    sid = studio["studioId"]
    component = call("CreateStudioComponent", studioId=sid, name="workstation", type="CUSTOM")[
        "studioComponent"
    ]
    image = call(
        "CreateStreamingImage",
        studioId=sid,
        name="Default desktop",
        ec2ImageId="ami-0opennimbledefault",
    )["streamingImage"]
    profile = call(
        "CreateLaunchProfile",
        studioId=sid,
        name="Artist workstation",
        ec2SubnetIds=[],
        launchProfileProtocolVersions=["2021-03-31"],
        studioComponentIds=[component["studioComponentId"]],
        streamConfiguration={
            "clipboardMode": "ENABLED",
            "ec2InstanceTypes": ["g4dn.xlarge"],
            "streamingImageIds": [image["streamingImageId"]],
        },
    )["launchProfile"]
    call(
        "PutLaunchProfileMembers",
        studioId=sid,
        launchProfileId=profile["launchProfileId"],
        identityStoreId=people["artist"]["identityStoreId"],
        members=[{"principalId": people["artist"]["userId"], "persona": "USER"}],
    )
    return {
        "studioId": sid,
        "launchProfileId": profile["launchProfileId"],
        "streamingImageId": image["streamingImageId"],
    }


def _snippet(settings: config.Settings, artist: dict[str, Any], ids: dict[str, Any]) -> str:
    return f"""
opennimble demo installation created. In a browser: the studio portal at
{settings.resolved_public_url}/portal/ (user artist, password {artist["portalPassword"]}).
As the artist, paste into Python:

import boto3
nimble = boto3.client("nimble", endpoint_url="{settings.endpoint_url}",
                      region_name="{settings.region}",
                      aws_access_key_id="{artist["accessKeyId"]}",
                      aws_secret_access_key="{artist["secretAccessKey"]}")
session = nimble.create_streaming_session(studioId="{ids["studioId"]}",
                                          launchProfileId="{ids["launchProfileId"]}")["session"]
nimble.get_waiter("streaming_session_ready").wait(
    studioId="{ids["studioId"]}", sessionId=session["sessionId"],
    WaiterConfig={{"Delay": 1}})
stream = nimble.create_streaming_session_stream(
    studioId="{ids["studioId"]}", sessionId=session["sessionId"])["stream"]
print(stream["url"])"""
