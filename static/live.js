// wacrm dashboard: live updates over one WebSocket per tab, plus a few keyboard shortcuts.
// Pages are complete without this script; it only keeps them current without reloads.
(function () {
  "use strict";
  var body = document.body;
  if (!body) return;
  var conversation = body.getAttribute("data-conversation");
  var simulator = body.hasAttribute("data-simulator");

  // ---- keyboard -------------------------------------------------------------------------------
  document.addEventListener("keydown", function (e) {
    var t = e.target, typing = t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT");
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && t && t.id === "reply" && t.form) {
      e.preventDefault(); t.form.requestSubmit ? t.form.requestSubmit() : t.form.submit(); return;
    }
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "/") { var s = document.getElementById("search"); if (s) { e.preventDefault(); s.focus(); } }
    if (e.key === "r") { var r = document.getElementById("reply") || document.getElementById("template-name"); if (r) { e.preventDefault(); r.focus(); } }
  });
  document.addEventListener("click", function (e) {
    var chip = e.target.closest && e.target.closest(".chip[data-text]");
    if (!chip) return;
    var r = document.getElementById("reply");
    if (r) { r.value = chip.getAttribute("data-text"); r.focus(); }
  });

  if (!body.hasAttribute("data-live") || !window.WebSocket) return;

  // ---- live channel ---------------------------------------------------------------------------
  var live = {
    cursor: parseInt(body.getAttribute("data-cursor") || "0", 10) || 0,
    socket: null, socketId: null, connected: false, paused: false, events: 0, retry: 500
  };
  window.wacrmLive = live;
  var statusEl = document.getElementById("live-status");
  function status(text, cls) { if (statusEl) { statusEl.textContent = text; statusEl.className = "live-status " + cls; } }

  function wsUrl() {
    var proto = location.protocol === "https:" ? "wss:" : "ws:";
    return proto + "//" + location.host + "/dash/live?after=" + live.cursor;
  }

  live.connect = function () {
    live.paused = false;
    if (live.socket) return;
    var ws = new WebSocket(wsUrl());
    live.socket = ws;
    ws.onopen = function () { live.retry = 500; };
    ws.onmessage = function (m) { var ev; try { ev = JSON.parse(m.data); } catch (_) { return; } handle(ev); };
    ws.onclose = function () {
      live.socket = null; live.connected = false;
      if (live.paused) { status("paused", "off"); return; }
      status("reconnecting…", "off");
      setTimeout(function () { if (!live.paused) live.connect(); }, live.retry);
      live.retry = Math.min(live.retry * 2, 5000);
    };
  };
  // For tests and for tabs that want to stop listening: close until connect() is called.
  live.disconnect = function () { live.paused = true; if (live.socket) live.socket.close(); };

  function send(obj) { if (live.socket && live.connected) live.socket.send(JSON.stringify(obj)); }

  var typingTimer = null, typingNow = false;
  function viewing(typing) { if (conversation) send({ t: "viewing", c: conversation, typing: !!typing }); }
  var reply = document.getElementById("reply");
  if (reply) reply.addEventListener("input", function () {
    if (!typingNow) { typingNow = true; viewing(true); }
    clearTimeout(typingTimer);
    typingTimer = setTimeout(function () { typingNow = false; viewing(false); }, 3000);
  });

  function handle(ev) {
    switch (ev.t) {
      case "hello": live.socketId = ev.socket; live.sessionId = ev.session; break;
      case "ready": live.connected = true; status("live", "on"); viewing(typingNow); break;
      case "reset": location.reload(); break;
      case "feed":
        if (ev.seq > live.cursor) live.cursor = ev.seq;
        live.events++;
        onFeed(ev);
        break;
      case "working": if (ev.c === conversation) showWorking(true); break;
      case "presence": if (ev.c === conversation) showPresence(ev.who || []); break;
    }
  }

  function upsertMessage(html) {
    var box = document.getElementById("transcript");
    if (!box || !html) return;
    var tpl = document.createElement("template");
    tpl.innerHTML = html.trim();
    var el = tpl.content.firstElementChild;
    if (!el) return;
    if (simulator && /\b(note|system)\b/.test(el.className)) return;
    var old = document.getElementById(el.id);
    if (old) { old.replaceWith(el); return; }
    var empty = document.getElementById("phone-empty");
    if (empty) empty.remove();
    var nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    box.appendChild(el);
    if (nearBottom) box.scrollTop = box.scrollHeight;
  }

  function onFeed(ev) {
    if (simulator && !conversation) { if (ev.kind === "message") reloadSoon(); return; }
    if (conversation && ev.c === conversation) {
      if (ev.html) upsertMessage(ev.html);
      if (ev.author === "assistant" || ev.author === "agent") showWorking(false);
      if (!simulator && stateChanged(ev)) refreshPanel();
    }
    if (simulator || ev.kind === "status") return;
    // A new message in a conversation already listed only changes its row; anything else may
    // change which conversations the list holds, which the server decides.
    if (ev.kind === "message" && ev.html && updateRow(ev)) return;
    refreshList();
  }

  function updateRow(ev) {
    var row = document.getElementById("conv-" + ev.c);
    // A message that came with a change of state (a handoff) may move the row between lists.
    if (!row || (ev.state && !row.classList.contains("state-" + ev.state))) return false;
    var tpl = document.createElement("template");
    tpl.innerHTML = ev.html.trim();
    var text = tpl.content.querySelector(".text"), preview = row.querySelector(".preview");
    if (text && preview) preview.textContent = text.textContent.slice(0, 90);
    var when = tpl.content.querySelector("time"), rowWhen = row.querySelector("time");
    if (when && rowWhen) rowWhen.textContent = when.textContent;
    var list = row.parentNode;
    if (list && list.firstElementChild !== row) list.insertBefore(row, list.firstElementChild);
    return true;
  }

  // The panel (state, assignment, labels, actions) only changes with the conversation.
  function stateChanged(ev) {
    if (ev.kind === "state") return true;
    var head = document.querySelector("#panel .conv-head");
    return !!head && ev.state && head.getAttribute("data-state") !== ev.state;
  }

  var reloadTimer = null;
  function reloadSoon() { if (!reloadTimer) reloadTimer = setTimeout(function () { location.reload(); }, 300); }

  // At most one list fetch a second under a stream of changes; the first one quickly.
  var listTimer = null, lastListFetch = 0;
  function refreshList() {
    var box = document.getElementById("list-box");
    if (!box || listTimer) return;
    var wait = Math.max(60, 1000 - (Date.now() - lastListFetch));
    listTimer = setTimeout(function () {
      listTimer = null;
      lastListFetch = Date.now();
      var q = body.getAttribute("data-list-query") || "";
      fetch("/dash/inbox/list?" + q + (conversation ? "&current=" + conversation : ""), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) box.innerHTML = html; })
        .catch(function () {});
    }, wait);
  }

  var panelTimer = null;
  function refreshPanel() {
    if (panelTimer) return;
    panelTimer = setTimeout(function () {
      panelTimer = null;
      fetch(location.pathname, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html === null) return;
          var doc = new DOMParser().parseFromString(html, "text/html");
          var panel = document.getElementById("panel"), fresh = doc.getElementById("panel");
          if (!panel || !fresh) return;
          var before = panel.querySelector(".conv-head"), after = fresh.querySelector(".conv-head");
          var changed = !before || !after || before.getAttribute("data-state") !== after.getAttribute("data-state");
          panel.innerHTML = fresh.innerHTML;
          var comp = document.getElementById("composer"), freshComp = doc.getElementById("composer");
          // Keep what the agent is typing unless the conversation's state changed the composer.
          if (changed && comp && freshComp) comp.innerHTML = freshComp.innerHTML;
        })
        .catch(function () {});
    }, 200);
  }

  var workingTimer = null;
  function showWorking(on) {
    var el = document.getElementById("working");
    if (!el) return;
    el.hidden = !on;
    clearTimeout(workingTimer);
    if (on) workingTimer = setTimeout(function () { el.hidden = true; }, 30000);
  }

  function showPresence(who) {
    var el = document.getElementById("presence");
    if (!el) return;
    // Other tabs of this same session are not a colleague.
    var others = who.filter(function (p) { return p.session !== live.sessionId; });
    if (!others.length) { el.hidden = true; el.textContent = ""; return; }
    el.textContent = "Also here: " + others.map(function (p) { return p.name + (p.typing ? " (typing…)" : ""); }).join(", ") +
      " — agree who answers before replying.";
    el.hidden = false;
  }

  live.connect();
})();
