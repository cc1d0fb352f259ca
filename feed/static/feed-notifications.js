// Desktop notifications on the dashboard: the opt-in button, and which tab shows a
// notification, once per post across the browser's tabs. What deserves one (a
// mention, a new post in an announcement channel) is feed-unread.js's to say, through
// window.feedNotifications.notify; whether and where it is shown is decided here.
// Loaded with feed-unread.js, before it (dashboard.html).
//
// 1. Notifications are opt-in (a button; the browser asks for permission once).
//    A notification is shown only by a tab that is hidden, and at most once per post
//    across all the tabs of the browser. A tab claims a post by taking a Web Lock
//    named after it, only if no other tab holds it, and holds it for CLAIM_HOLD_MS;
//    the claim is also written to localStorage for later deliveries of the same post
//    (a replay after a reconnect). localStorage alone is no claim: Chromium hands
//    its writes to other tabs' processes a moment later, and two tabs both found
//    the post unclaimed. A visible tab claims too, without showing anything, so no
//    hidden tab shows what the reader already sees (a hidden tab waits
//    HIDDEN_CLAIM_DELAY_MS before it claims, so a visible one goes first). Without
//    Web Locks the claim is the localStorage check alone.
(function () {
  "use strict";

  var CLAIMS_KEY = "feed-notified";
  var CLAIMS_KEPT = 200;
  var NOTIFY_KEY = "feed-notify";
  var HIDDEN_CLAIM_DELAY_MS = 250; // a visible tab claims first (1)
  var CLAIM_HOLD_MS = 5000;

  var shared = (window.feedNotifications = { notify: notify, notified: 0 });

  function notificationsOn() {
    return (
      "Notification" in window &&
      Notification.permission === "granted" &&
      localStorage.getItem(NOTIFY_KEY) === "on"
    );
  }

  function showToggle() {
    var button = document.getElementById("notify-toggle");
    if (!button || !("Notification" in window)) return;
    button.hidden = false;
    // Its name says what it does next; a pressed state as well would read "Disable
    // notifications, pressed".
    button.textContent = notificationsOn() ? "Disable notifications" : "Enable notifications";
  }

  function toggleNotifications() {
    if (notificationsOn()) {
      localStorage.removeItem(NOTIFY_KEY);
      showToggle();
      return;
    }
    Notification.requestPermission().then(function (answer) {
      if (answer === "granted") localStorage.setItem(NOTIFY_KEY, "on");
      showToggle();
    });
  }

  // Claims this post for this tab if no tab has yet; true if it was ours to claim.
  function claim(postId) {
    var claims = [];
    try {
      claims = JSON.parse(localStorage.getItem(CLAIMS_KEY) || "[]");
    } catch (e) {
      claims = [];
    }
    if (claims.indexOf(postId) >= 0) return false;
    claims.push(postId);
    localStorage.setItem(CLAIMS_KEY, JSON.stringify(claims.slice(-CLAIMS_KEPT)));
    return true;
  }

  function notify(postId, text) {
    if (!postId || !notificationsOn()) return;
    var key = String(postId);
    var decide = function () {
      // A visible tab claims it too, and shows nothing: the reader sees the page.
      if (!claim(key) || document.visibilityState === "visible") return;
      shared.notified += 1;
      var shown = new Notification("feed", { body: text, tag: "feed-post-" + key });
      shown.onclick = function () {
        window.focus();
        shown.close();
      };
    };
    var claimNow = function () {
      if (!navigator.locks) {
        decide();
        return;
      }
      // The lock of this post, taken only if free, and held for CLAIM_HOLD_MS: the
      // other tabs get it from the same broadcast within that time and find it taken;
      // by then the claim in localStorage has reached them.
      navigator.locks.request("feed-notify-" + key, { ifAvailable: true }, function (lock) {
        if (!lock) return null;
        decide();
        return new Promise(function (done) { setTimeout(done, CLAIM_HOLD_MS); });
      });
    };
    if (document.visibilityState === "visible") claimNow();
    else setTimeout(claimNow, HIDDEN_CLAIM_DELAY_MS);
  }

  document.addEventListener("click", function (evt) {
    if (evt.target.id === "notify-toggle") toggleNotifications();
  });

  document.addEventListener("DOMContentLoaded", showToggle);
})();
