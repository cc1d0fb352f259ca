// The admin page's channels panel: its table is swapped whole by the stream
// (/admin/stream) whenever a channel changes anywhere, and the panel by each of its
// forms' answers. Neither takes what the admin is in the middle of:
//
// 1. Typed text. Before such a swap, each field of the panel whose text is not what it
//    was rendered with is remembered by its id, and put back in the field of that id
//    the swap brings; but not in the form whose answer it is, which shows what the
//    server made of what was sent (its error, or the form emptied). A field marked
//    invalid counts as typed: it holds what was refused, to be fixed (3).
// 2. The focus and the caret. Every control of the panel has an id that stays from one
//    render to the next (partials/admin_channel_table.html), so htmx gives the focus
//    back to the control of the same id, caret included; the caret is set again once
//    the text is back, which moves it.
// 3. Errors. A row's error (#channel-<name>-error) and the create form's
//    (#admin-create-error) stay with it until that row or form is sent again: the
//    stream's table has no errors, and an answer has only its own form's. Before a swap
//    each is remembered, with the controls it describes, and put back after it where its
//    row or form still is, quietly (no alert): it was said once. A row that is gone
//    takes its error with it.
//
// And every answer to a form of the panel is shown, refusals included: htmx swaps no
// refusal but a 422 by itself (base.html's htmx-config), and none may go unsaid
// (admin.py, rationale 8). Scoped to the panel's forms, so no other form's refusal
// (a JSON 404, say) is put on a page.
//
// 4. A refusal that comes with the panel (404, 409, 413, 422) is swapped in as any
//    answer: it says the error where the form is, and where the focus goes.
// 5. One without it (feed's JSON, 401, 403, 503; a proxy's 429 or 502 page), a
//    request that got no answer at all, and an answer that is another page than the
//    panel (a proxy's sign-in page, say), is said here, as the panel would have: in the
//    row or form that sent it, an alert describing the control the admin is at, which
//    keeps the focus (the error takes it if nothing has it). The status line
//    (#admin-said) is emptied: what the last action did is no longer the news.
(function () {
  "use strict";

  var PANEL = "admin-channels";
  var TABLE = "admin-channel-table";
  var SAID = "admin-said";
  var CREATE = "admin-create";
  var ROWS = "tr[data-channel]";
  var OFFLINE = "The server could not be reached, so this may not have been done. " +
    "Check the connection, then try again.";
  // A page where the panel should be: an authenticating proxy's sign-in page, say.
  var STRANGER = "The answer was another page (a sign-in page, perhaps), so this may not " +
    "have been done: reload the page, then try again.";
  var kept = null; // what the next swap puts back

  // The form that asked, if it is one of the panel's. Known by what it asks for: the
  // stream may have swapped the table, and the form with it, while it waited.
  function formOf(detail) {
    var asked = detail && detail.requestConfig;
    return asked && /^\/admin\/channels(\/|$)/.test(asked.path) ? asked.elt : null;
  }

  // The part of the panel a form belongs to, whose error it shows: its row, the
  // create form, or the panel itself (found again by its id, if swapped since); and the
  // id of that error.
  function ownerOf(form) {
    var owner = form.closest(ROWS) || form.closest("#" + CREATE);
    return (owner && document.getElementById(owner.id)) || document.getElementById(PANEL);
  }

  function errorId(owner) {
    return owner.id + "-error";
  }

  // Where an owner's error goes, as the templates put it: in a row, under its title
  // field; above the create form's fields; under the panel's heading.
  function place(owner, error) {
    var before;
    if (owner.matches(ROWS)) {
      owner.querySelector(".admin-rename").parentNode.appendChild(error);
      return;
    }
    before = owner.id === PANEL ? owner.querySelector("h2").nextSibling : owner.firstChild;
    owner.insertBefore(error, before);
  }

  function errorElement(id, text, alert) {
    var error = document.createElement("p");
    error.className = "error";
    error.id = id;
    if (alert) error.setAttribute("role", "alert");
    error.textContent = text;
    return error;
  }

  // (3) Each error in root of a row or form other than the one answered.
  function errorsIn(root, answered) {
    var found = [];
    var mine = answered && ownerOf(answered);
    root.querySelectorAll(ROWS + ", #" + CREATE).forEach(function (owner) {
      if (owner === mine) return;
      var id = errorId(owner);
      var error = document.getElementById(id);
      if (!error || !owner.contains(error)) return;
      var marks = [];
      owner.querySelectorAll("[aria-describedby]").forEach(function (control) {
        if (control.id && control.getAttribute("aria-describedby") === id) {
          marks.push({ id: control.id, invalid: control.getAttribute("aria-invalid") === "true" });
        }
      });
      found.push({ owner: owner.id, id: id, text: error.textContent, marks: marks });
    });
    return found;
  }

  // The form a field is in, by what it asks for, which stays from one render to the next.
  function asks(elt) {
    var form = elt && elt.closest("form");
    return form ? form.getAttribute("hx-post") : null;
  }

  function remember(root, answered) {
    var typed = {};
    root.querySelectorAll("input[id]").forEach(function (field) {
      if (answered && asks(field) === asks(answered)) return;
      var refused = field.getAttribute("aria-invalid") === "true";
      if (refused || field.value !== field.defaultValue) typed[field.id] = field.value;
    });
    var active = document.activeElement;
    var caret = active && active.id in typed
      ? { id: active.id, start: active.selectionStart, end: active.selectionEnd, way: active.selectionDirection }
      : null;
    kept = { typed: typed, caret: caret, errors: errorsIn(root, answered) };
  }

  function putBackError(error) {
    var owner = document.getElementById(error.owner);
    if (!owner || document.getElementById(error.id)) return; // gone, or it says its own
    place(owner, errorElement(error.id, error.text, false));
    error.marks.forEach(function (mark) {
      var control = document.getElementById(mark.id);
      if (!control || !owner.contains(control)) return;
      control.setAttribute("aria-describedby", error.id);
      if (mark.invalid) control.setAttribute("aria-invalid", "true");
    });
  }

  function putBack(evt) {
    var panel = document.getElementById(PANEL);
    if (!kept || !panel || !panel.contains(evt.target)) return;
    kept.errors.forEach(putBackError);
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

  // (4) Whether an answer is the panel (and not, say, a proxy's error page).
  function isPanel(text) {
    if (typeof text !== "string" || text.indexOf(PANEL) < 0) return false;
    return !!new DOMParser().parseFromString(text, "text/html").getElementById(PANEL);
  }

  // (5) What a refusal without the panel says: feed's own sentence if it has one.
  function sentence(xhr) {
    var status = xhr.status;
    if (status < 400) return STRANGER;
    try {
      var body = JSON.parse(xhr.responseText);
      if (body && typeof body.error === "string" && body.error) return body.error;
    } catch (e) {
      // not feed's JSON: a proxy's page, or nothing
    }
    var wait = Number(xhr.getResponseHeader("Retry-After"));
    var again = wait > 0 ? "try again in " + Math.ceil(wait) + " s" : "try again shortly";
    if (status === 429) return "Too many requests: " + again + ".";
    if (status >= 500) {
      return "The server failed to answer (" + status + "), so this may not have been done: " +
        again + ".";
    }
    if (status === 401) return "You are signed out, so this was not done: reload the page to sign in again.";
    return "This was refused (" + status + "): reload the page, then try again.";
  }

  function refused(form, text) {
    var owner = ownerOf(form);
    var id = errorId(owner);
    var old = document.getElementById(id);
    if (old) old.remove(); // a new element, so that the new alert is said
    owner.querySelectorAll("[aria-describedby='" + id + "']").forEach(function (control) {
      control.removeAttribute("aria-describedby");
      control.removeAttribute("aria-invalid");
    });
    var error = errorElement(id, text, true);
    place(owner, error);
    var active = document.activeElement;
    if (active && active !== owner && owner.contains(active)) {
      active.setAttribute("aria-describedby", id);
    } else if (!active || active === document.body) {
      error.tabIndex = -1;
      error.focus();
    }
    var said = document.getElementById(SAID);
    if (said) said.textContent = "";
  }

  document.addEventListener("htmx:sseBeforeMessage", function (evt) {
    if (evt.target.id === TABLE) remember(evt.target, null);
  });

  // detail.elt is the target here; the form that asked is the request's.
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var detail = evt.detail;
    var form = formOf(detail);
    if (!form || !detail.xhr) return;
    var panel = isPanel(detail.serverResponse);
    if (detail.xhr.status >= 400 || (detail.shouldSwap && !panel)) {
      detail.isError = false; // said on the page, not logged as the page's failure
      detail.shouldSwap = panel;
      if (!panel) {
        refused(form, sentence(detail.xhr));
        return;
      }
    }
    if (detail.target.id === PANEL && detail.shouldSwap) remember(detail.target, form);
  });

  // No answer: heard from the request itself, not htmx:sendError, which htmx fires on
  // the form that asked, and so reaches nobody once the stream has swapped it away.
  document.addEventListener("htmx:beforeRequest", function (evt) {
    var form = formOf(evt.detail);
    var xhr = evt.detail.xhr;
    if (!form || !xhr) return;
    var unanswered = function () {
      refused(form, OFFLINE);
    };
    xhr.addEventListener("error", unanswered);
    xhr.addEventListener("timeout", unanswered);
  });

  // Fired on what came in, once it is in, the focus already given back by htmx.
  document.addEventListener("htmx:afterSwap", putBack);
})();
