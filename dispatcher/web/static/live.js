// Refreshes the numbers on the overview and action pages every few seconds, without
// reloading: the page works without it, this only keeps it current.
(function () {
  "use strict";
  var table = document.getElementById("overview");
  if (!table) { return; }
  var url = table.getAttribute("data-live");
  var format = new Intl.NumberFormat(document.documentElement.lang || "en");

  function update(row, data) {
    row.querySelectorAll("[data-count]").forEach(function (cell) {
      cell.textContent = format.format(data.counts[cell.getAttribute("data-count")] || 0);
    });
    row.querySelectorAll("[data-field]").forEach(function (cell) {
      var field = cell.getAttribute("data-field");
      if (field === "per_hour") { cell.textContent = format.format(data.per_hour); }
      else if (field === "status" || field === "left") { cell.textContent = data[field]; }
    });
  }

  function refresh() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (all) {
        if (!all) { return; }
        var one = table.getAttribute("data-action");
        if (one) { if (all[one]) { update(table, all[one]); } return; }
        table.querySelectorAll("tr[data-action]").forEach(function (row) {
          var data = all[row.getAttribute("data-action")];
          if (data) { update(row, data); }
        });
      })
      .catch(function () { /* the next tick tries again */ });
  }
  setInterval(refresh, 3000);
}());
