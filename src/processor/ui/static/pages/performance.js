// Performance: each metric's percentiles over the range, and one metric's over time.

import { get } from "../api.js";
import { lineChart } from "../charts.js";
import { card, el, num, table } from "../dom.js";

const chosen = { metric: "" };

export async function render(main, ctx) {
  const range = ctx.range();
  const overview = await get("/api/v1/analytics/performance/overview", { startDate: range.start, endDate: range.end });
  const rows = Object.entries(overview.metrics).map(([name, m]) => ({ name, ...m }));
  if (!rows.some((r) => r.name === chosen.metric)) chosen.metric = rows.length ? rows[0].name : "";
  const parts = [
    el("h2", { text: "Performance" }),
    card("Metrics in range", table([
      { key: "name", label: "Metric" },
      { key: "unit", label: "Unit" },
      { key: "samples", label: "Samples", numeric: true, format: num },
      ...["avg", "p50", "p90", "p95", "p99"].map((k) => ({ key: k, label: k, numeric: true, format: num })),
    ], rows, { testid: "metrics-table", onRow: (row) => { chosen.metric = row.name; ctx.refresh(); } })),
  ];
  if (chosen.metric) {
    const series = await get("/api/v1/analytics/timeseries", { source: "metrics", metric: chosen.metric, interval: ctx.interval(), ...range });
    const points = series.points;
    parts.push(el("div", { class: "grid" }, card(`${chosen.metric} percentiles over time`,
      lineChart("chart-metric", points, ["p50", "p95", "p99"].map((p) => ({ label: p, values: points.map((x) => x[p]) }))))));
  } else {
    parts.push(el("p", { class: "muted", text: "No performance metrics in this range." }));
  }
  main.replaceChildren(...parts);
}
