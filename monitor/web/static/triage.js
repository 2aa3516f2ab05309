// The triage desk refreshes its counts and rows without a full reload.
// Selections survive a refresh; polling stops once the user has been idle as long as
// the session's idle timeout, so an unattended screen still signs itself out.
(function () {
  "use strict";
  var desk = document.getElementById("desk");
  if (!desk) { return; }
  var every = (parseInt(desk.getAttribute("data-every-seconds"), 10) || 30) * 1000;
  var idleMs = (parseInt(desk.getAttribute("data-idle-minutes"), 10) || 30) * 60000;
  var lastInput = Date.now();
  ["keydown", "pointerdown", "scroll", "touchstart"].forEach(function (name) {
    window.addEventListener(name, function () { lastInput = Date.now(); }, { passive: true });
  });
  var stamp = document.getElementById("refreshed");

  function refresh() {
    if (Date.now() - lastInput > idleMs) {
      if (stamp) { stamp.textContent = "(stopped refreshing: idle)"; }
      return;
    }
    var picked = {};
    desk.querySelectorAll("input[name=code]:checked").forEach(function (box) {
      picked[box.value] = true;
    });
    fetch(desk.getAttribute("data-src"), { credentials: "same-origin", redirect: "manual" })
      .then(function (response) {
        if (response.type === "opaqueredirect" || !response.ok) {
          throw new Error("signed out or unavailable");
        }
        return response.text();
      })
      .then(function (html) {
        desk.innerHTML = html;
        desk.querySelectorAll("input[name=code]").forEach(function (box) {
          if (picked[box.value] && !box.disabled) { box.checked = true; }
        });
        if (stamp) { stamp.textContent = "updated " + new Date().toLocaleTimeString(); }
        window.setTimeout(refresh, every);
      })
      .catch(function () {
        if (stamp) { stamp.textContent = "(not refreshing: reload the page)"; }
      });
  }
  window.setTimeout(refresh, every);
  desk.setAttribute("data-refresh", "on");
}());
