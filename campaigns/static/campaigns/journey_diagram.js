// The journey diagram's counts, refreshed in place while the page is open: every panel with a
// data-diagram-counts-url asks it for {"at_step": {key: n}, "passed": {key: n}} and writes the
// numbers into its data-at-step / data-passed elements (the drawing's and the list's).
(function () {
  "use strict";

  function write(panel, attribute, counts) {
    panel.querySelectorAll("[" + attribute + "]").forEach(function (node) {
      var value = String(counts[node.getAttribute(attribute)] || 0);
      if (node.textContent !== value) node.textContent = value;
    });
  }

  function refresh(panel) {
    return fetch(panel.dataset.diagramCountsUrl, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (figures) {
        if (!figures) return;
        write(panel, "data-at-step", figures.at_step || {});
        write(panel, "data-passed", figures.passed || {});
        var stamp = panel.querySelector("[data-counts-updated]");
        if (stamp) stamp.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
      })
      .catch(function () { /* the next round tries again */ });
  }

  function start() {
    document.querySelectorAll("[data-diagram-counts-url]").forEach(function (panel) {
      var every = (parseInt(panel.dataset.refreshSeconds, 10) || 10) * 1000;
      window.setInterval(function () { if (!document.hidden) refresh(panel); }, every);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
