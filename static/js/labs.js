/* The lab page's live view (see labs/live.py for the design and bench/live_view.py for the numbers).
 *
 * 1. An EventSource on the run's event stream, served by the live process. Each frame
 *    carries the new events' rows, which go to the top of the feed at once.
 * 2. Events ask gunicorn for a fresh copy of the heavy panels, at most once a second (less
 *    often when the server is slow, but never more than 2 s apart, unless the server asks for
 *    longer: each answer says when to ask again, dividing the server's share for panels among
 *    the pages open, labs/pace.py); while something moves (data-busy) they refresh anyway, and
 *    an action's answer asks for them at once.
 * 2b. The strip's figures (accepted, delivered, dead letters) move with each frame: the frame says
 *    what its events added, so they are as fresh as the feed; each panels answer resets them
 *    to the database's figures plus what frames after that answer added ("The strip" below).
 * 3. A hidden page closes its stream. A dropped stream reopens after a growing, jittered
 *    delay and resumes after the last event id seen, so nothing is missed. If the live
 *    process cannot be reached, the page asks the page server instead, which answers once
 *    and says "come back in a second".
 * Also here: the steady traffic stream, copy buttons, and closing the lineage panel.
 */
(function () {
  "use strict";

  var page = document.querySelector("[data-lab-run]");
  if (!page) return;

  var PANELS_MIN_MS = 1000;
  var PANELS_MAX_GAP_MS = 2000; // however slow the last drawing was, the panels are never older than this
  var PANELS_SLOWDOWN = 20; // the gap is this many times the last drawing time, between the two above
  var BUSY_TICK_MS = 3000;
  var FEED_ROWS = 150;
  var ANNOUNCE_EVERY_MS = 5000;
  // A dropped stream reopens after RECONNECT_MIN_MS + random(0, min(RECONNECT_CAP_MS, RECONNECT_BASE_MS * 2^failures)).
  var RECONNECT_MIN_MS = 250;
  var RECONNECT_BASE_MS = 500;
  var RECONNECT_CAP_MS = 15000;
  var FALLBACK_AFTER_FAILURES = 3; // failures in a row, the last never opened: ask the page server instead
  var FALLBACK_AGAIN_MS = 1000; // the page server answers once; ask it again this much later
  var LIVE_RETRY_EVERY_MS = 30000; // on the fallback, try the live process again this often

  var streamUrl = page.dataset.streamUrl;
  var fallbackUrl = page.dataset.fallbackUrl;
  var panelsUrl = page.dataset.panelsUrl;
  var faultsUrl = page.dataset.faultsUrl;
  var lastId = page.dataset.lastEvent || "0-0";
  var feed = document.getElementById("event-feed");
  var statusBox = page.querySelector("[data-live-status]");
  var statusText = page.querySelector("[data-live-text]");
  var announcer = page.querySelector("[data-live-announcer]");

  // Seconds between an event and its row in this page, for the status line and the benchmark.
  var live = (window.faultlineLive = { lags: [], events: 0, panels: 0, source: null });

  var source = null;
  var reconnectTimer = null;
  var failures = 0; // in a row, on the live process
  var onFallback = false;
  var fallbackSince = 0;

  function hidden() {
    return document.visibilityState === "hidden";
  }

  function setStatus(state, text) {
    statusBox.dataset.state = state;
    statusText.textContent = text;
  }

  function withAfter(url) {
    return url + (url.indexOf("?") < 0 ? "?" : "&") + "after=" + encodeURIComponent(lastId);
  }

  function connect() {
    reconnectTimer = null;
    if (hidden() || source) return;
    if (onFallback && Date.now() - fallbackSince > LIVE_RETRY_EVERY_MS) onFallback = false;
    var fallback = onFallback;
    var opened = false;
    var ended = false;
    source = new EventSource(withAfter(fallback ? fallbackUrl : streamUrl), { withCredentials: !fallback });
    live.source = fallback ? "fallback" : "live";
    source.addEventListener("open", function () {
      opened = true;
      if (!fallback) failures = 0;
      if (statusBox.dataset.state === "offline") requestPanels(); // catch up on what the panels missed
      if (statusBox.dataset.state !== "live") setStatus("live", fallback ? "Live (every second)" : "Live");
    });
    source.addEventListener("events", function (message) {
      apply(JSON.parse(message.data));
    });
    source.addEventListener("end", function () {
      ended = true; // a one-shot answer: come back in a second
    });
    source.addEventListener("error", function () {
      disconnect();
      if (ended) return schedule(FALLBACK_AGAIN_MS);
      if (!fallback) {
        failures += 1;
        if (!opened && failures >= FALLBACK_AFTER_FAILURES && fallbackUrl) {
          onFallback = true;
          fallbackSince = Date.now();
          return schedule(0);
        }
      }
      var delay = RECONNECT_MIN_MS + Math.random() * Math.min(RECONNECT_CAP_MS, RECONNECT_BASE_MS * Math.pow(2, failures)); // full jitter, capped
      setStatus("offline", "Connection lost: trying again in " + Math.ceil(delay / 1000) + " s");
      schedule(delay);
    });
  }

  function disconnect() {
    if (source) source.close();
    source = null;
  }

  function schedule(delay) {
    clearTimeout(reconnectTimer);
    reconnectTimer = hidden() ? null : setTimeout(connect, delay);
  }

  function apply(payload) {
    lastId = payload.last;
    feed.insertAdjacentHTML("afterbegin", payload.html);
    var arrived = Date.now() / 1000;
    payload.at.forEach(function (at) {
      live.lags.push(arrived - at);
    });
    if (live.lags.length > 2000) live.lags.splice(0, live.lags.length - 2000);
    live.events += payload.count;
    while (feed.children.length > FEED_ROWS) feed.removeChild(feed.lastElementChild);
    if (window.htmx) window.htmx.process(feed);
    var lag = Math.max(0, Math.round((arrived - payload.at[payload.at.length - 1]) * 1000));
    setStatus("live", (onFallback ? "Live (every second)" : "Live") + " · last event " + lag + " ms ago" +
      (payload.skipped ? " · " + payload.skipped + " not shown" : ""));
    moveStrip(payload.moves);
    announce(payload.announce);
    // Parts of the page drawn by other apps (a workshop's classroom bar) redraw on "lab-<kind>" events.
    payload.kinds.forEach(function (kind) {
      window.htmx.trigger(document.body, "lab-" + kind);
    });
    // The workshop ended: the page comes back read-only, saying why.
    if (payload.kinds.indexOf("run_frozen") >= 0) setTimeout(function () { location.reload(); }, 1500);
    requestPanels();
    if (payload.kinds.indexOf("fault_changed") >= 0 || payload.kinds.indexOf("defences_changed") >= 0) refreshFaultPanel();
  }

  // --- The strip: its figures move with every frame, not only with the panels. A panels answer
  // carries the figures the database held and the newest event id read just before them
  // (data-events-through); what the frames after that id moved is added back on top. An event
  // committed between that id and the figures is counted twice until the next answer (at
  // most PANELS_MAX_GAP_MS later), which puts the strip right again. ---
  var moves = []; // [event id, figure, amount] of events since the strip's figures were read, oldest first

  function idAfter(a, b) {
    var x = a.split("-").map(Number), y = b.split("-").map(Number);
    return x[0] > y[0] || (x[0] === y[0] && x[1] > y[1]);
  }

  function stripThrough() {
    var strip = document.getElementById("pipeline-strip");
    return (strip && strip.dataset.eventsThrough) || "0-0";
  }

  function addToStrip(move) {
    var box = document.querySelector("[data-testid=strip-" + move[1] + "]");
    var now = box ? parseInt(box.textContent, 10) : NaN;
    if (!isNaN(now)) box.textContent = String(Math.max(0, now + move[2]));
  }

  function moveStrip(latest) {
    var through = stripThrough();
    (latest || []).forEach(function (move) {
      if (!idAfter(move[0], through)) return; // already in the figures the strip was drawn with
      moves.push(move);
      addToStrip(move);
    });
    if (moves.length > 2000) moves.splice(0, moves.length - 2000);
  }

  function stripRedrawn() {
    var strip = document.getElementById("pipeline-strip");
    if (!strip || strip.dataset.movesAdded) return; // once per drawing, however many swap events say so
    strip.dataset.movesAdded = "yes";
    var through = stripThrough();
    moves = moves.filter(function (move) { return idAfter(move[0], through); });
    moves.forEach(addToStrip);
  }

  document.body.addEventListener("htmx:oobAfterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "pipeline-strip") stripRedrawn();
  });

  // --- Screen readers hear the events a learner acts on, summarised, not every row ---
  var lastAnnounced = 0;
  var pendingAnnouncements = [];
  function announce(lines) {
    if (!lines || !lines.length) return;
    pendingAnnouncements = pendingAnnouncements.concat(lines).slice(-3);
    var wait = lastAnnounced + ANNOUNCE_EVERY_MS - Date.now();
    setTimeout(function () {
      if (!pendingAnnouncements.length) return;
      announcer.textContent = pendingAnnouncements.join(". ");
      pendingAnnouncements = [];
      lastAnnounced = Date.now();
    }, Math.max(0, wait));
  }

  // --- The heavy panels: one request at a time, at most one a second, and fewer when the
  // server is slow to draw them (the gap is PANELS_SLOWDOWN times the last drawing time), so
  // a busy server keeps its time for the pages themselves; but never more than
  // PANELS_MAX_GAP_MS apart (one slow drawing while an action ran once held a page's panels
  // for 6 s, long enough to miss a whole campaign), unless the answer itself asks for a longer
  // gap (data-next-ms): the server divides its share for panels among every page open, which
  // one page cannot know (labs/pace.py). The strip keeps moving with the stream meanwhile. ---
  var panelsBusy = false;
  var panelsWanted = false;
  var panelsTimer = null;
  var lastPanels = 0;
  var panelsGap = PANELS_MIN_MS;

  function requestPanels() {
    if (hidden()) return;
    panelsWanted = true;
    if (panelsBusy || panelsTimer) return;
    var wait = lastPanels + panelsGap - Date.now();
    if (wait > 0) {
      panelsTimer = setTimeout(function () {
        panelsTimer = null;
        requestPanels();
      }, wait);
      return;
    }
    panelsWanted = false;
    panelsBusy = true;
    var asked = (lastPanels = Date.now());
    window.htmx
      .ajax("GET", panelsUrl, { target: "#live-panels", swap: "innerHTML" })
      .catch(function () {})
      .then(function () {
        panelsBusy = false;
        live.panels += 1;
        panelsGap = Math.max(serverGap(), Math.min(PANELS_MAX_GAP_MS, Math.max(PANELS_MIN_MS, PANELS_SLOWDOWN * (Date.now() - asked))));
        if (panelsWanted) requestPanels();
      });
  }

  // The gap the last answer asked for (0: none).
  function serverGap() {
    var panels = document.querySelector("#live-panels > .live-panels");
    return (panels && parseInt(panels.dataset.nextMs, 10)) || 0;
  }

  setInterval(function () {
    var panels = document.querySelector("#live-panels > .live-panels");
    if (panels && panels.dataset.busy === "true" && Date.now() - lastPanels >= Math.max(BUSY_TICK_MS, serverGap())) requestPanels();
  }, 1000);

  // The fault panel holds forms: refresh it only when nobody is typing in it.
  function refreshFaultPanel() {
    var panel = document.getElementById("fault-panel");
    if (!panel || panel.contains(document.activeElement)) return;
    window.htmx.ajax("GET", faultsUrl, { target: "#fault-panel", swap: "outerHTML" });
  }

  // Fault targets the learner opened stay open when the panel is drawn again.
  var openTargets = {};
  document.addEventListener("toggle", function (event) {
    var details = event.target;
    if (details.matches && details.matches("#fault-panel details[data-target]")) openTargets[details.dataset.target] = details.open;
  }, true);
  function reopenFaultTargets() {
    Object.keys(openTargets).forEach(function (target) {
      var details = document.querySelector('#fault-panel details[data-target="' + target + '"]');
      if (details && openTargets[target]) details.open = true;
    });
  }

  // A control answered with HX-Trigger "lab:changed": look now rather than at the next tick
  // (the action's own time says nothing about how slow the panels are: start from the shortest gap).
  document.body.addEventListener("lab:changed", function () {
    panelsGap = PANELS_MIN_MS;
    clearTimeout(panelsTimer);
    panelsTimer = null;
    requestPanels();
  });

  document.addEventListener("visibilitychange", function () {
    if (hidden()) {
      clearTimeout(reconnectTimer);
      reconnectTimer = null;
      disconnect();
      setStatus("paused", "Paused while this tab is hidden");
      stopStream();
    } else {
      setStatus("connecting", "Catching up…");
      schedule(0);
      requestPanels();
    }
  });

  // --- The lineage panel ---
  document.addEventListener("click", function (event) {
    var close = event.target.closest("[data-close-lineage]");
    if (close) {
      document.getElementById("lineage").innerHTML = '<p class="muted">Click a notification to see its lineage.</p>';
    }
  });
  document.body.addEventListener("htmx:afterSwap", function (event) {
    reopenFaultTargets();
    var target = event.detail.target;
    if (target && target.id === "lineage") {
      var heading = document.getElementById("lineage-heading");
      if (heading) heading.focus({ preventScroll: true });
    }
    if (stream && streamParts()) {
      // The traffic panel was swapped while the stream runs: show it running.
      var parts = streamParts();
      parts.start.hidden = true;
      parts.stop.hidden = false;
      parts.status.textContent = "Streaming: " + stream.sent + " sent.";
    }
  });

  // --- Copy buttons ---
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.dataset.copy);
    var text = source ? source.textContent : "";
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done);
    } else {
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      if (document.execCommand("copy")) done();
    }
  });

  // --- The steady stream: this page sends a small batch every second while it runs ---
  var stream = null;

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"];
    } catch (error) {
      return "";
    }
  }

  function streamParts() {
    var form = document.querySelector("[data-traffic-stream]");
    return form && {
      form: form,
      start: form.querySelector("[data-stream-start]"),
      stop: form.querySelector("[data-stream-stop]"),
      status: form.querySelector("[data-stream-status]"),
    };
  }

  function stopStream(reason) {
    if (!stream) return;
    clearInterval(stream.timer);
    var parts = streamParts();
    if (parts) {
      parts.start.hidden = false;
      parts.stop.hidden = true;
      parts.status.textContent = (reason || "Stream stopped") + ": " + stream.sent + " sent.";
    }
    stream = null;
  }

  document.addEventListener("submit", function (event) {
    var form = event.target.closest("[data-traffic-stream]");
    if (!form) return;
    event.preventDefault();
    if (stream) return;
    var body = new FormData(form);
    stream = { sent: 0, timer: null };
    var parts = streamParts();
    parts.start.hidden = true;
    parts.stop.hidden = false;
    var tick = function () {
      if (!stream) return;
      fetch(form.action, { method: "POST", body: body, credentials: "same-origin", headers: { "X-CSRFToken": csrfToken() } })
        .then(function (response) {
          return response.json().then(function (answer) {
            if (!response.ok) throw new Error(JSON.stringify(answer.error || answer));
            return answer;
          });
        })
        .then(function (answer) {
          if (!stream) return;
          stream.sent += answer.sent;
          var current = streamParts();
          if (current) current.status.textContent = "Streaming: " + stream.sent + " sent.";
        })
        .catch(function (error) {
          stopStream("Stream stopped (" + error.message + ")");
        });
    };
    tick();
    stream.timer = setInterval(tick, 1000);
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-stream-stop]")) stopStream();
  });

  // A change refused because the run became read-only (its workshop ended): show the page as it is now.
  document.body.addEventListener("htmx:responseError", function (event) {
    if (event.detail.xhr.status === 403) location.reload();
  });

  window.addEventListener("pagehide", disconnect);
  setStatus("connecting", "Connecting…");
  connect();
})();
