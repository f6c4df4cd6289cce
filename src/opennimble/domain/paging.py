"""Opaque, tamper-evident ``nextToken`` values.

A token carries the last key of the page and a digest of what was asked (operation, caller,
filters), signed with HMAC-SHA256 under the installation key: a forged, altered or foreign token
(another listing, another caller) is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson

from opennimble import errors
from opennimble.store import paging


class TokenCodec:
    def __init__(self, key: bytes) -> None:
        self._key = hashlib.sha256(b"opennimble/next-token/" + key).digest()

    def encode(self, listing: str, key: paging.Key) -> str:
        payload = orjson.dumps([listing, key[0], key[1]])
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")

    def decode(self, listing: str, token: str) -> paging.Key:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            mac, payload = raw[:16], raw[16:]
            expected = hmac.new(self._key, payload, hashlib.sha256).digest()[:16]
            if not hmac.compare_digest(mac, expected):
                raise ValueError("bad signature")
            name, created, ident = orjson.loads(payload)
        except (ValueError, TypeError) as exc:
            raise _invalid() from exc
        if name != listing or not isinstance(created, int) or not isinstance(ident, str):
            raise _invalid()
        return created, ident


def _invalid() -> errors.ValidationException:
    return errors.ValidationException(
        "The nextToken is not valid for this request: pass back the nextToken of the previous "
        "page of the same listing, unchanged",
        context={"fields": "nextToken"},
    )


def listing_id(*parts: object) -> str:
    """A short digest naming a listing (operation, caller, filters) inside its tokens."""
    return hashlib.sha256(orjson.dumps([str(p) for p in parts])).hexdigest()[:16]
