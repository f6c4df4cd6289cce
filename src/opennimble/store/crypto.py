"""Encryption at rest of secrets (access key secrets), with a key kept in the data directory."""

from __future__ import annotations

import hashlib
import hmac
import os
import pathlib

from cryptography.fernet import Fernet, InvalidToken

from opennimble.store import database, users

# the meta key under which a database records a check value of its installation key
KEY_CHECK = "installation_key_check"


class Cipher:
    """Fernet (AES-128-CBC + HMAC-SHA256) with the installation's key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)
        self.key = key

    @classmethod
    def from_file(cls, path: pathlib.Path) -> Cipher:
        """Load the key, creating it (readable by the owner only) on first use."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # written whole under another name, then linked into place: a process starting at
            # the same moment reads either no key file or a complete one, never a partial one
            key = Fernet.generate_key()
            partial = path.with_name(f".{path.name}.{os.getpid()}.new")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(partial, path)  # fails if another process linked its key first
            except FileExistsError:
                pass
            finally:
                partial.unlink()
        return cls(path.read_bytes().strip())

    def encrypt(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ValueError(
                "a stored secret cannot be decrypted with this installation key"
            ) from None


class KeyMismatch(Exception):
    """The installation key differs from the one the database's secrets are encrypted with."""


def check_key(db: database.Database, cipher: Cipher, key_file: pathlib.Path) -> None:
    """Refuse a key other than the one this database was set up with.

    The first process records a check value of its key (an HMAC of a constant, which reveals
    nothing of the key); every server of one database must then use that key file.
    """
    check = hmac.new(cipher.key, b"opennimble installation key", hashlib.sha256).hexdigest()
    with db.write() as conn:  # (the first of processes starting at once records its key)
        stored = users.set_meta_default(conn, KEY_CHECK, check)
    if not hmac.compare_digest(stored, check):
        raise KeyMismatch(
            f"the installation key in {key_file} is not the key this database was set up with; "
            "every server of one database needs the same key file: copy it from the first "
            "server, or name it with the key_file setting"
        )
