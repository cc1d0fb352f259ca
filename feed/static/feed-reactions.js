// Reactions (feed-page.js has the list of the page's scripts).
//
// 1. Which are the reader's own. A post's chips come in the same bytes for every
//    reader (render.py, on reactions): counts and first names. Which are the reader's
//    own is kept here, in `mine`: read from data-mine in what the server rendered for
//    this reader (the page, a re-fetched list, older posts), changed by the reader's
//    own clicks, and by the toggles a `post-reactions` message reports (data-changes)
//    under the reader's name, which is how a toggle made on another tab or device
//    shows here. Every swap of chips is marked from it again.
// 2. Controls. Chips arrive as plain counts (spans): on a dashboard whose reader may
//    react each is made a toggle button here, a real <button> with aria-pressed, so
//    Tab, Enter and Space work as on any. A click sends PUT or DELETE through htmx (so
//    the CSRF header goes along) and marks the chip at once; the answer says which
//    reactions are the reader's now. The kiosk, and a reader not signed in, get no
//    controls.
// 3. The focus. New chips for a post replace those shown, the focus kept on the chip
//    of the same reaction (feed-focus.js).
(function () {
  "use strict";

  var page = window.feedPage;
  var mine = {}; // post id -> {reaction: true}

  function reader() {
    var list = page.postsList();
    return (list && list.dataset.reader) || null;
  }

  // A `post-reactions` message: the toggles it reports under this reader's name are
  // theirs now; its chips replace those shown, marked. Never asks for a re-fetch.
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
    var chip = page.focus.focusedChip(existing);
    existing.replaceWith(el);
    paint(el.parentNode);
    page.focus.refocusChip(el, chip);
    return false;
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
    var controls = !page.isKiosk() && reader() !== null;
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

  page.reactions = {
    apply: applyReactions,
    // The chips under root marked as the reader's or not, made buttons where wanted (1, 2).
    mark: function (root) {
      readMine(root);
      paint(root);
    }
  };
})();
