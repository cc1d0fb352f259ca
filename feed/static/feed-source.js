// The face of a page's stream, and a stream of the page's own behind it. What htmx's
// sse extension and feed-stream.js use as an EventSource (``Source``) is fed either
// by a real EventSource of this page (``own``: a kiosk, the admin page, a live search,
// and any page whose tabs cannot share) or by the stream the browser's tabs share
// (feed-tabs.js, which decides which). Loaded after htmx and before feed-tabs.js.
//
// 1. One face. A stream of the page's own (a kiosk, the fallback) wears the same face
//    as a shared one, so that either can be opened again when it has gone silent
//    (``reopen``: feed-stream.js, on liveness) and neither reports CLOSED to htmx's sse
//    extension, whose own rebuilds wait longer after each failure and start again
//    only once one opens. A stream closed for good (an error status) is opened again
//    here, with backoff; one the network cut the browser retries by itself.
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

  // A stream of the page's own, behind the same face as a shared one (1): its real
  // EventSource can be replaced (reopen) without htmx's sse extension seeing it close.
  function own(url, position, hooks) {
    hooks.mode("own");
    var source = new Source(url);
    var stream = null;
    var last = 0; // the newest id a message carried
    var attempt = 0;
    var types = {};

    function connect() {
      // From the newest message passed on, as the leader does: the page may not have
      // applied them all yet (a re-fetch holds them), and has them all the same.
      var mine = (stream = new EventSource(withPosition(url, Math.max(position(), last)), {
        withCredentials: true
      }));
      hooks.created(mine.url);
      Object.keys(types).forEach(function (type) { mine.addEventListener(type, relay); });
      mine.onopen = function () {
        if (stream !== mine) return;
        attempt = 0;
        source.opened();
      };
      mine.onerror = function () {
        if (stream !== mine) return;
        source.failed();
        if (mine.readyState !== CLOSED) return; // the browser tries again by itself
        // Closed for good (an error status): open it again, from the last message sent on.
        var delay = Math.min(30000, 500 * Math.pow(2, attempt++));
        setTimeout(function () { if (stream === mine && !source.closed) connect(); }, delay);
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
      if (source.closed) return;
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
    CLOSED: CLOSED
  };
})();
