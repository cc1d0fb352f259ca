// Read state on the dashboard: unread counts in the nav and the title, the "new
// since you last looked" divider, posts reported read once seen, the mention count,
// "Mark all read", and which events deserve a desktop notification (shown by
// feed-notifications.js). Loaded by pages that carry a reader's read state (pages.py,
// on read state), before feed-stream.js.
//
// 1. Read means seen. A post counts as read once at least half of it has been on
//    screen while the tab is visible (IntersectionObserver and the Page Visibility
//    API): one delivered to a hidden tab stays unread until the tab is shown. A
//    position says "read up to here", and the list is newest first (its pinned
//    section apart, on top: feed-lists.js, on each list's rule; ids decide here, not
//    places), so a channel is reported read (POST /api/channels/{c}/read, by
//    data-event-id) only up to the newest post before which every post of it on the
//    page has been seen: seeing the newest post at the top does not mark the unseen
//    ones under it. One request
//    per channel at a time, and only when it moves the position forward. Replies
//    count as posts do (storage/reading.py, on what counts as unread): a card seen
//    is its replies seen, those that came before it was on screen (the newest one's
//    event, data-reply-event-id, or a live reply's id), so the position moves past
//    them in their place among the posts. A reply to a post the page does not list
//    is passed over, as a post of a channel the page does not show is. Never past
//    where the page stands (feed-stream.js, on the position): a card may carry an id
//    the page has not applied yet (a page of older posts is read after the page was;
//    a message held while a list is fetched is heard before it is applied), and the
//    channel's posts and replies before that id may not be on the page yet, unseen.
//    A report stops there, and goes on once the page has applied it.
// 2. Counts come from the server. The page starts with the counts it was rendered
//    with. After a read-position event (this person's, from any tab or device), a
//    new, edited or deleted post or a mention, it asks GET /api/me/unread again
//    (an edit may have taken a mention out, or put it back), a burst of events at
//    most once per REFRESH_MS: the server counts what the reader may read, without
//    deleted posts and their own, and the page never works that out a second way.
// 3. The divider is drawn once, when the page opens, under the oldest post the
//    reader had not read then: every post below it was read (on the page of all
//    channels, posts of several channels interleave, and one channel's read posts
//    may sit among another's new ones). A post that arrives later goes above it.
// 4. Personal events come on the page's own stream: feed-stream.js hands each
//    EventSource it makes to window.feedSourceHooks. A live post's event id is the message's
//    id; a post replaced by an edit keeps the id it was made with (remembered here).
// 5. A mention, or a new post in an announcement channel by someone else, deserves a
//    desktop notification; feed-notifications.js decides whether and where it is
//    shown (on opt-in, hidden tabs only, once per post).
// 6. Signing out ends the session on the server before the next page loads. From the
//    moment this page submits the sign-out form it asks nothing more in the
//    session's name: a count or a read report still on its way is abandoned, and
//    none is started (an answer to one would be a 401 for the session the reader
//    has just ended, reported by the browser as a failed load).
(function () {
  "use strict";

  var REFRESH_MS = 300;

  var state = null; // the read state the page was rendered with, then as fetched
  var eventIds = {}; // post id -> id of the event that made it (4)
  var replyIds = {}; // post id -> id of the event that made its newest reply (1)
  var reported = {}; // channel -> position asked for (or known)
  var inFlight = {}; // channel -> a report is on its way
  var waiting = {}; // channel -> the id its report stopped at, not applied yet (1)
  var seenIds = new Set(); // event ids of the posts seen on screen (1)
  var showing = new Set(); // posts on screen now, whether the tab is visible or not
  var observer = null;
  var refreshTimer = null;
  var leaving = false; // the sign-out form was submitted (6)
  var ending = new AbortController(); // abandons what is on its way at sign-out (6)
  var debug = (window.feedUnread = {
    reports: 0,
    refreshes: 0,
    readEvents: [],
    held: 0, // requests not made because the page is signing out (6)
  });

  // -- 4. the stream ---------------------------------------------------------------------

  window.feedSourceHooks = (window.feedSourceHooks || []).concat([
    function (source) {
      source.addEventListener("read-position", onReadPosition);
      source.addEventListener("mention", onMention);
      source.addEventListener("post-created", onPostCreated);
      source.addEventListener("post-deleted", refreshSoon);
      source.addEventListener("reply-created", onReplyCreated);
      source.addEventListener("reply-deleted", refreshSoon);
      // An edit can take a mention out of a post, or put one back (2).
      source.addEventListener("post-updated", refreshSoon);
      source.addEventListener("reply-updated", refreshSoon);
    },
  ]);

  function onReadPosition(evt) {
    var data = parse(evt.data);
    if (!data) return;
    var upTo = Number(data.getAttribute("data-up-to")) || 0;
    var channel = data.getAttribute("data-channel");
    debug.readEvents.push(channel);
    if (upTo > (reported[channel] || 0)) reported[channel] = upTo;
    refreshSoon();
  }

  function onMention(evt) {
    var data = parse(evt.data);
    refreshSoon();
    if (data) notify(data.getAttribute("data-post"), "@" + person() + " · " + data.textContent);
  }

  function onPostCreated(evt) {
    var id = Number(evt.lastEventId);
    var match = /id="post-(\d+)"/.exec(evt.data);
    if (!match) return;
    var postId = match[1];
    eventIds[postId] = id;
    var el = document.getElementById("post-" + postId);
    if (el) track(el);
    refreshSoon();
    var channel = /data-channel="([^"]*)"/.exec(evt.data);
    if (channel && state && state.notify.indexOf(channel[1]) >= 0) {
      var author = /class="author">([^<]*)</.exec(evt.data);
      if (!author || author[1] !== person()) {
        notify(postId, "New in #" + channel[1]);
      }
    }
  }

  // A reply's message carries its parent's summary (feed-threads.js): that card
  // holds the reply's event from now on (1).
  function onReplyCreated(evt) {
    var id = Number(evt.lastEventId);
    var parent = /id="replies-(\d+)"/.exec(evt.data);
    if (!id || !parent) return;
    if (id > (replyIds[parent[1]] || 0)) replyIds[parent[1]] = id;
    var author = /class="author">([^<]*)</.exec(evt.data);
    if (author && author[1] === person()) seenIds.add(id); // their own: not unread
    refreshSoon();
    collect();
  }

  var parser = document.createElement("template");

  function parse(html) {
    parser.innerHTML = html;
    var el = parser.content.firstElementChild;
    parser.innerHTML = "";
    return el;
  }

  function person() {
    return state ? state.person : "";
  }

  // A desktop notification deserved (5): feed-notifications.js shows it, or not.
  function notify(postId, text) {
    window.feedNotifications.notify(postId, text);
  }

  // -- 2. counts ---------------------------------------------------------------------------

  function refreshSoon() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(function () {
      refreshTimer = null;
      refresh();
    }, REFRESH_MS);
  }

  function refresh() {
    if (leaving) {
      debug.held += 1;
      return;
    }
    debug.refreshes += 1;
    fetch("/api/me/unread", { credentials: "same-origin", signal: ending.signal })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (fresh) {
        if (!fresh || !state) return;
        state.channels = fresh.channels;
        state.total = fresh.total;
        state.mentions = fresh.mentions;
        state.cap = fresh.cap;
        show();
      })
      .catch(function () { /* the next event asks again */ });
  }

  function show() {
    var capped = false;
    document.querySelectorAll("[data-unread-channel]").forEach(function (badge) {
      var found = state.channels[badge.getAttribute("data-unread-channel")];
      var n = found ? found.unread : 0;
      capped = capped || atCap(n);
      setCount(badge, n, atCap(n));
    });
    document.querySelectorAll("[data-unread-mentions]").forEach(function (badge) {
      setCount(badge, state.mentions, atCap(state.mentions));
    });
    var title = document.title.replace(/^\(\d+\+?\) /, "");
    var total = state.total + (capped ? "+" : "");
    document.title = state.total ? "(" + total + ") " + title : title;
    debug.total = state.total;
    debug.mentions = state.mentions;
  }

  // A count at the server's cap means "that many or more" (storage/reading.py, on
  // counts that stop).
  function atCap(n) {
    return Boolean(state.cap) && n >= state.cap;
  }

  function setCount(badge, n, more) {
    badge.querySelector(".count").textContent = String(n) + (more ? "+" : "");
    badge.hidden = !n;
  }

  // -- 1. read means seen --------------------------------------------------------------

  function eventIdOf(el) {
    var id = Number(el.getAttribute("data-event-id")) || eventIds[el.id.slice(5)] || 0;
    if (id && !el.getAttribute("data-event-id")) el.setAttribute("data-event-id", String(id));
    return id;
  }

  function replyIdOf(el) {
    var postId = el.id.slice(5);
    var id = Math.max(Number(el.getAttribute("data-reply-event-id")) || 0, replyIds[postId] || 0);
    if (id) replyIds[postId] = id;
    return id;
  }

  function track(el) {
    replyIdOf(el); // kept by post id, for a card an edit replaces
    var id = eventIdOf(el);
    if (id) eventIds[el.id.slice(5)] = id;
    if (observer && id) observer.observe(el);
  }

  function onIntersect(entries) {
    entries.forEach(function (entry) {
      if (entry.isIntersecting) showing.add(entry.target);
      else showing.delete(entry.target);
    });
    collect();
  }

  function collect() {
    if (document.visibilityState !== "visible") return;
    var channels = {};
    showing.forEach(function (el) {
      if (!el.isConnected) {
        showing.delete(el);
        return;
      }
      seenIds.add(eventIdOf(el));
      if (replyIdOf(el)) seenIds.add(replyIdOf(el));
      channels[el.getAttribute("data-channel")] = true;
    });
    Object.keys(channels).forEach(report);
  }

  // The newest post or reply of ``channel`` such that every post of it on the page
  // after the reader's position, and every card's newest reply, up to that one, has
  // been seen (their own posts count as seen), and the page has applied it.
  function readUpTo(channel) {
    var list = document.getElementById("posts");
    if (!list) return 0;
    var after = reported[channel] || 0;
    var items = [];
    list.querySelectorAll(":scope > .post").forEach(function (el) {
      if (el.getAttribute("data-channel") !== channel) return;
      var own = eventIdOf(el);
      if (own > after) items.push({ id: own, seen: seenIds.has(own) || ownPost(el) });
      var reply = replyIdOf(el);
      if (reply > after) items.push({ id: reply, seen: seenIds.has(reply) });
    });
    items.sort(function (a, b) { return a.id - b.id; });
    var applied = window.feedPage.stream.position();
    var upTo = 0;
    for (var i = 0; i < items.length; i++) {
      if (!items[i].seen) break;
      if (items[i].id > applied) {
        waiting[channel] = items[i].id;
        break;
      }
      upTo = items[i].id;
    }
    return upTo;
  }

  // The page has applied every event up to ``id``: a report that stopped short of it
  // goes on, whether or not its card is still on screen (it was seen).
  function onMove(id) {
    Object.keys(waiting).forEach(function (channel) {
      if (waiting[channel] > id) return;
      delete waiting[channel];
      report(channel);
    });
  }

  function ownPost(el) {
    var author = el.querySelector(".author");
    return !!author && author.textContent === person();
  }

  function report(channel) {
    var upTo = readUpTo(channel);
    if (!upTo || inFlight[channel]) return;
    inFlight[channel] = true;
    markRead(channel, { up_to: upTo }).then(function (done) {
      inFlight[channel] = false;
      if (done && done.read_up_to > (reported[channel] || 0)) reported[channel] = done.read_up_to;
      else if (!done) return; // refused or offline: the next sighting tries again
      if (readUpTo(channel)) report(channel);
    });
  }

  function markRead(channel, body) {
    if (leaving) {
      debug.held += 1;
      return Promise.resolve(null);
    }
    debug.reports += 1;
    var url = channel ? "/api/channels/" + encodeURIComponent(channel) + "/read" : "/api/me/read";
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: Object.assign({ "Content-Type": "application/json" }, csrf()),
      body: JSON.stringify(body),
      signal: ending.signal,
    })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (done) { refreshSoon(); return done; })
      .catch(function () { return null; });
  }

  function csrf() {
    var raw = document.body.getAttribute("hx-headers");
    try {
      return raw ? JSON.parse(raw) : {};
    } catch (e) {
      return {};
    }
  }

  // Back to a tab: what it saw is reported, and the counts are asked again, since a
  // channel page's stream carries no other channel's new posts.
  document.addEventListener("visibilitychange", function () {
    collect();
    if (document.visibilityState === "visible" && state) refreshSoon();
  });

  document.addEventListener("click", function (evt) {
    var button = evt.target.closest && evt.target.closest("[data-mark-read]");
    if (button) markRead(button.getAttribute("data-mark-read"), {});
  });

  // -- 6. signing out -------------------------------------------------------------------

  // Whether or not another handler goes on to cancel the submission: the page has
  // asked to end its session, and a request made now would race that.
  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (!form.getAttribute || form.getAttribute("action") !== "/signout") return;
    leaving = true;
    if (refreshTimer) clearTimeout(refreshTimer);
    refreshTimer = null;
    ending.abort();
  });

  // -- 3. the divider ------------------------------------------------------------------

  function isUnread(el) {
    var channel = state.channels[el.getAttribute("data-channel")];
    if (!channel || ownPost(el)) return false;
    return eventIdOf(el) > channel.read_up_to;
  }

  function drawDivider(list) {
    var posts = Array.prototype.slice.call(list.querySelectorAll(":scope > .post"));
    var lastUnread = -1;
    posts.forEach(function (el, i) {
      if (isUnread(el)) lastUnread = i;
    });
    // Nothing new, or nothing read under the new posts: no line to draw.
    if (lastUnread < 0 || lastUnread === posts.length - 1) return;
    var firstRead = lastUnread + 1;
    var divider = document.createElement("div");
    divider.className = "unread-divider";
    divider.id = "unread-divider";
    divider.setAttribute("role", "separator");
    divider.textContent = "New since you last looked";
    list.insertBefore(divider, posts[firstRead]);
  }

  // -- start -------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", function () {
    var blob = document.getElementById("read-state");
    if (!blob) return;
    state = JSON.parse(blob.textContent);
    Object.keys(state.channels).forEach(function (name) {
      reported[name] = state.channels[name].read_up_to;
    });
    window.feedPage.stream.onMove(onMove);
    var list = document.getElementById("posts");
    if (list) {
      drawDivider(list);
      observer = new IntersectionObserver(onIntersect, { threshold: 0.5 });
      list.querySelectorAll(":scope > .post").forEach(track);
      // Posts put in later (live, re-fetched, older pages) are watched as well.
      new MutationObserver(function (changes) {
        changes.forEach(function (change) {
          change.addedNodes.forEach(function (node) {
            if (node.nodeType === 1 && node.classList.contains("post")) track(node);
          });
        });
      }).observe(list, { childList: true });
    }
    show();
  });
})();
