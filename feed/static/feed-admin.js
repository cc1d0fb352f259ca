// The admin page's channels panel: its table is swapped whole by the stream
// (/admin/stream) whenever a channel changes anywhere, and the panel by each of its
// forms' answers. Neither takes what the admin is in the middle of:
//
// 1. Typed text. Before such a swap, each field of the panel whose text is not what it
//    was rendered with is remembered by its id, and put back in the field of that id
//    the swap brings; but not in the form whose answer it is, which shows what the
//    server made of what was sent (its error, or the form emptied).
// 2. The focus and the caret. Every control of the panel has an id that stays from one
//    render to the next (partials/admin_channel_table.html), so htmx gives the focus
//    back to the control of the same id, caret included; the caret is set again once
//    the text is back, which moves it.
(function () {
  "use strict";

  var PANEL = "admin-channels";
  var TABLE = "admin-channel-table";
  var kept = null; // what the next swap puts back

  function remember(root, answered) {
    var typed = {};
    root.querySelectorAll("input[id]").forEach(function (field) {
      if (answered && answered.contains(field)) return;
      if (field.value !== field.defaultValue) typed[field.id] = field.value;
    });
    var active = document.activeElement;
    var caret = active && active.id in typed
      ? { id: active.id, start: active.selectionStart, end: active.selectionEnd, way: active.selectionDirection }
      : null;
    kept = { typed: typed, caret: caret };
  }

  function putBack(evt) {
    var panel = document.getElementById(PANEL);
    if (!kept || !panel || !panel.contains(evt.target)) return;
    var typed = kept.typed;
    Object.keys(typed).forEach(function (id) {
      var field = document.getElementById(id);
      if (field) field.value = typed[id];
    });
    var caret = kept.caret;
    var field = caret && document.getElementById(caret.id);
    if (field && field === document.activeElement) field.setSelectionRange(caret.start, caret.end, caret.way);
    kept = null;
  }

  document.addEventListener("htmx:sseBeforeMessage", function (evt) {
    if (evt.target.id === TABLE) remember(evt.target, null);
  });

  document.addEventListener("htmx:beforeSwap", function (evt) {
    if (evt.detail.target.id === PANEL && evt.detail.shouldSwap) remember(evt.detail.target, evt.detail.elt);
  });

  // Fired on what came in, once it is in, the focus already given back by htmx.
  document.addEventListener("htmx:afterSwap", putBack);
})();
