// The list fetched again, and messages held while anything is fetched (feed-page.js
// has the list of the page's scripts).
//
// 1. Re-fetch. On `resync`, and when the list's rule needs a post the page was never
//    sent (feed-lists.js, on each list's rule), the page re-fetches its list.
//    Messages arriving meanwhile are held and go through the list again afterwards
//    (feed-lists.js, exactly once), so those the list already reflects
//    (X-Feed-Last-Event-Id) are dropped, and one may start another re-fetch. At most
//    HELD_LIMIT are held: past that the list is fetched once more instead.
// 2. Retries. A failed fetch is retried with backoff; one refused with a Retry-After
//    (a kiosk's search, one too many at once: security.py, on searches in flight)
//    after that long plus up to half as much again at random, so a wall of screens
//    refused together does not ask again together.
// 3. What the server rendered. The list the page came with is applied: its
//    data-last-event-id is where the page stands (feed-stream.js, on the position). A
//    kiosk page made with a refused search shows that it waits
//    (partials/search_busy.html), and fetches its list the same way, holding messages
//    from the start.
// 4. Held the same way. "Older posts" (feed-lists.js) and a thread opened in place
//    (feed-threads.js) hold messages while their fetch is on its way and apply them
//    all after it, so one racing the fetch is applied to what it brought.
// 5. The list rebuilt. An open thread is opened again, from the server too, not kept
//    as it was (the re-fetch is what repairs it), with what was typed in its reply
//    box put back, and the focus where it was, or on its card. Messages stay held
//    until the threads are in.
// 6. A thread that is gone. A thread's page re-fetches its card: once the post is
//    deleted that is nothing, and once the reader may no longer read it (its channel
//    made private, say) a 404. Either way there is nothing to wait for: the page says
//    so once and re-fetches no more, where a 404 was retried with backoff for ever.
//    A shared stream stays open, for the reader's other tabs (feed-lists.js, on
//    channel pages); a stream of the page's own is closed (feed-stream.js, on
//    liveness). The page learns it three ways: that re-fetch (after a `resync`); the
//    post's own tombstone, live or replayed (feed-lists.js, on a thread's post
//    deleted); and its own stream refused with an error status. An EventSource does
//    not say which status, so the card is asked for once per refusal, before the
//    stream is opened again (``probeThread``; feed-source.js, on refused). If the card
//    is there (the stream was refused for another reason: too many streams, the
//    server busy) or nothing answers, the stream is opened again as before.
// 7. Signing out. The session ends on the server before the next page loads, and a
//    private channel's list asked for in that moment would come back refused (a 404,
//    reported by the browser as a failed load, and on a thread's page taken for the
//    thread gone). From the moment the page submits the sign-out form, whatever it is
//    fetching is abandoned, and nothing is fetched or retried after. The page closes
//    its own stream first too, instead of reporting the cut.
// 8. Told at once. A `resync` with no id (what the stream may show changed:
//    feed-stream.js, on access ended elsewhere) reaches every screen that follows the
//    channel at once: each re-fetches after a random moment of up to one heartbeat
//    interval, not to ask all together.
(function () {
  "use strict";

  var page = window.feedPage;
  var HELD_LIMIT = 1000;

  var leaving = false; // the sign-out form was submitted (7)
  var gone = false; // this thread's page said its thread is gone (6)
  var ending = new AbortController(); // abandons what is on its way at sign-out (7)
  // While the list, or a page of older posts, or a thread, is fetched:
  // {held: [...], overflowed, again}.
  var pending = null;

  function holdAll() {
    pending = { held: [], overflowed: false, again: false };
  }

  function keep(data, id) {
    if (pending.held.length < HELD_LIMIT) pending.held.push({ data: data, id: id });
    else pending.overflowed = true;
  }

  // Whether a message is held, as it is while anything is fetched (1, 4).
  function hold(data, id) {
    if (!pending) return false;
    keep(data, id);
    return true;
  }

  function onResync(evt) {
    page.stream.alive();
    if (evt && evt.spread) {
      // 8.
      setTimeout(resyncNow, Math.random() * page.stream.heartbeatMs());
      return;
    }
    resyncNow();
  }

  function resyncNow() {
    if (gone) return; // nothing more to fetch (6)
    // A list fetched before the resync may be older than where the stream went on.
    if (pending) pending.again = true;
    else refetchList();
  }

  function refetchList(data, id) {
    holdAll();
    if (data !== undefined) keep(data, id);
    fetchList(0);
  }

  // Resolves to the response's text and snapshot id; rejects on any failure to get it.
  function get(url) {
    if (leaving) return Promise.reject(new Error("the page is signing out")); // (7)
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

  // A wait told by the server, plus up to half as much again at random (2).
  function spread(ms) {
    return ms * (1 + Math.random() / 2);
  }

  // Only a failed fetch is retried; what happens to the list afterwards is not.
  function fetchList(attempt) {
    var list = page.postsList();
    get(list.dataset.feedUrl).then(
      function (got) {
        if (page.stream.thread() !== null && !got.html.trim()) return threadGone(list, got.snapshot);
        var threads = rebuild(list, got.html);
        page.stream.applied(got.snapshot);
        threads.then(function () { releaseHeld(list); });
      },
      function (failure) {
        if (leaving) return; // abandoned, not failed (7)
        if (page.stream.thread() !== null && failure.status === 404) return threadGone(list, 0);
        var delay = failure.retryAfter
          ? spread(1000 * failure.retryAfter)
          : Math.min(30000, 1000 * Math.pow(2, attempt));
        setTimeout(function () { fetchList(attempt + 1); }, delay);
      }
    );
  }

  // 5. Returns a promise: messages stay held until it settles.
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
    page.decorate(list);
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
        page.threads.fill(button, region, got.html);
        restoreTyped(region, typed[id]);
      }, function () {}));
    });
    if (focusedCard && !list.contains(document.activeElement) && document.getElementById(focusedCard)) {
      page.focus.holdFocus(document.getElementById(focusedCard));
    }
    return Promise.all(waiting);
  }

  function restoreTyped(region, was) {
    var box = region.querySelector(".reply-form textarea");
    if (!box) return;
    if (was.text && !box.value) box.value = was.text;
    if (was.focused) box.focus({ preventScroll: true });
  }

  // 6. The page says so, once, and asks for it no more.
  function threadGone(list, snapshot) {
    pending = null;
    page.stream.applied(snapshot);
    if (gone) return;
    gone = true;
    page.stream.gone();
    var note = document.createElement("p");
    note.className = "empty gone";
    note.setAttribute("role", "status");
    note.textContent = "This post was deleted, or you may no longer read it.";
    list.replaceChildren(note);
  }

  // 6. The page's own stream was refused: its card says whether the thread is gone;
  // if not, or with no answer, again() opens the stream again.
  function probeThread(again) {
    var list = page.postsList();
    if (gone || leaving || !list) return;
    get(list.dataset.feedUrl).then(
      function (got) {
        if (!got.html.trim()) threadGone(list, got.snapshot);
        else again();
      },
      function (failure) {
        if (failure.status === 404) threadGone(list, 0);
        else if (!leaving) again();
      }
    );
  }

  // Messages held meanwhile go through the list again: those the new list already
  // reflects are dropped, and one that needs another re-fetch holds the rest again.
  function releaseHeld(list) {
    var done = pending;
    pending = null;
    done.held.forEach(function (msg) { page.lists.receive(list, msg.data, msg.id); });
    if (done.again || done.overflowed) onResync();
  }

  // 4. Fetches url with messages held, hands what came to use(got), then applies the
  // messages. Does nothing while a fetch already holds them: the list being re-fetched
  // brings its own buttons.
  function holding(list, url, use) {
    if (pending) return;
    holdAll();
    get(url).then(
      function (got) {
        use(got);
        releaseHeld(list);
      },
      function () { releaseHeld(list); }
    );
  }

  // 3. The sse extension may ask for a stream before the page has started.
  function readList() {
    var list = page.postsList();
    if (!list) return;
    page.stream.applied(Number(list.dataset.lastEventId) || 0);
    var busy = list.querySelector(":scope > .busy[data-retry-after]");
    if (!busy || pending) return;
    holdAll();
    var seconds = Number(busy.dataset.retryAfter) || 1;
    setTimeout(function () { fetchList(0); }, spread(1000 * seconds));
  }

  // 7. Signing out ends the session's streams on the server. This page is leaving by
  // that very form.
  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (form.getAttribute("action") !== "/signout") return;
    leaving = true;
    ending.abort();
    page.stream.close();
  });

  page.refetch = {
    gone: threadGone,
    hold: hold,
    holding: holding,
    probeThread: probeThread,
    onResync: onResync,
    readList: readList,
    refetchList: refetchList
  };
})();
