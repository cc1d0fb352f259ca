// New posts told to screen readers (feed-page.js has the list of the page's scripts).
//
// 1. One polite status line (#announcer, partials/announcer.html), a burst in one
//    sentence, and sentences at least TOLD_EVERY_MS apart, so that a busy channel does
//    not talk over everything else.
// 2. The list is no live region: a re-fetch rebuilds it whole, and that is not news.
//    What is told is what the list applies as new (feed-lists.js), and a reply
//    arriving in a thread open on the page (feed-threads.js).
(function () {
  "use strict";

  var GATHER_MS = 500; // a burst's posts are told in one sentence
  var TOLD_EVERY_MS = 3000; // and a steady stream of them no more often than this

  var news = { count: 0, replies: 0, latest: null, timer: null };
  var toldAt = -Infinity;

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

  window.feedPage.announcer = { announce: announce };
})();
