// Light/dark theme. Loaded in <head> before the stylesheet paints, so a saved
// choice never flashes the other theme. Without a saved choice the system
// preference (prefers-color-scheme) decides.
(function () {
  var saved = null;
  try { saved = localStorage.getItem("faultline-theme"); } catch (e) { /* storage disabled */ }
  if (saved === "light" || saved === "dark") {
    document.documentElement.dataset.theme = saved;
  }
  document.addEventListener("click", function (event) {
    var toggle = event.target.closest("[data-theme-toggle]");
    if (!toggle) return;
    var current = document.documentElement.dataset.theme ||
      (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
    var next = current === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    try { localStorage.setItem("faultline-theme", next); } catch (e) { /* storage disabled */ }
  });
})();
