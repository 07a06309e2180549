// The shell: hash routes (#/page?query), the time range and auto-refresh, the key prompt,
// and the empty-database guide. The key lives in sessionStorage and travels as a header.

import { ApiError, forgetKey, get, saveKey, storedKey, tryKey } from "./api.js";
import { destroyAll } from "./charts.js";
import { el } from "./dom.js";
import { emptyState } from "./onboarding.js";
import * as range from "./range.js";
import * as alerts from "./pages/alerts.js";
import * as endpoints from "./pages/endpoints.js";
import * as funnels from "./pages/funnels.js";
import * as logs from "./pages/logs.js";
import * as overview from "./pages/overview.js";
import * as perf from "./pages/performance.js";
import * as users from "./pages/users.js";

const PAGES = { overview, endpoints, users, logs, performance: perf, funnels, alerts };
const $ = (id) => document.getElementById(id);
const main = $("main");
const status = $("status");
let timer = null;
let running = null;
let again = false;

function route() {
  const [path, query] = window.location.hash.replace(/^#\/?/, "").split("?");
  const name = PAGES[path] ? path : "overview";
  return { name, query: Object.fromEntries(new URLSearchParams(query || "")) };
}

function navigate(name, query = {}) {
  const text = new URLSearchParams(query).toString();
  window.location.hash = `#/${name}${text ? `?${text}` : ""}`;
}

function setState(state) {
  document.body.dataset.state = state;
}

function showPrompt(message) {
  destroyAll();
  main.replaceChildren();
  $("key-prompt").hidden = false;
  $("key-error").textContent = message || "";
  $("forget-key").hidden = true;
  setState("key-needed");
  $("key-input").focus();
}

function explain(exc) {
  if (exc instanceof ApiError && exc.status === 403) {
    return "This key is not allowed to read (an ingest key?): use a key with the read or admin scope.";
  }
  if (exc instanceof ApiError && exc.status === 401) return "Unknown or missing key.";
  return exc.message;
}

async function renderOnce() {
  const { name, query } = route();
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.page === name);
  }
  document.body.dataset.page = name;
  setState("loading");
  status.textContent = "";
  try {
    const counts = await get("/api/v1/metrics");
    $("key-prompt").hidden = true;
    $("forget-key").hidden = !storedKey();
    destroyAll();
    // Alerts can be set up before any data arrives; other pages explain how to send some.
    if (counts.total_rows === 0 && !PAGES[name].withoutData) {
      main.replaceChildren(emptyState());
    } else {
      const ctx = { range: range.params, interval: range.interval, query, navigate, refresh };
      await PAGES[name].render(main, ctx);
    }
    setState("ready");
  } catch (exc) {
    if (exc instanceof ApiError && (exc.status === 401 || exc.status === 403)) {
      if (exc.status === 403) forgetKey();
      showPrompt(exc.status === 403 || storedKey() ? explain(exc) : "");
      return;
    }
    status.textContent = `Could not load: ${explain(exc)}`;
    setState("error");
  }
}

// Renders one at a time; a request during a render runs once after it.
function refresh() {
  if (running) {
    again = true;
    return running;
  }
  running = renderOnce().finally(() => {
    running = null;
    if (again) {
      again = false;
      refresh();
    }
  });
  return running;
}

function schedule() {
  if (timer) clearInterval(timer);
  const seconds = Number($("refresh").value);
  if (seconds > 0) {
    timer = setInterval(() => {
      const typing = main.contains(document.activeElement) && /INPUT|SELECT|TEXTAREA/.test(document.activeElement.tagName);
      if (!typing && $("key-prompt").hidden) refresh();
    }, seconds * 1000);
  }
}

$("range").addEventListener("change", () => {
  const preset = $("range").value;
  $("custom-range").hidden = preset !== "custom";
  if (preset !== "custom") {
    range.state.preset = preset;
    refresh();
  }
});

$("custom-apply").addEventListener("click", () => {
  const start = range.parseLocal($("custom-start").value);
  const end = range.parseLocal($("custom-end").value);
  if (!start || !end || start >= end) {
    status.textContent = "Custom range: pick a start before the end (UTC).";
    return;
  }
  Object.assign(range.state, { preset: "custom", customStart: start, customEnd: end });
  refresh();
});

$("refresh").addEventListener("change", schedule);

$("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = $("key-input").value.trim();
  if (!key) return;
  try {
    await tryKey(key);
  } catch (exc) {
    $("key-error").textContent = explain(exc);
    setState("key-refused");
    return;
  }
  saveKey(key);
  $("key-input").value = "";
  refresh();
});

$("forget-key").addEventListener("click", () => {
  forgetKey();
  refresh();
});

window.addEventListener("hashchange", refresh);
document.body.append(el("span", { hidden: true, id: "app-loaded" }));
schedule();
refresh();
