"""Encryption at rest of secrets (access key secrets), with a key kept in the data directory."""

from __future__ import annotations

import os
import pathlib

from cryptography.fernet import Fernet, InvalidToken


class Cipher:
    """Fernet (AES-128-CBC + HMAC-SHA256) with the installation's key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)
        self.key = key

    @classmethod
    def from_file(cls, path: pathlib.Path) -> Cipher:
        """Load the key, creating it (readable by the owner only) on first use."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls(path.read_bytes().strip())
        key = Fernet.generate_key()
        with os.fdopen(fd, "wb") as fh:
            fh.write(key + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        return cls(key)

    def encrypt(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ValueError(
                "a stored secret cannot be decrypted with this installation key"
            ) from None
