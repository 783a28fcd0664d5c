// wacrm knowledge page: keeps the documents' status, progress and failure reason current while
// they ingest, by polling /dash/admin/knowledge/progress (which waits up to a second for a
// change). The page is complete without this script; it only spares a reload.
(function () {
  "use strict";
  var root = document.getElementById("knowledge");
  if (!root || !window.fetch) return;
  var version = root.getAttribute("data-version") || "0";
  var retry = 1000;
  var state = { polls: 0, updates: 0 };
  window.wacrmKnowledge = state;

  function rows() { return Array.prototype.slice.call(document.querySelectorAll("tr[data-doc]")); }
  function unsettled() {
    return rows().some(function (r) { return r.getAttribute("data-settled") !== "true"; });
  }

  // Updates a document's row; false when the page has no row for it.
  function apply(d) {
    var row = document.getElementById("doc-" + d.id);
    if (!row) return false;
    if (row.getAttribute("data-settled") === "true" && d.settled) return true;
    row.className = "doc doc-" + d.status;
    row.setAttribute("data-settled", d.settled ? "true" : "false");
    row.querySelector(".doc-status").textContent = d.label;
    var bar = row.querySelector("[role=progressbar]");
    bar.setAttribute("aria-valuenow", String(d.percent));
    bar.firstElementChild.style.width = d.percent + "%";
    row.querySelector(".doc-percent").textContent = d.percent + " %";
    row.querySelector(".doc-chunks").textContent = String(d.chunks);
    var failure = row.querySelector(".doc-failure");
    failure.textContent = d.failure || "";
    failure.hidden = !d.failure;
    state.updates++;
    return true;
  }

  // A base's summary, counted from its rows.
  function summarize() {
    Array.prototype.forEach.call(document.querySelectorAll("article.kb"), function (kb) {
      var count = function (css) { return kb.querySelectorAll(css).length; };
      var chunks = 0;
      Array.prototype.forEach.call(kb.querySelectorAll(".doc-chunks"), function (c) {
        chunks += parseInt(c.textContent, 10) || 0;
      });
      var set = function (css, v) { var e = kb.querySelector(css); if (e) e.textContent = String(v); };
      set(".kb-ready", count("tr.doc-ready"));
      set(".kb-failed", count("tr.doc-failed"));
      set(".kb-chunks", chunks);
    });
  }

  function poll() {
    state.polls++;
    fetch("/dash/admin/knowledge/progress?after=" + encodeURIComponent(version), {
      credentials: "same-origin", headers: { accept: "application/json" }
    })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (body) {
        retry = 1000;
        version = String(body.version);
        var unknown = false;
        body.documents.forEach(function (d) { if (!apply(d)) unknown = true; });
        summarize();
        if (unknown) document.getElementById("kb-changed").hidden = false;
        if (unsettled()) poll();
      })
      .catch(function () {
        // Signed out, offline or restarting: try again, less and less often.
        setTimeout(poll, retry);
        retry = Math.min(retry * 2, 15000);
      });
  }

  if (unsettled()) poll();
})();
