// Live progress on a job page: follows the run's server-sent events (/jobs/{id}/events),
// moves the progress bar and the row count as the run reads (platform staff), and reloads the page when the
// run changes state (approved, started, finished, cancelled…). Without JavaScript, or when the
// events cannot be followed, the page reloads itself every two seconds instead.
(function () {
  "use strict";
  var box = document.querySelector("[data-events]");
  if (!box) {
    return;
  }
  function reloadSoon() {
    window.setTimeout(function () {
      window.location.reload();
    }, 2000);
  }
  if (!window.EventSource) {
    reloadSoon();
    return;
  }
  var bar = box.querySelector("progress");
  var done = box.querySelector(".rows-done");
  var total = box.querySelector(".rows-total");
  var source = new window.EventSource(box.getAttribute("data-events"));
  source.addEventListener("progress", function (e) {
    var p = JSON.parse(e.data);
    // The operator is sent the state alone (how far a run has read is for platform staff).
    if (p.percent === undefined || !done) {
      return;
    }
    bar.value = p.percent;
    bar.textContent = p.percent + "%";
    done.textContent = p.rows_done;
    total.textContent = p.rows_total;
  });
  source.addEventListener("state", function () {
    source.close();
    window.location.reload();
  });
  source.onerror = function () {
    if (source.readyState === window.EventSource.CLOSED) {
      reloadSoon();
    }
  };
})();
