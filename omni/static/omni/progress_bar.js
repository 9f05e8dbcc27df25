// Progress bars (omni/templates/omni/progress_bar.html) with a data-progress-url redraw themselves
// while the page is open: every data-refresh-seconds the URL answers Progress.as_json()
// ({total, done, percent, remaining, words, segments: [{key, count, width}]}).
// A box with data-reload-unless-status waits for something with no figures yet (a campaign
// starting, its bar indeterminate): once the URL's "status" is another, the page reloads to show
// what the new status brings.
(function () {
  "use strict";

  function setText(node, value) {
    if (node && node.textContent !== String(value)) node.textContent = String(value);
  }

  function draw(box, figures) {
    var bar = box.querySelector("[role=progressbar]");
    bar.setAttribute("aria-valuemax", figures.total);
    bar.setAttribute("aria-valuenow", figures.done);
    bar.setAttribute("aria-valuetext", figures.words);
    (figures.segments || []).forEach(function (part) {
      var segment = box.querySelector('[data-segment="' + part.key + '"]');
      if (segment) segment.style.width = part.width + "%";
      setText(box.querySelector('[data-count="' + part.key + '"]'), part.count);
    });
    setText(box.querySelector("[data-progress-done]"), figures.done);
    setText(box.querySelector("[data-progress-total]"), figures.total);
    setText(box.querySelector("[data-progress-percent]"), figures.percent);
    setText(box.querySelector("[data-progress-remaining]"), figures.remaining);
    setText(box.querySelector("[data-progress-updated]"), "Updated " + new Date().toLocaleTimeString() + ".");
  }

  function refresh(box) {
    return fetch(box.dataset.progressUrl, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (figures) {
        if (!figures) return;
        var waitingWhile = box.dataset.reloadUnlessStatus;
        if (waitingWhile) {
          if (figures.status && figures.status !== waitingWhile) window.location.reload();
          else setText(box.querySelector("[data-progress-updated]"), "Checked " + new Date().toLocaleTimeString() + ".");
          return;
        }
        draw(box, figures);
      })
      .catch(function () { /* the next round tries again */ });
  }

  function start() {
    document.querySelectorAll("[data-progress-url]").forEach(function (box) {
      if (box.dataset.progressStarted) return;  // the template may be included more than once
      box.dataset.progressStarted = "1";
      var every = (parseInt(box.dataset.refreshSeconds, 10) || 5) * 1000;
      window.setInterval(function () { if (!document.hidden) refresh(box); }, every);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
