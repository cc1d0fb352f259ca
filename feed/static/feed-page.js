// A live page's glue, one script per concept, and what they share. Loaded after htmx,
// feed-source.js and feed-tabs.js, first of them (base.html):
//
//   feed-page.js       this: the object they share, what they ask of the page, its start
//   feed-times.js      times and the kiosk's clock
//   feed-focus.js      where the focus goes when a card is replaced or removed
//   feed-announcer.js  new posts told to screen readers
//   feed-reactions.js  reaction chips, and which are the reader's own
//   feed-lists.js      messages applied to the post list, its rule and order, "Older posts"
//   feed-refetch.js    the list fetched again, messages held meanwhile, signing out
//   feed-threads.js    replies, and threads opened in place
//   feed-stream.js     the page's stream: resume, liveness, deploys
//
// 1. One object. Each part adds itself to window.feedPage under its own name
//    (page.lists, page.stream, ...) and calls the others through it when an event
//    runs, never while it loads: so only this script must come first, and
//    feed-stream.js before htmx's sse extension, whose factory it replaces. Their state
//    stays inside each part; what the browser tests read is window.feedStream
//    (feed-stream.js).
// 2. Start. htmx:load fires for the page once ready and for everything swapped in
//    later (htmx.onLoad would listen on document.body, which does not exist yet
//    here). The page then applies what the server rendered (feed-refetch.js, on what
//    the server rendered), starts watching its stream (feed-stream.js, on liveness)
//    and decorates its cards; what comes in later is decorated as it comes.
// 3. Decorating. Cards carry no control and no local time: the kiosk shares their
//    bytes with every reader. Each card, whatever brought it, gets its "Show replies"
//    (feed-threads.js), its chips marked or made buttons (feed-reactions.js) and its
//    times (feed-times.js). On a kiosk nothing takes the focus: nobody works it, and a
//    stray key must not move its screen or open a link.
(function () {
  "use strict";

  var page = (window.feedPage = {});
  var parser = document.createElement("template");

  function postsList() {
    return document.getElementById("posts");
  }

  function postId(el) {
    return Number(el.id.slice("post-".length));
  }

  function isKiosk() {
    return document.body.classList.contains("kiosk");
  }

  // The elements an HTML fragment holds (a message, a page of older posts).
  function parse(html) {
    parser.innerHTML = html;
    var nodes = Array.prototype.slice.call(parser.content.children);
    parser.innerHTML = "";
    return nodes;
  }

  // 3.
  function decorate(root) {
    if (!root.querySelectorAll) return;
    page.threads.addToggles(root);
    page.reactions.mark(root);
    var kiosk = isKiosk();
    if (kiosk) {
      var reachable = root.querySelectorAll("a[href], button, [tabindex]");
      for (var k = 0; k < reachable.length; k++) reachable[k].tabIndex = -1;
    }
    page.times.show(root, kiosk);
  }

  // 2.
  function start() {
    page.refetch.readList();
    page.stream.watch();
    if (isKiosk()) page.times.startClock();
    else decorate(document.body);
  }

  document.addEventListener("htmx:load", function (evt) {
    var elt = evt.detail && evt.detail.elt;
    if (!elt) return;
    if (elt === document.body) start();
    else decorate(elt);
  });

  page.postsList = postsList;
  page.postId = postId;
  page.isKiosk = isKiosk;
  page.parse = parse;
  page.decorate = decorate;
})();
