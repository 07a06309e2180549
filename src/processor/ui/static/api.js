// Every data request goes through the query API with the key of this browser tab
// (sessionStorage), sent as a header and never in a URL.

const KEY = "telemetry-processor.api-key";

export class ApiError extends Error {
  constructor(status, message, path) {
    super(message);
    this.status = status;
    this.path = path;
  }
}

export function storedKey() {
  return sessionStorage.getItem(KEY);
}

export function saveKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

function url(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") query.set(name, value);
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

async function call(method, path, params, body, key = storedKey()) {
  const headers = { accept: "application/json" };
  if (key) headers["x-api-key"] = key;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(url(path, params), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  let answer = null;
  try {
    answer = await response.json();
  } catch {
    answer = null;
  }
  if (!response.ok) {
    const message = (answer && (answer.error || answer.message)) || response.statusText;
    throw new ApiError(response.status, message, path);
  }
  return answer;
}

export const get = (path, params) => call("GET", path, params);
export const post = (path, body) => call("POST", path, undefined, body);
export const del = (path) => call("DELETE", path);

// Checks a key before keeping it: 401 unknown, 403 not a read key (an ingest key).
export async function tryKey(key) {
  await call("GET", "/api/v1/status", undefined, undefined, key);
}
