"""The baseline of the API benchmark: a bare ASGI callable on the server's HTTP stack.

It answers every HTTP request with the same ~600-byte JSON document and does nothing else (no
routing, no SigV4, no database): what remains is the cost of the HTTP server, the ASGI calls
and the socket work. ``--server uvicorn`` (the default) runs uvicorn (uvloop + httptools when
installed, as ``auto`` picks them) with the options of ``opennimble serve``; ``--server
granian`` runs granian exactly as ``opennimble serve`` with ``http_server = "granian"`` does
(``opennimble.http_servers``: embedded, uvloop, one runtime thread).

Run: ``python -m bench.bare_server --port PORT [--server granian]``.
"""

from __future__ import annotations

import argparse
import json
import socket
from typing import Any

import uvicorn

from opennimble import config, http_servers

BODY_SIZE = 600


def _body(size: int = BODY_SIZE) -> bytes:
    """A fixed JSON document shaped like a streaming session, padded to ``size`` bytes."""
    document: dict[str, Any] = {
        "session": {
            "arn": "arn:aws:nimble:us-west-2:000000000000:streaming-session/xxxxxxxxxxxxxxxxxxxxxx",
            "sessionId": "xxxxxxxxxxxxxxxxxxxxxx",
            "launchProfileId": "xxxxxxxxxxxxxxxxxxxxxx",
            "streamingImageId": "xxxxxxxxxxxxxxxxxxxxxx",
            "ec2InstanceType": "g4dn.xlarge",
            "ownedBy": "00000000-0000-0000-0000-000000000000",
            "createdBy": "00000000-0000-0000-0000-000000000000",
            "createdAt": 1700000000.0,
            "state": "READY",
            "statusCode": "STREAMING_SESSION_READY",
            "statusMessage": "",
            "tags": {},
        }
    }
    raw = json.dumps(document, separators=(",", ":"))
    missing = size - len(raw)
    if missing > 0:
        document["session"]["statusMessage"] = "x" * missing
        raw = json.dumps(document, separators=(",", ":"))
    return raw.encode()


BODY = _body()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def lifespan(receive: Any, send: Any) -> None:
    """Answer the server's lifespan messages (nothing to start or stop)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server", choices=http_servers.NAMES, default="uvicorn")
    args = parser.parse_args()
    if args.server == "granian":
        settings = config.Settings(http_server="granian", host=args.host, port=args.port)
        sock = socket.create_server((args.host, args.port), backlog=2048)
        http_servers.serve_granian(app, sock, settings)
        return
    run_uvicorn(app, args.host, args.port)


def run_uvicorn(asgi: Any, host: str, port: int) -> None:
    """Serve ``asgi`` on uvicorn with the options of ``opennimble serve`` (opennimble.cli.serve)."""
    uvicorn.run(asgi, host=host, port=port, log_level="warning", access_log=False, lifespan="on")


if __name__ == "__main__":
    main()
