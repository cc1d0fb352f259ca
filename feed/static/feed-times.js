// Times (feed-page.js has the list of the page's scripts). Dashboards show each post's
// time in the reader's zone and language, with the full date and time as its title;
// the kiosk shows relative times ("3 minutes ago") and a clock, refreshed by a timer
// without asking the server.
(function () {
  "use strict";

  var page = window.feedPage;
  var CLOCK_MS = 15000; // the kiosk's clock and relative times, redrawn this often

  var hhmm = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
  var short = new Intl.DateTimeFormat(undefined, {
    month: "short", day: "numeric", hour: "numeric", minute: "2-digit"
  });
  var withYear = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "numeric", minute: "2-digit"
  });
  var full = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });
  var clockDay = new Intl.DateTimeFormat(undefined, {
    weekday: "long", day: "numeric", month: "long"
  });
  var ago = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  var UNITS = [["day", 86400], ["hour", 3600], ["minute", 60]];

  function absolute(moment) {
    var thisYear = moment.getFullYear() === new Date().getFullYear();
    return (thisYear ? short : withYear).format(moment);
  }

  function relative(moment, now) {
    var seconds = (now - moment) / 1000;
    if (seconds >= 7 * 86400) return absolute(moment);
    for (var i = 0; i < UNITS.length; i++) {
      var count = Math.floor(seconds / UNITS[i][1]);
      if (count >= 1) return ago.format(-count, UNITS[i][0]);
    }
    return "just now";
  }

  // Every time under root, as this page shows it. A dashboard's are set once; the
  // kiosk's again at every tick.
  function show(root, kiosk) {
    var nodes = root.querySelectorAll("time[datetime]");
    var now = new Date();
    for (var i = 0; i < nodes.length; i++) {
      var moment = new Date(nodes[i].getAttribute("datetime"));
      if (isNaN(moment.getTime())) continue;
      if (kiosk) nodes[i].textContent = relative(moment, now);
      else if (nodes[i].hasAttribute("data-local")) continue;
      else nodes[i].textContent = absolute(moment);
      nodes[i].title = full.format(moment);
      nodes[i].dataset.local = "";
    }
  }

  function tick() {
    var clock = document.getElementById("clock");
    var now = new Date();
    if (clock) {
      clock.dateTime = now.toISOString();
      clock.innerHTML = "";
      var time = document.createElement("span");
      time.className = "clock-time";
      time.textContent = hhmm.format(now);
      var day = document.createElement("span");
      day.className = "clock-day";
      day.textContent = clockDay.format(now);
      clock.append(time, day);
    }
    var list = page.postsList();
    if (list) page.decorate(list);
  }

  page.times = {
    show: show,
    // A time of day as the clock shows it ("Offline since", feed-stream.js).
    hourMinute: function (moment) { return hhmm.format(moment); },
    startClock: function () {
      tick();
      setInterval(tick, CLOCK_MS);
    }
  };
})();
