// Live parts: an element with data-refresh="URL" data-every="SECONDS" has its content replaced by
// the HTML fragment at URL every SECONDS. Pages read fine without it (they carry the same content).
(function () {
  "use strict";
  function refresh(el) {
    var every = Math.max(1, parseInt(el.getAttribute("data-every"), 10) || 5) * 1000;
    function tick() {
      if (document.hidden) { setTimeout(tick, every); return; }
      fetch(el.getAttribute("data-refresh"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html !== null && !el.contains(document.activeElement)) { el.innerHTML = html; }
        })
        .catch(function () {})
        .then(function () { setTimeout(tick, every); });
    }
    setTimeout(tick, every);
  }
  document.querySelectorAll("[data-refresh]").forEach(refresh);
})();
