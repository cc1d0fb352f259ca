// The search box (search.html): what htmx would not show, shown, and a search refused
// as one too many at once asked again by itself.
//
// 1. htmx swaps no 4xx answer (base.html's htmx-config), yet the results area is where
//    a search's refusal belongs: a malformed search's sentence (400) and a search
//    refused as one too many at once (429, security.py, on searches in flight) are
//    swapped in as results are, as an alert or a status that screen readers say. The
//    area itself is no live region: a count of what came says results (#results-count).
// 2. A search refused as one too many says the page searches again
//    (partials/search_busy.html). After its data-retry-after seconds the box asks
//    again, for what is typed then, through its own trigger, so hx-sync still cancels
//    a request before it. A key typed meanwhile asks sooner, and drops the wait. A
//    whole page made with the refusal (the form sent without script, or a shared
//    address) waits the same way.
// 3. "More results" refused as one too many at once keeps its button and the results
//    above it: the server's sentence goes beside the button, and the button asks
//    again by itself after the wait. Its next page then replaces both, and the focus
//    goes to the first of the new results, not to the top of the page.
(function () {
  "use strict";

  var SHOWN = [400, 429];
  var again = null; // the timer of the next try (2)

  function box() {
    return document.getElementById("q");
  }

  function isResults(elt) {
    return !!elt && elt.id === "results";
  }

  function moreOf(elt) {
    return elt && elt.classList && elt.classList.contains("more") ? elt : null;
  }

  var before = null; // the result above a "More results" being swapped (3)

  document.addEventListener("htmx:beforeSwap", function (evt) {
    var more = moreOf(evt.detail.target);
    // Only if the reader was at the button (or nowhere): one typing elsewhere stays there.
    var here = document.activeElement;
    var reading = more && (here === document.body || more.contains(here));
    before = reading && evt.detail.xhr.status === 200 ? more.previousElementSibling : null;
    if (more && evt.detail.xhr.status === 429) {
      // (3) In place of what was said before, or of a new paragraph, not the button.
      var said = more.querySelector(":scope > .busy");
      if (!said) said = more.appendChild(document.createElement("p"));
      evt.detail.target = said;
      evt.detail.shouldSwap = true;
      evt.detail.isError = false;
      return;
    }
    if (!isResults(evt.detail.target) || SHOWN.indexOf(evt.detail.xhr.status) < 0) return;
    evt.detail.shouldSwap = true;
    evt.detail.isError = false;
  });

  document.addEventListener("htmx:beforeRequest", function (evt) {
    if (evt.detail.elt !== box()) return;
    clearTimeout(again);
    again = null;
  });

  function waitIfBusy() {
    var busy = document.querySelector("#results > .busy[data-retry-after]");
    var input = box();
    if (!busy || !input) return;
    var seconds = Number(busy.dataset.retryAfter) || 1;
    clearTimeout(again);
    again = setTimeout(function () {
      again = null;
      htmx.trigger(input, "search");
    }, 1000 * seconds);
  }

  // (3) The button asks again once the wait is over, unless a new page replaced it.
  function moreAgainIfBusy() {
    var busy = document.querySelector("#results .more > .busy[data-retry-after]");
    var button = busy && busy.parentNode.querySelector("button");
    if (!button || busy.dataset.waiting) return;
    busy.dataset.waiting = "1";
    var seconds = Number(busy.dataset.retryAfter) || 1;
    setTimeout(function () {
      if (button.isConnected) button.click();
    }, 1000 * seconds);
  }

  document.addEventListener("htmx:afterSwap", function (evt) {
    if (isResults(evt.detail.target)) waitIfBusy();
    moreAgainIfBusy();
    var first = before && before.nextElementSibling;
    before = null;
    var link = first && first.querySelector(".open");
    if (link) link.focus();
  });

  document.addEventListener("htmx:load", function (evt) {
    if (evt.detail && evt.detail.elt === document.body) waitIfBusy();
  });
})();
