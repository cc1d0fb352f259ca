// feed's page glue, loaded after htmx and before its sse extension.
//
// 1. Resume. htmx's sse extension rebuilds a CLOSED EventSource with the URL it
//    started with, which drops the Last-Event-ID the browser would have sent. We
//    build every stream ourselves (feed-tabs.js: shared with the profile's other
//    tabs, or the page's own), so it always resumes from the id of the last event
//    this page applied, and we close the previous one (one stream per page, whatever
//    path led to the rebuild).
// 2. Exactly once. A message whose id is not newer than the last applied one is
//    already on the page (a replay overlapping a re-fetched list): it is dropped.
//    A new post whose element exists replaces it, so ids are never duplicated.
//    The last applied id moves only once a message's whole effect is on the page:
//    one that needs the list re-fetched (7) counts through the re-fetched list's
//    id. So a page whose feedStream.lastApplied is the log's newest event shows
//    exactly what its rule makes of the database.
// 3. The page applies messages itself. Each message for the post list is applied
//    here, at once, and htmx swaps nothing in the list: its out-of-band swap keeps
//    an element's old attributes until it settles (20 ms), so the bookkeeping
//    below would see a just-pinned post as unpinned (a pin then a create, as in
//    every replay burst, dropped the pinned post). Messages carry a post's current
//    state (render.py): a created post goes in its place by the list's order (7); a
//    shown one is replaced in place, the focus staying on the same chip or link of the
//    card (or on the card); a tombstone (or a live search's post-unmatched, whose payload is
//    the same) removes it, the focus moving on to the next post if it was in it. On
//    a kiosk nothing takes the focus. A post the page does not show comes in only if the list's rule wants it
//    (7): pinned, or on a dashboard at or above the floor. An edit or delete of
//    any other post is ignored.
// 4. Liveness. An EventSource cannot see SSE comments, so HTML streams carry named
//    `heartbeat` events, and open with `hello` (the server's release and
//    heartbeat interval). Two intervals without any of those or an event: the
//    page shows "Offline since" the last sign of life, until the next one.
//    Timers, not Date arithmetic, decide this, so a frozen or jumping wall clock
//    cannot hide an outage. The page then opens its stream again, from the last
//    event it applied, and again every two intervals while it stays silent: a
//    connection the network dropped without a word (half-open: a lost NAT entry,
//    a dead link) reports no error, and would otherwise be waited on for ever.
// 5. Deploys. A `hello` naming another release than the page was rendered with
//    reloads the page, once per release: sessionStorage remembers the release we
//    reloaded for, so a page that is still served old cannot reload in a loop.
// 6. Re-fetch. On `resync`, and when the rule needs a post the page was never
//    sent (7), the page re-fetches its list. Messages arriving meanwhile are held
//    and go through (2, 3) afterwards, so those the list already reflects
//    (X-Feed-Last-Event-Id) are dropped, and one may start another re-fetch. A
//    failed fetch is retried with backoff; one refused with a Retry-After (a kiosk's
//    search, one too many at once: security.py, on searches in flight) after that
//    long plus up to half as much again at random, so a wall of screens refused
//    together does not ask again together. A kiosk page made with that refusal shows
//    that it waits (partials/search_busy.html), and fetches its list the same way,
//    holding messages from the start. "Older posts" holds messages the same
//    way while its page loads and applies them all after it (that page has no
//    snapshot id), so an edit racing the page is not lost.
// 7. Each list keeps its rule (pages.py) after every message, live or replayed:
//    - the kiosk (data-max-posts), pages.kiosk_window: pinned posts first, then
//      the newest, 30 in all; beyond that the oldest unpinned posts go first,
//      then the oldest pinned ones;
//    - a dashboard (data-max-pinned; its floor is data-floor on "Older posts", 0
//      without it), pages.dashboard_window: its newest page-size pinned posts and
//      every unpinned post down to the floor. An unpinned post under the floor
//      leaves: "Older posts" brings it back in its place, once.
//    When a post leaves and the one that takes its place was never sent (a full
//    kiosk loses one, or a post it unpins is older than every other unpinned one
//    shown; a dashboard at its pinned limit loses a pinned one), only the server
//    knows which it is: the list is re-fetched (6).
//    The list's document order is the order it is shown in (pages.py, on order), so
//    the keyboard and a screen reader meet posts as the eye does; the stylesheet
//    reorders nothing. A card pinned or unpinned moves in the DOM, and one a kiosk's
//    new headline pushes down too, the focus (and a reply box's caret) kept in it.
// 8. Times. Dashboards show each post's time in the reader's zone and language;
//    the kiosk shows relative times ("3 minutes ago") and a clock, refreshed by a
//    timer without asking the server.
// 9. Screen readers. New posts are told in one polite status line (#announcer),
//    a burst in one sentence. The list is no live region: a re-fetch rebuilds it,
//    and that is not news.
// 10. Channel pages. A channel page may get every channel's messages (feed-tabs.js
//     shares one stream of all of them): a post of another channel is not applied,
//     and counts as applied, as if its stream had never carried it. A thread's page
//     shares that stream too, and applies only its own post's messages and replies'
//     (a reply to another post changes nothing there: its thread is not open).
// 11. Other scripts. Each stream made here, shared or its own, is handed to the
//     functions in window.feedSourceHooks (feed-unread.js listens for personal events
//     so), and a page keeps one stream whoever else listens to it.
// 12. Threads. A reply's message is the reply (marked data-parent) and its parent's
//     reply summary. The summary replaces the card's wherever the card is shown; a
//     new reply goes into its thread only if that thread is open on the page (a region
//     under the card, or the thread's own page), oldest first, by id, and is
//     otherwise ignored: a list shows counts, not replies. An edit of a reply the
//     thread does not show (one of the earlier ones it leaves out) is ignored too.
//     Opening a thread fetches it and holds messages meanwhile, as "Older posts" does
//     (6), so a reply racing the fetch is applied to it. A card replaced by an edit or
//     a pin keeps its open thread region, with what is typed in it and the focus.
// 13. Reactions. A post's chips come in the same bytes for every reader (render.py,
//     on reactions): counts and first names. Which are the reader's own is kept here,
//     in `mine`: read from data-mine in what the server rendered for this reader (the
//     page, a re-fetched list, older posts), changed by the reader's own clicks, and by
//     the toggles a `post-reactions` message reports (data-changes) under the reader's
//     name, which is how a toggle made on another tab or device shows here. Every
//     swap of chips is marked from it again. Chips arrive as plain counts (spans): on
//     a dashboard whose reader may react each is made a toggle button here, a real
//     <button> with aria-pressed, so Tab, Enter and Space work as on any. A click
//     sends PUT or DELETE through htmx (so the CSRF header goes along) and marks the
//     chip at once; the answer says which reactions are the reader's now. The kiosk,
//     and a reader not signed in, get no controls.
// 14. A thread that is gone. A thread's page re-fetches its card (6): once the post
//     is deleted that is nothing, and once the reader may no longer read it (its
//     channel made private, say) a 404. Either way there is nothing to wait for: the
//     page says so once and re-fetches no more, where a 404 was retried with backoff
//     for ever. Its stream stays open, shared with the reader's other tabs (10).
// 15. Signing out. The session ends on the server before the next page loads, and a
//     private channel's list asked for in that moment would come back refused (a 404,
//     reported by the browser as a failed load, and on a thread's page taken for the
//     thread gone). From the moment the page submits the sign-out form, whatever it is
//     fetching is abandoned, and nothing is fetched or retried after.
// 16. Access ended elsewhere. A stream whose identity was signed out (in another tab,
//     say), revoked or expired ends with `ended` (sse.py, on messages that tell): the
//     page reloads, to show what it may show now, rather than reconnect as nobody and
//     go on saying "Live". At most once a minute: a page that came back the same way
//     would otherwise reload in a loop. A page whose private channels changed, or that
//     follows a channel made private or public, gets `resync` with no id and
//     re-fetches its list (6) after a random moment of up to one heartbeat interval:
//     every screen that follows the channel hears it at once.
(function () {
  "use strict";

  var HELD_LIMIT = 1000;
  var RELOAD_KEY = "feed-reloaded-for";
  var ENDED_KEY = "feed-reloaded-at-end"; // when the page last reloaded for `ended` (16)
  var ENDED_RELOAD_MS = 60000;

  function meta(name) {
    var tag = document.querySelector('meta[name="' + name + '"]');
    return tag ? tag.content : null;
  }

  var release = meta("feed-release");
  var heartbeatMs = 1000 * Number(meta("feed-heartbeat") || 15);
  var lastApplied = 0;
  var source = null;
  var leaving = false; // the sign-out form was submitted (15)
  var ending = new AbortController(); // abandons what is on its way at sign-out (15)
  // While the list, or a page of older posts, is fetched: {held: [...], overflowed, again}.
  var pending = null;
  // Read by the browser tests, and handy in a console on a misbehaving screen.
  // mode: how this page gets its events (feed-tabs.js): "leader", "follower" or "own".
  var debug = (window.feedStream = {
    created: 0, url: null, lastApplied: 0, mode: null,
    silences: 0 // times the stream went two intervals without a sign (4)
  });
  // The channels a channel page shows (10); null shows them all.
  var channels = null;
  // The post whose thread a thread's page shows (12); null on every other page.
  var thread = null;

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

  var hooks = {
    mode: function (name) { debug.mode = name; },
    created: function (url) {
      debug.created += 1;
      debug.url = url;
    }
  };

  function position() {
    return lastApplied;
  }

  htmx.createEventSource = function (url) {
    readList();
    if (source && source.readyState !== EventSource.CLOSED) source.close();
    var params = new URL(url, window.location.href).searchParams;
    var wanted = params.getAll("channel");
    channels = wanted.length ? wanted : null;
    thread = Number(params.get("thread")) || null;
    source = window.feedTabs.open(url, position, isKiosk(), hooks);
    source.addEventListener("hello", onHello);
    source.addEventListener("heartbeat", alive);
    source.addEventListener("resync", onResync);
    source.addEventListener("ended", onEnded);
    source.addEventListener("presence", onPresence);
    // 11. Other scripts' listeners, on every stream the page makes.
    (window.feedSourceHooks || []).forEach(function (hook) { hook(source); });
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
    if (state === "gone") return; // 14: nothing more to be live for
    lastSign = new Date();
    arm();
    if (state === "live") return;
    setState("live", "Live");
    var stale = document.getElementById("stale");
    if (stale) stale.hidden = true;
    delete document.documentElement.dataset.stale;
  }

  function offline() {
    if (state === "gone") return; // 14: nothing more to be live for
    debug.silences += 1;
    reopen();
    arm(); // silent two intervals on: open it again
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

  // A stream silent for two intervals is opened again (4): the page's own at once, a
  // shared one by the tab that holds it (feed-tabs.js, on one face).
  function reopen() {
    if (source) source.reopen();
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

  // 16. The stream's identity lost its access: show what this browser may see now.
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

  // -- 2, 3, 7. applying messages ------------------------------------------------------

  var parser = document.createElement("template");

  function postId(el) {
    return Number(el.id.slice("post-".length));
  }

  function isPinned(el) {
    return el.classList.contains("pinned");
  }

  function postsIn(list) {
    return Array.prototype.slice.call(list.querySelectorAll(":scope > .post"));
  }

  // The oldest unpinned post a dashboard has loaded: its "Older posts" pages from there.
  function floorOf(list) {
    var older = list.querySelector(":scope > .older");
    return older ? Number(older.dataset.floor) : 0;
  }

  function tally(list) {
    var posts = postsIn(list);
    return { total: posts.length, pinned: posts.filter(isPinned).length };
  }

  // A post the list lacked, in its place by the list's order (arrange).
  function place(list, el) {
    list.insertBefore(el, list.querySelector(":scope > .older"));
    arrange(list);
  }

  // Rule 7's order, which is the document's as well as the screen's (pages.py, on
  // order): a dashboard's pinned posts, then the others; a kiosk's headline (its newest
  // unpinned post), its pinned posts, then the others; each part newest first.
  function ordered(list) {
    var posts = postsIn(list).sort(function (a, b) { return postId(b) - postId(a); });
    var rest = posts.filter(function (el) { return !isPinned(el); });
    var head = list.dataset.maxPosts ? rest.splice(0, 1) : [];
    return head.concat(posts.filter(isPinned), rest);
  }

  // The list put in that order. The longest run of cards already in order stays, so a
  // pin or an unpin moves that one card, not every card it passes. A move drops the
  // focus (a text box keeps its caret): it is put back.
  function arrange(list) {
    var wanted = ordered(list);
    var shown = postsIn(list);
    if (wanted.every(function (el, i) { return el === shown[i]; })) return;
    var rank = new Map(wanted.map(function (el, i) { return [el, i]; }));
    var staying = steady(shown.map(function (el) { return rank.get(el); }));
    var end = shown[shown.length - 1].nextSibling;
    var active = document.activeElement;
    for (var i = wanted.length - 1; i >= 0; i--) {
      if (!staying.has(rank.get(wanted[i]))) list.insertBefore(wanted[i], wanted[i + 1] || end);
    }
    if (active && active !== document.activeElement && active.isConnected) {
      active.focus({ preventScroll: true });
    }
  }

  // The ranks of a longest increasing subsequence of ``ranks`` (patience sorting).
  function steady(ranks) {
    var tails = [];
    var before = [];
    ranks.forEach(function (rank, i) {
      var lo = 0;
      var hi = tails.length;
      while (lo < hi) {
        var mid = (lo + hi) >> 1;
        if (ranks[tails[mid]] < rank) lo = mid + 1;
        else hi = mid;
      }
      before[i] = lo ? tails[lo - 1] : -1;
      tails[lo] = i;
    });
    var kept = new Set();
    for (var at = tails.length ? tails[tails.length - 1] : -1; at >= 0; at = before[at]) kept.add(ranks[at]);
    return kept;
  }

  // A post replaced while a link or a chip in it has the focus keeps it there.
  // The card, decorated (its chips made buttons) before the focus goes back into it.
  // The focus stays on what it was on: a chip of the card's own, the same link of
  // its bar (not a link the new text holds), or whatever the open thread kept.
  function replacePost(old, el) {
    var active = document.activeElement;
    var chip = focusedChip(ownReactions(old));
    var bar = old.querySelector(":scope > .thread-bar");
    var links = bar ? bar.querySelectorAll("a[href]") : [];
    var at = Array.prototype.indexOf.call(links, active);
    keepThread(old, el);
    old.replaceWith(el);
    decorate(el);
    var theirs = el.querySelector(":scope > .thread-bar");
    var again = at >= 0 && theirs ? theirs.querySelectorAll("a[href]")[at] : null;
    if (again) again.focus({ preventScroll: true });
    else if (active && active !== document.body && el.contains(active) && active !== document.activeElement) {
      active.focus({ preventScroll: true });
    }
    refocusChip(ownReactions(el), chip);
    if (old.contains(active) && !el.contains(document.activeElement)) holdFocus(el);
  }

  // Where the focus goes when what held it is replaced or removed: the card itself,
  // so that Tab goes on from there, not from the top of the page.
  function holdFocus(card) {
    if (!card.hasAttribute("tabindex")) card.tabIndex = -1;
    card.focus({ preventScroll: true });
  }

  // A post or reply removed; if the focus was in it, it moves to the next one (or the
  // one before, at the end of a list).
  function removeCard(card) {
    var focused = card.contains(document.activeElement);
    var next = focused ? neighbour(card, "nextElementSibling") || neighbour(card, "previousElementSibling") : null;
    card.remove();
    if (next) holdFocus(next);
  }

  function neighbour(card, way) {
    for (var at = card[way]; at; at = at[way]) {
      if (/^post-\d+$/.test(at.id)) return at;
    }
    return null;
  }

  function ownReactions(card) {
    return card.querySelector("#reactions-" + postId(card));
  }

  // Rule 12: the open thread region and its toggle move into the card that replaces it.
  function keepThread(old, el) {
    var region = old.querySelector(":scope > .thread");
    var toggle = old.querySelector(":scope > .thread-bar > .thread-toggle");
    var link = el.querySelector(":scope > .thread-bar > .thread-link");
    var theirs = el.querySelector(":scope > .thread");
    if (region && theirs) theirs.replaceWith(region);
    if (toggle && link) link.parentNode.insertBefore(toggle, link);
  }

  // Rule 12: a reply's message. The summary goes wherever its card is; the reply into
  // its thread if that is open here. Never asks for a re-fetch.
  function applyReply(el, rest) {
    rest.forEach(function (node) {
      var shown = /^replies-\d+$/.test(node.id) && document.getElementById(node.id);
      if (!shown) return;
      node.removeAttribute("hx-swap-oob");
      shown.replaceWith(node);
    });
    var existing = document.getElementById(el.id);
    var oob = el.getAttribute("hx-swap-oob");
    if (oob === "delete") {
      if (existing) removeCard(existing);
      return;
    }
    el.removeAttribute("hx-swap-oob");
    if (existing) {
      replacePost(existing, el);
    } else if (oob) {
      return; // an edit of a reply not shown: one of the earlier ones the thread leaves out
    } else {
      var replies = document.getElementById("replies-list-" + el.dataset.parent);
      if (!replies) return;
      var later = Array.prototype.slice.call(replies.children).filter(function (r) {
        return postId(r) > postId(el);
      })[0];
      replies.insertBefore(el, later || null);
      decorate(el);
      announce(el);
    }
  }

  // A kiosk (data-max-posts) leaves out only old unpinned posts and pinned ones past
  // its max, and a dashboard (data-max-pinned) only unpinned posts under its floor and
  // pinned ones past its max: a post the list lacks belongs in it if it is new (a
  // created message) or pinned, or, on a dashboard, at or above the floor.
  // A live search's list (data-search) takes any post its stream sends: an edit that
  // made a post match brings it in, and the rule then keeps it only if it is new enough.
  function belongs(list, el, created) {
    if (created || isPinned(el) || list.dataset.search) return true;
    return !list.dataset.maxPosts && postId(el) >= floorOf(list);
  }

  // Rule 7: what the list may keep. The list's own classes are the truth here: every
  // post in it was put there by apply(), synchronously, never by an htmx swap.
  function bound(list) {
    var posts = postsIn(list);
    var byAge = function (a, b) { return postId(a) - postId(b); };
    var max = Number(list.dataset.maxPosts);
    if (max) {
      var pinned = function (el) { return isPinned(el) ? 1 : 0; };
      posts
        .sort(function (a, b) { return pinned(a) - pinned(b) || byAge(a, b); })
        .slice(0, Math.max(0, posts.length - max))
        .forEach(function (el) { el.remove(); });
      return;
    }
    var maxPinned = Number(list.dataset.maxPinned);
    var floor = floorOf(list);
    posts.forEach(function (el) { if (!isPinned(el) && postId(el) < floor) el.remove(); });
    var pins = posts.filter(function (el) { return isPinned(el); }).sort(byAge).reverse();
    pins.slice(maxPinned || pins.length).forEach(function (el) { el.remove(); });
  }

  // Whether the list may now lack a post it should show: one it never received (older
  // than it, or a pinned one past its max). Only the server knows which, so the list
  // is re-fetched (rule 6).
  function lacking(list, before, el, unpinned) {
    var now = tally(list);
    var max = Number(list.dataset.maxPosts);
    if (!max) return before.pinned >= Number(list.dataset.maxPinned) && now.pinned < before.pinned;
    if (before.total < max) return false; // a list short of its max shows every post
    if (now.total < max) return true;
    // An unpinned post keeps its place only above another shown unpinned one: under
    // all of them, the newest post the kiosk left out may be newer.
    return unpinned && !postsIn(list).some(function (q) {
      return q !== el && !isPinned(q) && postId(q) < postId(el);
    });
  }

  // Applies one message to the list; returns true if the list must be re-fetched.
  function apply(list, data) {
    parser.innerHTML = data;
    var nodes = Array.prototype.slice.call(parser.content.children);
    parser.innerHTML = "";
    var el = nodes[0];
    if (el && /^reactions-\d+$/.test(el.id)) return applyReactions(el);
    if (!el || !/^post-\d+$/.test(el.id)) return false;
    if (channels && el.dataset.channel && channels.indexOf(el.dataset.channel) < 0) return false;
    if (thread && !el.dataset.parent && postId(el) !== thread) return false;
    if (el.dataset.parent) {
      applyReply(el, nodes.slice(1));
      return false;
    }
    var before = tally(list);
    var existing = document.getElementById(el.id);
    var oob = el.getAttribute("hx-swap-oob");
    var unpinned = false;
    if (oob === "delete") {
      if (existing) removeCard(existing);
    } else {
      el.removeAttribute("hx-swap-oob");
      if (existing) {
        unpinned = isPinned(existing) && !isPinned(el);
        replacePost(existing, el);
      } else if (belongs(list, el, !oob)) {
        place(list, el);
        decorate(el);
      } else {
        return false;
      }
    }
    bound(list);
    arrange(list);
    if (!oob && !existing && el.isConnected) announce(el);
    return lacking(list, before, el, unpinned);
  }

  function receive(list, data, id) {
    if (pending) {
      hold(data, id);
    } else if (fresh(id)) {
      // The message that shows the list must be re-fetched is not applied yet: the
      // re-fetched list is, with everything up to its snapshot.
      if (apply(list, data)) refetchList(data, id);
      else applied(id);
    }
  }

  // Every message for the post list is applied here, at once; htmx swaps nothing in it.
  document.addEventListener("htmx:sseBeforeMessage", function (evt) {
    alive();
    var list = postsList();
    if (!list || evt.target !== list) return;
    evt.preventDefault();
    receive(list, evt.detail.data, Number(evt.detail.lastEventId));
  });

  document.addEventListener("htmx:sseMessage", function (evt) {
    applied(Number(evt.detail.lastEventId));
  });

  // -- 13. reactions --------------------------------------------------------------------

  var mine = {}; // post id -> {reaction: true}

  function reader() {
    var list = postsList();
    return (list && list.dataset.reader) || null;
  }

  // New chips for a post: the toggles they report under this reader's name are
  // theirs now; the chips replace those shown, marked, the focus kept on its chip.
  function applyReactions(el) {
    var changes = [];
    try {
      changes = JSON.parse(el.dataset.changes || "[]");
    } catch (err) {
      changes = [];
    }
    var who = reader();
    var post = el.dataset.post;
    changes.forEach(function (c) {
      if (who === null || c[0] !== who) return;
      var own = mine[post] || (mine[post] = {});
      if (c[2]) own[c[1]] = true;
      else delete own[c[1]];
    });
    el.removeAttribute("hx-swap-oob");
    el.removeAttribute("data-changes");
    var existing = document.getElementById(el.id);
    if (!existing) return false;
    var chip = focusedChip(existing);
    existing.replaceWith(el);
    paint(el.parentNode);
    refocusChip(el, chip);
    return false;
  }

  function focusedChip(root) {
    var active = document.activeElement;
    return root && active && active.classList && active.classList.contains("chip") && root.contains(active)
      ? active.dataset.reaction
      : null;
  }

  function refocusChip(root, reaction) {
    if (reaction === null || !root) return;
    var chips = root.querySelectorAll(".chip");
    for (var i = 0; i < chips.length; i++) {
      if (chips[i].dataset.reaction === reaction) return chips[i].focus({ preventScroll: true });
    }
  }

  // What the server rendered for this reader says which are theirs (data-mine).
  function readMine(root) {
    var found = root.querySelectorAll ? root.querySelectorAll(".reactions[data-mine]") : [];
    for (var i = 0; i < found.length; i++) {
      var own = {};
      found[i].dataset.mine.split(" ").forEach(function (r) { if (r) own[r] = true; });
      mine[found[i].dataset.post] = own;
      found[i].removeAttribute("data-mine");
    }
  }

  function paint(root) {
    if (!root || !root.querySelectorAll) return;
    var controls = !isKiosk() && reader() !== null;
    var groups = root.querySelectorAll(".reactions");
    for (var i = 0; i < groups.length; i++) {
      var own = mine[groups[i].dataset.post] || {};
      var chips = groups[i].querySelectorAll(".chip");
      for (var j = 0; j < chips.length; j++) {
        if (!controls) continue;
        var chip = chips[j].tagName === "BUTTON" ? chips[j] : asButton(chips[j]);
        chip.setAttribute("aria-pressed", own[chip.dataset.reaction] ? "true" : "false");
      }
    }
  }

  // A chip as it came (a span: counts, no control), made a button in its place.
  function asButton(chip) {
    var button = document.createElement("button");
    button.type = "button";
    for (var i = 0; i < chip.attributes.length; i++) {
      button.setAttribute(chip.attributes[i].name, chip.attributes[i].value);
    }
    while (chip.firstChild) button.appendChild(chip.firstChild);
    chip.replaceWith(button);
    return button;
  }

  function setMine(post, reactions) {
    var own = {};
    reactions.forEach(function (r) { own[r] = true; });
    mine[post] = own;
    var group = document.getElementById("reactions-" + post);
    if (group) paint(group.parentNode);
  }

  function toggleChip(chip) {
    var post = chip.closest(".reactions").dataset.post;
    var reaction = chip.dataset.reaction;
    var own = mine[post] || {};
    var had = !!own[reaction];
    var before = Object.keys(own);
    setMine(post, had ? before.filter(function (r) { return r !== reaction; }) : before.concat([reaction]));
    var url = "/api/posts/" + post + "/reactions/" + encodeURIComponent(reaction);
    htmx.ajax(had ? "DELETE" : "PUT", url, {
      source: chip,
      swap: "none",
      handler: function (elt, info) {
        var xhr = info.xhr;
        if (xhr.status >= 200 && xhr.status < 300) {
          setMine(post, JSON.parse(xhr.responseText).mine);
        } else {
          setMine(post, before);
        }
      }
    });
  }

  // A button answers Enter and Space with a click: the keyboard needs nothing more.
  document.addEventListener("click", function (evt) {
    var chip = evt.target.closest && evt.target.closest(".reactions button.chip");
    if (chip && reader() !== null) toggleChip(chip);
  });

  // -- 9. screen readers ----------------------------------------------------------------

  var news = { count: 0, replies: 0, latest: null, timer: null };
  var GATHER_MS = 500; // a burst's posts are told in one sentence
  var TOLD_EVERY_MS = 3000; // and a steady stream of them no more often than this
  var toldAt = -Infinity;

  // New posts are told to screen readers through one polite status line, a burst in one
  // sentence, and sentences at least TOLD_EVERY_MS apart, so that a busy channel does
  // not talk over everything else: the list itself is no live region, since a re-fetch
  // rebuilds it whole. A reply arriving in a thread open on the page is told the same
  // way (rule 12).
  function announce(el) {
    if (el.classList.contains("reply")) news.replies += 1;
    else news.count += 1;
    news.latest = el;
    if (!news.timer) {
      news.timer = setTimeout(tell, Math.max(GATHER_MS, toldAt + TOLD_EVERY_MS - Date.now()));
    }
  }

  function tell() {
    var line = document.getElementById("announcer");
    var el = news.latest;
    var reply = el.classList.contains("reply");
    var author = el.querySelector(".author").textContent;
    var body = el.querySelector(".body").textContent.trim().replace(/\s+/g, " ");
    if (body.length > 200) body = body.slice(0, 200) + "…";
    var total = news.count + news.replies;
    var kinds = news.count && news.replies ? "posts and replies" : reply ? "replies" : "posts";
    var lead = total === 1 ? (reply ? "New reply" : "New post") : total + " new " + kinds + ", the latest";
    var where;
    if (reply) {
      var parent = document.querySelector("#post-" + el.dataset.parent + " > header .author");
      where = parent ? " to " + parent.textContent : "";
    } else {
      where = " in " + el.querySelector(".channel").textContent;
    }
    if (line) line.textContent = lead + " by " + author + where + ": " + body;
    news = { count: 0, replies: 0, latest: null, timer: null };
    toldAt = Date.now();
  }

  // -- 6. re-fetching -------------------------------------------------------------------

  function hold(data, id) {
    if (pending.held.length < HELD_LIMIT) pending.held.push({ data: data, id: id });
    else pending.overflowed = true;
  }

  function onResync(evt) {
    alive();
    if (evt && evt.spread) {
      // What the stream may show changed (16): every screen that follows the channel is
      // told at once, so each waits a moment, at random, not to ask all together.
      setTimeout(resyncNow, Math.random() * heartbeatMs);
      return;
    }
    resyncNow();
  }

  function resyncNow() {
    // A list fetched before the resync may be older than where the stream went on.
    if (pending) pending.again = true;
    else refetchList();
  }

  function refetchList(data, id) {
    pending = { held: [], overflowed: false, again: false };
    if (data !== undefined) hold(data, id);
    fetchList(0);
  }

  // Resolves to the response's text and snapshot id; rejects on any failure to get it.
  function get(url) {
    if (leaving) return Promise.reject(new Error("the page is signing out")); // (15)
    return fetch(url, { signal: ending.signal }).then(function (response) {
      if (!response.ok) {
        var failure = new Error("the feed answered " + response.status);
        failure.status = response.status;
        failure.retryAfter = Number(response.headers.get("Retry-After")) || 0;
        throw failure;
      }
      var snapshot = Number(response.headers.get("X-Feed-Last-Event-Id"));
      return response.text().then(function (html) { return { html: html, snapshot: snapshot }; });
    });
  }

  // A wait told by the server, plus up to half as much again at random (6).
  function spread(ms) {
    return ms * (1 + Math.random() / 2);
  }

  // Only a failed fetch is retried; what happens to the list afterwards is not.
  function fetchList(attempt) {
    var list = postsList();
    get(list.dataset.feedUrl).then(
      function (got) {
        if (thread !== null && !got.html.trim()) return threadGone(list, got.snapshot);
        var threads = rebuild(list, got.html);
        applied(got.snapshot);
        threads.then(function () { releaseHeld(list); });
      },
      function (failure) {
        if (leaving) return; // abandoned, not failed (15)
        if (thread !== null && failure.status === 404) return threadGone(list, 0);
        var delay = failure.retryAfter
          ? spread(1000 * failure.retryAfter)
          : Math.min(30000, 1000 * Math.pow(2, attempt));
        setTimeout(function () { fetchList(attempt + 1); }, delay);
      }
    );
  }

  // The list rebuilt from a re-fetch. An open thread is opened again, from the server
  // too, not kept as it was (the re-fetch is what repairs it), with what was typed in
  // its reply box put back, and the focus where it was, or on its card. Messages stay
  // held until the threads are in (the promise it returns).
  function rebuild(list, html) {
    var typed = {};
    var focusedCard = null;
    Array.prototype.forEach.call(list.children, function (card) {
      if (!card.id) return;
      if (card.contains(document.activeElement)) focusedCard = card.id;
      var region = card.querySelector(":scope > .thread");
      var box = region && !region.hidden ? region.querySelector(".reply-form textarea") : null;
      if (region && !region.hidden) {
        typed[card.id] = { text: box ? box.value : "", focused: !!box && box === document.activeElement };
      }
    });
    list.innerHTML = html;
    decorate(list);
    var waiting = [];
    Object.keys(typed).forEach(function (id) {
      var card = document.getElementById(id);
      if (!card || card.parentNode !== list) return;
      var region = card.querySelector(":scope > .thread");
      if (region && !region.hidden) return restoreTyped(region, typed[id]); // a thread's page
      var button = card.querySelector(":scope > .thread-bar > .thread-toggle");
      region = button && document.getElementById(button.getAttribute("aria-controls"));
      if (!region) return;
      waiting.push(get(button.dataset.url).then(function (got) {
        fillThread(button, region, got.html);
        restoreTyped(region, typed[id]);
      }, function () {}));
    });
    if (focusedCard && !list.contains(document.activeElement) && document.getElementById(focusedCard)) {
      holdFocus(document.getElementById(focusedCard));
    }
    return Promise.all(waiting);
  }

  function restoreTyped(region, was) {
    var box = region.querySelector(".reply-form textarea");
    if (!box) return;
    if (was.text && !box.value) box.value = was.text;
    if (was.focused) box.focus({ preventScroll: true });
  }

  function fillThread(button, region, html) {
    region.innerHTML = html;
    region.hidden = false;
    htmx.process(region);
    decorate(region);
    button.setAttribute("aria-expanded", "true");
    button.textContent = "Hide replies";
  }

  // 14. The thread's post is gone: the page says so, once, and asks for it no more.
  function threadGone(list, snapshot) {
    pending = null;
    applied(snapshot);
    setState("gone", "Deleted");
    clearTimeout(watchdog);
    var note = document.createElement("p");
    note.className = "empty gone";
    note.setAttribute("role", "status");
    note.textContent = "This post was deleted, or you may no longer read it.";
    list.replaceChildren(note);
  }

  // Messages held meanwhile go through receive() again: those the new list already
  // reflects are dropped, and one that needs another re-fetch holds the rest again.
  function releaseHeld(list) {
    var done = pending;
    pending = null;
    done.held.forEach(function (msg) { receive(list, msg.data, msg.id); });
    if (done.again || done.overflowed) onResync();
  }

  // "Older posts": the next page is merged in by id, and the list's floor moves down.
  // Messages are held meanwhile and applied after it, so one about a post of that page
  // is applied to it, whichever of the two the server answered first.
  document.addEventListener("click", function (evt) {
    var button = evt.target.closest && evt.target.closest(".older button");
    var list = postsList();
    if (!button || !list || button.closest(".older").parentNode !== list) return;
    // A click while the list is re-fetched does nothing: that list has its own button.
    if (pending) return;
    pending = { held: [], overflowed: false, again: false };
    var older = button.parentNode;
    var focused = document.activeElement === button;
    // On a failure the button stays, and another click tries again.
    get(older.dataset.url).then(
      function (got) {
        mergeOlder(list, older, got.html, focused);
        releaseHeld(list);
      },
      function () { releaseHeld(list); }
    );
  });

  // Rule 12: "Show replies" opens the thread in place, "Hide replies" closes it (and
  // forgets it: opened again, it is fetched again). Messages are held while it loads.
  document.addEventListener("click", function (evt) {
    var button = evt.target.closest && evt.target.closest(".thread-toggle");
    var list = postsList();
    if (!button || !list) return;
    var region = document.getElementById(button.getAttribute("aria-controls"));
    if (!region) return;
    if (button.getAttribute("aria-expanded") === "true") {
      region.hidden = true;
      region.innerHTML = "";
      button.setAttribute("aria-expanded", "false");
      button.textContent = "Show replies";
      return;
    }
    if (pending) return; // the list is being re-fetched: that list has its own button
    pending = { held: [], overflowed: false, again: false };
    get(button.dataset.url).then(
      function (got) {
        fillThread(button, region, got.html);
        releaseHeld(list);
      },
      function () { releaseHeld(list); }
    );
  });

  // The focus, if it was on the button, moves to the next one, or to the first post of
  // the last page: it does not fall back to the top of the document.
  function mergeOlder(list, older, html, focused) {
    parser.innerHTML = html;
    var incoming = Array.prototype.slice.call(parser.content.children);
    parser.innerHTML = "";
    older.remove();
    var first = null;
    incoming.forEach(function (el) {
      if (el.classList.contains("older")) {
        list.appendChild(el);
      } else if (el.classList.contains("post") && !document.getElementById(el.id)) {
        place(list, el);
        first = first || el;
      }
    });
    decorate(list);
    bound(list);
    if (!focused) return;
    var next = list.querySelector(":scope > .older button");
    if (next) {
      next.focus();
    } else if (first && first.isConnected) {
      first.tabIndex = -1;
      first.focus();
    }
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

  // Rule 12: cards carry no control (the kiosk shares their bytes); a page that opens
  // threads in place gives each closed card its "Show replies" button.
  function addToggles(root) {
    if (isKiosk()) return;
    var links = root.querySelectorAll(".thread-bar > .thread-link[data-thread-url]");
    for (var i = 0; i < links.length; i++) {
      var link = links[i];
      var card = link.closest(".post");
      var region = card && card.querySelector(":scope > .thread");
      if (!region || !region.hidden || link.parentNode.querySelector(".thread-toggle")) continue;
      var button = document.createElement("button");
      button.type = "button";
      button.className = "thread-toggle";
      button.setAttribute("aria-expanded", "false");
      button.setAttribute("aria-controls", region.id);
      button.dataset.url = link.dataset.threadUrl;
      button.textContent = "Show replies";
      link.parentNode.insertBefore(button, link);
    }
  }

  function decorate(root) {
    if (!root.querySelectorAll) return;
    addToggles(root);
    readMine(root);
    paint(root);
    var nodes = root.querySelectorAll("time[datetime]");
    var kiosk = isKiosk();
    if (kiosk) {
      // Nobody works a kiosk: a stray key must not move its screen or open a link.
      var reachable = root.querySelectorAll("a[href], button, [tabindex]");
      for (var k = 0; k < reachable.length; k++) reachable[k].tabIndex = -1;
    }
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
    // Rule 12: a reply form that came back (sent, or with its error) takes the focus
    // back if the form it replaced had it, so the keyboard stays in the thread.
    var gone = document.activeElement;
    if (elt.classList && elt.classList.contains("reply-form") && (!gone || gone === document.body)) {
      var box = elt.querySelector("textarea");
      if (box) box.focus();
    }
  });

  // What the server rendered is applied; the sse extension may ask for a stream first.
  // A list made without its posts, its search refused, is fetched after the wait (6).
  function readList() {
    var list = postsList();
    if (!list) return;
    applied(Number(list.dataset.lastEventId) || 0);
    var busy = list.querySelector(":scope > .busy[data-retry-after]");
    if (!busy || pending) return;
    pending = { held: [], overflowed: false, again: false };
    var seconds = Number(busy.dataset.retryAfter) || 1;
    setTimeout(function () { fetchList(0); }, spread(1000 * seconds));
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
  // that very form, so it closes its own first instead of reporting the cut, and
  // abandons the lists on their way (15).
  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (form.getAttribute("action") !== "/signout") return;
    leaving = true;
    ending.abort();
    if (source) source.close();
  });

  document.addEventListener("htmx:sseOpen", alive);
  document.addEventListener("htmx:sseError", function () {
    if (state !== "offline" && state !== "gone") setState("reconnecting", "Reconnecting…");
  });
})();
