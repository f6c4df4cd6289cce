"""A READY session's endpoint as the database keeps it: the desktop's VNC password sealed.

The provider reports ``{"host", "port", "password"}``. The password is stored only sealed
(Fernet, with the installation key that API servers and workers share), as
``sealedPassword``: whoever reads the database (a copy, a backup, a leaked URL) learns
nothing that opens a desktop. The stream gateway unseals it when it connects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opennimble.store import crypto

SEALED = "sealedPassword"
CLEAR = "password"


def seal(endpoint: Mapping[str, Any], cipher: crypto.Cipher) -> dict[str, Any]:
    """The endpoint to store: its password, if any, sealed."""
    stored = {key: value for key, value in endpoint.items() if key != CLEAR}
    password = endpoint.get(CLEAR)
    if isinstance(password, str):
        stored[SEALED] = cipher.encrypt(password)
    return stored


def unseal(endpoint: Mapping[str, Any], cipher: crypto.Cipher) -> dict[str, Any]:
    """The endpoint to connect to: its password unsealed (ValueError if this installation key
    cannot unseal it). A stored password in clear is never used."""
    usable = {key: value for key, value in endpoint.items() if key not in (CLEAR, SEALED)}
    sealed = endpoint.get(SEALED)
    if isinstance(sealed, str):
        usable[CLEAR] = cipher.decrypt(sealed)
    return usable
