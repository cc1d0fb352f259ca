// One stream per browser: the tabs of one profile share one EventSource.
// Loaded after feed-source.js, whose face it feeds, and before feed-stream.js, which
// asks it for every stream it opens.
//
// 1. Why. Over HTTP/1.1 a browser opens at most six connections to one host, and an
//    EventSource holds one for as long as the page lives: a seventh tab never loads,
//    and every API call from every tab queues behind the streams.
// 2. Web Locks and BroadcastChannel, not a SharedWorker. One tab holds the stream (the
//    leader: it holds the Web Lock named after the stream) and re-sends each message
//    on a BroadcastChannel of the same name; the others listen. The browser queues
//    the other tabs on the lock and grants it to the next one the moment the holder's
//    document goes away, so a hand-over needs no timer and no heartbeat of our own.
//    A SharedWorker would hold the stream outside every tab, with no hand-over at
//    all, but it is missing from Chrome on Android, where every tab would then fall
//    back to a stream of its own; Web Locks and BroadcastChannel are in every current
//    engine. And the holder stays a page running the code every page runs, so there
//    is no second program to keep in step with the page's scripts.
// 3. What is shared. Dashboards, channel pages and threads' pages of one profile
//    share one stream of every channel the viewer may read (`/events?format=html`),
//    which carries every thread's events too; a channel page drops the posts of other
//    channels, a thread's page those of other posts (feed-lists.js, on channel
//    pages). So one profile holds one page stream however many tabs, channels and
//    threads it has open (and presence counts it once, as a stream of every
//    channel). A kiosk, the admin page, a live search and any other URL keep a
//    stream of their own (a wall screen must not depend on another tab, the admin
//    stream opens with state a late joiner would miss, and a search's matches are
//    made for it by the server).
// 4. Each tab keeps its own resume position. The leader keeps the last RING messages
//    that carry an id. A tab that joins (a new tab, a new leader, a tab that thaws)
//    sends its position; the leader answers with every kept message after it, or with
//    `resync` when it no longer keeps that far back, and the tab re-fetches its list
//    (feed-refetch.js, on re-fetch). Until that answer, messages with an id from the
//    leader are dropped: the answer holds them, in order. Messages without one (heartbeats,
//    hello, presence) are applied as they come. The answer also says whether the
//    leader's stream is open, and its refusal if it was refused (feed-source.js, on why
//    a stream was refused): a tab that joins a refused leader says why and
//    "Reconnecting…", not "Live" (the `hello` it would replay is a sign of life, so it
//    goes only with a stream that is open).
// 5. Hand-over. The new leader opens the stream from its own position and says so;
//    every other tab joins it as above: one at that position or ahead gets the rest
//    and drops what it already applied (feed-lists.js, exactly once), one behind it
//    (it was frozen, or rendered earlier) re-fetches its list. The leader forwards the event
//    types its own page listens for and those each joining tab names.
// 6. Freezing. A frozen tab runs no code, so a frozen leader would hold the stream and
//    send nothing. On `freeze` the leader closes its stream and lets go of the lock,
//    and a follower leaves the queue; on `resume` each queues again and joins.
// 7. Fallback. Without Web Locks or BroadcastChannel every tab opens its own stream
//    (feed-source.js), exactly as a plain EventSource would.
(function () {
  "use strict";

  var RING = 1000;

  var face = window.feedSource;
  var Source = face.Source;
  var withPosition = face.withPosition;
  var CLOSED = face.CLOSED;
  var refusalOf = face.refusalOf;
  var waitAfter = face.waitAfter;

  function sharingWorks() {
    return !!(window.navigator.locks && window.navigator.locks.request && window.BroadcastChannel);
  }

  // -- shared stream ------------------------------------------------------------------

  function newId() {
    return Math.random().toString(36).slice(2) + Date.now().toString(36);
  }

  function shared(url, position, hooks) {
    var name = "feed-stream " + url;
    var source = new Source(url);
    var channel = new BroadcastChannel(name);
    var me = newId();
    var lead = null; // while this tab leads: {session, stream, ring, from, last, types, release}
    var queued = null; // AbortController of this tab's place in the lock's queue
    var joined = null; // the leader's session this tab has joined
    var joining = false;
    var frozen = false;

    function post(message) {
      try {
        channel.postMessage(message);
      } catch (err) {
        // A closed channel (the page is going away) has no one left to tell.
      }
    }

    // -- following ----------------------------------------------------------------------

    function join() {
      joining = true;
      post({ kind: "join", tab: me, from: position(), types: source.types() });
    }

    channel.onmessage = function (evt) {
      var msg = evt.data;
      if (!msg || source.closed || frozen) return;
      if (lead) {
        if (msg.kind === "join") answerJoin(msg);
        return;
      }
      if (msg.kind === "start") {
        join();
      } else if (msg.kind === "replay") {
        if (msg.to !== me) return;
        joining = false;
        joined = msg.session;
        // As the leader's stream is (4): open, or refused (and why), or still connecting,
        // which is no error to report: the leader tells this tab when it opens.
        if (msg.open) source.opened();
        else if (msg.refusal) source.failed();
        if (msg.refusal) hooks.refused(msg.refusal);
        if (msg.hello) source.message("hello", msg.hello, 0);
        if (msg.resync) source.message("resync", "resync: the leader no longer keeps that far back", 0);
        msg.messages.forEach(function (m) { source.message(m.type, m.data, m.id); });
      } else if (msg.kind === "event") {
        if (msg.session !== joined) {
          if (!joining) join();
          if (msg.id) return; // the answer to the join carries it
        } else if (joining && msg.id) {
          return;
        }
        source.message(msg.type, msg.data, msg.id, msg.spread);
      } else if (msg.kind === "open" && msg.session === joined) {
        source.opened();
      } else if (msg.kind === "error" && msg.session === joined) {
        source.failed();
      } else if (msg.kind === "refused" && msg.session === joined) {
        hooks.refused(msg.refusal);
      }
    };

    // -- leading ------------------------------------------------------------------------

    function queue() {
      if (queued || lead || source.closed) return;
      var controller = (queued = new AbortController());
      window.navigator.locks
        .request(name, { signal: controller.signal }, function () {
          queued = null;
          if (source.closed || frozen) return null;
          return new Promise(function (release) { startLeading(release); });
        })
        .catch(function () {
          // Aborted: this tab froze or closed while it waited.
        });
    }

    function startLeading(release) {
      var from = position();
      lead = {
        session: newId(), stream: null, ring: [], from: from, last: from,
        types: {}, hello: null, release: release, attempt: 0, resyncAt: -1, waiting: false,
        open: false, refusal: null // the stream is open; the answer of its run of refusals
      };
      joined = null;
      joining = false;
      hooks.mode("leader");
      post({ kind: "start", session: lead.session, from: from });
      connect();
      source.types().forEach(listen);
      source.typesAdded = listen;
    }

    function connect() {
      var stream = new EventSource(withPosition(url, lead.last, true), {
        withCredentials: true
      });
      hooks.created(stream.url);
      lead.stream = stream;
      lead.waiting = false;
      Object.keys(lead.types).forEach(function (type) { stream.addEventListener(type, relay); });
      stream.onopen = function () {
        if (!lead || lead.stream !== stream) return;
        lead.attempt = 0; // the run of refusals, if any, is over
        lead.refusal = null;
        lead.open = true;
        source.opened();
        post({ kind: "open", session: lead.session });
      };
      stream.onerror = function () {
        if (!lead || lead.stream !== stream) return;
        lead.open = false;
        source.failed();
        post({ kind: "error", session: lead.session });
        if (stream.readyState !== CLOSED) return;
        // Closed for good (an error status): why (feed-source.js, on why a stream was
        // refused: asked at the first refusal of a run only), told to the tabs that
        // follow too, then open it again, from the last message sent on. Not opened
        // sooner by the watchdog while asking: the answer may ask for a wait.
        var tried = lead.attempt++;
        lead.waiting = true;
        refusalOf(stream.url, tried, lead.refusal).then(function (refusal) {
          if (!lead || lead.stream !== stream) return;
          lead.refusal = refusal;
          lead.waiting = !!(refusal && refusal.retryAfter);
          hooks.refused(refusal);
          post({ kind: "refused", session: lead.session, refusal: refusal });
          setTimeout(function () {
            if (lead && lead.stream === stream) connect();
          }, waitAfter(refusal, tried));
        });
      };
    }

    function listen(type) {
      if (!lead || lead.types[type]) return;
      lead.types[type] = true;
      if (lead.stream) lead.stream.addEventListener(type, relay);
    }

    // An EventSource keeps lastEventId from message to message: only a message that
    // moves it carried an id of its own.
    function relay(evt) {
      if (!lead || evt.target !== lead.stream) return;
      var id = Number(evt.lastEventId) || 0;
      var msg = { kind: "event", session: lead.session, type: evt.type, data: evt.data, id: 0 };
      if (id > lead.last) {
        msg.id = id;
        lead.last = id;
        lead.ring.push(msg);
        if (lead.ring.length > RING) lead.from = lead.ring.shift().id;
      } else if (evt.type === "resync") {
        // One with no id of its own (what the stream may show changed): a tab that
        // joins from before this point re-fetches its list too (answerJoin).
        lead.resyncAt = lead.last;
        msg.spread = true;
      }
      if (evt.type === "hello") lead.hello = evt.data;
      post(msg);
      source.message(msg.type, msg.data, msg.id, msg.spread);
    }

    function answerJoin(msg) {
      (msg.types || []).forEach(listen);
      var from = Number(msg.from) || 0;
      // Whether the stream is open, and why it was refused (4): the joining tab shows
      // what this one does, and a `hello` only while the stream is open.
      post({
        kind: "replay", to: msg.tab, session: lead.session,
        open: lead.open, refusal: lead.open ? null : lead.refusal,
        hello: lead.open ? lead.hello : null,
        resync: from < lead.from || from <= lead.resyncAt,
        messages: lead.ring.filter(function (m) { return m.id > from; })
      });
    }

    function stopLeading() {
      if (!lead) return;
      var was = lead;
      lead = null;
      source.typesAdded = null;
      if (was.stream) was.stream.close();
      was.release();
      hooks.mode("follower");
    }

    // -- lifecycle ------------------------------------------------------------------------

    function onFreeze() {
      frozen = true;
      stopLeading();
      if (queued) queued.abort();
      queued = null;
    }

    function onResume() {
      if (!frozen) return;
      frozen = false;
      queue();
      join();
    }

    // A stream silent too long (feed-stream.js, on liveness) may be a connection the network
    // dropped without a word: the leader opens it again from the last message it
    // sent on; a follower's page waits for the leader's to do so. Not while a refusal's
    // Retry-After is waited out (feed-source.js, on why a stream was refused).
    source.reopen = function () {
      if (!lead || !lead.stream || lead.waiting) return;
      lead.stream.close();
      connect();
    };

    document.addEventListener("freeze", onFreeze);
    document.addEventListener("resume", onResume);

    source.close = function () {
      if (source.closed) return;
      stopLeading();
      source.closed = true;
      source.readyState = CLOSED;
      if (queued) queued.abort();
      queued = null;
      document.removeEventListener("freeze", onFreeze);
      document.removeEventListener("resume", onResume);
      channel.close();
    };

    hooks.mode("follower");
    queue();
    join();
    return source;
  }

  // The stream a page may share (3): an /events URL of pages (format, channels or a
  // thread, and a resume position, nothing else) becomes the stream of every channel;
  // null otherwise.
  var SHAREABLE = ["format", "channel", "thread", "last_event_id"];

  function sharedUrl(url) {
    var u = new URL(url, window.location.href);
    if (u.pathname !== "/events" || u.searchParams.get("format") !== "html") return null;
    var others = Array.from(u.searchParams.keys()).filter(function (key) {
      return SHAREABLE.indexOf(key) < 0;
    });
    return others.length ? null : "/events?format=html";
  }

  window.feedTabs = {
    // url: the page's stream; position(): the id of the last event the page applied;
    // alone: a page that keeps its own stream (3); hooks: mode(name), created(url),
    // refused(refusal or null, and for a stream of the page's own, again) (feed-source.js,
    // on why a stream was refused, on a thread that is gone).
    open: function (url, position, alone, hooks) {
      var union = alone ? null : sharedUrl(url);
      if (union && sharingWorks()) return shared(union, position, hooks);
      return face.own(url, position, hooks);
    }
  };
})();
