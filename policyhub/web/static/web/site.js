/* PolicyHub's own script: small behaviours the pages share. No inline scripts anywhere (the
   Content-Security-Policy allows only files from this server), so pages describe what they want
   with data- attributes and JSON in <script type="application/json"> blocks. */
"use strict";

// <button data-copy="#id">: copy the text of the element #id to the clipboard.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (!source) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(() => {
    button.textContent = "Copied";
  });
});

// <form data-confirm="Delete team x?">: ask before submitting.
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
});

// <canvas data-chart="#json-id">: a Chart.js chart whose whole configuration is the JSON of
// the <script type="application/json" id="json-id"> block; bars with a `links` array in their
// dataset lead to that list when clicked.
function drawCharts(root) {
  if (typeof window.Chart === "undefined") return;
  root.querySelectorAll("canvas[data-chart]").forEach((canvas) => {
    if (canvas.dataset.drawn) return;
    const source = document.querySelector(canvas.dataset.chart);
    if (!source) return;
    const config = JSON.parse(source.textContent);
    const links = config.links || [];
    delete config.links;
    config.options = Object.assign({ animation: false, responsive: true }, config.options || {});
    config.options.onClick = (_event, elements) => {
      if (elements.length && links[elements[0].index]) window.location = links[elements[0].index];
    };
    new window.Chart(canvas, config);
    canvas.dataset.drawn = "1";
  });
}
document.addEventListener("DOMContentLoaded", () => drawCharts(document));
document.addEventListener("htmx:afterSettle", (event) => drawCharts(event.target));

// An address ending in #id that names a closed <details> (or something inside one) opens it:
// after saving a section, the page comes back at that section, open.
function openTarget() {
  const target = window.location.hash && document.getElementById(window.location.hash.slice(1));
  if (!target) return;
  for (let node = target; node; node = node.parentElement) {
    if (node.tagName === "DETAILS") node.open = true;
  }
}
document.addEventListener("DOMContentLoaded", openTarget);
window.addEventListener("hashchange", openTarget);
