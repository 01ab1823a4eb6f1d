// Refreshes the numbers on the overview and action pages every few seconds, without
// reloading: the page works without it, this only keeps it current.
(function () {
  "use strict";
  var table = document.getElementById("overview");
  if (!table) { return; }
  var url = table.getAttribute("data-live");
  var format = new Intl.NumberFormat(document.documentElement.lang || "en");

  var BAR = ["sent", "pending", "sending", "submitted", "failed", "expired", "cancelled"];
  var SVG = "http://www.w3.org/2000/svg";

  function redraw(bar, counts) {
    var total = BAR.reduce(function (n, s) { return n + (counts[s] || 0); }, 0);
    var x = 0;
    while (bar.firstChild) { bar.removeChild(bar.firstChild); }
    BAR.forEach(function (s) {
      if (!total || !counts[s]) { return; }
      var width = 100 * counts[s] / total;
      var rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("class", "seg " + s);
      rect.setAttribute("x", x.toFixed(3));
      rect.setAttribute("y", "0");
      rect.setAttribute("width", width.toFixed(3));
      rect.setAttribute("height", "6");
      bar.appendChild(rect);
      x += width;
    });
  }

  function update(row, data) {
    var bar = row.querySelector("svg.bar") || (row.id === "overview" && document.querySelector("svg.bar"));
    if (bar) { redraw(bar, data.counts); }
    row.querySelectorAll("[data-count]").forEach(function (cell) {
      cell.textContent = format.format(data.counts[cell.getAttribute("data-count")] || 0);
    });
    row.querySelectorAll("[data-field]").forEach(function (cell) {
      var field = cell.getAttribute("data-field");
      if (field === "per_hour") { cell.textContent = format.format(data.per_hour); }
      else if (field === "status" || field === "left") { cell.textContent = data[field]; }
      else if (field === "forecast") {
        cell.textContent = data.forecast;
        cell.classList.toggle("risk", data.warns);
      }
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
