// Diagrams on lesson pages. A lesson draws each diagram as an inline SVG that scales to the
// column's width (courseware.css), so nothing scrolls sideways. This script adds what CSS cannot:
// 1. It trims each diagram's viewBox to what is drawn, plus a margin: a viewBox drawn larger than
//    its picture would leave an empty band above the caption, and on a phone it would waste width.
// 2. On a screen too narrow to read a diagram at full size (courseware.css shows the "Enlarge"
//    button there), the button or a tap on the diagram opens it in a full-screen dialog. On a
//    portrait screen a wide diagram is turned a quarter, so it fills the screen's long side and
//    reads at about its full size when the reader turns the phone.
(function () {
  var MARGIN = 8; // viewBox units kept around the drawing: room for strokes and arrowheads
  var TURN_GAIN = 1.2; // turn only when that makes the diagram at least this much larger
  var viewer = null;

  function trim(svg) {
    var box = svg.viewBox.baseVal;
    if (!box || !box.width || !box.height) return;
    var drawn = svg.getBBox();
    if (!drawn.width || !drawn.height) return;
    var left = Math.max(box.x, drawn.x - MARGIN);
    var top = Math.max(box.y, drawn.y - MARGIN);
    var right = Math.min(box.x + box.width, drawn.x + drawn.width + MARGIN);
    var bottom = Math.min(box.y + box.height, drawn.y + drawn.height + MARGIN);
    svg.setAttribute("viewBox", [left, top, right - left, bottom - top].map(Math.round).join(" "));
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  function makeViewer() {
    var dialog = element("dialog", "diagram-viewer");
    var bar = element("div", "diagram-viewer-bar");
    var hint = element("p", "diagram-viewer-hint");
    var close = element("button", "button small", "Close");
    close.type = "button";
    close.addEventListener("click", function () { dialog.close(); });
    bar.append(hint, close);
    var stage = element("div", "diagram-viewer-stage");
    var caption = element("p", "diagram-viewer-caption");
    caption.id = "diagram-viewer-caption";
    dialog.setAttribute("aria-labelledby", caption.id);
    dialog.append(bar, stage, caption);
    dialog.addEventListener("close", function () { stage.replaceChildren(); });
    window.addEventListener("resize", function () { if (dialog.open) fit(); });
    document.body.append(dialog);
    viewer = { dialog: dialog, hint: hint, stage: stage, caption: caption, close: close };
  }

  // Size the diagram in the dialog as large as the stage allows, flat or turned.
  function fit() {
    var svg = viewer.stage.firstElementChild;
    var box = svg.viewBox.baseVal;
    var room = viewer.stage.getBoundingClientRect();
    var flat = Math.min(room.width / box.width, room.height / box.height);
    var turned = Math.min(room.width / box.height, room.height / box.width);
    var turn = turned > flat * TURN_GAIN;
    var scale = turn ? turned : flat;
    svg.style.setProperty("width", box.width * scale + "px");
    svg.style.setProperty("height", box.height * scale + "px");
    viewer.dialog.classList.toggle("is-turned", turn);
    viewer.hint.textContent = turn ? "Turned to fill the screen: turn your phone sideways to read it." : "";
  }

  function enlarge(figure) {
    if (!viewer) makeViewer();
    // A copy without ids: its arrowheads still point at the markers of the diagram on the page.
    var copy = figure.querySelector("svg").cloneNode(true);
    copy.querySelectorAll("[id]").forEach(function (node) { node.removeAttribute("id"); });
    var caption = figure.querySelector("figcaption");
    viewer.caption.textContent = caption ? caption.textContent : copy.getAttribute("aria-label") || "Diagram";
    viewer.stage.replaceChildren(copy);
    viewer.dialog.showModal();
    fit();
    viewer.close.focus();
  }

  function enhance(figure) {
    var svg = figure.querySelector("svg");
    if (!svg) return;
    trim(svg);
    var button = element("button", "diagram-enlarge", "Enlarge diagram");
    button.type = "button";
    button.addEventListener("click", function () { enlarge(figure); });
    // A tap on the diagram itself enlarges it too, where the button shows (narrow screens).
    svg.addEventListener("click", function () {
      if (getComputedStyle(button).display !== "none") enlarge(figure);
    });
    figure.append(button);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("figure.diagram").forEach(enhance);
  });
})();
