// Tooltips: an element with role="tooltip" that a control names in aria-describedby,
// shown by feed.css while the control is hovered or has the keyboard's focus (who
// reacted, on a reaction's chip). As WCAG 1.4.13 asks:
//
// 1. Dismissible. Escape hides every tooltip showing, and the focus stays where it
//    is. One hidden so stays hidden until its control has neither the focus nor the
//    pointer: the next visit shows it again.
// 2. On the screen. A tooltip is placed as it shows: moved left by as much as it would
//    stick out past the viewport's right edge, never past its left one (feed.css keeps
//    it narrower than the viewport, long names wrapped); above its control, not under
//    it, when it would go past the bottom edge and there is room above.
(function () {
  "use strict";

  var MARGIN = 8; // px kept clear of the viewport's edges

  function controlOf(el) {
    return el && el.closest ? el.closest("[aria-describedby]") : null;
  }

  function tipOf(control) {
    var id = control && control.getAttribute("aria-describedby");
    var tip = id ? document.getElementById(id) : null;
    return tip && tip.getAttribute("role") === "tooltip" ? tip : null;
  }

  // 2. Measured as shown, whichever of hover or focus shows it.
  function fit(control, tip) {
    tip.style.left = tip.style.top = tip.style.bottom = "";
    tip.style.display = "block";
    var box = tip.getBoundingClientRect();
    var edge = document.documentElement;
    var shift = Math.min(Math.max(0, box.right - (edge.clientWidth - MARGIN)), Math.max(0, box.left - MARGIN));
    if (shift) tip.style.left = -shift + "px";
    var own = control.getBoundingClientRect();
    var gap = box.top - own.bottom;
    if (box.bottom > edge.clientHeight - MARGIN && own.top - gap - box.height >= MARGIN) {
      tip.style.top = "auto";
      tip.style.bottom = "calc(100% + .3rem)";
    }
    tip.style.display = "";
  }

  function release(tip) {
    if (tip) tip.removeAttribute("data-dismissed");
  }

  function show(evt) {
    var control = controlOf(evt.target);
    var tip = tipOf(control);
    if (tip) fit(control, tip);
  }

  document.addEventListener("focusin", show);
  document.addEventListener("mouseover", show);

  // 1. The focus leaves a control the pointer is not on, or the pointer one the focus
  // is not in.
  document.addEventListener("focusout", function (evt) {
    var control = controlOf(evt.target);
    if (control && !control.matches(":hover")) release(tipOf(control));
  });

  document.addEventListener("mouseout", function (evt) {
    var control = controlOf(evt.target);
    if (!control || control.contains(evt.relatedTarget)) return;
    if (!control.contains(document.activeElement)) release(tipOf(control));
  });

  document.addEventListener("keydown", function (evt) {
    if (evt.key !== "Escape") return;
    var tips = document.querySelectorAll('[role="tooltip"]');
    for (var i = 0; i < tips.length; i++) {
      if (getComputedStyle(tips[i]).display !== "none") tips[i].setAttribute("data-dismissed", "");
    }
  });
})();
