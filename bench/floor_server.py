"""A second baseline of the API benchmark: the least work a GetStreamingSession must do.

The bare baseline (``bench.bare_server``) answers without looking at the request. This one
does what issue 10 lists as a Get's own work and nothing more, with the cheapest means at
hand: it verifies the request's SigV4 signature with opennimble's verifier (the secret
``FLOOR_SECRET`` of the access key ``FLOOR_KEY``, from memory), reads the session's row by its
id from the installation's SQLite database with ``sqlite3`` on the event loop's thread (one
kept connection, one prepared statement; the product may not block its loop and hands the
read to a store thread), and writes the row as JSON with orjson. No routing table, no
validation, no access rules, no view, no log line or metrics.

Where the product's Get stands between the two baselines tells how much of its cost is the
work itself and how much is the rest of the server.

Run: ``python -m bench.floor_server --port PORT --database PATH``.
"""

from __future__ import annotations

import argparse
import sqlite3
from typing import Any

import orjson

from bench import bare_server
from opennimble.protocol import sigv4

FLOOR_KEY = "AKIDFLOOR"
FLOOR_SECRET = "floor"
_JSON = (b"content-type", b"application/json")


class Floor:
    """The ASGI callable: verify, read the row named by the path's last segment, answer."""

    def __init__(self, database: str) -> None:
        self._conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        self._names: list[str] = []
        self._verifier = sigv4.Verifier(
            region="us-west-2",
            service="nimble",
            lookup=lambda key: FLOOR_SECRET if key == FLOOR_KEY else None,
        )

    def _row(self, session_id: str) -> dict[str, Any] | None:
        cursor = self._conn.execute("SELECT * FROM sessions WHERE session_id = ?", (session_id,))
        if not self._names:
            self._names = [d[0] for d in cursor.description]
        found = cursor.fetchone()
        return None if found is None else dict(zip(self._names, found, strict=True))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await bare_server.lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = sigv4.SignedRequest(
            method=scope["method"],
            raw_path=scope["raw_path"].decode(),
            query_string=scope["query_string"].decode(),
            headers=[(k.decode(), v.decode()) for k, v in scope["headers"]],
            body=body,
        )
        try:
            self._verifier.verify(request)
        except sigv4.SignatureError:
            await _answer(send, 403, b'{"message":"signature"}')
            return
        row = self._row(scope["path"].rsplit("/", 1)[-1])
        if row is None:
            await _answer(send, 404, b'{"message":"no such session"}')
            return
        await _answer(send, 200, orjson.dumps({"session": row}))


async def _answer(send: Any, status: int, body: bytes) -> None:
    headers = [_JSON, (b"content-length", str(len(body)).encode())]  # as the API sends them
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", required=True, help="the installation's SQLite file")
    args = parser.parse_args()
    bare_server.run_uvicorn(Floor(args.database), args.host, args.port)


if __name__ == "__main__":
    main()
