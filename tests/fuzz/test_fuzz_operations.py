"""A property-based fuzzer over every operation of the model, against a real server.

For each operation hypothesis draws inputs from the operation's input shape (see
strategies.py) and a caller (the operator or an artist), and sends them either through boto3
with parameter validation off or as a raw request signed by botocore's signer (which can carry
what botocore would not serialize: a number where a string goes, and so on). Every answer must
be a success or a 4xx error AWS SDKs parse (a modelled error shape or an authentication
error): never a 5xx, never a dropped connection.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import botocore.exceptions
import botocore.parsers
import orjson
import pytest
import requests
from botocore import xform_name
from hypothesis import given
from hypothesis import strategies as st

from opennimble.protocol import model
from tests.fuzz import strategies
from tests.fuzz.conftest import CALLS
from tests.support import raw
from tests.support.server import User
from tests.support.world import World

OPERATIONS = sorted(model.operations())
CONNECTION_FAILURES = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ReadTimeoutError,
)


def real_ids(world: World, op: model.Operation) -> dict[str, list[str]]:
    """The installation's ids by member name; a Delete operation gets none (the fuzzer would
    otherwise delete the studio every later operation needs)."""
    if op.name.startswith("Delete"):
        return {}
    studio = world.studio
    return {
        "studioId": [studio.studio_id, world.foreign.studio_id],
        "launchProfileId": [studio.launch_profile_id],
        "streamingImageId": [studio.image_id, studio.other_image_id],
        "studioComponentId": [studio.component_id],
        "principalId": [world.artist.user_id],
        "ownedBy": [world.artist.user_id],
        "identityStoreId": [world.artist.identity_store_id],
    }


@pytest.mark.parametrize("name", OPERATIONS)
def test_fuzzed_input_is_answered_without_a_server_error(world: World, name: str) -> None:
    op = model.operations()[name]
    CALLS["operations"] += 1

    @given(
        params=strategies.structure(op.input, real_ids(world, op)),
        caller=st.sampled_from([world.operator, world.artist]),
        via=st.sampled_from(["boto3", "raw"]),
    )
    def one_call(params: dict[str, Any], caller: User, via: str) -> None:
        if via == "boto3":
            through_boto3(caller, op, params)
        else:
            through_raw(caller, op, params)

    one_call()
    assert requests.get(f"{world.server.endpoint}/healthz", timeout=5).ok


def through_boto3(caller: User, op: model.Operation, params: dict[str, Any]) -> None:
    method = getattr(client_of(caller), xform_name(op.name))
    try:
        method(**params)
    except botocore.exceptions.ClientError as error:
        response = error.response
        status = response["ResponseMetadata"]["HTTPStatusCode"]
        code = response["Error"]["Code"]
        sent("boto3", status, code)
        assert status < 500, (op.name, params, response)
        assert code in raw.KNOWN_ERRORS, (op.name, params, response)
        # botocore signed it: the server must compute the same signature
        assert code != "InvalidSignatureException", (op.name, params, response)
        return
    except (*CONNECTION_FAILURES, botocore.parsers.ResponseParserError):
        raise  # the server went away, or answered what botocore cannot read
    except Exception:
        CALLS["unsendable"] += 1  # botocore could not serialize it: nothing reached the server
        return
    sent("boto3", 200, "ok")


def through_raw(caller: User, op: model.Operation, params: dict[str, Any]) -> None:
    try:
        target, headers, body = request_of(op, params)
        answer = raw.call(caller, op.method, target, body, headers)
    except (ValueError, TypeError, UnicodeEncodeError, orjson.JSONEncodeError):
        CALLS["unsendable"] += 1  # http.client or JSON refused it before sending
        return
    sent("raw", answer.status, answer.error_type or "ok")
    # botocore signed it: the server must compute the same signature
    assert answer.error_type != "InvalidSignatureException", (op.name, params, answer)
    assert answer.status < 500, (op.name, params, answer)
    if answer.status >= 400:
        answer.assert_refused()


def sent(via: str, status: int, code: str) -> None:
    CALLS["sent"] += 1
    CALLS[f"via {via}"] += 1
    CALLS[f"answer {status // 100}xx" if status < 400 else f"answer {code}"] += 1


CLIENTS: dict[str, Any] = {}


def client_of(user: User) -> Any:
    if user.access_key_id not in CLIENTS:
        CLIENTS[user.access_key_id] = user.client(validate=False)
    return CLIENTS[user.access_key_id]


def header_value(text: str) -> str:
    """``text`` as HTTP can carry it: line breaks as spaces."""
    return text.translate(NO_BREAKS)


NO_BREAKS = str.maketrans("\r\n", "  ")


def request_of(op: model.Operation, params: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    """The path (with query), headers and JSON body of ``params``, placed by member location
    as rest-json does, with no check of their types."""
    path_values: dict[str, str] = {}
    query: list[tuple[str, str]] = []
    headers: dict[str, str] = {}
    document: dict[str, Any] = {}
    for name, item in params.items():
        member = op.input.members[name]
        if member.location == "uri":
            path_values[member.location_name] = str(item)
        elif member.location == "querystring":
            items = item if isinstance(item, list) else [item]
            query += [(member.location_name, str(v)) for v in items]
        elif member.location == "header":
            headers[member.location_name] = header_value(str(item))
        else:
            document[member.location_name] = item
    path = re.sub(
        r"\{(\w+)(\+?)\}",
        lambda m: urllib.parse.quote(path_values.get(m[1], ""), safe="/" if m[2] else ""),
        op.request_uri.split("?")[0],
    )
    if query:
        path += "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    body = orjson.dumps(document) if op.method in ("POST", "PUT", "PATCH") else b""
    return path, headers, body
