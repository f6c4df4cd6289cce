"""Verification of AWS Signature Version 4 (``AWS4-HMAC-SHA256``) request signatures.

The server side of what ``botocore.auth.SigV4Auth`` does for non-S3 services: rebuild the
canonical request from the request as it arrived on the wire, derive the signing key from the
caller's secret, recompute the signature and compare it with the one in the ``Authorization``
header.

Inputs are taken as close to the wire as possible (see :class:`SignedRequest`):

* ``raw_path`` and ``query_string`` are the request target exactly as sent. Bytes outside ASCII
  (which no SDK sends, but the AWS test suite does) are expected decoded as UTF-8; a
  ``surrogateescape`` decoding is accepted too and round-trips the original bytes.
* header values are expected decoded as Latin-1 (the ASGI convention). This matches what an SDK
  signs: it signs the UTF-8 form of a string that its HTTP client sends as Latin-1.

The module is on every request's hot path, so it parses with plain string operations and caches
derived signing keys.
"""

import dataclasses
import datetime
import functools
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Literal
from urllib.parse import quote, unquote_to_bytes

__all__ = [
    "ALGORITHM",
    "ErrorCode",
    "SecretLookup",
    "SignatureError",
    "SignedRequest",
    "Verifier",
]

ALGORITHM: Final = "AWS4-HMAC-SHA256"
TERMINATOR: Final = "aws4_request"
_PAYLOAD_HASH_HEADER: Final = "x-amz-content-sha256"
_AMZ_PREFIX: Final = "x-amz-"
_SECURITY_TOKEN: Final = "x-amz-security-token"
_UNRESERVED: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
_ENCODED_PATH: Final = _UNRESERVED + "/%"
_LOWER_HEX: Final = frozenset("0123456789abcdef")
_LAST_SIGNATURE: Final = ", Signature="  # how SDKs end the Authorization header
_SHOWN_CHARS: Final = 120

ErrorCode = Literal[
    "MissingAuthenticationToken",
    "IncompleteSignature",
    "UnrecognizedClient",
    "InvalidSignature",
    "SignatureExpired",
    "InvalidScope",
]

SecretLookup = Callable[[str], str | None]
"""Map an access key id to its secret access key, or to ``None`` if the key is unknown."""

_HeaderMap = Mapping[str, list[str]]
"""Lower-cased header name -> the header's values in the order received."""


@dataclasses.dataclass(frozen=True)
class SignedRequest:
    """An HTTP request as received, with just what signature verification needs."""

    method: str
    """The request method, e.g. ``"GET"``."""
    raw_path: str
    """The path exactly as on the wire, still percent-encoded, without the query."""
    query_string: str
    """The raw query string as on the wire, without the ``?`` (``""`` if none)."""
    headers: Sequence[tuple[str, str]]
    """The headers as received; names in any case; a header may repeat."""
    body: bytes
    """The complete request body."""


class SignatureError(Exception):
    """A request was refused; ``code`` is the AWS error code to answer with."""

    code: str
    message: str

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True, slots=True)
class _Authorization:
    """The parsed parts of an ``AWS4-HMAC-SHA256`` Authorization header."""

    access_key: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]

    @property
    def scope(self) -> str:
        """The credential scope, ``date/region/service/terminator``."""
        return f"{self.date}/{self.region}/{self.service}/{self.terminator}"


class Verifier:
    """Checks SigV4 signatures for one region and service."""

    def __init__(
        self,
        *,
        region: str,
        service: str,
        lookup: SecretLookup,
        max_skew: datetime.timedelta = datetime.timedelta(minutes=15),
        now: Callable[[], float] = time.time,
    ) -> None:
        """Verify requests scoped to ``region``/``service`` with secrets from ``lookup``;
        ``now`` gives the server's time in seconds since the epoch."""
        self._region = region
        self._service = service
        self._lookup = lookup
        self._max_skew = max_skew.total_seconds()
        self._now = now

    def verify(self, request: SignedRequest) -> str:
        """Return the access key id of a correctly signed request, or raise SignatureError."""
        headers = _header_map(request.headers)
        auth, signature = _parse_authorization(
            _single_header(headers, "authorization", "MissingAuthenticationToken")
        )
        amz_date = _single_header(headers, "x-amz-date", "IncompleteSignature")
        request_time = _parse_amz_date(amz_date)  # in seconds since the epoch
        self._check_scope(auth, amz_date)
        _check_signed_headers(auth.signed_headers, headers)
        self._check_skew(request_time, amz_date)
        secret = self._lookup(auth.access_key)
        if secret is None:
            raise SignatureError(
                "UnrecognizedClient",
                f"The security token included in the request is invalid: "
                f"unknown access key id {_show(auth.access_key)}.",
            )
        body_hash = hashlib.sha256(request.body).hexdigest()
        canonical = _canonical_request(request, headers, auth.signed_headers, body_hash)
        string_to_sign = _string_to_sign(amz_date, auth.scope, canonical)
        key = _signing_key(secret, auth.date, self._region, self._service)
        expected = hmac.digest(key, string_to_sign, "sha256").hex()  # one call into OpenSSL
        if not hmac.compare_digest(expected, signature):
            raise SignatureError(
                "InvalidSignature",
                "The request signature we calculated does not match the signature you "
                "provided. Check your secret access key and signing method. "
                f"The canonical request was:\n{canonical}",
            )
        _check_payload_hash(headers, auth.signed_headers, body_hash)
        return auth.access_key

    def canonical_request(self, request: SignedRequest, signed_headers: Sequence[str]) -> str:
        """Return the SigV4 canonical request of ``request`` over ``signed_headers``."""
        names = _normalise_signed_headers(signed_headers)
        body_hash = hashlib.sha256(request.body).hexdigest()
        return _canonical_request(request, _header_map(request.headers), names, body_hash)

    def _check_scope(self, auth: _Authorization, amz_date: str) -> None:
        """Refuse a credential scope for another day, region or service."""
        if (
            auth.date == amz_date[:8]
            and auth.region == self._region
            and auth.service == self._service
            and auth.terminator == TERMINATOR
        ):
            return
        wanted = (
            ("date", amz_date[:8], auth.date),
            ("region", self._region, auth.region),
            ("service", self._service, auth.service),
            ("terminator", TERMINATOR, auth.terminator),
        )
        wrong = [
            f"{what} should be {expected!r}, not {_show(given)}"
            for what, expected, given in wanted
            if given != expected
        ]
        if wrong:
            raise SignatureError(
                "InvalidScope",
                f"Credential scope {_show(auth.scope)} is invalid: {'; '.join(wrong)}.",
            )

    def _check_skew(self, request_time: float, amz_date: str) -> None:
        """Refuse a request signed too long before or after the server's current time."""
        now = self._now()
        if abs(now - request_time) <= self._max_skew:
            return
        minutes = f"{self._max_skew / 60:g} min."
        if request_time < now:  # AWS's words, which SDKs that correct clock skew recognise
            limit = _amz_date(now - self._max_skew)
            message = (
                f"Signature expired: {amz_date} is now earlier than {limit} "
                f"({_amz_date(now)} - {minutes})"
            )
        else:
            limit = _amz_date(now + self._max_skew)
            message = (
                f"Signature not yet current: {amz_date} is still later than {limit} "
                f"({_amz_date(now)} + {minutes})"
            )
        raise SignatureError("SignatureExpired", message + " Check the clock of the client.")


def _amz_date(seconds: float) -> str:
    """A time in seconds since the epoch as X-Amz-Date writes it."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def _show(text: str) -> str:
    """Quote client-supplied text for an error message, cut to a readable length."""
    if len(text) > _SHOWN_CHARS:
        text = text[:_SHOWN_CHARS] + "..."
    return repr(text)


def _header_map(headers: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Group header values by lower-cased name, keeping the order they arrived in."""
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        key = name.lower()
        values = grouped.get(key)
        if values is None:
            grouped[key] = [value]
        else:
            values.append(value)
    return grouped


def _single_header(headers: _HeaderMap, name: str, code: ErrorCode) -> str:
    """Return the one value of header ``name``, refusing with ``code`` if it is missing."""
    values = headers.get(name)
    if not values:
        raise SignatureError(code, f"The request has no {name!r} header.")
    if len(values) > 1:
        raise SignatureError("IncompleteSignature", f"The {name!r} header appears more than once.")
    return values[0]


def _incomplete(message: str) -> SignatureError:
    """Return an IncompleteSignature error about the Authorization header."""
    return SignatureError("IncompleteSignature", f"Malformed Authorization header: {message}")


def _parse_authorization(value: str) -> tuple[_Authorization, str]:
    """Parse ``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`` into its
    parts and the signature. A client sends the same header but for the signature with every
    request of a day: in the form SDKs write (the signature last), the rest is parsed once."""
    head, separator, signature = value.rpartition(_LAST_SIGNATURE)
    if separator and len(signature) == 64 and _LOWER_HEX.issuperset(signature):
        return _parsed_head(head), signature
    return _parse_whole_authorization(value)


@functools.lru_cache(maxsize=256)
def _parsed_head(head: str) -> _Authorization:
    """The parts of an Authorization header ``head``, as if a valid signature followed."""
    return _parse_whole_authorization(head + _LAST_SIGNATURE + "0" * 64)[0]


def _parse_whole_authorization(value: str) -> tuple[_Authorization, str]:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete(f"the algorithm must be {ALGORITHM!r}, not {_show(algorithm)}.")
    fields = _parse_auth_fields(rest)
    credential = fields["Credential"].split("/")
    if len(credential) != 5 or not all(credential):
        raise _incomplete(
            "Credential must be 'AccessKeyId/YYYYMMDD/region/service/aws4_request', "
            f"not {_show(fields['Credential'])}."
        )
    signed_headers = _signed_header_names(fields["SignedHeaders"])
    if signed_headers is None:
        raise _incomplete(
            f"SignedHeaders must be header names separated by ';', "
            f"not {_show(fields['SignedHeaders'])}."
        )
    signature = fields["Signature"]
    if len(signature) != 64 or not _LOWER_HEX.issuperset(signature):
        raise _incomplete("Signature must be 64 lower-case hexadecimal digits.")
    access_key, date, region, service, terminator = credential
    parts = _Authorization(
        access_key=access_key,
        date=date,
        region=region,
        service=service,
        terminator=terminator,
        signed_headers=signed_headers,
    )
    return parts, signature


def _parse_auth_fields(text: str) -> dict[str, str]:
    """Split ``Name=value, Name=value`` into a dict, requiring the three SigV4 fields."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        name, sep, field_value = part.strip().partition("=")
        if not sep or name in fields:
            raise _incomplete(f"{_show(part.strip())} is not a single 'Name=value' component.")
        fields[name] = field_value
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if name not in fields]
    if missing:
        raise _incomplete(f"it lacks {', '.join(missing)}.")
    return fields


@functools.lru_cache(maxsize=256)
def _signed_header_names(text: str) -> tuple[str, ...] | None:
    """The normalised names of a ``SignedHeaders`` field, or None if one is empty (a client
    sends the same field with every request: it is parsed once)."""
    names = text.split(";")
    if not all(names):
        return None
    return _normalise_signed_headers(names)


def _normalise_signed_headers(names: Sequence[str]) -> tuple[str, ...]:
    """Lower-case, de-duplicate and sort signed header names as SigV4 lists them."""
    return tuple(sorted({name.strip().lower() for name in names}))


@functools.lru_cache(maxsize=2048)
def _parse_amz_date(value: str) -> float:
    """Parse an ISO 8601 basic-format UTC time such as ``20150830T123600Z`` into seconds since
    the epoch (remembered: the requests of one second share it, and 2,048 hold every second
    of the default skew's window, 15 minutes either side, whatever the number of clients)."""
    digits = value[:8] + value[9:15]
    if (
        len(value) != 16
        or value[8] != "T"
        or value[15] != "Z"
        or not (digits.isascii() and digits.isdigit())
    ):
        raise SignatureError(
            "IncompleteSignature",
            f"X-Amz-Date must be a UTC time like 20150830T123600Z, not {_show(value)}.",
        )
    try:
        return datetime.datetime(
            int(value[0:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[9:11]),
            int(value[11:13]),
            int(value[13:15]),
            tzinfo=datetime.UTC,
        ).timestamp()
    except ValueError:
        raise SignatureError(
            "IncompleteSignature", f"X-Amz-Date {_show(value)} is not a valid time."
        ) from None


def _check_signed_headers(signed_headers: tuple[str, ...], headers: _HeaderMap) -> None:
    """Require ``host`` and every ``x-amz-*`` header of the request to be signed (they carry
    what the request means: its time, its client token), and every signed header present. A
    session token may be added after signing, as AWS allows; callers decide whether they take
    session tokens at all."""
    _check_signed_names(signed_headers, tuple(headers))


@functools.lru_cache(maxsize=256)
def _check_signed_names(signed_headers: tuple[str, ...], headers: tuple[str, ...]) -> None:
    """:func:`_check_signed_headers` by the request's header names (remembered when they
    pass: a client sends the same headers, signed the same way, with every request)."""
    if "host" not in signed_headers:
        raise SignatureError(
            "IncompleteSignature", "The 'host' header must be among the SignedHeaders."
        )
    unsigned = sorted(
        name
        for name in headers
        if name.startswith(_AMZ_PREFIX)
        and name not in signed_headers
        and name != _SECURITY_TOKEN  # may follow the signature (AWS's post-sts-header-after)
    )
    if unsigned:
        raise SignatureError(
            "IncompleteSignature",
            f"Header(s) {', '.join(map(repr, unsigned))} must be among the SignedHeaders.",
        )
    absent = [name for name in signed_headers if name not in headers]
    if absent:
        raise SignatureError(
            "IncompleteSignature",
            f"Signed header(s) {', '.join(map(repr, absent))} are not in the request.",
        )


def _check_payload_hash(headers: _HeaderMap, signed_headers: Sequence[str], body_hash: str) -> None:
    """Refuse a signed ``X-Amz-Content-Sha256`` that does not match the body received."""
    if _PAYLOAD_HASH_HEADER not in signed_headers:
        return
    declared = headers.get(_PAYLOAD_HASH_HEADER)
    if declared is not None and declared != [body_hash]:
        raise SignatureError(
            "InvalidSignature",
            "The X-Amz-Content-Sha256 header does not match the SHA-256 of the request body.",
        )


def _canonical_request(
    request: SignedRequest, headers: _HeaderMap, signed_headers: Sequence[str], body_hash: str
) -> str:
    """Build the canonical request from already parsed parts."""
    payload_hash = body_hash
    if _PAYLOAD_HASH_HEADER in signed_headers:
        declared = headers.get(_PAYLOAD_HASH_HEADER)
        if declared:
            payload_hash = declared[0]
    return "\n".join(
        (
            request.method.upper(),
            _canonical_uri(request.raw_path),
            _canonical_query(request.query_string),
            _canonical_headers(headers, signed_headers),
            ";".join(signed_headers),
            payload_hash,
        )
    )


def _canonical_uri(raw_path: str) -> str:
    """Normalise the dot segments and slashes of a raw path, then URI-encode it again."""
    if not raw_path:
        return "/"
    if raw_path[0] == "/" and "//" not in raw_path and "/." not in raw_path:
        path = raw_path  # nothing to normalise: the common case
    else:
        path = _remove_dot_segments(raw_path)
    if not path.strip(_ENCODED_PATH):  # the common case, without quote()'s byte loop:
        return path.replace("%", "%25")  # unreserved characters, slashes and escapes
    return quote(path, safe="/~", errors="surrogateescape")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 dot-segment removal that also collapses runs of slashes."""
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    lead = "/" if path.startswith("/") else ""
    trail = "/" if path.endswith("/") and segments else ""
    return lead + "/".join(segments) + trail


def _canonical_query(query_string: str) -> str:
    """URI-encode every query parameter name and value and sort them."""
    if not query_string:
        return ""
    pairs = []
    for pair in query_string.split("&"):
        name, _, value = pair.partition("=")
        pairs.append((_uri_encode(name), _uri_encode(value)))
    pairs.sort()
    return "&".join([f"{name}={value}" for name, value in pairs])


def _uri_encode(component: str) -> str:
    """Percent-decode a query component, then encode all but the unreserved characters."""
    if not component.strip(_UNRESERVED):
        return component  # only unreserved characters: already canonical
    raw = unquote_to_bytes(component.encode("utf-8", "surrogateescape"))
    return quote(raw, safe="-_.~")


def _canonical_headers(headers: _HeaderMap, signed_headers: Sequence[str]) -> str:
    """Return one ``name:value`` line per signed header, each ending in a newline."""
    lines = []
    for name in signed_headers:
        values = headers.get(name, ())
        lines.append(f"{name}:{','.join([' '.join(value.split()) for value in values])}\n")
    return "".join(lines)


def _string_to_sign(amz_date: str, scope: str, canonical_request: str) -> bytes:
    """Return the SigV4 string to sign, encoded for HMAC."""
    digest = hashlib.sha256(canonical_request.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}".encode()


@functools.lru_cache(maxsize=256)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """Derive (and remember) the SigV4 signing key for one secret, day, region and service."""
    key = _hmac(f"AWS4{secret}".encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, TERMINATOR)


def _hmac(key: bytes, message: str) -> bytes:
    """Return HMAC-SHA256 of a UTF-8 message."""
    return hmac.digest(key, message.encode(), "sha256")
