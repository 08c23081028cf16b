// Live regions, no framework: an element with data-live="<url>" is refilled from that URL (the
// server answers the region's inner HTML to a request carrying X-Plexica-Live: 1) until the
// answer carries "X-Plexica-Live: done". Without JavaScript the page is a plain refreshable one.
(function () {
  "use strict";
  function poll(el) {
    var url = el.getAttribute("data-live");
    var every = parseInt(el.getAttribute("data-live-every") || "400", 10);
    window.setTimeout(function () {
      fetch(url, { headers: { "X-Plexica-Live": "1" }, credentials: "same-origin", cache: "no-store" })
        .then(function (r) {
          if (r.redirected) { window.location.reload(); return null; }
          if (!r.ok) { poll(el); return null; }
          var done = r.headers.get("X-Plexica-Live") === "done";
          return r.text().then(function (html) {
            el.innerHTML = html;
            if (done) { el.removeAttribute("data-live"); } else { poll(el); }
          });
        })
        .catch(function () { poll(el); });
    }, every);
  }
  document.querySelectorAll("[data-live]").forEach(poll);
})();
