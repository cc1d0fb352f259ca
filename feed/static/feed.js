// feed's page glue, loaded after htmx and before its sse extension.
//
// 1. htmx's sse extension rebuilds a CLOSED EventSource with the URL it started
//    with, which drops the Last-Event-ID the browser would have sent. We build the
//    EventSource ourselves so the URL always carries the last event id this page
//    applied: the server then replays exactly what the page missed.
// 2. The live indicator follows the stream: live when open, reconnecting on error.
(function () {
  "use strict";
  var lastApplied = null;

  function withLastId(url) {
    if (lastApplied === null) return url;
    var u = new URL(url, window.location.href);
    u.searchParams.set("last_event_id", lastApplied);
    return u.pathname + u.search;
  }

  htmx.createEventSource = function (url) {
    return new EventSource(withLastId(url), { withCredentials: true });
  };

  function setState(state, text) {
    var badge = document.getElementById("live");
    if (!badge) return;
    badge.dataset.state = state;
    badge.textContent = text;
  }

  document.addEventListener("htmx:sseMessage", function (evt) {
    var id = evt.detail && evt.detail.lastEventId;
    if (id) lastApplied = id;
  });
  document.addEventListener("htmx:sseOpen", function () { setState("live", "Live"); });
  document.addEventListener("htmx:sseError", function () {
    setState("reconnecting", "Reconnecting…");
  });
})();
