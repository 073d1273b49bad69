// The question page's time box: counts down from the question's minutes while the page is open.
// Purely a pacing aid; nothing is enforced or sent to the server.
(function () {
  "use strict";
  const box = document.querySelector("[data-timebox]");
  if (!box) return;
  const left = box.querySelector("[data-timebox-left]");
  const end = Date.now() + Number(box.dataset.timebox) * 60000;

  function tick() {
    const seconds = Math.round((end - Date.now()) / 1000);
    const abs = Math.abs(seconds);
    const text = Math.floor(abs / 60) + ":" + String(abs % 60).padStart(2, "0");
    left.textContent = seconds >= 0 ? text + " left" : text + " over: wrap up";
    box.classList.toggle("over", seconds < 0);
  }

  tick();
  setInterval(tick, 1000);
})();
