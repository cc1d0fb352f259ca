// The face of a page's stream, and a stream of the page's own behind it. What htmx's
// sse extension and feed-stream.js use as an EventSource (``Source``) is fed either
// by a real EventSource of this page (``own``: a kiosk, the admin page, a live search,
// and any page whose tabs cannot share) or by the stream the browser's tabs share
// (feed-tabs.js, which decides which). Either asks why a stream was refused here (2).
// Loaded after htmx and before feed-tabs.js.
//
// 1. One face. A stream of the page's own (a kiosk, the fallback) wears the same face
//    as a shared one, so that either can be opened again when it has gone silent
//    (``reopen``: feed-stream.js, on liveness) and neither reports CLOSED to htmx's sse
//    extension, whose own rebuilds wait longer after each failure and start again
//    only once one opens. A stream closed for good (an error status) is opened again
//    here, after the wait the server asked for (2) or with backoff; one the network
//    cut the browser retries by itself.
// 2. Why a stream was refused. An EventSource closed by an error status cannot read
//    the answer (a live search one too many: live_searches.py; too many streams from
//    one address: security.py), so the page would say "Reconnecting…" for ever with no
//    reason. The tab that opened it (this page for its own stream, the leader for a
//    shared one: feed-tabs.js) asks the same URL once with fetch, which can: the
//    refusal's sentence (errors.py: every refusal is one, in ``error``) goes to
//    hooks.refused, and to the tabs that follow, and the stream opens again after
//    the Retry-After or the backoff of its attempt, whichever is longer, plus up to
//    half as much at random (``waitAfter``). Longer: most refusals ask for 2 s
//    (errors.py), and a wall of screens refused through a database outage would
//    otherwise ask every 2–3 s for ever, twice each time. At random: screens refused
//    together do not come back together. While asking and while a Retry-After is
//    waited out, a silent stream is not opened sooner. The question is a HEAD first,
//    which the server answers with the status its GET would open with and never
//    streams (stream.py, on HEAD): a stream it would let in now costs nothing more.
//    Only a refusal is asked again with a GET, for its sentence, without the resume
//    position: should the server let that one in after all, it replays nothing before
//    it is cut off; but it is a real stream for that moment (counted against the
//    address's streams and live searches, identified, logged). The question is asked
//    at the first refusal of a run (since the stream was last open), whose answer
//    stands for the rest of the run, and again at the next refusal only when it had
//    no answer (let in by then, or unanswered within ASK_MS, after which it gives up).
// 3. A thread that is gone. Some refusals mean there is nothing more to ask for (a
//    thread's post deleted, or no longer readable: thread_streams.py, on a deleted post's
//    thread), and the page may find that out where the refusal's sentence cannot say
//    it (feed-refetch.js, on a thread that is gone). So the stream is opened again
//    only when the page says so: ``hooks.refused`` gets the refusal and ``again``,
//    which it calls unless it closes the stream instead.
(function () {
  "use strict";

  var CONNECTING = 0;
  var OPEN = 1;
  var CLOSED = 2;

  // A page's own URL already says where its render left off (0 included: a page
  // rendered from an empty log must still get what was written before its stream
  // opened), so a position replaces it only once the page has moved on. The shared
  // URL has none of its own and always gets one.
  function withPosition(url, position, always) {
    var u = new URL(url, window.location.href);
    if (position || always) u.searchParams.set("last_event_id", String(position || 0));
    return u.pathname + u.search;
  }

  // What htmx's sse extension and feed-stream.js use as an EventSource: listeners by type,
  // onopen and onerror, readyState, close(). Fed by a real EventSource (this tab leads)
  // or by the leader's messages (this tab follows).
  function Source(url) {
    this.url = url;
    this.withCredentials = true;
    this.readyState = CONNECTING;
    this.onopen = null;
    this.onerror = null;
    this.onmessage = null;
    this.listeners = {};
    this.closed = false;
    this.typesAdded = null; // called with each new type, by the leader
  }

  Source.prototype.addEventListener = function (type, fn) {
    var list = this.listeners[type] || (this.listeners[type] = []);
    if (list.indexOf(fn) < 0) list.push(fn);
    if (this.typesAdded) this.typesAdded(type);
  };

  Source.prototype.removeEventListener = function (type, fn) {
    var list = this.listeners[type] || [];
    var at = list.indexOf(fn);
    if (at >= 0) list.splice(at, 1);
  };

  Source.prototype.types = function () {
    return Object.keys(this.listeners);
  };

  // ``spread``: a `resync` the server sent with no id of its own (what the stream may
  // show changed), told to every screen at once (feed-refetch.js, told at once).
  Source.prototype.message = function (type, data, id, spread) {
    if (this.closed) return;
    var evt = new MessageEvent(type, { data: data, lastEventId: id ? String(id) : "" });
    evt.spread = !!spread;
    (this.listeners[type] || []).slice().forEach(function (fn) { fn.call(this, evt); }, this);
  };

  Source.prototype.opened = function () {
    if (this.closed) return;
    this.readyState = OPEN;
    if (this.onopen) this.onopen(new Event("open"));
  };

  // The shared stream is always being re-established by some tab: never CLOSED, so
  // htmx does not build another.
  Source.prototype.failed = function () {
    if (this.closed) return;
    this.readyState = CONNECTING;
    if (this.onerror) this.onerror(new Event("error"));
  };

  // -- why a stream was refused (2) -----------------------------------------------------

  // Resolves to the refusal of ``url`` ({message, retryAfter}: the server's sentence,
  // "" for an answer that is not feed's own, such as a proxy's page), or to null if it
  // would let the stream in now, or cannot be asked.
  // Not answered by then (a proxy holding it, a server too busy): as if it could not be
  // asked, rather than leave the page waiting on it until its watchdog (2).
  var ASK_MS = 5000;

  function askWhy(url) {
    var u = new URL(url, window.location.href);
    u.searchParams.delete("last_event_id");
    var asking = new AbortController();
    var timer = setTimeout(function () { asking.abort(); }, ASK_MS);
    var ask = { credentials: "same-origin", signal: asking.signal };
    var target = u.pathname + u.search;
    return fetch(target, Object.assign({ method: "HEAD" }, ask))
      .then(function (head) {
        // Let in now: nothing was streamed, nothing more to ask.
        return head.ok ? null : fetch(target, ask);
      })
      .then(function (response) {
        if (!response) return null;
        if (response.ok) {
          asking.abort(); // let in by now: a stream, which was not what was asked for
          return null;
        }
        var wait = Number(response.headers.get("Retry-After")) || 0;
        var said = function (message) { return { message: message, retryAfter: wait }; };
        return response.json().then(
          function (body) { return said(String((body && body.error) || "")); },
          function () { return said(""); } // not JSON: not feed's own answer
        );
      })
      .catch(function () { return null; })
      .then(function (refusal) {
        clearTimeout(timer);
        return refusal;
      });
  }

  // Milliseconds until a stream closed for good opens again (2): what the server asked
  // for or the backoff of its attempt, whichever is longer (a Retry-After of 2 s must not
  // keep a refused page asking every 2 s for ever), at most 30 s, then spread by up to
  // half as much again (with or without a Retry-After: screens refused together must
  // not come back in step).
  function waitAfter(refusal, attempt) {
    var asked = refusal && refusal.retryAfter ? 1000 * refusal.retryAfter : 0;
    var wait = Math.min(30000, Math.max(asked, 500 * Math.pow(2, attempt)));
    return wait * (1 + Math.random() / 2);
  }

  // The refusal of attempt ``tried`` of a run of refusals (2): asked at the first, and
  // after it ``last`` (the answer so far), unless there was none.
  function refusalOf(url, tried, last) {
    return tried === 0 || !last ? askWhy(url) : Promise.resolve(last);
  }

  // -- own stream (kiosk, admin, fallback) ---------------------------------------------

  // A stream of the page's own, behind the same face as a shared one (1): its real
  // EventSource can be replaced (reopen) without htmx's sse extension seeing it close.
  function own(url, position, hooks) {
    hooks.mode("own");
    var source = new Source(url);
    var stream = null;
    var last = 0; // the newest id a message carried
    var attempt = 0;
    var types = {};
    var waiting = false; // asking why, or a refusal's Retry-After is waited out (2)
    var refusal = null; // the answer at the first refusal of this run of refusals (2)

    function connect() {
      waiting = false;
      // From the newest message passed on, as the leader does: the page may not have
      // applied them all yet (a re-fetch holds them), and has them all the same.
      var mine = (stream = new EventSource(withPosition(url, Math.max(position(), last)), {
        withCredentials: true
      }));
      hooks.created(mine.url);
      Object.keys(types).forEach(function (type) { mine.addEventListener(type, relay); });
      mine.onopen = function () {
        if (stream !== mine) return;
        attempt = 0; // the run of refusals, if any, is over
        refusal = null;
        source.opened();
      };
      mine.onerror = function () {
        if (stream !== mine) return;
        source.failed();
        if (mine.readyState !== CLOSED) return; // the browser tries again by itself
        // Closed for good (an error status): why (2), then open it again, from the last
        // message sent on, unless the page finds there is nothing to ask for (3). Not
        // opened sooner by the watchdog while asking: the answer may ask for a wait.
        var tried = attempt++;
        waiting = true;
        refusalOf(mine.url, tried, refusal).then(function (answer) {
          if (stream !== mine || source.closed) return;
          refusal = answer;
          waiting = !!(answer && answer.retryAfter);
          hooks.refused(answer, function () {
            setTimeout(function () {
              if (stream === mine && !source.closed) connect();
            }, waitAfter(answer, tried));
          });
        });
      };
    }

    // As the leader's relay (feed-tabs.js): only a message that moves lastEventId
    // carried an id.
    function relay(evt) {
      if (evt.target !== stream) return;
      var id = Number(evt.lastEventId) || 0;
      var carried = id > last ? id : 0;
      last = Math.max(last, id);
      source.message(evt.type, evt.data, carried, evt.type === "resync" && !carried);
    }

    function listen(type) {
      if (types[type]) return;
      types[type] = true;
      if (stream) stream.addEventListener(type, relay);
    }

    source.typesAdded = listen;
    source.reopen = function () {
      if (source.closed || waiting) return;
      stream.close();
      connect();
    };
    source.close = function () {
      if (source.closed) return;
      source.closed = true;
      source.readyState = CLOSED;
      stream.close();
    };
    connect();
    return source;
  }

  window.feedSource = {
    Source: Source,
    own: own,
    withPosition: withPosition,
    refusalOf: refusalOf,
    waitAfter: waitAfter,
    CLOSED: CLOSED
  };
})();
