// My sessions, live: the server sends a card's new HTML when its session changes (server-sent
// events); EventSource reconnects by itself when the connection drops.
(function () {
  "use strict";
  const script = document.currentScript;
  const cards = document.getElementById("cards");
  const events = new EventSource(script.dataset.events);
  function card(id) {
    return document.getElementById("session-" + id);
  }
  events.addEventListener("card", (event) => {
    const data = JSON.parse(event.data);
    const template = document.createElement("template");
    template.innerHTML = data.html.trim();
    const fresh = template.content.firstElementChild;
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
})();
