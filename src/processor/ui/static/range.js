// The time range of every page: a preset (1 h, 24 h default, 7 d, 30 d) or a custom one.

const PRESETS = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };

export const state = { preset: "24h", customStart: null, customEnd: null };

export function current() {
  if (state.preset === "custom" && state.customStart && state.customEnd) {
    return { start: state.customStart, end: state.customEnd };
  }
  const end = new Date();
  const start = new Date(end.getTime() - (PRESETS[state.preset] || PRESETS["24h"]));
  return { start, end };
}

// ISO strings for the API: {start, end}.
export function params() {
  const { start, end } = current();
  return { start: start.toISOString(), end: end.toISOString() };
}

// Hour buckets up to a week, day buckets past it.
export function interval() {
  const { start, end } = current();
  return end - start > 7 * 86400e3 + 1 ? "day" : "hour";
}

// "2025-01-15T12:00" from a datetime-local input is read as UTC.
export function parseLocal(value) {
  if (!value) return null;
  const parsed = new Date(`${value}:00Z`);
  return Number.isNaN(parsed.getTime()) ? null : parsed;
}
