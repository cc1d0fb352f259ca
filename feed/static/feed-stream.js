// The page's stream (feed-page.js has the list of the page's scripts). Loaded before
// htmx's sse extension, which takes the EventSource factory installed here.
//
// 1. Resume. htmx's sse extension rebuilds a CLOSED EventSource with the URL it
//    started with, which drops the Last-Event-ID the browser would have sent. We build
//    every stream ourselves (feed-tabs.js: shared with the profile's other tabs, or
//    feed-source.js: the page's own), so it always resumes from the id of the last
//    event this page applied, and we close the previous one (one stream per page,
//    whatever path led to the rebuild).
// 2. The position. The id of the last event this page applied moves only once a
//    message's whole effect is on the page (feed-lists.js, exactly once). So a page
//    whose feedStream.lastApplied is the log's newest event shows exactly what its
//    rule makes of the database. A stream's URL also says which channels a channel
//    page shows and which post a thread's page shows (feed-lists.js, on channel pages).
//    What must not go past it is told each time it moves (feed-unread.js reports no
//    read past it: on read means seen).
// 3. Liveness. An EventSource cannot see SSE comments, so HTML streams carry named
//    `heartbeat` events, and open with `hello` (the server's release and heartbeat
//    interval). Two intervals without any of those or an event: the page shows
//    "Offline since" the last sign of life, until the next one. Timers, not Date
//    arithmetic, decide this, so a frozen or jumping wall clock cannot hide an outage.
//    The page then opens its stream again, from the last event it applied, and again
//    every two intervals while it stays silent: a connection the network dropped
//    without a word (half-open: a lost NAT entry, a dead link) reports no error, and
//    would otherwise be waited on for ever. A thread's page whose post is gone
//    (feed-refetch.js, on a thread that is gone) has nothing more to be live for, and
//    says so instead; a stream of its own is closed, to ask for nothing more (a shared
//    one stays, for the other tabs).
// 4. Deploys. A `hello` naming another release than the page was rendered with
//    reloads the page, once per release: sessionStorage remembers the release we
//    reloaded for, so a page that is still served old cannot reload in a loop.
// 5. Other scripts. Each stream made here, shared or its own, is handed to the
//    functions in window.feedSourceHooks (feed-unread.js listens for personal events
//    so), and a page keeps one stream whoever else listens to it.
// 6. Access ended elsewhere. A stream whose identity was signed out (in another tab,
//    say), revoked or expired ends with `ended` (sse.py, on messages that tell): the
//    page reloads, to show what it may show now, rather than reconnect as nobody and
//    go on saying "Live". At most once a minute: a page that came back the same way
//    would otherwise reload in a loop. A page whose private channels changed, or that
//    follows a channel made private or public, gets `resync` with no id and re-fetches
//    its list (feed-refetch.js, told at once).
// 7. Presence counts every stream of every worker; a channel page counts the streams
//    that receive that channel (its own and the all-channel ones).
// 8. Refused. A stream the server refused (an error status) says why: feed-source.js
//    asks (on why a stream was refused), and the server's sentence goes in #refused
//    (partials/refused.html), a polite status as the badge is, with what the page does
//    about it, until the stream is let in. The words are the server's alone: the page
//    adds only that it tries again, which is its own doing.
(function () {
  "use strict";

  var page = window.feedPage;
  var RELOAD_KEY = "feed-reloaded-for";
  var ENDED_KEY = "feed-reloaded-at-end"; // when the page last reloaded for `ended` (6)
  var ENDED_RELOAD_MS = 60000;

  function meta(name) {
    var tag = document.querySelector('meta[name="' + name + '"]');
    return tag ? tag.content : null;
  }

  var release = meta("feed-release");
  var heartbeatMs = 1000 * Number(meta("feed-heartbeat") || 15);
  var lastApplied = 0;
  var source = null;
  // Read by the browser tests, and handy in a console on a misbehaving screen.
  // mode: how this page gets its events (feed-tabs.js): "leader", "follower" or "own".
  var debug = (window.feedStream = {
    created: 0, url: null, lastApplied: 0, mode: null,
    silences: 0 // times the stream went two intervals without a sign (3)
  });
  // The channels a channel page shows (2); null shows them all.
  var channels = null;
  // The post whose thread a thread's page shows (2); null on every other page.
  var thread = null;

  var movers = []; // told each new position (2)

  function applied(id) {
    if (!(id > lastApplied)) return;
    lastApplied = debug.lastApplied = id;
    movers.forEach(function (told) { told(id); });
  }

  function fresh(id) {
    return !id || id > lastApplied;
  }

  // -- 1. resume ------------------------------------------------------------------------

  var hooks = {
    mode: function (name) { debug.mode = name; },
    created: function (url) {
      debug.created += 1;
      debug.url = url;
    },
    // Why a stream was refused (8); for a stream of the page's own, ``again`` opens it
    // again (feed-source.js, on a thread that is gone): a thread's page first asks
    // whether its thread is gone (feed-refetch.js, on a thread that is gone).
    refused: function (refusal, again) {
      var say = function () { sayRefused(refusal ? refusal.message : ""); };
      if (!again) say();
      else if (thread === null) { say(); again(); }
      else page.refetch.probeThread(function () { say(); again(); });
    }
  };

  function position() {
    return lastApplied;
  }

  htmx.createEventSource = function (url) {
    page.refetch.readList();
    if (source && source.readyState !== EventSource.CLOSED) source.close();
    var params = new URL(url, window.location.href).searchParams;
    var wanted = params.getAll("channel");
    channels = wanted.length ? wanted : null;
    thread = Number(params.get("thread")) || null;
    source = window.feedTabs.open(url, position, page.isKiosk(), hooks);
    source.addEventListener("hello", onHello);
    source.addEventListener("heartbeat", alive);
    source.addEventListener("resync", page.refetch.onResync);
    source.addEventListener("ended", onEnded);
    source.addEventListener("presence", onPresence);
    // 5. Other scripts' listeners, on every stream the page makes.
    (window.feedSourceHooks || []).forEach(function (hook) { hook(source); });
    return source;
  };

  // 7.
  function onPresence(evt) {
    alive();
    var shown = document.getElementById("presence");
    if (!shown) return;
    var counts = JSON.parse(evt.data);
    var channel = shown.dataset.channel;
    var n = channel ? counts.everything + (counts.channels[channel] || 0) : counts.streams;
    shown.textContent = n + (n === 1 ? " screen watching" : " screens watching");
  }

  // -- 3. liveness ----------------------------------------------------------------------

  var watchdog = null;
  var lastSign = new Date();
  var state = null;

  function setState(next, text) {
    if (state === next) return;
    state = next;
    var badge = document.getElementById("live");
    if (badge) {
      badge.dataset.state = next;
      badge.textContent = text;
    }
  }

  function arm() {
    clearTimeout(watchdog);
    watchdog = setTimeout(offline, 2 * heartbeatMs);
  }

  function alive() {
    if (state === "gone") return; // nothing more to be live for (3)
    lastSign = new Date();
    arm();
    sayRefused("");
    if (state === "live") return;
    setState("live", "Live");
    var stale = document.getElementById("stale");
    if (stale) stale.hidden = true;
    delete document.documentElement.dataset.stale;
  }

  function offline() {
    if (state === "gone") return; // nothing more to be live for (3)
    debug.silences += 1;
    reopen();
    arm(); // silent two intervals on: open it again
    setState("offline", "Offline");
    var stale = document.getElementById("stale");
    if (stale) {
      var when = stale.querySelector("time");
      when.dateTime = lastSign.toISOString();
      when.textContent = page.times.hourMinute(lastSign);
      stale.hidden = false;
    }
    document.documentElement.dataset.stale = "";
  }

  // A stream silent for two intervals is opened again: the page's own at once, a shared
  // one by the tab that holds it (feed-source.js, on one face).
  function reopen() {
    if (source) source.reopen();
  }

  // -- 4. deploys -----------------------------------------------------------------------

  function onHello(evt) {
    var info;
    try {
      info = JSON.parse(evt.data);
    } catch (err) {
      return;
    }
    if (info.heartbeat > 0) heartbeatMs = 1000 * info.heartbeat;
    alive();
    if (release && info.release && info.release !== release) reloadOnce(info.release);
  }

  // 6. The stream's identity lost its access: show what this browser may see now.
  function onEnded() {
    try {
      var at = Number(window.sessionStorage.getItem(ENDED_KEY)) || 0;
      if (Date.now() - at < ENDED_RELOAD_MS) return;
      window.sessionStorage.setItem(ENDED_KEY, String(Date.now()));
    } catch (err) {
      return; // without storage a reload could loop
    }
    window.location.reload();
  }

  function reloadOnce(next) {
    try {
      if (window.sessionStorage.getItem(RELOAD_KEY) === next) return;
      window.sessionStorage.setItem(RELOAD_KEY, next);
    } catch (err) {
      return; // without storage a reload could loop; staying is the safer failure
    }
    window.location.reload();
  }

  // -- 8. refused ----------------------------------------------------------------------

  var RETRYING = "Trying again automatically.";
  var refusedSaid = "";

  // Said once per change: a refusal repeated at each attempt is not announced again.
  function sayRefused(message) {
    var text = message ? message + " " + RETRYING : "";
    if (text === refusedSaid) return;
    refusedSaid = text;
    var line = document.getElementById("refused");
    if (line) line.textContent = text;
  }

  // A message htmx swapped itself (not the post list's: feed-lists.js) is applied.
  document.addEventListener("htmx:sseMessage", function (evt) {
    applied(Number(evt.detail.lastEventId));
  });

  document.addEventListener("htmx:sseOpen", alive);
  document.addEventListener("htmx:sseError", function () {
    if (state !== "offline" && state !== "gone") setState("reconnecting", "Reconnecting…");
  });

  page.stream = {
    applied: applied,
    fresh: fresh,
    // 2.
    position: position,
    onMove: function (told) { movers.push(told); },
    alive: alive,
    heartbeatMs: function () { return heartbeatMs; },
    channels: function () { return channels; },
    thread: function () { return thread; },
    // 3. The watchdog starts with the page, on a page that streams (it names its release).
    watch: function () {
      if (release) arm();
    },
    // 3. Nothing more to be live for: no badge but "Deleted", no reopening, and no
    // stream of the page's own.
    gone: function () {
      setState("gone", "Deleted");
      clearTimeout(watchdog);
      if (source && debug.mode === "own") source.close();
    },
    // The sign-out form was submitted (feed-refetch.js, on signing out).
    close: function () {
      if (source) source.close();
    }
  };
})();
