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
