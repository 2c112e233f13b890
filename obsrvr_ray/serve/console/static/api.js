// The console's only ways out: fetch() to the app's REST routes and one WebSocket, both to the
// page's own origin (the CSP allows nothing else). The credential is read from sessionStorage
// and sent in the Authorization header; the WebSocket offers it as the `bearer.<key>`
// subprotocol (browsers cannot set headers on a WebSocket). Neither ever puts it in a URL.

const STORAGE = "obsrvr.console.credential";

export const authRequired = document.querySelector('meta[name="obsrvr-auth"]')?.content !== "off";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export function credential() {
  return sessionStorage.getItem(STORAGE);
}

export function setCredential(value) {
  sessionStorage.setItem(STORAGE, value);
}

export function forgetCredential() {
  sessionStorage.removeItem(STORAGE);
}

/** What to show for the credential in use: the key's id part, never the secret. */
export function describeCredential() {
  const value = credential();
  if (!value) return authRequired ? "no key" : "dev mode: authentication off";
  if (value.startsWith("ork_")) return `key ${value.slice(0, 21)}…`;
  return "JWT";
}

function url(path, params) {
  const target = new URL(path, document.baseURI);
  for (const [name, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) target.searchParams.append(name, String(item));
  }
  return target;
}

let onUnauthorized = () => {};

/** Called when the app answers 401: the key is wrong, revoked or expired. */
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

/** GET a JSON route; ApiError with the app's `detail` on any status but 2xx. */
export async function get(path, params) {
  const headers = { Accept: "application/json" };
  const value = credential();
  if (value) headers.Authorization = `Bearer ${value}`;
  let response;
  try {
    response = await fetch(url(path, params), { headers, cache: "no-store", credentials: "omit" });
  } catch (error) {
    throw new ApiError(0, `the app does not answer (${error.message})`);
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const detail = typeof body.detail === "string" ? body.detail : response.statusText;
    if (response.status === 401) onUnauthorized(detail);
    throw new ApiError(response.status, detail);
  }
  return response.json();
}

/** A WebSocket to `path` on this origin, authenticated by subprotocol when there is a key. */
export function websocket(path) {
  const target = url(path);
  target.protocol = target.protocol === "https:" ? "wss:" : "ws:";
  const value = credential();
  return value ? new WebSocket(target, ["bearer", `bearer.${value}`]) : new WebSocket(target);
}
