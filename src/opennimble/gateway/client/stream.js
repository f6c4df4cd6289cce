// The stream page's client: noVNC, full window, connected through the gateway's websocket.
//
// The page is served only to a browser whose stream token was just accepted; the websocket
// carries the stream's credential as an HttpOnly cookie. The desktop follows the window's size
// (noVNC asks the server to resize: "resize=remote"). When the connection ends, the close
// reason the gateway sent (expired, session stopped, deleted, ...) is shown.

import RFB from "../novnc/core/rfb.js";

const body = document.body;
const status = document.getElementById("status");

function show(state, text) {
    body.dataset.state = state;
    status.textContent = text;
}

function socketUrl() {
    const url = new URL(body.dataset.websocket, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.search = "";
    return url.href;
}

function wireClipboard(rfb) {
    // Only with clipboardMode ENABLED; the gateway drops clipboard messages otherwise.
    rfb.addEventListener("clipboard", (event) => {
        if (navigator.clipboard) {
            navigator.clipboard.writeText(event.detail.text).catch(() => {});
        }
    });
    window.addEventListener("focus", () => {
        if (navigator.clipboard && navigator.clipboard.readText) {
            navigator.clipboard.readText().then((text) => rfb.clipboardPasteFrom(text), () => {});
        }
    });
}

function connect() {
    const socket = new WebSocket(socketUrl());
    let closeReason = "";
    socket.addEventListener("close", (event) => {
        closeReason = event.reason;
    });
    const rfb = new RFB(document.getElementById("screen"), socket, { shared: true });
    rfb.resizeSession = true;
    rfb.scaleViewport = false;
    rfb.clipViewport = false;
    rfb.addEventListener("connect", () => {
        show("connected", "");
        rfb.focus();
    });
    rfb.addEventListener("disconnect", (event) => {
        const fallback = event.detail.clean
            ? "The connection to the desktop was closed."
            : "The connection to the desktop was lost.";
        show("disconnected", closeReason || fallback);
    });
    rfb.addEventListener("desktopname", (event) => {
        document.title = event.detail.name;
    });
    if (body.dataset.clipboard === "ENABLED") {
        wireClipboard(rfb);
    }
    // Tests and benchmarks look at the client through this handle.
    window.opennimbleStream = rfb;
}

// The token in the address bar is used up: keep it out of the history.
window.history.replaceState(null, "", window.location.pathname);
connect();
