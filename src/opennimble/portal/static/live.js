// Live pages: the server sends what changed as server-sent events; EventSource reconnects by
// itself when the connection drops. My sessions: a card's new HTML when its session changes
// ("card"), or that it is gone ("gone"). All sessions: the table's rows ("rows").
(function () {
  "use strict";
  const script = document.currentScript;
  const events = new EventSource(script.dataset.events);
  function fragment(html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content;
  }
  function card(id) {
    return document.getElementById("session-" + id);
  }
  events.addEventListener("card", (event) => {
    const data = JSON.parse(event.data);
    const cards = document.getElementById("cards");
    const fresh = fragment(data.html).firstElementChild;
    const old = card(data.id);
    if (old) {
      old.replaceWith(fresh);
    } else {
      const empty = cards.querySelector(".empty");
      if (empty) empty.remove();
      cards.prepend(fresh);
    }
  });
  events.addEventListener("gone", (event) => {
    const old = card(JSON.parse(event.data).id);
    if (old) old.remove();
  });
  events.addEventListener("rows", (event) => {
    const rows = document.getElementById("rows");
    rows.replaceChildren(fragment(JSON.parse(event.data).html));
  });
})();
