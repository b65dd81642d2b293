// The public API, as the dashboard calls it: every request carries the API key as a bearer
// token, and every error becomes an ApiError with the status and the server's `detail`.

const KEY_STORAGE = "taas.apiKey";

// Kept in sessionStorage: it survives a reload but not the closing of the tab.
export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function saveApiKey(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function forgetApiKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(describeDetail(status, detail));
    this.status = status;
    this.detail = detail;
  }
}

/** A readable sentence from `detail`: a string, or FastAPI's list of {loc, msg, type}. */
export function describeDetail(status, detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((item) => item.msg).join("; ");
  return `the server answered ${status}`;
}

// Pages listen for this to send the reader back to sign in when the key stops working.
export const unauthorized = new EventTarget();

export function authHeaders(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : { ...extra };
}

/** fetch() with the key; resolves to the Response, or throws ApiError for 4xx/5xx. */
export async function request(path, { method = "GET", body, headers = {}, signal } = {}) {
  const init = { method, headers: authHeaders(headers), signal };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await errorFrom(response);
  return response;
}

export async function errorFrom(response) {
  let detail = null;
  try {
    detail = (await response.json()).detail;
  } catch {
    // Not JSON (a proxy's error page): the status alone says enough.
  }
  if (response.status === 401) unauthorized.dispatchEvent(new Event("unauthorized"));
  return new ApiError(response.status, detail);
}

export async function getJson(path, options) {
  return (await request(path, options)).json();
}

export async function sendJson(method, path, body) {
  const response = await request(path, { method, body });
  return response.status === 204 ? null : response.json();
}

/** A query string from an object, leaving out empty values. */
export function query(parameters) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(parameters)) {
    if (value !== null && value !== undefined && value !== "") search.set(name, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export const jobPath = (id, rest = "") => `/v1/jobs/${encodeURIComponent(id)}${rest}`;
