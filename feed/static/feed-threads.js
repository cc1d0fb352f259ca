// Threads: replies, and a post's thread opened in place (feed-page.js has the list of
// the page's scripts).
//
// 1. A reply's message is the reply (marked data-parent) and its parent's reply
//    summary. The summary replaces the card's wherever the card is shown; a new reply
//    goes into its thread only if that thread is open on the page (a region under the
//    card, or the thread's own page), oldest first, by id, and is otherwise ignored: a
//    list shows counts, not replies. An edit of a reply the thread does not show (one
//    of the earlier ones it leaves out) is ignored too. A new reply is told to screen
//    readers as a new post is (feed-announcer.js).
// 2. Opening. Cards carry no control (the kiosk shares their bytes): a page that opens
//    threads in place gives each closed card its "Show replies" button. It opens the
//    thread in place, fetched with messages held meanwhile (feed-refetch.js, held the
//    same way), so a reply racing the fetch is applied to it; "Hide replies" closes it
//    and forgets it: opened again, it is fetched again.
// 3. A card replaced. A card replaced by an edit or a pin keeps its open thread
//    region, with what is typed in it and the focus (feed-focus.js, on replaced).
// 4. The reply form. One that came back (sent, or with its error) takes the focus back
//    if the form it replaced had it, so the keyboard stays in the thread.
(function () {
  "use strict";

  var page = window.feedPage;

  // 3. The open thread region and its toggle move into the card that replaces it.
  function keepThread(old, el) {
    var region = old.querySelector(":scope > .thread");
    var toggle = old.querySelector(":scope > .thread-bar > .thread-toggle");
    var link = el.querySelector(":scope > .thread-bar > .thread-link");
    var theirs = el.querySelector(":scope > .thread");
    if (region && theirs) theirs.replaceWith(region);
    if (toggle && link) link.parentNode.insertBefore(toggle, link);
  }

  // 1. The summary goes wherever its card is; the reply into its thread if that is
  // open here. Never asks for a re-fetch.
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
      if (existing) page.focus.removeCard(existing);
      return;
    }
    el.removeAttribute("hx-swap-oob");
    if (existing) {
      page.focus.replacePost(existing, el);
    } else if (oob) {
      return; // an edit of a reply not shown: one of the earlier ones the thread leaves out
    } else {
      var replies = document.getElementById("replies-list-" + el.dataset.parent);
      if (!replies) return;
      var later = Array.prototype.slice.call(replies.children).filter(function (r) {
        return page.postId(r) > page.postId(el);
      })[0];
      replies.insertBefore(el, later || null);
      page.decorate(el);
      page.announcer.announce(el);
    }
  }

  // 2.
  function addToggles(root) {
    if (page.isKiosk()) return;
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

  function fillThread(button, region, html) {
    region.innerHTML = html;
    region.hidden = false;
    htmx.process(region);
    page.decorate(region);
    button.setAttribute("aria-expanded", "true");
    button.textContent = "Hide replies";
  }

  // 2.
  document.addEventListener("click", function (evt) {
    var button = evt.target.closest && evt.target.closest(".thread-toggle");
    var list = page.postsList();
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
    page.refetch.holding(list, button.dataset.url, function (got) {
      fillThread(button, region, got.html);
    });
  });

  // 4. After feed-page.js's own htmx:load listener, as it loads first.
  document.addEventListener("htmx:load", function (evt) {
    var elt = evt.detail && evt.detail.elt;
    if (!elt) return;
    var gone = document.activeElement;
    if (elt.classList && elt.classList.contains("reply-form") && (!gone || gone === document.body)) {
      var box = elt.querySelector("textarea");
      if (box) box.focus();
    }
  });

  page.threads = {
    applyReply: applyReply,
    addToggles: addToggles,
    fill: fillThread,
    keep: keepThread
  };
})();
