// feed's page glue, loaded after htmx and before its sse extension.
//
// 1. Resume. htmx's sse extension rebuilds a CLOSED EventSource with the URL it
//    started with, which drops the Last-Event-ID the browser would have sent. We
//    build every EventSource ourselves, so its URL always carries the id of the
//    last event this page applied, and we close the previous one (one stream per
//    page, whatever path led to the rebuild).
// 2. Exactly once. A message whose id is not newer than the last applied one is
//    already on the page (a replay overlapping a re-fetched list): it is dropped.
//    A new post whose element exists replaces it, so ids are never duplicated.
// 3. Posts outside the page. An edit or delete of a post the page does not show
//    is ignored (htmx would log an error for the missing target); a pin brings the
//    post in, in id order, because pinned posts are always shown.
// 4. Liveness. An EventSource cannot see SSE comments, so HTML streams carry named
//    `heartbeat` events, and open with `hello` (the server's release and
//    heartbeat interval). Two intervals without any of those or an event: the
//    page shows "Offline since" the last sign of life, until the next one.
//    Timers, not Date arithmetic, decide this, so a frozen or jumping wall clock
//    cannot hide an outage.
// 5. Deploys. A `hello` naming another release than the page was rendered with
//    reloads the page, once per release: sessionStorage remembers the release we
//    reloaded for, so a page that is still served old cannot reload in a loop.
// 6. Resync. The page re-fetches its list. Messages arriving meanwhile are held
//    and applied afterwards if newer than the list (X-Feed-Last-Event-Id); a
//    failed fetch is retried with backoff.
// 7. Bounded. A list with data-max-posts (the kiosk) keeps that many posts:
//    the oldest unpinned ones go first, by the rule of pages.kiosk_window.
// 8. Times. Dashboards show each post's time in the reader's zone and language;
//    the kiosk shows relative times ("3 minutes ago") and a clock, refreshed by a
//    timer without asking the server.
(function () {
  "use strict";

  var HELD_LIMIT = 1000;
  var RELOAD_KEY = "feed-reloaded-for";

  function meta(name) {
    var tag = document.querySelector('meta[name="' + name + '"]');
    return tag ? tag.content : null;
  }

  var release = meta("feed-release");
  var heartbeatMs = 1000 * Number(meta("feed-heartbeat") || 15);
  var lastApplied = 0;
  var source = null;
  var refetch = null; // {held: [...], overflowed: bool} while the list is re-fetched
  // Read by the browser tests, and handy in a console on a misbehaving screen.
  var debug = (window.feedStream = { created: 0, url: null, lastApplied: 0 });

  function postsList() {
    return document.getElementById("posts");
  }

  function applied(id) {
    if (id > lastApplied) lastApplied = debug.lastApplied = id;
  }

  function fresh(id) {
    return !id || id > lastApplied;
  }

  // -- 1. resume ------------------------------------------------------------------------

  function withLastId(url) {
    var u = new URL(url, window.location.href);
    if (lastApplied) u.searchParams.set("last_event_id", String(lastApplied));
    return u.pathname + u.search;
  }

  htmx.createEventSource = function (url) {
    readList();
    if (source && source.readyState !== EventSource.CLOSED) source.close();
    source = new EventSource(withLastId(url), { withCredentials: true });
    source.addEventListener("hello", onHello);
    source.addEventListener("heartbeat", alive);
    source.addEventListener("resync", onResync);
    source.addEventListener("presence", onPresence);
    debug.created += 1;
    debug.url = source.url;
    return source;
  };

  // Presence counts every stream of every worker; a channel page counts the streams
  // that receive that channel (its own and the all-channel ones).
  function onPresence(evt) {
    alive();
    var shown = document.getElementById("presence");
    if (!shown) return;
    var counts = JSON.parse(evt.data);
    var channel = shown.dataset.channel;
    var n = channel ? counts.everything + (counts.channels[channel] || 0) : counts.streams;
    shown.textContent = n + (n === 1 ? " screen watching" : " screens watching");
  }

  // -- 4. liveness ----------------------------------------------------------------------

  var watchdog = null;
  var lastSign = new Date();
  var state = null;
  var hhmm = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });

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
    lastSign = new Date();
    arm();
    if (state === "live") return;
    setState("live", "Live");
    var stale = document.getElementById("stale");
    if (stale) stale.hidden = true;
    delete document.documentElement.dataset.stale;
  }

  function offline() {
    setState("offline", "Offline");
    var stale = document.getElementById("stale");
    if (stale) {
      var when = stale.querySelector("time");
      when.dateTime = lastSign.toISOString();
      when.textContent = hhmm.format(lastSign);
      stale.hidden = false;
    }
    document.documentElement.dataset.stale = "";
  }

  // -- 5. deploys -----------------------------------------------------------------------

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

  function reloadOnce(next) {
    try {
      if (window.sessionStorage.getItem(RELOAD_KEY) === next) return;
      window.sessionStorage.setItem(RELOAD_KEY, next);
    } catch (err) {
      return; // without storage a reload could loop; staying is the safer failure
    }
    window.location.reload();
  }

  // -- 2, 3. applying messages ----------------------------------------------------------

  var parser = document.createElement("template");

  function postId(el) {
    return Number(el.id.slice("post-".length));
  }

  // In id order among the list's posts (newest first); after the others if oldest.
  function place(list, el) {
    var id = postId(el);
    var posts = list.querySelectorAll(":scope > .post");
    for (var i = 0; i < posts.length; i++) {
      if (postId(posts[i]) < id) {
        list.insertBefore(el, posts[i]);
        return;
      }
    }
    list.appendChild(el);
  }

  // Handles what htmx would get wrong; returns true if the message needs nothing more.
  function handledHere(list, data) {
    parser.innerHTML = data;
    var el = parser.content.firstElementChild;
    parser.innerHTML = "";
    if (!el || !/^post-\d+$/.test(el.id)) return false;
    var existing = document.getElementById(el.id);
    var oob = el.getAttribute("hx-swap-oob");
    if (!oob) {
      if (!existing) return false;
      existing.replaceWith(el);
    } else if (existing) {
      return false;
    } else if (oob === "outerHTML" && el.classList.contains("pinned")) {
      el.removeAttribute("hx-swap-oob");
      place(list, el);
    } else {
      return true;
    }
    decorate(el);
    trim(list);
    return true;
  }

  document.addEventListener("htmx:sseBeforeMessage", function (evt) {
    var msg = evt.detail;
    var id = Number(msg.lastEventId);
    alive();
    if (refetch) {
      hold(msg.data, id);
      evt.preventDefault();
    } else if (!fresh(id)) {
      evt.preventDefault();
    } else if (handledHere(evt.target, msg.data)) {
      applied(id);
      evt.preventDefault();
    }
  });

  document.addEventListener("htmx:sseMessage", function (evt) {
    applied(Number(evt.detail.lastEventId));
    trim(evt.target);
  });

  // -- 6. resync ------------------------------------------------------------------------

  function hold(data, id) {
    if (refetch.held.length < HELD_LIMIT) refetch.held.push({ data: data, id: id });
    else refetch.overflowed = true;
  }

  function onResync() {
    alive();
    if (refetch) return;
    refetch = { held: [], overflowed: false };
    fetchList(0);
  }

  function fetchList(attempt) {
    var list = postsList();
    fetch(list.dataset.feedUrl)
      .then(function (response) {
        if (!response.ok) throw new Error("the feed answered " + response.status);
        var snapshot = Number(response.headers.get("X-Feed-Last-Event-Id"));
        return response.text().then(function (html) {
          replaceList(list, html, snapshot);
        });
      })
      .catch(function () {
        var delay = Math.min(30000, 1000 * Math.pow(2, attempt));
        setTimeout(function () { fetchList(attempt + 1); }, delay);
      });
  }

  function replaceList(list, html, snapshot) {
    var held = refetch.held;
    var again = refetch.overflowed;
    refetch = null;
    htmx.swap(list, html, { swapStyle: "innerHTML", swapDelay: 0, settleDelay: 0 });
    decorate(list);
    applied(snapshot);
    held.forEach(function (msg) {
      if (!fresh(msg.id)) return;
      if (!handledHere(list, msg.data)) {
        htmx.swap(list, msg.data, { swapStyle: "afterbegin", swapDelay: 0, settleDelay: 0 });
      }
      applied(msg.id);
    });
    trim(list);
    if (again) onResync();
  }

  // -- 7. bounded -----------------------------------------------------------------------

  function trim(list) {
    var max = Number(list && list.dataset.maxPosts);
    if (!max) return;
    var posts = list.querySelectorAll(":scope > .post");
    var extra = posts.length - max;
    if (extra <= 0) return;
    var pinned = function (el) { return el.classList.contains("pinned") ? 1 : 0; };
    Array.prototype.slice.call(posts)
      .sort(function (a, b) { return pinned(a) - pinned(b) || postId(a) - postId(b); })
      .slice(0, extra)
      .forEach(function (el) { el.remove(); });
  }

  // -- 8. times -------------------------------------------------------------------------

  var short = new Intl.DateTimeFormat(undefined, {
    month: "short", day: "numeric", hour: "numeric", minute: "2-digit"
  });
  var withYear = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "numeric", minute: "2-digit"
  });
  var full = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });
  var clockDay = new Intl.DateTimeFormat(undefined, {
    weekday: "long", day: "numeric", month: "long"
  });
  var ago = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  var UNITS = [["day", 86400], ["hour", 3600], ["minute", 60]];

  function absolute(moment) {
    var thisYear = moment.getFullYear() === new Date().getFullYear();
    return (thisYear ? short : withYear).format(moment);
  }

  function relative(moment, now) {
    var seconds = (now - moment) / 1000;
    if (seconds >= 7 * 86400) return absolute(moment);
    for (var i = 0; i < UNITS.length; i++) {
      var count = Math.floor(seconds / UNITS[i][1]);
      if (count >= 1) return ago.format(-count, UNITS[i][0]);
    }
    return "just now";
  }

  function isKiosk() {
    return document.body.classList.contains("kiosk");
  }

  function decorate(root) {
    if (!root.querySelectorAll) return;
    var nodes = root.querySelectorAll("time[datetime]");
    var kiosk = isKiosk();
    var now = new Date();
    for (var i = 0; i < nodes.length; i++) {
      var moment = new Date(nodes[i].getAttribute("datetime"));
      if (isNaN(moment.getTime())) continue;
      if (kiosk) nodes[i].textContent = relative(moment, now);
      else if (nodes[i].hasAttribute("data-local")) continue;
      else nodes[i].textContent = absolute(moment);
      nodes[i].title = full.format(moment);
      nodes[i].dataset.local = "";
    }
  }

  function tick() {
    var clock = document.getElementById("clock");
    var now = new Date();
    if (clock) {
      clock.dateTime = now.toISOString();
      clock.innerHTML = "";
      var time = document.createElement("span");
      time.className = "clock-time";
      time.textContent = hhmm.format(now);
      var day = document.createElement("span");
      day.className = "clock-day";
      day.textContent = clockDay.format(now);
      clock.append(time, day);
    }
    var list = postsList();
    if (list) decorate(list);
  }

  // htmx:load fires for the page once ready and for everything swapped in later.
  // (htmx.onLoad would listen on document.body, which does not exist yet here.)
  document.addEventListener("htmx:load", function (evt) {
    var elt = evt.detail && evt.detail.elt;
    if (!elt) return;
    if (elt === document.body) start();
    else decorate(elt);
  });

  // What the server rendered is applied; the sse extension may ask for a stream first.
  function readList() {
    var list = postsList();
    if (list) applied(Number(list.dataset.lastEventId) || 0);
  }

  function start() {
    readList();
    if (release) arm();
    if (isKiosk()) {
      tick();
      setInterval(tick, 15000);
    } else {
      decorate(document.body);
    }
  }

  // Signing out ends the session's streams on the server. This page is leaving by
  // that very form, so it closes its own first instead of reporting the cut.
  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (form.getAttribute("action") === "/signout" && source) source.close();
  });

  document.addEventListener("htmx:sseOpen", alive);
  document.addEventListener("htmx:sseError", function () {
    if (state !== "offline") setState("reconnecting", "Reconnecting…");
  });
})();
