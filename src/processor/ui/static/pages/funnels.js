// Funnels (SPEC §11): define one, then see each step's conversion as bars. The funnel
// endpoints come with the sessions-and-funnels work; until the server has them (404) the
// page says so instead of failing.

import { ApiError, get, post } from "../api.js";
import { barChart } from "../charts.js";
import { card, el, notice, num, pct, table } from "../dom.js";

const STEP_TYPES = ["event", "feature", "endpoint", "log"];
const chosen = { id: null };

function unavailable() {
  return el("div", { "data-testid": "funnels-unavailable" }, notice(
    el("h2", { text: "Funnels are not available on this server" }),
    el("p", { text: "The funnel endpoints (/api/v1/funnels) answered 404: this server version does not serve funnels yet." })));
}

function stepRow() {
  return el("div", { class: "step" },
    el("select", { name: "step-type", "aria-label": "step type" }, STEP_TYPES.map((t) => el("option", { value: t, text: t }))),
    el("input", { name: "step-value", placeholder: "value, e.g. checkout or POST /api/orders", "aria-label": "step value", required: true }));
}

function defineForm(ctx) {
  const steps = el("div", { class: "steps" }, stepRow(), stepRow());
  const error = el("p", { class: "error", "data-testid": "funnel-error" });
  const form = el("form", { "data-testid": "funnel-form" },
    el("div", { class: "filters" },
      el("input", { name: "name", placeholder: "funnel name", required: true, "aria-label": "funnel name" }),
      el("label", {}, "window (s) ", el("input", { name: "window_seconds", type: "number", min: "1", value: "3600", "aria-label": "window seconds" }))),
    steps,
    el("div", { class: "filters" },
      el("button", { type: "button", text: "Add step", onclick: () => steps.append(stepRow()) }),
      el("button", { type: "submit", text: "Create funnel" })),
    error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {
      name: form.elements.name.value.trim(),
      window_seconds: Number(form.elements.window_seconds.value),
      steps: [...steps.querySelectorAll(".step")].map((row) => ({
        type: row.querySelector("select").value,
        value: row.querySelector("input").value.trim(),
      })).filter((s) => s.value),
    };
    try {
      const created = await post("/api/v1/funnels", body);
      chosen.id = created && (created.id ?? (created.funnel && created.funnel.id));
      ctx.refresh();
    } catch (exc) {
      error.textContent = exc instanceof ApiError && exc.status === 404
        ? "Funnels are not available on this server (404)." : `Could not create: ${exc.message}`;
    }
  });
  return card("Define a funnel", form);
}

async function conversion(ctx, funnel) {
  const answer = await get(`/api/v1/funnels/${encodeURIComponent(funnel.id)}/conversion`, ctx.range());
  const steps = answer.steps.map((s, i) => {
    const defined = (funnel.steps || [])[i] || {};
    return { ...s, label: `${i + 1}. ${defined.type || "step"}: ${defined.value ?? ""}` };
  });
  return card(`Conversion: ${funnel.name}`,
    barChart("chart-funnel", steps.map((s) => s.label), steps.map((s) => s.users), "users"),
    table([
      { key: "label", label: "Step" },
      { key: "users", label: "Users", numeric: true, format: num },
      { key: "conversion_rate", label: "Conversion", numeric: true, format: pct },
      { key: "median_seconds_from_previous", label: "Median s from previous", numeric: true, format: num },
    ], steps, { testid: "funnel-steps" }));
}

export async function render(main, ctx) {
  let listed;
  try {
    listed = await get("/api/v1/funnels");
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 404) {
      main.replaceChildren(el("h2", { text: "Funnels" }), unavailable());
      return;
    }
    throw exc;
  }
  const funnels = Array.isArray(listed) ? listed : listed.funnels || [];
  if (chosen.id === null && funnels.length) chosen.id = funnels[0].id;
  const current = funnels.find((f) => f.id === chosen.id);
  main.replaceChildren(
    el("h2", { text: "Funnels" }),
    el("div", { class: "grid" },
      card("Funnels", funnels.length
        ? table([
          { key: "name", label: "Name" },
          { key: "steps", label: "Steps", numeric: true, format: (v) => String((v || []).length) },
          { key: "window_seconds", label: "Window (s)", numeric: true, format: num },
        ], funnels, { testid: "funnels-table", onRow: (row) => { chosen.id = row.id; ctx.refresh(); } })
        : el("p", { class: "muted", text: "No funnels yet: define one." })),
      defineForm(ctx)),
    current ? await conversion(ctx, current) : "",
  );
}
