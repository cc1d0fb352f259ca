// The post list: each message applied to it, its rule and its order kept (feed-page.js
// has the list of the page's scripts).
//
// 1. The page applies messages itself. Each message for the post list is applied
//    here, at once, and htmx swaps nothing in the list: its out-of-band swap keeps an
//    element's old attributes until it settles (20 ms), so the bookkeeping below
//    would see a just-pinned post as unpinned (a pin then a create, as in every
//    replay burst, dropped the pinned post). Messages carry a post's current state
//    (render.py): a created post goes in its place by the list's order (3); a shown
//    one is replaced in place, and a tombstone (or a live search's post-unmatched,
//    whose payload is the same) removes it, the focus kept (feed-focus.js). A post
//    the page does not show comes in only if the list's rule may want it (2): pinned,
//    or on a dashboard at or above the floor. An edit or delete of any other post is
//    ignored. A reply's message goes to feed-threads.js, a post's chips to
//    feed-reactions.js.
// 2. Each list keeps its rule (lists.py) after every message, live or replayed:
//    - the kiosk (data-max-posts), lists.kiosk_window: pinned posts first, then the
//      newest, 30 in all; beyond that the oldest unpinned posts go first, then the
//      oldest pinned ones;
//    - a dashboard (data-max-pinned; its floor is data-floor on "Older posts", 0
//      without it), lists.dashboard_window: its pinned section (its newest page-size
//      pinned posts) and its history, every other post, pinned or not, down to the
//      floor. A post of the history under the floor leaves (unpinned there, or pushed
//      out of a full section by a newer pin): "Older posts" brings it back in its
//      place, once (5). A full section that loses a post takes the newest pinned post
//      of the history in its place, if the page has it.
//    When a post leaves and the one that takes its place was never sent (a full kiosk
//    loses one, or a post it unpins is older than every other unpinned one shown; a
//    dashboard's full section loses one, and no pinned post of its history is loaded:
//    one may be under the floor), only the server knows which it is: the list is
//    re-fetched (feed-refetch.js).
// 3. Order. The list's document order is the order it is shown in (lists.py, on
//    order), so the keyboard and a screen reader meet posts as the eye does; the
//    stylesheet reorders nothing. A card pinned or unpinned moves in the DOM, and one
//    a kiosk's new headline pushes down too, the focus (and a reply box's caret) kept
//    in it.
// 4. Exactly once. A message whose id is not newer than the last applied one
//    (feed-stream.js, on the position) is already on the page (a replay overlapping a
//    re-fetched list): it is dropped. A new post whose element exists replaces it, so
//    ids are never duplicated. A message counts as applied only once its whole effect
//    is on the page: one that needs the list re-fetched counts through the re-fetched
//    list's id. Messages that come while a fetch is on its way are held, and go
//    through here after it (feed-refetch.js).
// 5. "Older posts": the next page is merged in by id, and the list's floor moves down.
//    Messages are held meanwhile and applied after it (that page, read in a snapshot
//    of its own, gives no position: the page's stays its stream's), so one about a
//    post of that page, an edit racing it, is applied to it, whichever of the two the
//    server answered first. Its cards' ids may be newer than the page's position:
//    feed-unread.js reports no read past that position (on read means seen).
// 6. Channel pages. A channel page may get every channel's messages (feed-tabs.js
//    shares one stream of all of them): a post of another channel is not applied, and
//    counts as applied, as if its stream had never carried it. A thread's page shares
//    that stream too, and applies only its own post's messages and replies' (a reply
//    to another post changes nothing there: its thread is not open).
// 7. A thread's post deleted. Its tombstone, live or replayed (a replayed edit of a
//    post deleted since is one too: render.py), ends the thread's page: it says the
//    thread is gone and asks for nothing more (feed-refetch.js, on a thread that is
//    gone), rather than show an empty page as live.
(function () {
  "use strict";

  var page = window.feedPage;
  var postId = page.postId;

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

  function newestFirst(a, b) {
    return postId(b) - postId(a);
  }

  // How many pinned posts the list shows apart, on top: a dashboard's data-max-pinned.
  // A kiosk's pinned posts are all on top (bound keeps them within its max), and a
  // thread's page has one post.
  function sectionSize(list) {
    return Number(list.dataset.maxPinned) || Infinity;
  }

  // 2. The pinned section of ``posts``: the newest pinned ones, newest first.
  function sectionOf(list, posts) {
    return posts.filter(isPinned).sort(newestFirst).slice(0, sectionSize(list));
  }

  // A post the list lacked, in its place by the list's order (arrange).
  function place(list, el) {
    list.insertBefore(el, list.querySelector(":scope > .older"));
    arrange(list);
  }

  // 3. A dashboard's pinned section, then its history; a kiosk's headline (its newest
  // unpinned post), its pinned posts, then the others; each part newest first.
  function ordered(list) {
    var posts = postsIn(list).sort(newestFirst);
    var top = sectionOf(list, posts);
    var rest = posts.filter(function (el) { return top.indexOf(el) < 0; });
    var head = list.dataset.maxPosts ? rest.splice(0, 1) : [];
    return head.concat(top, rest);
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

  // A kiosk (data-max-posts) leaves out only old unpinned posts and pinned ones past
  // its max, and a dashboard (data-max-pinned) only posts of its history under its
  // floor: a post the list lacks may belong in it if it is new (a created message) or
  // pinned, or, on a dashboard, at or above the floor. bound() then takes out a pinned
  // one that neither makes the section nor is above the floor.
  // A live search's list (data-search) takes any post its stream sends: an edit that
  // made a post match brings it in, and the rule then keeps it only if it is new enough.
  function belongs(list, el, created) {
    if (created || isPinned(el) || list.dataset.search) return true;
    return !list.dataset.maxPosts && postId(el) >= floorOf(list);
  }

  // 2. What the list may keep. The list's own classes are the truth here: every post
  // in it was put there by apply(), synchronously, never by an htmx swap.
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
    var top = sectionOf(list, posts);
    var floor = floorOf(list);
    posts.forEach(function (el) {
      if (top.indexOf(el) < 0 && postId(el) < floor) el.remove();
    });
  }

  // Whether the list may now lack a post it should show: one it never received (older
  // than it, or a pinned one under a dashboard's floor that its section now wants).
  // Only the server knows which, so the list is re-fetched (2). A dashboard without a
  // floor has every post.
  function lacking(list, before, el, unpinned) {
    var now = tally(list);
    var max = Number(list.dataset.maxPosts);
    if (!max) {
      var size = sectionSize(list);
      return floorOf(list) > 0 && before.pinned >= size && now.pinned < size;
    }
    if (before.total < max) return false; // a list short of its max shows every post
    if (now.total < max) return true;
    // An unpinned post keeps its place only above another shown unpinned one: under
    // all of them, the newest post the kiosk left out may be newer.
    return unpinned && !postsIn(list).some(function (q) {
      return q !== el && !isPinned(q) && postId(q) < postId(el);
    });
  }

  // 1. Applies one message to the list; returns true if the list must be re-fetched.
  function apply(list, data) {
    var nodes = page.parse(data);
    var el = nodes[0];
    if (el && /^reactions-\d+$/.test(el.id)) return page.reactions.apply(el);
    if (!el || !/^post-\d+$/.test(el.id)) return false;
    var channels = page.stream.channels();
    if (channels && el.dataset.channel && channels.indexOf(el.dataset.channel) < 0) return false;
    var thread = page.stream.thread();
    if (thread && !el.dataset.parent && postId(el) !== thread) return false;
    if (el.dataset.parent) {
      page.threads.applyReply(el, nodes.slice(1));
      return false;
    }
    var before = tally(list);
    var existing = document.getElementById(el.id);
    var oob = el.getAttribute("hx-swap-oob");
    var unpinned = false;
    if (oob === "delete" && thread) {
      page.refetch.gone(list, 0); // 7.
      return false;
    }
    if (oob === "delete") {
      if (existing) page.focus.removeCard(existing);
    } else {
      el.removeAttribute("hx-swap-oob");
      if (existing) {
        unpinned = isPinned(existing) && !isPinned(el);
        page.focus.replacePost(existing, el);
      } else if (belongs(list, el, !oob)) {
        place(list, el);
        page.decorate(el);
      } else {
        return false;
      }
    }
    bound(list);
    arrange(list);
    if (!oob && !existing && el.isConnected) page.announcer.announce(el);
    return lacking(list, before, el, unpinned);
  }

  // 4.
  function receive(list, data, id) {
    if (page.refetch.hold(data, id)) return;
    if (!page.stream.fresh(id)) return;
    // The message that shows the list must be re-fetched is not applied yet: the
    // re-fetched list is, with everything up to its snapshot.
    if (apply(list, data)) page.refetch.refetchList(data, id);
    else page.stream.applied(id);
  }

  // 1. Every message for the post list is applied here, at once; htmx swaps nothing in it.
  document.addEventListener("htmx:sseBeforeMessage", function (evt) {
    page.stream.alive();
    var list = page.postsList();
    if (!list || evt.target !== list) return;
    evt.preventDefault();
    receive(list, evt.detail.data, Number(evt.detail.lastEventId));
  });

  // 5. A click while the list is re-fetched does nothing: that list has its own
  // button. On a failure the button stays, and another click tries again.
  document.addEventListener("click", function (evt) {
    var button = evt.target.closest && evt.target.closest(".older button");
    var list = page.postsList();
    if (!button || !list || button.closest(".older").parentNode !== list) return;
    var older = button.parentNode;
    var focused = document.activeElement === button;
    page.refetch.holding(list, older.dataset.url, function (got) {
      mergeOlder(list, older, got.html, focused);
    });
  });

  // The focus, if it was on the button, moves to the next one, or to the first post of
  // the last page: it does not fall back to the top of the document.
  function mergeOlder(list, older, html, focused) {
    var incoming = page.parse(html);
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
    page.decorate(list);
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

  page.lists = { receive: receive };
})();
