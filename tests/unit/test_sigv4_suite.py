"""AWS's published Signature Version 4 test suite, run against the SigV4 verifier.

The suite ships in botocore's *source* distribution (``tests/unit/auth/aws4_testsuite/``), not in
its wheel. `make setup` fetches it for the installed botocore version into
``.cache/aws4_testsuite/`` (``tests/support/aws4_suite.py``); the tests read it there and need no
network. A missing suite fails the tests, saying how to fetch it: it never skips them.

Each case directory holds the request as sent (``.sreq``: request line, headers, blank line,
body) and the canonical request AWS expects (``.creq``). For every case the verifier must
rebuild exactly that canonical request and accept the signed request at the suite's time.
"""

import dataclasses
import datetime
import pathlib

import pytest

from opennimble.protocol.sigv4 import SignatureError, SignedRequest, Verifier
from tests.support import aws4_suite

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"
SERVICE = "service"
SUITE_TIME = datetime.datetime(2015, 8, 30, 12, 36, 0, tzinfo=datetime.UTC)

# Every case in the suite; test_case_list_is_complete keeps this list honest. botocore's own
# runner skips normalize-path/get-space (its HTTP parser rejects a space in the request line) and
# the three cases that repeat a query parameter (its SDK cannot send those). A server sees the
# raw request, so all four run here.
CASES = [
    "get-header-key-duplicate",
    "get-header-value-multiline",
    "get-header-value-order",
    "get-header-value-trim",
    "get-unreserved",
    "get-utf8",
    "get-vanilla",
    "get-vanilla-empty-query-key",
    "get-vanilla-query",
    "get-vanilla-query-order-encoded",
    "get-vanilla-query-order-key",
    "get-vanilla-query-order-key-case",
    "get-vanilla-query-order-value",
    "get-vanilla-query-unreserved",
    "get-vanilla-utf8-query",
    "get-vanilla-with-session-token",
    "normalize-path/get-relative",
    "normalize-path/get-relative-relative",
    "normalize-path/get-slash",
    "normalize-path/get-slash-dot-slash",
    "normalize-path/get-slash-pointless-dot",
    "normalize-path/get-slashes",
    "normalize-path/get-space",
    "normalize-path/get-special-character",
    "post-header-key-case",
    "post-header-key-sort",
    "post-header-value-case",
    "post-sts-token/post-sts-header-after",
    "post-sts-token/post-sts-header-before",
    "post-vanilla",
    "post-vanilla-empty-query-value",
    "post-vanilla-query",
    "post-x-www-form-urlencoded",
    "post-x-www-form-urlencoded-parameters",
]

# Cases whose published .sreq carries a wrong signature; their .authz holds the right one.
SREQ_ERRATA = {
    # The .sreq repeats get-vanilla's signature although it also signs x-amz-security-token.
    "get-vanilla-with-session-token",
}


@dataclasses.dataclass(frozen=True)
class SuiteCase:
    """The files of one test case that these tests use."""

    signed_request: bytes
    canonical_request: str
    authorization: str


@pytest.fixture(scope="session")
def suite_dir() -> pathlib.Path:
    """The extracted aws4_testsuite directory, fetched by `make setup` (never at test time)."""
    if not aws4_suite.SUITE_DIR.is_dir():
        pytest.fail(aws4_suite.MISSING)
    return aws4_suite.SUITE_DIR


def _load_case(suite: pathlib.Path, name: str) -> SuiteCase:
    """Read the files of case ``name`` (``dir/dir/basename.ext``)."""
    base = suite / name / name.rsplit("/", 1)[-1]

    def text(extension: str) -> str:
        return base.with_suffix(extension).read_text(encoding="utf-8").replace("\r", "")

    return SuiteCase(
        signed_request=base.with_suffix(".sreq").read_bytes(),
        canonical_request=text(".creq"),
        authorization=text(".authz"),
    )


def parse_raw_request(raw: bytes) -> SignedRequest:
    """Parse an HTTP/1.1 request as sent into a SignedRequest.

    The request target is everything between the method and the HTTP version, so a path with a
    space survives. Header lines starting with whitespace continue the previous header (obsolete
    line folding) and are joined to it with a single space, as RFC 9112 says a recipient may.
    """
    for blank_line in (b"\r\n\r\n", b"\n\n"):  # the suite's files use bare LF
        head, found, body = raw.partition(blank_line)
        if found:
            break
    else:  # most cases end after the last header, with no blank line and no body
        head, body = raw.rstrip(b"\r\n"), b""
    request_line, *header_lines = head.split(b"\n")
    method, _, rest = request_line.decode("utf-8").rstrip("\r").partition(" ")
    target, _, version = rest.rpartition(" ")
    assert version.startswith("HTTP/"), request_line
    raw_path, _, query_string = target.partition("?")
    headers: list[tuple[str, str]] = []
    for line in header_lines:
        text = line.decode("latin-1").rstrip("\r")
        if text[:1] in (" ", "\t"):
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {text.strip()}")
        else:
            name, _, value = text.partition(":")
            headers.append((name, value.strip()))
    return SignedRequest(method, raw_path, query_string, headers, body)


def _with_authorization(request: SignedRequest, authorization: str) -> SignedRequest:
    """Return ``request`` with its Authorization header replaced."""
    headers = [(n, v) for n, v in request.headers if n.lower() != "authorization"]
    return dataclasses.replace(request, headers=[*headers, ("Authorization", authorization)])


def _authorization_of(request: SignedRequest) -> str:
    """Return the request's Authorization header."""
    [value] = [v for n, v in request.headers if n.lower() == "authorization"]
    return value


def _signed_headers_of(authorization: str) -> list[str]:
    """Return the SignedHeaders list of an Authorization header value."""
    field = authorization.split("SignedHeaders=", 1)[1].split(",", 1)[0]
    return field.split(";")


def _verifier() -> Verifier:
    return Verifier(
        region=REGION,
        service=SERVICE,
        lookup={ACCESS_KEY: SECRET_KEY}.get,
        now=SUITE_TIME.timestamp,
    )


def test_case_list_is_complete(suite_dir: pathlib.Path) -> None:
    found = {path.parent.relative_to(suite_dir).as_posix() for path in suite_dir.rglob("*.sreq")}
    assert found == set(CASES)


@pytest.mark.parametrize("name", CASES)
def test_suite_case(suite_dir: pathlib.Path, name: str) -> None:
    case = _load_case(suite_dir, name)
    request = parse_raw_request(case.signed_request)
    verifier = _verifier()

    canonical = verifier.canonical_request(request, _signed_headers_of(case.authorization))
    assert canonical == case.canonical_request

    if name in SREQ_ERRATA:
        assert _authorization_of(request) != case.authorization
        with pytest.raises(SignatureError) as refused:
            verifier.verify(request)
        assert refused.value.code == "InvalidSignature"
        request = _with_authorization(request, case.authorization)
    else:
        assert _authorization_of(request) == case.authorization

    assert verifier.verify(request) == ACCESS_KEY
