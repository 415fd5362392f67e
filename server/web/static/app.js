/* The court's pages: the live stream's state, new-alarm alerts, the sound switch. No inline script (CSP).
 *
 * The stream (GET /live?…&tab=<this page load's random id>, wired in templates/_live.html through htmx's SSE
 * extension) sends named events:
 *   update    — HTML fragments with hx-swap-oob, swapped in by htmx; carries the id to resume from
 *   heartbeat — every few seconds, so that a silent stream is noticed; its data (JSON) says whether the court is
 *               receiving from its seals ("court": "ok", or why not), at once when that changes; the overview's
 *               carries the id to resume from as well
 *   gap       — too much was missed (or the server restarted), or a newer stream of this tab took this one's
 *               place ("displaced"): reload the page
 *   signin    — the session has ended: go to the sign-in page
 * The stale banner shows when the stream errs and is not back within a moment, or when nothing (not even a
 * heartbeat) arrived for three heartbeat periods. While it shows, /api/health is polled; when the server answers
 * again the page reloads (at most once a minute), so a restarted server's screen catches up by itself.
 * The body's data-live says "up" only once the stream has delivered a message since it last opened or erred (the
 * server sends a heartbeat as soon as the page is subscribed), "connecting" until then, "stale" while the banner
 * shows. While the court is not receiving from its seals, the court banner shows and the body's data-court says
 * "not-receiving" (the online pills are greyed: what was last known, not what is); "receiving" otherwise.
 */
(function () {
  "use strict";

  var live = { lastId: null, lastMessageAt: Date.now(), open: false, heard: false, erredAt: null, heartbeatMs: 5000 };
  var knownAlarms = new Set();
  var audio = null;

  function $(id) { return document.getElementById(id); }

  function show(id, shown) {
    var el = $(id);
    if (el) { el.classList.toggle("shown", shown); }
  }

  function heard(event) {
    live.lastMessageAt = Date.now();
    live.open = true;
    live.heard = true;
    live.erredAt = null;
    if (event && event.lastEventId) { live.lastId = event.lastEventId; }
    show("stale-banner", false);
    document.body.dataset.live = "up";
    if (event && event.type === "heartbeat") { courtSays(event.data); }
  }

  function courtSays(data) {
    var court;
    try { court = JSON.parse(data).court; } catch (e) { return; }
    if (typeof court !== "string") { return; }
    show("court-banner", court !== "ok");
    document.body.dataset.court = court === "ok" ? "receiving" : "not-receiving";
  }

  // This page load's tab id: a stream of the same tab (and session) takes the place of the one before it on the
  // server, so that a reconnect after the network vanished is not refused while the former stream lingers there.
  var tabId = (function () {
    var bytes = new Uint8Array(12);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  })();

  function withResumePoint(url) {
    var parsed = new URL(url, window.location.href);
    parsed.searchParams.set("tab", tabId);
    if (live.lastId) { parsed.searchParams.set("since", live.lastId); }
    return parsed.pathname + parsed.search;
  }

  function createEventSource(url) {
    var source = new EventSource(withResumePoint(url), { withCredentials: true });
    source.addEventListener("open", function () { live.open = true; });
    source.addEventListener("heartbeat", heard);
    source.addEventListener("update", heard);
    source.addEventListener("error", function () {
      live.open = false;
      live.heard = false;  // "up" again only once the stream, reconnected, has delivered a message
      if (live.erredAt === null) { live.erredAt = Date.now(); }
      if (document.body.dataset.live === "up") { document.body.dataset.live = "connecting"; }  // not at the next tick
    });
    source.addEventListener("gap", function () {
      source.close();
      show("gap-banner", true);
      window.setTimeout(reloadPage, 300);
    });
    source.addEventListener("signin", function () {
      source.close();
      window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
    });
    return source;
  }

  function stale() {
    var now = Date.now();
    var erred = !live.open && live.erredAt !== null && now - live.erredAt > 1500;
    return erred || now - live.lastMessageAt > 3 * live.heartbeatMs;
  }

  var polling = false;
  function watch() {
    if (!$("live")) { return; }
    var isStale = stale();
    show("stale-banner", isStale);
    document.body.dataset.live = isStale ? "stale" : live.heard ? "up" : "connecting";
    if (isStale && !polling && Date.now() - live.lastMessageAt > 5000) {
      polling = true;
      fetch("/api/health", { cache: "no-store" }).then(function (response) {
        polling = false;
        var last = Number(window.sessionStorage.getItem("seal.reloadedAt") || 0);
        if (response.status < 500 && Date.now() - last > 60000) {
          window.sessionStorage.setItem("seal.reloadedAt", String(Date.now()));
          reloadPage();
        }
      }, function () { polling = false; });
    }
  }

  /* New alarms: rows carry data-alarm-id; an open intrusion or tamper is data-alert="1" (and so is a row that comes
   * to alert: it alerts then, as a new one). The alarms this tab knows
   * on this page are kept in its sessionStorage (at most KNOWN_MAX, besides the rows shown): a load the page made
   * itself (reloadPage: a gap, the server back) alerts for the rows not known before it, as the stream would have
   * for an alarm it delivered; a first visit, a link followed or the browser's own reload alerts for none. */
  var KNOWN_KEY = "seal.knownAlarms";
  var RELOAD_KEY = "seal.selfReload";
  var KNOWN_MAX = 1000;
  var RELOAD_VALID_MS = 300000;
  var thisPage = window.location.pathname + window.location.search;

  function stored(key) {
    try { return JSON.parse(window.sessionStorage.getItem(key) || "null"); } catch (e) { return null; }
  }

  function store(key, value) {
    try { window.sessionStorage.setItem(key, JSON.stringify(value)); } catch (e) { /* full or refused: no memory */ }
  }

  function reloadPage() {
    store(RELOAD_KEY, { page: thisPage, at: Date.now() });
    window.location.reload();
  }

  /* The ids known on this page before a reload the page made itself; null on any other load. */
  function knownBeforeReload() {
    var mark = stored(RELOAD_KEY);
    try { window.sessionStorage.removeItem(RELOAD_KEY); } catch (e) { return null; }
    if (!mark || mark.page !== thisPage || !(Date.now() - mark.at < RELOAD_VALID_MS)) { return null; }
    var known = stored(KNOWN_KEY);
    return known && known.page === thisPage && Array.isArray(known.ids) ? known.ids : null;
  }

  function scanAlarms(alerting, save) {
    var rows = document.querySelectorAll("[data-alarm-id]");
    var shown = new Set();
    var added = false;
    for (var i = 0; i < rows.length; i++) {
      var row = rows[i];
      // Known by id and by whether it alerts: an alarm that comes to alert (a case_mismatch the seal's intrusion
      // folded into) is news as a new one is.
      var id = row.getAttribute("data-alarm-id") + (row.getAttribute("data-alert") === "1" ? "!" : "");
      shown.add(id);
      if (knownAlarms.has(id)) { continue; }
      knownAlarms.add(id);
      added = true;
      if (alerting && row.getAttribute("data-alert") === "1") { alert(row); }
    }
    if (added || save) { remember(shown); }
  }

  function remember(shown) {
    knownAlarms.forEach(function (id) {  // the oldest known first (a Set keeps its order); the shown rows stay
      if (knownAlarms.size > KNOWN_MAX && !shown.has(id)) { knownAlarms.delete(id); }
    });
    store(KNOWN_KEY, { page: thisPage, ids: Array.from(knownAlarms) });
  }

  function scanLoadedAlarms() {
    var before = knownBeforeReload();
    if (before) { before.forEach(function (id) { knownAlarms.add(String(id)); }); }
    scanAlarms(before !== null, true);  // saved even with no alarm shown: this page's memory, not another page's
  }

  function alert(row) {
    row.classList.add("new");
    var banner = $("alert-banner");
    if (banner) {
      banner.textContent = banner.getAttribute("data-label") + row.getAttribute("data-alert-text");  // "新告警：", "New alarm: "
      banner.classList.add("shown");
    }
    if (soundOn()) { beep(); }
  }

  function soundOn() { return window.localStorage.getItem("seal.sound") === "1"; }

  function beep() {
    if (!audio) { return; }
    var start = audio.currentTime;
    [880, 660, 880].forEach(function (frequency, i) {
      var tone = audio.createOscillator();
      var gain = audio.createGain();
      tone.frequency.value = frequency;
      gain.gain.setValueAtTime(0.25, start + i * 0.25);
      gain.gain.exponentialRampToValueAtTime(0.001, start + i * 0.25 + 0.22);
      tone.connect(gain).connect(audio.destination);
      tone.start(start + i * 0.25);
      tone.stop(start + i * 0.25 + 0.23);
    });
  }

  function showSound() {
    var button = $("sound-toggle");
    if (!button) { return; }
    var on = soundOn();
    button.textContent = button.getAttribute(on ? "data-on" : "data-off");
    button.setAttribute("aria-pressed", on ? "true" : "false");
    if (on && !audio && window.AudioContext) { audio = new window.AudioContext(); }
  }

  function setUp() {
    var element = $("live");
    if (element) {
      live.heartbeatMs = 1000 * Number(element.getAttribute("data-heartbeat-s") || 5);
      live.lastMessageAt = Date.now();
      window.setInterval(watch, 1000);
    }
    var button = $("sound-toggle");
    if (button) {
      button.addEventListener("click", function () {
        window.localStorage.setItem("seal.sound", soundOn() ? "0" : "1");
        showSound();
      });
      showSound();
    }
    scanLoadedAlarms();  // after the sound is set up: a load after a reload of the page's own may alert
    document.body.addEventListener("htmx:sseMessage", function () { scanAlarms(true, false); });
    var banner = $("alert-banner");
    if (banner) {
      banner.addEventListener("click", function () { banner.classList.remove("shown"); });
    }
  }

  /* A tile sent alone replaces its own element where it stood: move it to where the grid's order puts it (seals with
   * open alarms first, then with acknowledged ones, then the calm ones; by case and seal within each). */
  function tileKey(tile) {
    return [Number(tile.getAttribute("data-rank")), Number(tile.getAttribute("data-order"))];
  }

  function placeTile(tile) {
    var grid = tile.parentElement;
    if (!grid || grid.id !== "tiles" || !tile.hasAttribute("data-rank")) { return; }
    var key = tileKey(tile);
    var tiles = grid.querySelectorAll(":scope > article[data-rank]");
    var before = null;
    for (var i = 0; i < tiles.length; i++) {
      var other = tileKey(tiles[i]);
      if (tiles[i] !== tile && (other[0] > key[0] || (other[0] === key[0] && other[1] > key[1]))) {
        before = tiles[i];
        break;
      }
    }
    if (before !== tile.nextElementSibling || (before === null && tile !== grid.lastElementChild)) {
      grid.insertBefore(tile, before);
    }
  }

  /* After the settle: until then htmx gives a swapped element its predecessor's attributes (for CSS transitions). */
  document.addEventListener("htmx:afterSettle", function (event) {
    var tile = event.target;
    if (tile && tile.hasAttribute && tile.hasAttribute("data-rank")) { placeTile(tile); }
  });

  if (window.htmx) { window.htmx.createEventSource = createEventSource; }
  document.addEventListener("DOMContentLoaded", setUp);
})();

/* The case page (and any page that uses these hooks):
 *   data-live-list  — a list that takes a live update's rows (an element sent with hx-swap-oob="afterbegin"): a row
 *                     the list has already (same id) is replaced where it stands, the others go to its top;
 *   data-live-max   — such a list keeps at most that many rows (a tab open for days): the oldest go, and the list
 *                     ends with a link to them (data-older-url + the id of the last row kept; data-older-label);
 *   #snapshot-body  — a picture link loads its detail into the dialog, which then opens;
 *   data-error-box  — a form's refusal (4xx: a conflict, a missing reason) is shown in the element of that id of its
 *                     section, instead of being dropped by htmx;
 *   data-send-once  — a form posted (not by htmx) once: a second click or Enter while the first is on its way is
 *                     dropped, and its button says data-busy. Without script the form posts as ever.
 */
(function () {
  "use strict";

  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var detail = event.detail;
    if (!detail.target || !detail.target.hasAttribute("data-live-list") || !detail.fragment) { return; }
    Array.prototype.slice.call(detail.fragment.children).forEach(function (row) {
      var present = row.id ? document.getElementById(row.id) : null;
      if (present) {
        present.replaceWith(row);
        if (window.htmx) { window.htmx.process(row); }
      }
    });
  });

  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var list = event.detail.target;
    if (!list || !list.hasAttribute || !list.hasAttribute("data-live-max")) { return; }
    var max = Number(list.getAttribute("data-live-max"));
    var rows = list.querySelectorAll(":scope > li[data-event-id]");
    if (!(max > 0) || rows.length <= max) { return; }
    for (var i = max; i < rows.length; i++) { rows[i].remove(); }
    var more = list.querySelector(":scope > #timeline-more");
    if (more) { more.remove(); }
    var item = document.createElement("li");
    item.id = "timeline-more";
    item.className = "more";
    var link = document.createElement("a");
    link.href = list.getAttribute("data-older-url") + rows[max - 1].getAttribute("data-event-id");
    link.textContent = list.getAttribute("data-older-label");
    item.appendChild(link);
    list.appendChild(item);
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (!target || target.id !== "snapshot-body") { return; }
    var dialog = document.getElementById("snapshot-dialog");
    if (dialog && !dialog.open) { dialog.showModal(); }
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    var detail = event.detail;
    if (!detail.xhr || detail.xhr.status < 400 || !detail.elt) { return; }
    var holder = detail.elt.closest("[data-error-box]");
    var box = holder ? document.getElementById(holder.getAttribute("data-error-box")) : null;
    if (!box) { return; }
    detail.shouldSwap = true;
    detail.isError = false;
    detail.target = box;
    detail.swapOverride = "innerHTML";
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (event.defaultPrevented || !form.hasAttribute("data-send-once")) { return; }
    if (form.dataset.sent === "1") { event.preventDefault(); return; }
    form.dataset.sent = "1";
    var button = event.submitter || form.querySelector("button[type=submit]");
    if (!button) { return; }
    window.setTimeout(function () {  // once the form's data is taken: a disabled button would not be in it
      button.disabled = true;
      if (form.hasAttribute("data-busy")) {
        button.dataset.label = button.textContent;
        button.textContent = form.getAttribute("data-busy");
      }
    }, 0);
  });

  /* Back to a page the browser kept (back/forward cache): its forms may be sent again. */
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) { return; }
    document.querySelectorAll("form[data-send-once][data-sent]").forEach(function (form) {
      delete form.dataset.sent;
      form.querySelectorAll("button[type=submit]").forEach(function (button) {
        button.disabled = false;
        if (button.dataset.label !== undefined) { button.textContent = button.dataset.label; }
      });
    });
  });
})();
