/* Workshops: the countdowns of the instructor's faults on a learner's page, and the broadcast form's fields.
 *
 * 1. Every [data-countdown-to] (a Unix time) shows the time left as m:ss, each second. The
 *    server ends the fault by itself (the relay); the countdown only says when.
 * 2. The broadcast form shows the provider fields or the pipeline fields, as its target asks
 *    (without JavaScript both show, and the server reads the set the target names).
 */
(function () {
  "use strict";

  function timeLeft(seconds) {
    var s = Math.max(0, Math.round(seconds));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), rest = s % 60;
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return h ? h + ":" + pad(m) + ":" + pad(rest) : m + ":" + pad(rest);
  }

  function tick() {
    var now = Date.now() / 1000;
    document.querySelectorAll("[data-countdown-to]").forEach(function (element) {
      var left = Number(element.dataset.countdownTo) - now;
      element.textContent = left > 0 ? timeLeft(left) : "0:00 (ending)";
    });
  }
  setInterval(tick, 1000);

  function showFaultFields(form) {
    var target = form.querySelector("[name=target]");
    if (!target) return;
    var kind = target.value === "pipeline" ? "pipeline" : "provider";
    form.querySelectorAll("[data-fault-fields]").forEach(function (fieldset) {
      fieldset.hidden = fieldset.dataset.faultFields !== kind;
    });
  }

  function setUp() {
    document.querySelectorAll(".broadcast-form").forEach(showFaultFields);
    tick();
  }
  document.addEventListener("change", function (event) {
    var form = event.target.closest(".broadcast-form");
    if (form && event.target.name === "target") showFaultFields(form);
  });
  document.addEventListener("DOMContentLoaded", setUp);
  document.addEventListener("htmx:afterSettle", setUp);
})();
