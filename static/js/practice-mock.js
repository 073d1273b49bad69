// The mock interview's countdown. The server says when each phase ends (data-ends, in ms)
// and what time it was when it rendered the page (data-server-now), so a reload resumes
// where the timer was and a wrong clock on this computer does not matter.
(function () {
  "use strict";
  const timer = document.querySelector("[data-mock-timer]");
  if (!timer) return;
  const offset = Number(timer.dataset.serverNow) - Date.now();
  const phases = Array.from(document.querySelectorAll("[data-phase]"));
  const ends = phases.map((phase) => Number(phase.dataset.ends));
  const clock = timer.querySelector("[data-clock]");
  const phaseNow = timer.querySelector("[data-phase-now]");
  const timesUp = timer.querySelector("[data-times-up]");
  const nextButton = document.querySelector("[data-next-phase]");
  let shown = -1;

  function format(ms) {
    const seconds = Math.max(0, Math.ceil(ms / 1000));
    return Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
  }

  function tick() {
    const now = Date.now() + offset;
    let current = ends.findIndex((end) => now < end);
    if (current === -1) current = phases.length;
    if (current !== shown) {
      phases.forEach((phase, i) => {
        const state = i < current ? "done" : i === current ? "now" : "next";
        phase.classList.remove("phase-done", "phase-now", "phase-next");
        phase.classList.add("phase-" + state);
        phase.querySelector("[data-phase-state]").textContent = state;
      });
      if (current < phases.length) {
        timer.querySelector("[data-phase-number]").textContent = current + 1;
        timer.querySelector("[data-phase-title]").textContent = phases[current].dataset.title;
      }
      phaseNow.hidden = current >= phases.length;
      timesUp.hidden = current < phases.length;
      if (nextButton) nextButton.hidden = current >= phases.length;
      if (shown !== -1) askFollowUps(current);  // on load the server has already asked
      shown = current;
    }
    clock.textContent = current < phases.length ? format(ends[current] - now) : "0:00";
    clock.classList.toggle("low", current < phases.length && ends[current] - now < 60000);
  }

  // When a phase ends in the page, the interviewer's questions about it are fetched (with the notes,
  // which the server saves first) into their empty slot; a slot asks once, then is replaced.
  function askFollowUps(current) {
    document.querySelectorAll("[data-round][data-pending]").forEach((slot) => {
      if (Number(slot.dataset.round) < current && window.htmx) {
        slot.removeAttribute("data-pending");
        window.htmx.trigger(slot, "mock:phase-ended");
      }
    });
  }

  tick();
  setInterval(tick, 250);
})();
