// feed's page glue, loaded after htmx and before its sse extension.
//
// 1. htmx's sse extension rebuilds a CLOSED EventSource with the URL it started
//    with, which drops the Last-Event-ID the browser would have sent. We build the
//    EventSource ourselves so the URL always carries the last event id this page
//    applied: the server then replays exactly what the page missed.
// 2. The live indicator follows the stream: live when open, reconnecting on error.
// 3. Post times are rendered in UTC by the server; we show them in the reader's
//    own time zone and language ("Nov 29, 4:59 AM"), with the full date as a tooltip.
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

  var short = new Intl.DateTimeFormat(undefined, {
    month: "short", day: "numeric", hour: "numeric", minute: "2-digit"
  });
  var withYear = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "numeric", minute: "2-digit"
  });
  var full = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });

  function localTimes(root) {
    if (!root.querySelectorAll) return;
    var nodes = root.querySelectorAll("time[datetime]:not([data-local])");
    for (var i = 0; i < nodes.length; i++) {
      var moment = new Date(nodes[i].getAttribute("datetime"));
      if (isNaN(moment.getTime())) continue;
      var thisYear = moment.getFullYear() === new Date().getFullYear();
      nodes[i].textContent = (thisYear ? short : withYear).format(moment);
      nodes[i].title = full.format(moment);
      nodes[i].dataset.local = "";
    }
  }

  // htmx:load fires for the page once ready and for everything swapped in later.
  // (htmx.onLoad would listen on document.body, which does not exist yet here.)
  document.addEventListener("htmx:load", function (evt) {
    if (evt.detail && evt.detail.elt) localTimes(evt.detail.elt);
  });

  document.addEventListener("htmx:sseOpen", function () { setState("live", "Live"); });
  document.addEventListener("htmx:sseError", function () {
    setState("reconnecting", "Reconnecting…");
  });
})();
