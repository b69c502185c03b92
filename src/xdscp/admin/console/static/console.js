// xdscp console: the write token as a header on every htmx request, errors shown, the
// live part left alone while someone types in it, and the push latency chart.
"use strict";

const TOKEN_KEY = "xdscp-write-token";

window.consoleIdle = function () {
  const el = document.activeElement;
  return !(el && el.matches && el.matches("#live input"));
};

document.addEventListener("htmx:configRequest", (e) => {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token && e.detail.verb !== "get") e.detail.headers["Authorization"] = "Bearer " + token;
});

function flash(text) {
  const box = document.getElementById("flash");
  if (box) { box.textContent = text; box.classList.toggle("shown", Boolean(text)); }
}

document.addEventListener("htmx:beforeSwap", (e) => {
  const xhr = e.detail.xhr;
  const html = (xhr.getResponseHeader("Content-Type") || "").startsWith("text/html");
  if (xhr.status === 400 && html) {  // a refused action: the page says why
    e.detail.shouldSwap = true;
    e.detail.isError = false;
  } else if (xhr.status >= 400) {
    let text = xhr.responseText;
    try { text = JSON.parse(text).error || text; } catch (_) { /* not JSON */ }
    flash(`HTTP ${xhr.status}: ${text}`);
  } else if (e.detail.requestConfig && e.detail.requestConfig.verb !== "get") {
    flash("");
  }
});

function drawLatency() {
  const box = document.getElementById("latency-chart");
  if (!box || !window.uPlot) return;
  const labels = JSON.parse(box.dataset.labels || "[]");
  const counts = JSON.parse(box.dataset.counts || "[]");
  box.textContent = "";
  if (!labels.length) { box.textContent = "no pushes yet"; return; }
  const xs = labels.map((_, i) => i);
  new uPlot({
    width: Math.min(900, box.clientWidth || 900), height: 220,
    scales: { x: { time: false } },
    axes: [{ values: (_, ticks) => ticks.map((t) => labels[t] || "") }, { label: "pushes" }],
    series: [{ label: "at most" , value: (_, i) => (i == null ? "-" : labels[i]) },
             { label: "pushes", fill: "rgba(40,110,190,0.35)", stroke: "rgb(40,110,190)",
               paths: uPlot.paths.bars({ size: [0.8] }) }],
  }, [xs, counts], box);
}

document.addEventListener("DOMContentLoaded", () => {
  const input = document.getElementById("token");
  if (input) {
    input.value = sessionStorage.getItem(TOKEN_KEY) || "";
    input.addEventListener("input", () => sessionStorage.setItem(TOKEN_KEY, input.value));
  }
  drawLatency();
});
document.addEventListener("htmx:afterSwap", drawLatency);
