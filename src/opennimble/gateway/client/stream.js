// The stream page's client: noVNC, full window, connected through the gateway's websocket.
//
// The page is served to a browser whose stream token was just accepted, or that holds the
// stream's credential (an HttpOnly cookie) from then; the websocket carries the credential. The desktop follows the window's size
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

// A connection that ends without the gateway's explanation (the network, or the server
// restarting) is started again, by the same credential, while the stream admits it: the page stays on the
// same desktop. A refusal or an end the gateway explains is final, and the page then offers
// the way to a new stream (the studio portal's page of this stream).
const RETRY_FOR = 60000; // ms of trying again after a lost connection
let lostSince = 0;

function offerRenewal() {
    if (!body.dataset.renew || document.getElementById("renew")) {
        return;
    }
    const offer = document.createElement("p");
    offer.id = "renewal";
    const link = document.createElement("a");
    link.id = "renew";
    link.href = body.dataset.renew;
    link.textContent = "Get a new stream of this session";
    offer.append(link);
    body.append(offer);
}

function connect() {
    const socket = new WebSocket(socketUrl());
    let closeReason = "";
    let closeCode = 0;
    socket.addEventListener("close", (event) => {
        closeReason = event.reason;
        closeCode = event.code;
    });
    const rfb = new RFB(document.getElementById("screen"), socket, { shared: true });
    rfb.resizeSession = true;
    rfb.scaleViewport = false;
    rfb.clipViewport = false;
    rfb.addEventListener("connect", () => {
        lostSince = 0;
        show("connected", "");
        rfb.focus();
    });
    rfb.addEventListener("disconnect", (event) => {
        // the gateway explains its refusals and ends with codes 4000-4999; anything else
        // (the server going away or restarting, a broken connection) is tried again, and a
        // retry the gateway refuses says why
        if (closeCode < 4000) {
            lostSince = lostSince || Date.now();
            if (Date.now() - lostSince < RETRY_FOR) {
                show("reconnecting", "The connection to the desktop was lost: reconnecting…");
                setTimeout(connect, 1000);
                return;
            }
        }
        const fallback = event.detail.clean
            ? "The connection to the desktop was closed."
            : "The connection to the desktop was lost.";
        show("disconnected", closeReason || fallback);
        offerRenewal();
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

// The token in the address bar is used up: keep it out of the history. A reload asks for the
// page without it, and the browser's credential for this stream admits it again.
window.history.replaceState(null, "", window.location.pathname);
connect();
