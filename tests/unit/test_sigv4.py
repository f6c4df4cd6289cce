"""Unit tests of the SigV4 verifier against requests signed by real botocore."""

import dataclasses
import datetime
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from urllib.parse import urlsplit

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode_sequence

from opennimble.protocol import parse
from opennimble.protocol.sigv4 import SignatureError, SignedRequest, Verifier

REGION = "us-west-2"
SERVICE = "nimble"
ACCESS_KEY = "AKIAOPENNIMBLETEST01"
SECRET_KEY = "s3cr3t/K7MDENG+bPxRfiCYOPENNIMBLEKEY"
OTHER_KEY = "AKIAOPENNIMBLETEST02"
OTHER_SECRET = "an0ther/K7MDENG+bPxRfiCYOPENNIMBLEKEY"
ENDPOINT = "http://localhost:8080"
STUDIO_PATH = "/2020-08-01/studios/us-west-2%3Astid-abc"
SECRETS = {ACCESS_KEY: SECRET_KEY, OTHER_KEY: OTHER_SECRET}


def _from_prepared(prepared: AWSPreparedRequest) -> SignedRequest:
    """Turn what botocore would send into what the server receives.

    The Host header is added the way the HTTP client adds it; header values arrive as bytes
    and are decoded as Latin-1, as an ASGI server does.
    """
    url = urlsplit(prepared.url)
    headers = [("Host", url.netloc)]
    for name, value in prepared.headers.items():
        headers.append((name, value.decode("latin-1") if isinstance(value, bytes) else value))
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode()
    return SignedRequest(prepared.method, url.path, url.query, headers, body)


def sign(
    method: str = "GET",
    path: str = STUDIO_PATH,
    *,
    query: Mapping[str, str] | None = None,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    access_key: str = ACCESS_KEY,
    secret: str = SECRET_KEY,
    region: str = REGION,
    service: str = SERVICE,
) -> SignedRequest:
    """Sign a request with botocore's SigV4Auth and return it as the server would see it."""
    url = ENDPOINT + path
    if query:
        url += "?" + percent_encode_sequence(query)  # as botocore's serializer builds it
    aws_request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    SigV4Auth(Credentials(access_key, secret), service, region).add_auth(aws_request)
    return _from_prepared(aws_request.prepare())


def header(request: SignedRequest, name: str) -> str:
    """Return the one value of a header of ``request``."""
    [value] = [v for n, v in request.headers if n.lower() == name.lower()]
    return value


def with_header(request: SignedRequest, name: str, value: str | None) -> SignedRequest:
    """Return ``request`` with header ``name`` replaced, or removed if ``value`` is None."""
    headers = [(n, v) for n, v in request.headers if n.lower() != name.lower()]
    if value is not None:
        headers.append((name, value))
    return dataclasses.replace(request, headers=headers)


def signing_time(request: SignedRequest) -> datetime.datetime:
    """Return the X-Amz-Date of ``request`` as an aware datetime."""
    parsed = datetime.datetime.strptime(header(request, "X-Amz-Date"), "%Y%m%dT%H%M%SZ")
    return parsed.replace(tzinfo=datetime.UTC)


def verifier_at(
    when: datetime.datetime, *, region: str = REGION, service: str = SERVICE
) -> Verifier:
    """A verifier for nimble in us-west-2 whose clock stands at ``when``."""
    return Verifier(
        region=region, service=service, lookup=SECRETS.get, now=lambda: when.timestamp()
    )


def verify(request: SignedRequest, *, skew: datetime.timedelta = datetime.timedelta()) -> str:
    """Verify ``request`` with the server clock ``skew`` after its signing time."""
    return verifier_at(signing_time(request) + skew).verify(request)


def refusal(request: SignedRequest, **kwargs: datetime.timedelta) -> SignatureError:
    """Return the SignatureError that verifying ``request`` raises."""
    with pytest.raises(SignatureError) as raised:
        verify(request, **kwargs)
    return raised.value


# --- accepted requests ---------------------------------------------------------------------


def test_accepts_get_with_percent_encoded_path() -> None:
    request = sign("GET", STUDIO_PATH)
    assert request.raw_path == STUDIO_PATH
    assert verify(request) == ACCESS_KEY


def test_accepts_query_with_several_parameters() -> None:
    query = {"maxResults": "10", "createdBy": "user 1, user 2", "sessionIds": "a,b,c", "x": ""}
    request = sign("GET", STUDIO_PATH + "/streaming-sessions", query=query)
    assert "%20" in request.query_string and "%2C" in request.query_string
    assert verify(request) == ACCESS_KEY


def test_accepts_json_body() -> None:
    body = json.dumps({"launchProfileId": "lp-1", "tags": {"a b": "c,d"}}).encode()
    request = sign(
        "POST",
        STUDIO_PATH + "/streaming-sessions",
        body=body,
        headers={"Content-Type": "application/json", "X-Amz-Client-Token": "token-1"},
    )
    assert verify(request) == ACCESS_KEY


def test_accepts_second_key() -> None:
    request = sign(access_key=OTHER_KEY, secret=OTHER_SECRET)
    assert verify(request) == OTHER_KEY


def test_accepts_signed_payload_hash_header() -> None:
    body = b'{"a": 1}'
    request = sign("POST", STUDIO_PATH, body=body, headers={"X-Amz-Content-SHA256": _sha256(body)})
    assert verify(request) == ACCESS_KEY


def test_accepts_header_names_in_any_case() -> None:
    request = sign("POST", STUDIO_PATH, body=b"{}", headers={"Content-Type": "application/json"})
    lowered = [(name.lower(), value) for name, value in request.headers]
    assert verify(dataclasses.replace(request, headers=lowered)) == ACCESS_KEY


@pytest.mark.parametrize("minutes", [-14, 14])
def test_accepts_skew_within_limit(minutes: int) -> None:
    assert verify(sign(), skew=datetime.timedelta(minutes=minutes)) == ACCESS_KEY


def test_default_clock_accepts_fresh_request() -> None:
    verifier = Verifier(region=REGION, service=SERVICE, lookup=SECRETS.get)
    assert verifier.verify(sign()) == ACCESS_KEY


def test_canonical_request_matches_botocore() -> None:
    query = {"createdBy": "user 1, user 2", "maxResults": "10"}
    url = ENDPOINT + STUDIO_PATH + "/streaming-sessions?" + percent_encode_sequence(query)
    aws_request = AWSRequest(
        method="POST", url=url, data=b'{"k": "v  w"}', headers={"My-Header": "  a   b  "}
    )
    auth = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), SERVICE, REGION)
    auth.add_auth(aws_request)
    request = _from_prepared(aws_request.prepare())
    signed = sorted(auth.headers_to_sign(aws_request))
    ours = verifier_at(signing_time(request)).canonical_request(request, signed)
    assert ours == auth.canonical_request(aws_request)
    assert "/2020-08-01/studios/us-west-2%253Astid-abc/streaming-sessions\n" in ours


# --- requests made by a real botocore nimble client ------------------------------------------


class _Captured(Exception):
    """Raised by the before-send hook to stop the client after it signed a request."""


@pytest.fixture
def nimble_requests() -> Iterator[Callable[[Callable[[object], object]], SignedRequest]]:
    """Run one nimble client call and return the signed request it would have sent."""
    session = botocore.session.Session()
    client = session.create_client(
        "nimble",
        region_name=REGION,
        endpoint_url=ENDPOINT,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    sent: list[AWSPreparedRequest] = []

    def capture(request: AWSPreparedRequest, **_: object) -> None:
        sent.append(request)
        raise _Captured

    client.meta.events.register("before-send.nimble", capture)

    def call(operation: Callable[[object], object]) -> SignedRequest:
        with pytest.raises(_Captured):
            operation(client)
        return _from_prepared(sent[-1])

    yield call
    client.close()


@pytest.mark.parametrize(
    "operation",
    [
        pytest.param(lambda c: c.get_studio(studioId="us-west-2:stid-abc"), id="get"),
        pytest.param(
            lambda c: c.list_streaming_sessions(
                studioId="us-west-2:stid-abc", createdBy="u 1,2", sessionIds="a,b", ownedBy="x"
            ),
            id="query",
        ),
        pytest.param(
            lambda c: c.create_streaming_session(
                studioId="us-west-2:stid-abc",
                launchProfileId="lp-1",
                ec2InstanceType="g4dn.xlarge",
                tags={"a b": "c,d"},
            ),
            id="json-body",
        ),
    ],
)
def test_accepts_real_client_requests(
    nimble_requests: Callable[[Callable[[object], object]], SignedRequest],
    operation: Callable[[object], object],
) -> None:
    request = nimble_requests(operation)
    assert request.raw_path.startswith(STUDIO_PATH)
    assert verify(request) == ACCESS_KEY


# --- refusals ----------------------------------------------------------------------------


def test_refuses_wrong_secret_without_leaking() -> None:
    body = b'{"launchProfileId": "lp-1"}'
    request = sign("POST", STUDIO_PATH, body=body, secret="not-the-secret")
    error = refusal(request)
    assert error.code == "InvalidSignature"
    assert "does not match" in error.message
    assert SECRET_KEY not in error.message and SECRET_KEY not in str(error)
    # The only hex digests in the message are the client's own signature and the body hash.
    client_signature = header(request, "Authorization").rsplit("=", 1)[1]
    digests = set(re.findall("[0-9a-f]{64}", str(error)))
    assert digests <= {client_signature, _sha256(body)}


def test_the_authorizations_fields_may_come_in_any_order() -> None:
    request = sign()
    credential, signed_headers, signature = header(request, "Authorization").split(", ")
    algorithm, credential = credential.split(" ")
    reordered = f"{algorithm} {signature}, {signed_headers}, {credential}"
    assert verify(with_header(request, "Authorization", reordered)) == ACCESS_KEY


def test_a_remembered_authorization_head_still_needs_its_signature() -> None:
    request = sign()
    assert verify(request) == ACCESS_KEY  # its head (all but the signature) is now remembered
    authorization = header(request, "Authorization")
    wrong = authorization[:-64] + ("0" if authorization[-1] != "0" else "1") * 64
    assert refusal(with_header(request, "Authorization", wrong)).code == "InvalidSignature"


def test_refuses_unknown_key() -> None:
    error = refusal(sign(access_key="AKIAUNKNOWN000000000"))
    assert error.code == "UnrecognizedClient"
    assert "AKIAUNKNOWN000000000" in error.message


@pytest.mark.parametrize(
    ("what", "expected", "given"),
    [("region", REGION, "us-east-1"), ("service", SERVICE, "ec2")],
)
def test_refuses_foreign_scope(what: str, expected: str, given: str) -> None:
    request = sign(region=given) if what == "region" else sign(service=given)
    error = refusal(request)
    assert error.code == "InvalidScope"
    assert what in error.message and repr(expected) in error.message and given in error.message


def test_refuses_scope_date_other_than_request_day() -> None:
    request = sign()
    day = header(request, "X-Amz-Date")[:8]
    authorization = header(request, "Authorization").replace(f"/{day}/", "/20150830/")
    error = refusal(with_header(request, "Authorization", authorization))
    assert error.code == "InvalidScope"
    assert day in error.message and "20150830" in error.message


def test_refuses_wrong_terminator() -> None:
    request = sign()
    authorization = header(request, "Authorization").replace("/aws4_request,", "/aws5_request,")
    error = refusal(with_header(request, "Authorization", authorization))
    assert error.code == "InvalidScope"
    assert "aws4_request" in error.message and "aws5_request" in error.message


@pytest.mark.parametrize("minutes", [-16, 16])
def test_refuses_skew_beyond_limit(minutes: int) -> None:
    request = sign()
    error = refusal(request, skew=datetime.timedelta(minutes=minutes))
    assert error.code == "SignatureExpired"
    server_time = signing_time(request) + datetime.timedelta(minutes=minutes)
    assert header(request, "X-Amz-Date") in error.message
    assert server_time.strftime("%Y%m%dT%H%M%SZ") in error.message


def test_refuses_tampered_body() -> None:
    request = sign("POST", STUDIO_PATH, body=b'{"ec2InstanceType": "g4dn.xlarge"}')
    tampered = dataclasses.replace(request, body=b'{"ec2InstanceType": "g4dn.16xlarge"}')
    assert refusal(tampered).code == "InvalidSignature"


def test_refuses_body_not_matching_signed_payload_hash() -> None:
    body = b'{"a": 1}'
    request = sign("POST", STUDIO_PATH, body=body, headers={"X-Amz-Content-SHA256": _sha256(body)})
    error = refusal(dataclasses.replace(request, body=b'{"a": 2}'))
    assert error.code == "InvalidSignature"
    assert "X-Amz-Content-Sha256" in error.message


@pytest.mark.parametrize(
    "raw_path",
    [
        "/2020-08-01/studios/us-west-2%3Astid-abd",
        "/2020-08-01/studios/us-west-2:stid-abc",  # decoded instead of as sent
        "/2020-08-01/studios/us-west-2%3astid-abc",
    ],
)
def test_refuses_tampered_path(raw_path: str) -> None:
    request = dataclasses.replace(sign(), raw_path=raw_path)
    assert refusal(request).code == "InvalidSignature"


def test_refuses_tampered_query() -> None:
    request = sign(query={"maxResults": "10", "createdBy": "a b"})
    tampered = dataclasses.replace(request, query_string=request.query_string + "&extra=1")
    assert refusal(tampered).code == "InvalidSignature"


def test_refuses_tampered_signed_header() -> None:
    request = sign("POST", STUDIO_PATH, body=b"{}", headers={"X-Amz-Client-Token": "token-1"})
    tampered = with_header(request, "X-Amz-Client-Token", "token-2")
    assert refusal(tampered).code == "InvalidSignature"


def test_refuses_missing_authorization() -> None:
    error = refusal(with_header(sign(), "Authorization", None))
    assert error.code == "MissingAuthenticationToken"
    assert "authorization" in error.message.lower()


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda a: "Bearer abc", id="other-scheme"),
        pytest.param(lambda a: a.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"), id="algorithm"),
        pytest.param(lambda a: "AWS4-HMAC-SHA256", id="no-fields"),
        pytest.param(lambda a: a.split(", Signature=")[0], id="no-signature"),
        pytest.param(lambda a: a.replace("SignedHeaders", "Signed"), id="no-signed-headers"),
        pytest.param(lambda a: a.replace("/us-west-2/", "/"), id="short-credential"),
        pytest.param(lambda a: a.replace("/nimble/", "/nimble/x/"), id="long-credential"),
        pytest.param(lambda a: a.replace("host;", "host;;"), id="empty-signed-header"),
        pytest.param(lambda a: a[:-1], id="short-signature"),
        pytest.param(lambda a: a[:-1] + "g", id="non-hex-signature"),
        pytest.param(lambda a: a[:-64] + a[-64:].upper(), id="upper-case-signature"),
        pytest.param(lambda a: a + ", Signature=" + 64 * "0", id="repeated-field"),
        pytest.param(lambda a: a.replace("Signature=", "Signature "), id="no-equals"),
    ],
)
def test_refuses_malformed_authorization(mangle: Callable[[str], str]) -> None:
    request = sign()
    mangled = with_header(request, "Authorization", mangle(header(request, "Authorization")))
    error = refusal(mangled)
    assert error.code == "IncompleteSignature"
    assert error.message


def test_refuses_repeated_authorization() -> None:
    request = sign()
    repeated = [*request.headers, ("authorization", header(request, "Authorization"))]
    error = refusal(dataclasses.replace(request, headers=repeated))
    assert error.code == "IncompleteSignature"


@pytest.mark.parametrize(
    "value", [None, "2015-08-30T12:36:00Z", "20150830T123600", "20151330T123600Z"]
)
def test_refuses_missing_or_malformed_date(value: str | None) -> None:
    request = sign()
    verifier = verifier_at(signing_time(request))
    with pytest.raises(SignatureError) as raised:
        verifier.verify(with_header(request, "X-Amz-Date", value))
    assert raised.value.code == "IncompleteSignature"
    assert "date" in raised.value.message.lower()


def test_refuses_unsigned_host() -> None:
    request = sign()
    authorization = header(request, "Authorization").replace("host;", "")
    error = refusal(with_header(request, "Authorization", authorization))
    assert error.code == "IncompleteSignature"
    assert "host" in error.message


def test_refuses_signed_header_absent_from_request() -> None:
    request = sign("POST", STUDIO_PATH, body=b"{}", headers={"Content-Type": "application/json"})
    error = refusal(with_header(request, "Content-Type", None))
    assert error.code == "IncompleteSignature"
    assert "content-type" in error.message


def test_a_request_that_passed_the_header_check_vouches_for_no_other() -> None:
    """The check is remembered by the request's header names: the same names signed the same
    way pass at once, a header missing or unsigned is another key, checked afresh."""
    request = sign("POST", STUDIO_PATH, body=b"{}", headers={"Content-Type": "application/json"})
    assert verify(request) == ACCESS_KEY
    assert verify(request) == ACCESS_KEY
    assert "content-type" in refusal(with_header(request, "Content-Type", None)).message
    unsigned = with_header(request, "X-Amz-Client-Token", "another-token")
    assert "x-amz-client-token" in refusal(unsigned).message


def test_error_carries_code_and_message() -> None:
    error = SignatureError("InvalidScope", "wrong region")
    assert (error.code, error.message) == ("InvalidScope", "wrong region")
    assert str(error) == "InvalidScope: wrong region"


# --- canonical request details -------------------------------------------------------------


def _request(
    raw_path: str = "/", query_string: str = "", headers: list[tuple[str, str]] | None = None
) -> SignedRequest:
    return SignedRequest("get", raw_path, query_string, headers or [("Host", "example.com")], b"")


def _canonical(request: SignedRequest, signed: tuple[str, ...] = ("host",)) -> list[str]:
    canonical = verifier_at(datetime.datetime.now(datetime.UTC)).canonical_request(request, signed)
    return canonical.split("\n")


@pytest.mark.parametrize(
    ("raw_path", "expected"),
    [
        ("", "/"),
        ("/", "/"),
        ("/a/./b/../c//d/", "/a/c/d/"),
        ("/a/b/..", "/a"),
        ("/..", "/"),
        ("/.well-known/x", "/.well-known/x"),
        ("/s/us-west-2%3Astid", "/s/us-west-2%253Astid"),
        ("/a b/$x~y", "/a%20b/%24x~y"),
    ],
)
def test_canonical_uri(raw_path: str, expected: str) -> None:
    assert _canonical(_request(raw_path))[1] == expected


@pytest.mark.parametrize(
    ("query_string", "expected"),
    [
        ("b=2&a=1&a=0", "a=0&a=1&b=2"),
        ("flag", "flag="),
        ("a=x%2cy&b=c d", "a=x%2Cy&b=c%20d"),
        ("a=%41", "a=A"),
        ("k=a+b", "k=a%2Bb"),
    ],
)
def test_canonical_query(query_string: str, expected: str) -> None:
    assert _canonical(_request(query_string=query_string))[2] == expected


def test_canonical_headers_trim_join_and_sort() -> None:
    headers = [("Host", "example.com"), ("X-B", "  one   two "), ("x-a", "1"), ("X-A", " 2 ")]
    lines = _canonical(_request(headers=headers), ("x-b", "X-A", "host"))
    assert lines == [
        "GET",
        "/",
        "",
        "host:example.com",
        "x-a:1,2",
        "x-b:one two",
        "",
        "host;x-a;x-b",
        _sha256(b""),
    ]


def test_signing_keys_are_cached() -> None:
    from opennimble.protocol import sigv4

    request = sign()
    verify(request)
    hits = sigv4._signing_key.cache_info().hits
    verify(request)
    assert sigv4._signing_key.cache_info().hits == hits + 1


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("minutes", "words"),
    [(16, "Signature expired: {date} is now earlier than"), (-16, "Signature not yet current")],
)
def test_skew_refusals_use_awss_words(minutes: int, words: str) -> None:
    """SDKs that correct their clock (the JavaScript and Java SDKs) look for these words."""
    request = sign()
    error = refusal(request, skew=datetime.timedelta(minutes=minutes))
    assert words.format(date=header(request, "X-Amz-Date")) in error.message
    assert "15 min." in error.message


def test_refuses_an_unsigned_x_amz_header() -> None:
    """The client token rides in an x-amz-* header: it must be covered by the signature, or a
    replayed request could carry another token (and be executed again)."""
    request = sign("POST", STUDIO_PATH, body=b"{}")
    tampered = with_header(request, "X-Amz-Client-Token", "another-token")
    error = refusal(tampered)
    assert error.code == "IncompleteSignature"
    assert "x-amz-client-token" in error.message
    signed = sign("POST", STUDIO_PATH, body=b"{}", headers={"X-Amz-Client-Token": "t1"})
    assert verify(signed) == ACCESS_KEY


def test_a_plus_in_the_query_is_a_plus_for_the_parser_as_for_the_signature() -> None:
    """``a+b`` and ``a%2Bb`` canonicalise alike: they must also mean the same value."""
    assert parse.parse_query("ownedBy=a+b") == parse.parse_query("ownedBy=a%2Bb")
    assert parse.parse_query("ownedBy=a+b&x=%20&x=") == {"ownedBy": ["a+b"], "x": [" ", ""]}
