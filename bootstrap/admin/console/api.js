// The admin API client: the API key (sessionStorage, this tab only), requests, the error object.

const KEY_ITEM = "lwm2m-console.api-key";

/** An error answer of the API (its error object), or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, body, fallback) {
    const message = (body && typeof body.message === "string" && body.message) || fallback;
    super(message);
    this.status = status;
    this.type = body && body.type;
    this.requestId = body && body.request_id;
    /** @type {{field: string, message: string}[]} */
    this.fields = body && Array.isArray(body.fields) ? body.fields : [];
  }
}

let unauthorizedHandler = () => {};

/** Called (once per refused request) when the API refuses the key: the console signs out. */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

export function currentKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

export function storeKey(key) {
  sessionStorage.setItem(KEY_ITEM, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_ITEM);
}

function url(path, query) {
  const target = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") target.searchParams.set(name, String(value));
  }
  return target.pathname + target.search;
}

/**
 * Send one request with the key in the Authorization header (never in the URL).
 * Resolves to the parsed JSON body (null for 204); rejects with ApiError.
 */
export async function request(method, path, { query, body, etag, key } = {}) {
  const apiKey = key ?? currentKey();
  const headers = { Accept: "application/json" };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (etag) headers["If-Match"] = `"${etag}"`;
  let response;
  try {
    response = await fetch(url(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
  } catch (cause) {
    throw new ApiError(0, null, `The server could not be reached (${cause.message}).`);
  }
  const text = await response.text();
  let parsed = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, parsed, `${method} ${path} failed with HTTP ${response.status}.`);
    if (response.status === 401 && key === undefined) unauthorizedHandler(error);
    throw error;
  }
  return parsed;
}

export const get = (path, query) => request("GET", path, { query });

/** Every item of a list collection (follows `has_more` / `after`). */
export async function listAll(path, query = {}) {
  const items = [];
  let after;
  for (let page = 0; page < 100; page += 1) {
    const answer = await get(path, { ...query, limit: 1000, after });
    items.push(...answer.data);
    if (!answer.has_more || answer.data.length === 0) break;
    after = answer.data[answer.data.length - 1].id;
  }
  return items;
}
