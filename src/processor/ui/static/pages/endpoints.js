// Endpoints: a sortable RED table (rate, errors, duration); a row drills down to that
// endpoint's series.

import { get } from "../api.js";
import { lineChart } from "../charts.js";
import { card, el, ms, num, pct, table } from "../dom.js";
import { ENDPOINT_COLUMNS } from "./overview.js";

const sort = { key: "requests", asc: false };

function sorted(rows) {
  const dir = sort.asc ? 1 : -1;
  return [...rows].sort((a, b) => {
    const x = a[sort.key];
    const y = b[sort.key];
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * dir;
  });
}

async function drillDown(main, ctx, endpoint, service) {
  const range = ctx.range();
  const interval = ctx.interval();
  const series = await get("/api/v1/analytics/timeseries", {
    source: "endpoints", interval, endpoint, service, ...range,
  });
  const points = series.points;
  main.replaceChildren(
    el("h2", { text: `Endpoint ${endpoint}` }),
    el("p", {}, el("a", { href: "#/endpoints", text: "← all endpoints" }),
      service ? ` · service ${service}` : ""),
    el("div", { class: "grid" },
      card("Requests", lineChart("chart-endpoint-requests", points, [
        { label: "requests", values: points.map((p) => p.count) },
        { label: "errors", values: points.map((p) => p.errors) },
      ])),
      card("Latency (ms)", lineChart("chart-endpoint-latency", points,
        ["p50", "p95", "p99"].map((p) => ({ label: p, values: points.map((x) => x[p]) })))),
    ),
    card("Buckets", table([
      { key: "start", label: "Start" },
      { key: "count", label: "Requests", numeric: true, format: num },
      { key: "errors", label: "Errors", numeric: true, format: num },
      { key: "error_rate", label: "Error rate", numeric: true, format: pct },
      { key: "p50", label: "p50", numeric: true, format: ms },
      { key: "p95", label: "p95", numeric: true, format: ms },
      { key: "p99", label: "p99", numeric: true, format: ms },
    ], points, { testid: "endpoint-buckets" })),
  );
}

export async function render(main, ctx) {
  const { endpoint, service } = ctx.query;
  if (endpoint) return drillDown(main, ctx, endpoint, service);
  const answer = await get("/api/v1/analytics/endpoints", { ...ctx.range(), sort: "requests", limit: 1000 });
  const columns = [
    ...ENDPOINT_COLUMNS.slice(0, 5),
    { key: "errors", label: "5xx", numeric: true, format: num },
    { key: "client_errors", label: "4xx", numeric: true, format: num },
    ...ENDPOINT_COLUMNS.slice(5),
  ];
  const holder = el("div");
  const draw = () => holder.replaceChildren(table(columns, sorted(answer.endpoints), {
    testid: "endpoints-table",
    sort,
    onSort: (key) => {
      sort.asc = sort.key === key ? !sort.asc : false;
      sort.key = key;
      draw();
    },
    onRow: (row) => ctx.navigate("endpoints", { endpoint: row.endpoint, service: row.service_name || "" }),
  }));
  draw();
  main.replaceChildren(
    el("h2", { text: "Endpoints" }),
    el("p", { class: "muted", text: `${answer.endpoints.length} endpoints. Click a header to sort, a row for its series.` }),
    holder,
  );
}
