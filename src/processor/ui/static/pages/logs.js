// Logs: level and type filters, search by user id (hashed by the server), paging.

import { get } from "../api.js";
import { el, time, table } from "../dom.js";

const LEVELS = ["trace", "debug", "info", "warning", "error", "fatal"];
const TYPES = ["analytics", "crash", "custom", "event", "exception", "general", "network", "performance", "security"];
const PAGE_SIZE = 50;
const filters = { level: "", type: "", user_id: "", page: 1 };

function select(name, options) {
  return el("select", { name, "aria-label": name, "data-testid": `filter-${name}` },
    el("option", { value: "", text: `any ${name}` }),
    options.map((o) => el("option", { value: o, text: o, selected: filters[name] === o })));
}

export async function render(main, ctx) {
  const range = ctx.range();
  const answer = await get("/api/v1/logs/filter", {
    level: filters.level,
    type: filters.type,
    user_id: filters.user_id,
    start_time: range.start,
    end_time: range.end,
    page: filters.page,
    page_size: PAGE_SIZE,
  });
  const level = select("level", LEVELS);
  const type = select("type", TYPES);
  const user = el("input", { name: "user_id", placeholder: "user id", value: filters.user_id, "data-testid": "filter-user", "aria-label": "user id" });
  const apply = (event) => {
    if (event) event.preventDefault();
    filters.level = level.value;
    filters.type = type.value;
    filters.user_id = user.value.trim();
    filters.page = 1;
    ctx.refresh();
  };
  level.addEventListener("change", apply);
  type.addEventListener("change", apply);
  const pages = Math.max(1, Math.ceil(answer.total / PAGE_SIZE));
  const go = (page) => () => { filters.page = page; ctx.refresh(); };
  main.replaceChildren(
    el("h2", { text: "Logs" }),
    el("form", { class: "filters", onsubmit: apply },
      level, type, user, el("button", { type: "submit", text: "Search" }),
      el("span", { class: "muted", text: "User ids are hashed by the server before the lookup." })),
    table([
      { key: "timestamp", label: "Time", format: time },
      { key: "level", label: "Level" },
      { key: "type", label: "Type" },
      { key: "message", label: "Message", className: "message" },
      { key: "service_name", label: "Service" },
      { key: "user_id", label: "User (hash)", format: (v) => (v ? `${v.slice(0, 12)}…` : "–") },
    ], answer.logs, { testid: "logs-table" }),
    el("div", { class: "pager" },
      el("button", { type: "button", "data-testid": "prev-page", disabled: filters.page <= 1, onclick: go(filters.page - 1), text: "← Newer" }),
      el("span", { "data-testid": "page-info", text: `page ${answer.page} of ${pages} · ${answer.total} logs` }),
      el("button", { type: "button", "data-testid": "next-page", disabled: filters.page >= pages, onclick: go(filters.page + 1), text: "Older →" })),
  );
}
