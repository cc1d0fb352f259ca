// Where the focus goes when a card it is in changes (feed-page.js has the list of the
// page's scripts). A message replaces or removes a card at any moment, and a keyboard
// or screen reader user must not be thrown back to the top of the page by it.
//
// 1. Replaced. A post or reply replaced by its new state (an edit, a pin, new reply
//    counts) keeps the focus on what it was on: a chip of the card's own (the same
//    reaction), the same link of its bar (not a link the new text holds), or whatever
//    its open thread kept (feed-threads.js, on a card replaced); failing those, the
//    card itself. The card is decorated (its chips made buttons) before the focus
//    goes back into it.
// 2. Removed. A tombstone (or a live search's post-unmatched, whose payload is the
//    same) removes its card; if the focus was in it, it moves on to the next post, or
//    the one before at the end of a list.
// 3. Held by the card. Where the focus goes when what held it is gone is the card
//    itself, made focusable by script only (tabindex -1), so that Tab goes on from
//    there.
// The list's own moves keep the focus too (feed-lists.js, on order), and so does a
// re-fetched list (feed-refetch.js, on the list rebuilt).
(function () {
  "use strict";

  var page = window.feedPage;

  // 1.
  function replacePost(old, el) {
    var active = document.activeElement;
    var chip = focusedChip(ownReactions(old));
    var bar = old.querySelector(":scope > .thread-bar");
    var links = bar ? bar.querySelectorAll("a[href]") : [];
    var at = Array.prototype.indexOf.call(links, active);
    page.threads.keep(old, el);
    old.replaceWith(el);
    page.decorate(el);
    var theirs = el.querySelector(":scope > .thread-bar");
    var again = at >= 0 && theirs ? theirs.querySelectorAll("a[href]")[at] : null;
    if (again) again.focus({ preventScroll: true });
    else if (active && active !== document.body && el.contains(active) && active !== document.activeElement) {
      active.focus({ preventScroll: true });
    }
    refocusChip(ownReactions(el), chip);
    if (old.contains(active) && !el.contains(document.activeElement)) holdFocus(el);
  }

  // 3.
  function holdFocus(card) {
    if (!card.hasAttribute("tabindex")) card.tabIndex = -1;
    card.focus({ preventScroll: true });
  }

  // 2.
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
    return card.querySelector("#reactions-" + page.postId(card));
  }

  // The reaction of the chip under root that has the focus, if one has.
  function focusedChip(root) {
    var active = document.activeElement;
    return root && active && active.classList && active.classList.contains("chip") && root.contains(active)
      ? active.dataset.reaction
      : null;
  }

  // The focus back on the chip of that reaction under root, if it is still there.
  function refocusChip(root, reaction) {
    if (reaction === null || !root) return;
    var chips = root.querySelectorAll(".chip");
    for (var i = 0; i < chips.length; i++) {
      if (chips[i].dataset.reaction === reaction) return chips[i].focus({ preventScroll: true });
    }
  }

  page.focus = {
    replacePost: replacePost,
    removeCard: removeCard,
    holdFocus: holdFocus,
    focusedChip: focusedChip,
    refocusChip: refocusChip
  };
})();
