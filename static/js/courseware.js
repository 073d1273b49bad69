// Glossary tooltips on lesson pages. CSS shows a tooltip while its term is hovered or
// focused; this script adds what CSS cannot: Escape hides it (WCAG 1.4.13, dismissible),
// and a tooltip that would run off the right edge of the screen is shifted back in.
(function () {
  function fit(term) {
    var tip = term.querySelector(".term-tip");
    tip.style.setProperty("--tip-shift", "0px");
    var overflow = tip.getBoundingClientRect().right - (document.documentElement.clientWidth - 8);
    if (overflow > 0) tip.style.setProperty("--tip-shift", -overflow + "px");
  }

  function show(term) {
    delete term.dataset.dismissed;
    fit(term);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".term").forEach(function (term) {
      term.addEventListener("mouseenter", function () { show(term); });
      term.addEventListener("focusin", function () { show(term); });
      term.addEventListener("mouseleave", function () { delete term.dataset.dismissed; });
      term.addEventListener("focusout", function () { delete term.dataset.dismissed; });
    });
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    document.querySelectorAll(".term:hover, .term:focus-within").forEach(function (term) {
      term.dataset.dismissed = "";
    });
  });
})();
