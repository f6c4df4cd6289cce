"""Passwords of the identity store's users (portal sign-in): argon2id hashes, and a lock-out
after repeated failures.

A user without a password cannot sign in with one. After :data:`MAX_FAILURES` wrong passwords
in a row the account is locked for :data:`LOCKOUT`; a right password (outside a lock-out)
resets the count. Unknown user names are refused with the same message as wrong passwords.
"""

from __future__ import annotations

import argon2
import sqlalchemy as sa

from opennimble import clock
from opennimble.domain.identity import Caller
from opennimble.store import users

MAX_FAILURES = 5
LOCKOUT = 15 * 60 * clock.SECOND
MIN_LENGTH = 8
MAX_LENGTH = 1024

_hasher = argon2.PasswordHasher()


class SigninRefused(Exception):
    """Why a sign-in failed, in words for the person signing in."""


def check_new(password: str) -> None:
    """Raise ValueError naming the problem with a new password."""
    if len(password) < MIN_LENGTH:
        raise ValueError(f"password: must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise ValueError(f"password: must be at most {MAX_LENGTH} characters")


def set_password(conn: sa.Connection, user_name: str, password: str) -> str:
    """Hash and store ``password`` for the user named ``user_name``; return their user id."""
    check_new(password)
    user = users.get_user_by_name(conn, user_name) or users.get_user(conn, user_name)
    if user is None:
        raise LookupError(f"no user named {user_name!r}")
    users.set_password_hash(conn, user["user_id"], _hasher.hash(password))
    return str(user["user_id"])


def sign_in(conn: sa.Connection, user_name: str, password: str, now: int) -> Caller:
    """The caller whose name and password these are; SigninRefused otherwise (a failure is
    counted, and locks the account once there were too many in a row)."""
    refused = SigninRefused("Wrong user name or password.")
    user = users.get_user_by_name(conn, user_name)
    if user is None:
        _hasher.hash(password)  # as slow as a wrong password: names are not revealed by timing
        raise refused
    if user["locked_until"] > now:
        minutes = -(-(user["locked_until"] - now) // (60 * clock.SECOND))
        raise SigninRefused(
            f"This account is locked after {MAX_FAILURES} failed sign-ins; try again in "
            f"{minutes} minute{'s' if minutes != 1 else ''}, or ask an operator to reset its "
            "password."
        )
    if not user["password_hash"] or not _verifies(user["password_hash"], password):
        failures = user["failed_signins"] + 1
        if failures >= MAX_FAILURES:
            users.record_signin(conn, user["user_id"], 0, now + LOCKOUT)
            raise SigninRefused(
                f"Wrong user name or password. After {MAX_FAILURES} failed sign-ins this account "
                f"is locked for {LOCKOUT // (60 * clock.SECOND)} minutes."
            )
        users.record_signin(conn, user["user_id"], failures, 0)
        raise refused
    if user["disabled"]:
        raise SigninRefused("This account is disabled; an operator can enable it again.")
    if user["failed_signins"] or user["locked_until"]:
        users.record_signin(conn, user["user_id"], 0, 0)
    return Caller(user["user_id"], user["name"], bool(user["operator"]))


def _verifies(password_hash: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(password_hash, password))
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False
