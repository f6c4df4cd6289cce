"""Who is calling: SigV4 verification against the identity store's access keys."""

from __future__ import annotations

import dataclasses
import threading

from opennimble import clock, errors
from opennimble.domain.identity import Caller
from opennimble.protocol import sigv4
from opennimble.store import crypto, database, users

CLIENTS_KEPT = 10_000  # callers with a client address remembered (all forgotten past it)
# the verifier's refusals, as AWS endpoints answer them
_REFUSALS: dict[str, type[errors.AuthenticationError]] = {
    "MissingAuthenticationToken": errors.MissingAuthenticationTokenException,
    "IncompleteSignature": errors.IncompleteSignatureException,
    "UnrecognizedClient": errors.UnrecognizedClientException,
    "InvalidSignature": errors.InvalidSignatureException,
    "SignatureExpired": errors.InvalidSignatureException,
    "InvalidScope": errors.InvalidSignatureException,
}


class NotRemembered(Exception):
    """The request's access key is not in memory: reading it needs the database."""


class Authenticator:
    """Verifies requests; keeps decrypted secrets of keys seen in memory (never on disk)."""

    def __init__(
        self, db: database.Database, cipher: crypto.Cipher, region: str, now: clock.Now
    ) -> None:
        self._db = db
        self.cipher = cipher
        self._known: dict[str, tuple[str, Caller]] = {}
        self._from: dict[tuple[Caller, str], Caller] = {}  # callers with their client address
        self._lock = threading.Lock()

        def seconds() -> float:  # the verifier's clock: seconds since the epoch
            return now() / 1_000_000

        self._verifier = sigv4.Verifier(
            region=region, service="nimble", lookup=self._secret, now=seconds
        )
        self._remembered_verifier = sigv4.Verifier(
            region=region, service="nimble", lookup=self._remembered_secret, now=seconds
        )

    def _remembered(self, access_key_id: str) -> tuple[str, Caller] | None:
        with self._lock:
            return self._known.get(access_key_id)

    def _load(self, access_key_id: str) -> tuple[str, Caller] | None:
        known = self._remembered(access_key_id)
        if known is not None:
            return known
        with self._db.read() as conn:
            row = users.get_key(conn, access_key_id)
        if row is None:
            return None
        caller = Caller(row["user_id"], row["name"], bool(row["operator"]), access_key_id)
        entry = (self.cipher.decrypt(row["secret"]), caller)
        with self._lock:
            self._known[access_key_id] = entry
        return entry

    def _remembered_secret(self, access_key_id: str) -> str | None:
        known = self._remembered(access_key_id)
        if known is None:
            raise NotRemembered(access_key_id)
        return known[0]

    def _secret(self, access_key_id: str) -> str | None:
        entry = self._load(access_key_id)
        return entry[0] if entry else None

    def authenticate(
        self,
        request: sigv4.SignedRequest,
        client: str | None = None,
        *,
        remembered_only: bool = False,
    ) -> Caller:
        """The caller who signed ``request``, sending it from the address ``client``.

        ``remembered_only``: raise :class:`NotRemembered` rather than read an access key not
        in memory (the caller is on the event loop, where no database call belongs)."""
        caller = self._authenticate(request, remembered_only)
        if client is None:
            return caller
        key = (caller, client)
        found = self._from.get(key)
        if found is None:  # made once per key and address (a frozen dataclass's replace: 4 us)
            if len(self._from) >= CLIENTS_KEPT:
                self._from.clear()
            found = self._from[key] = dataclasses.replace(caller, client=client)
        return found

    def _authenticate(self, request: sigv4.SignedRequest, remembered_only: bool) -> Caller:
        if any(name.lower() == "x-amz-security-token" for name, _ in request.headers):
            raise errors.UnrecognizedClientException(
                "The security token included in the request is invalid: this server issues no "
                "temporary credentials; sign requests with an access key of the identity store, "
                "without X-Amz-Security-Token"
            )
        verifier = self._remembered_verifier if remembered_only else self._verifier
        try:
            access_key_id = verifier.verify(request)
        except sigv4.SignatureError as exc:
            raise _REFUSALS[exc.code](exc.message) from None
        entry = self._load(access_key_id)
        assert entry is not None
        return entry[1]
