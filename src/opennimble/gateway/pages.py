"""The gateway's pages: the full-window desktop client, and clear refusals.

Both are small, self-contained HTML documents. The client page loads noVNC and the gateway's
own script (``client/stream.js``) with relative URLs, so it works under any ``public_url`` path.
Neither page may be framed by another site or leak the stream URL (with its token) as a
referrer.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

SECURITY_HEADERS = {
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}


def _head(title: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><link rel='icon' href='data:,'>"
        "<link rel='stylesheet' href='../stream-client/app/stream.css'>"
    )


def refusal(title: str, text: str, renew: str | None = None) -> str:
    """A page that says why the stream cannot be opened, and what to do; with ``renew`` (the
    studio portal's page of the stream's session) it offers to get a new stream there."""
    offer = ""
    if renew:
        offer = (
            f"<p><a id='renew' href='{html.escape(renew)}'>Get a new stream of this session</a>"
            " (in the studio portal, signed in as its owner)</p>"
        )
    return (
        f"{_head(title)}</head><body class='message'><main><h1>{html.escape(title)}</h1>"
        f"<p id='reason'>{html.escape(text)}</p>{offer}</main></body></html>"
    )


def client(
    stream_id: str,
    session_id: str,
    clipboard: bool,
    modules: Sequence[str] = (),
    renew: str = "",
) -> str:
    """The full-window VNC client of a stream; its script connects to the stream's websocket.

    ``modules`` (paths under noVNC's directory) are preloaded at once: noVNC is some fifty ES
    modules, which the browser would otherwise discover one import level at a time.
    """
    preloads = "".join(
        f"<link rel='modulepreload' href='../stream-client/novnc/{html.escape(m)}'>"
        for m in modules
    )
    return (
        f"{_head(f'Desktop {session_id}')}{preloads}"
        "<script type='module' src='../stream-client/app/stream.js'></script></head>"
        f"<body class='desktop' data-websocket='{html.escape(stream_id)}/websocket' "
        f"data-clipboard='{'ENABLED' if clipboard else 'DISABLED'}' data-state='connecting' "
        f"data-renew='{html.escape(renew)}'>"
        "<div id='screen'></div>"
        "<div id='status' role='status'>Connecting to the desktop…</div></body></html>"
    )
