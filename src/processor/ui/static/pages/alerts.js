// Alerts (SPEC §14): the alerts of this project, newest first, with Acknowledge for firing
// ones, and the alert rules with a form to add one and Delete. Reading alerts needs a read
// key; rules, acknowledging, adding and deleting need an admin key, so a 403 there is told
// as "needs an admin key" instead of sending the user back to the key prompt.

import { ApiError, del, get, post } from "../api.js";
import { card, el, num, table, time } from "../dom.js";

// Rules can be written before any data arrives.
export const withoutData = true;

const SOURCES = [
  "endpoint.error_rate", "endpoint.p95_ms", "endpoint.p99_ms", "endpoint.request_count",
  "logs.count", "logs.count:error", "metric:NAME.p95",
];
const OPS = [">", ">=", "<", "<="];
const SEVERITIES = ["info", "warning", "error", "critical"];
const ADMIN_NEEDED = "needs an admin key";

function why(exc) {
  if (exc instanceof ApiError && exc.status === 403) return ADMIN_NEEDED;
  return exc.message;
}

// The outcome of the newest delivery attempt: "delivered", "failed" …, with its kind.
function lastDelivery(notifications) {
  const last = (notifications || [])[notifications.length - 1];
  if (!last) return "–";
  return [last.kind, last.outcome].filter(Boolean).join(": ");
}

function scope(rule) {
  return [rule.service && `service ${rule.service}`, rule.endpoint && `endpoint ${rule.endpoint}`]
    .filter(Boolean).join(", ");
}

function alertsTable(alerts, ctx, error) {
  const ack = (row) => async () => {
    error.textContent = "";
    try {
      await post(`/api/v1/alerts/${encodeURIComponent(row.id)}/ack`, {});
      ctx.refresh();
    } catch (exc) {
      error.textContent = `Could not acknowledge ${row.rule}: ${why(exc)}`;
    }
  };
  return table([
    { key: "rule", label: "Rule" },
    { key: "state", label: "State", className: "state" },
    { key: "severity", label: "Severity" },
    { key: "value", label: "Value", numeric: true, format: num },
    { key: "threshold", label: "Threshold", numeric: true, format: num },
    { key: "started_at", label: "Started", format: time },
    { key: "resolved_at", label: "Resolved", format: time },
    { key: "notifications", label: "Last delivery", format: lastDelivery },
    { key: "message", label: "Message", className: "message" },
    {
      key: "action",
      label: "",
      node: (row) => (row.state === "firing"
        ? el("button", { type: "button", "data-testid": "ack", text: "Acknowledge", onclick: ack(row) })
        : null),
    },
  ], alerts, { testid: "alerts-table" });
}

function rulesTable(rules, ctx, error) {
  const remove = (row) => async () => {
    error.textContent = "";
    try {
      await del(`/api/v1/alert-rules/${encodeURIComponent(row.id)}`);
      ctx.refresh();
    } catch (exc) {
      error.textContent = `Could not delete ${row.name}: ${why(exc)}`;
    }
  };
  return table([
    { key: "name", label: "Name" },
    { key: "source", label: "Source", format: (v, row) => [v, scope(row)].filter(Boolean).join(" · ") },
    { key: "condition", label: "Condition", format: (_, row) => `${row.op} ${row.threshold}` },
    { key: "window", label: "Window", format: (v, row) => (row.for && row.for !== "0s" ? `${v}, for ${row.for}` : v) },
    { key: "severity", label: "Severity" },
    { key: "state", label: "State" },
    {
      key: "action",
      label: "",
      node: (row) => el("button", { type: "button", "data-testid": "delete-rule", text: "Delete", onclick: remove(row) }),
    },
  ], rules, { testid: "rules-table" });
}

function options(values, chosen) {
  return values.map((v) => el("option", { value: v, text: v, selected: v === chosen }));
}

function ruleForm(ctx) {
  const error = el("p", { class: "error", "data-testid": "rule-error" });
  const field = (name, attrs = {}) => el("input", { name, "aria-label": name, ...attrs });
  const form = el("form", { "data-testid": "rule-form" },
    el("div", { class: "filters" },
      field("name", { placeholder: "rule name", required: true }),
      field("source", { list: "alert-sources", value: SOURCES[0], required: true, size: 22 }),
      el("datalist", { id: "alert-sources" }, options(SOURCES)),
      el("select", { name: "op", "aria-label": "op" }, options(OPS, ">")),
      field("threshold", { type: "number", step: "any", required: true, placeholder: "threshold" }),
      el("label", {}, "window ", field("window", { value: "5m", size: 4, required: true })),
      el("label", {}, "for ", field("for", { value: "0s", size: 4 })),
      el("select", { name: "severity", "aria-label": "severity" }, options(SEVERITIES, "warning"))),
    el("div", { class: "filters" },
      field("service", { placeholder: "service (optional)" }),
      field("endpoint", { placeholder: "endpoint (optional)" }),
      field("webhook", { type: "url", placeholder: "webhook URL (optional)", size: 32 }),
      el("button", { type: "submit", text: "Add rule" })),
    error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = (name) => form.elements[name].value.trim();
    const body = {
      name: value("name"),
      source: value("source"),
      op: value("op"),
      threshold: Number(value("threshold")),
      window: value("window"),
      for: value("for") || "0s",
      severity: value("severity"),
    };
    for (const name of ["service", "endpoint"]) if (value(name)) body[name] = value(name);
    if (value("webhook")) body.webhooks = [value("webhook")];
    error.textContent = "";
    try {
      await post("/api/v1/alert-rules", body);
      ctx.refresh();
    } catch (exc) {
      error.textContent = `Could not add the rule: ${why(exc)}`;
    }
  });
  return card("Add a rule", form);
}

async function rulesSection(ctx) {
  const error = el("p", { class: "error", "data-testid": "rules-error" });
  let rules;
  try {
    rules = (await get("/api/v1/alert-rules")).rules;
  } catch (exc) {
    if (!(exc instanceof ApiError && exc.status === 403)) throw exc;
    return card("Rules", el("p", { class: "muted", "data-testid": "rules-admin",
      text: `Listing and changing rules ${ADMIN_NEEDED}.` }));
  }
  return el("div", {},
    card("Rules", rules.length
      ? rulesTable(rules, ctx, error)
      : el("p", { class: "muted", text: "No rules yet: add one below." }), error),
    ruleForm(ctx));
}

export async function render(main, ctx) {
  const alerts = (await get("/api/v1/alerts")).alerts;
  const error = el("p", { class: "error", "data-testid": "alerts-error" });
  const firing = alerts.filter((a) => a.state === "firing").length;
  const rules = await rulesSection(ctx);
  main.replaceChildren(
    el("h2", { text: "Alerts" }),
    el("p", { class: "muted", "data-testid": "alerts-summary",
      text: `${firing} firing · ${alerts.length} alert${alerts.length === 1 ? "" : "s"}, newest first (every state; the time range does not apply).` }),
    card("Alerts", alerts.length
      ? alertsTable(alerts, ctx, error)
      : el("p", { class: "muted", text: "No alerts so far." }), error),
    rules,
  );
}
