// Charts through Chart.js (npm, copied into the package at build time, served by us):
// canvas drawing, no eval and no inline styles, so it runs under our strict CSP.

import { el, time } from "./dom.js";

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2"];
const live = new Set();

export function available() {
  return typeof window.Chart === "function";
}

// Destroys the charts of the previous render (a page re-renders on every refresh).
export function destroyAll() {
  for (const chart of live) chart.destroy();
  live.clear();
}

function holder(testid) {
  const canvas = el("canvas", { "data-testid": testid, role: "img", "aria-label": testid });
  return { box: el("div", { class: "chart" }, canvas), canvas };
}

function make(canvas, config) {
  if (!available()) return null;
  config.options = {
    animation: false,
    responsive: true,
    maintainAspectRatio: false,
    interaction: { mode: "index", intersect: false },
    plugins: { legend: { position: "bottom" } },
    ...config.options,
  };
  const chart = new window.Chart(canvas, config);
  live.add(chart);
  return chart;
}

// series: [{label, values}] over the points' start times.
export function lineChart(testid, points, series, { yLabel } = {}) {
  const { box, canvas } = holder(testid);
  if (!available()) {
    box.replaceChildren(el("p", { class: "error", text: "Chart library not loaded." }));
    return box;
  }
  make(canvas, {
    type: "line",
    data: {
      labels: points.map((p) => time(p.start)),
      datasets: series.map((s, i) => ({
        label: s.label,
        data: s.values,
        borderColor: COLORS[i % COLORS.length],
        backgroundColor: COLORS[i % COLORS.length],
        pointRadius: points.length > 60 ? 0 : 2,
        spanGaps: true,
        tension: 0.2,
      })),
    },
    options: {
      scales: {
        x: { ticks: { maxTicksLimit: 8 } },
        y: { beginAtZero: true, title: { display: Boolean(yLabel), text: yLabel || "" } },
      },
    },
  });
  return box;
}

export function barChart(testid, labels, values, label, { horizontal = false } = {}) {
  const { box, canvas } = holder(testid);
  if (!available()) {
    box.replaceChildren(el("p", { class: "error", text: "Chart library not loaded." }));
    return box;
  }
  make(canvas, {
    type: "bar",
    data: { labels, datasets: [{ label, data: values, backgroundColor: COLORS[0] }] },
    options: {
      indexAxis: horizontal ? "y" : "x",
      scales: { y: { beginAtZero: true }, x: { beginAtZero: true } },
    },
  });
  return box;
}
