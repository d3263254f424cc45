// omaovi staff page: the little the page does in the browser. Everything works
// without it; with it, parts marked data-live refresh themselves.
"use strict";

// An element with data-live="URL" is replaced every data-interval seconds by the
// HTML fragment the server renders at URL, so the page stays current without reloads.
function startLiveRegions() {
  document.querySelectorAll("[data-live]").forEach(function (region) {
    var seconds = parseFloat(region.dataset.interval || "3");
    function refresh() {
      fetch(region.dataset.live, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" })
        .then(function (response) {
          if (response.redirected || response.status === 401 || response.status === 302) {
            window.location.reload(); // the session ended: show the login page
            return null;
          }
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          if (html !== null && html !== undefined) {
            region.innerHTML = html;
            region.classList.remove("stale");
          }
        })
        .catch(function () { region.classList.add("stale"); });
    }
    window.setInterval(refresh, seconds * 1000);
  });
}

document.addEventListener("DOMContentLoaded", startLiveRegions);
