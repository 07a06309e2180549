// Overview: KPI tiles (dashboard_metrics), request rate, error rate and p50/p95/p99 over
// time, top endpoints and top features.

import { get } from "../api.js";
import { barChart, lineChart } from "../charts.js";
import { card, el, ms, num, pct, table } from "../dom.js";

const TILES = [
  { key: "requests", label: "Requests (24 h)", format: num },
  { key: "error_rate", label: "Error rate (24 h)", format: pct },
  { key: "p95_latency_ms", label: "p95 latency (24 h)", format: ms },
  { key: "dau", label: "Active users (24 h)", format: num },
  { key: "sessions", label: "Sessions (24 h)", format: num },
];

function change(row) {
  if (!row || row.previous_value === null || row.previous_value === undefined) {
    return el("div", { class: "change", text: "no previous period" });
  }
  if (row.change_percent === null || row.change_percent === undefined) {
    return el("div", { class: "change", text: `previous 24 h: ${num(row.previous_value)}` });
  }
  const value = row.change_percent;
  const sign = value > 0 ? "+" : "";
  return el("div", {
    class: `change ${value > 0 ? "up" : value < 0 ? "down" : ""}`,
    text: `${sign}${value.toFixed(1)} % vs previous 24 h (${num(row.previous_value)})`,
  });
}

function tiles(rows) {
  const byKey = Object.fromEntries(rows.filter((r) => r.widget_id === "overview").map((r) => [r.metric_key, r]));
  return el("div", { class: "tiles", "data-testid": "kpi-tiles" }, TILES.map((t) => {
    const row = byKey[t.key];
    return el("div", { class: "card tile", "data-metric": t.key },
      el("h3", { text: t.label }),
      el("div", { class: "value", text: row ? t.format(row.value) : "–" }),
      change(row));
  }));
}

export const ENDPOINT_COLUMNS = [
  { key: "method", label: "Method" },
  { key: "endpoint", label: "Endpoint" },
  { key: "service_name", label: "Service" },
  { key: "requests", label: "Requests", numeric: true, format: num },
  { key: "rpm", label: "Req/min", numeric: true, format: num },
  { key: "error_rate", label: "Error rate", numeric: true, format: pct },
  { key: "p50", label: "p50", numeric: true, format: ms },
  { key: "p95", label: "p95", numeric: true, format: ms },
  { key: "p99", label: "p99", numeric: true, format: ms },
];

export async function render(main, ctx) {
  const range = ctx.range();
  const interval = ctx.interval();
  const [dashboard, series, endpoints, features] = await Promise.all([
    get("/api/v1/analytics/dashboard"),
    get("/api/v1/analytics/timeseries", { source: "endpoints", interval, ...range }),
    get("/api/v1/analytics/endpoints", { ...range, sort: "requests", limit: 10 }),
    get("/api/v1/analytics/features", { ...range, limit: 10 }),
  ]);
  const points = series.points;
  const per = interval === "hour" ? "hour" : "day";
  main.replaceChildren(
    el("h2", { text: "Overview" }),
    tiles(dashboard.metrics),
    el("div", { class: "grid" },
      card(`Request rate (requests per ${per})`,
        lineChart("chart-requests", points, [{ label: "requests", values: points.map((p) => p.count) }])),
      card("Error rate (5xx or span error)",
        lineChart("chart-errors", points, [{ label: "error rate", values: points.map((p) => p.error_rate) }])),
      card("Latency (ms)",
        lineChart("chart-latency", points, ["p50", "p95", "p99"].map((p) => ({ label: p, values: points.map((x) => x[p]) })))),
    ),
    el("div", { class: "grid" },
      card("Top endpoints", table(ENDPOINT_COLUMNS, endpoints.endpoints, {
        testid: "top-endpoints",
        onRow: (row) => ctx.navigate("endpoints", { endpoint: row.endpoint, service: row.service_name || "" }),
      })),
      card("Top features",
        features.features.length
          ? barChart("chart-features", features.features.map((f) => f.feature_name), features.features.map((f) => f.usage_count), "uses", { horizontal: true })
          : el("p", { class: "muted", text: "No feature usage in this range." }),
        table([
          { key: "feature_name", label: "Feature" },
          { key: "usage_count", label: "Uses", numeric: true, format: num },
          { key: "unique_users", label: "Users", numeric: true, format: num },
          { key: "success_rate", label: "Success", numeric: true, format: pct },
        ], features.features, { testid: "top-features" })),
    ),
  );
}
