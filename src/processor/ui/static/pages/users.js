// Users and sessions: DAU/WAU/MAU and session counts and durations.

import { get } from "../api.js";
import { barChart, lineChart } from "../charts.js";
import { card, duration, el, num, table } from "../dom.js";

function tile(label, value, key) {
  return el("div", { class: "card tile", "data-metric": key },
    el("h3", { text: label }), el("div", { class: "value", text: value }));
}

export async function render(main, ctx) {
  const range = ctx.range();
  const [day, week, month, sessions] = await Promise.all([
    get("/api/v1/analytics/active-users", { interval: "day", ...range }),
    get("/api/v1/analytics/active-users", { interval: "week", ...range }),
    get("/api/v1/analytics/active-users", { interval: "month", ...range }),
    get("/api/v1/analytics/sessions", range),
  ]);
  const last = (answer) => (answer.points.length ? answer.points[answer.points.length - 1].users : 0);
  main.replaceChildren(
    el("h2", { text: "Users and sessions" }),
    el("div", { class: "tiles", "data-testid": "user-tiles" },
      tile("Users in range", num(day.total_users), "total_users"),
      tile("DAU (latest day)", num(last(day)), "dau"),
      tile("WAU (latest week)", num(last(week)), "wau"),
      tile("MAU (latest month)", num(last(month)), "mau"),
      tile("Sessions", num(sessions.sessions), "sessions"),
      tile("Sessions with errors", num(sessions.sessions_with_errors), "sessions_with_errors"),
      tile("Median session", duration(sessions.p50_duration_ms), "p50_duration_ms"),
      tile("Events per session", num(sessions.avg_events), "avg_events"),
    ),
    el("div", { class: "grid" },
      card("Daily active users", lineChart("chart-dau", day.points, [{ label: "DAU", values: day.points.map((p) => p.users) }])),
      card("Weekly and monthly active users", barChart("chart-wau",
        [...week.points.map((p) => `week of ${p.start.slice(0, 10)}`), ...month.points.map((p) => `month ${p.start.slice(0, 7)}`)],
        [...week.points.map((p) => p.users), ...month.points.map((p) => p.users)], "users")),
      card("Sessions per day", barChart("chart-sessions", sessions.per_day.map((p) => p.start.slice(0, 10)), sessions.per_day.map((p) => p.sessions), "sessions")),
    ),
    card("Active users per day", table([
      { key: "start", label: "Day" },
      { key: "users", label: "Users", numeric: true, format: num },
    ], day.points, { testid: "dau-table" })),
  );
}
