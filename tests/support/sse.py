"""A server-sent events client of ``GET /events``, SigV4-signed as botocore signs API calls."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.support.server import REGION, User


def signed_headers(user: User, url: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    request = AWSRequest(method="GET", url=url, headers=headers or {})
    SigV4Auth(Credentials(user.access_key_id, user.secret_access_key), "nimble", REGION).add_auth(
        request
    )
    return dict(request.headers.items())


class Stream:
    """One connection to ``/events``; :meth:`until` reads messages as they come."""

    def __init__(self, user: User, query: str = "", last_event_id: str | None = None) -> None:
        url = f"{user.server.endpoint}/events{query}"
        extra = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
        self.response = requests.get(
            url, headers=signed_headers(user, url, extra), stream=True, timeout=(5, 30)
        )
        assert self.response.status_code == 200, (self.response.status_code, self.response.text)
        self.messages: list[dict[str, Any]] = []  # {"id", "event", "data"}
        self._lines: Iterator[str] = self.response.iter_lines(decode_unicode=True)

    def until(self, done: Callable[[dict[str, Any]], bool], timeout: float = 60) -> None:
        """Read messages until one satisfies ``done``."""
        deadline = time.monotonic() + timeout
        message: dict[str, Any] = {}
        for line in self._lines:
            if time.monotonic() > deadline:
                raise AssertionError(f"not seen in time; got {self.messages}")
            if line.startswith(":"):
                continue
            if line:
                field, _, value = line.partition(":")
                message[field] = value.removeprefix(" ")
                continue
            if message:
                message["data"] = json.loads(message["data"])
                self.messages.append(message)
                if done(message):
                    return
                message = {}
        raise AssertionError(f"the stream ended; got {self.messages}")

    def close(self) -> None:
        self.response.close()

    def events(self, session_id: str) -> list[dict[str, Any]]:
        return [m["data"] for m in self.messages if m["data"]["sessionId"] == session_id]
