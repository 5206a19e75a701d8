/**
 * One HTTP exchange with the jobpulse API: URL resolution, credentials, `If-None-Match`, and the sorting
 * of every possible outcome (a network error included) into a plain {@link Answer}, so that the pollers
 * hold the policy and nothing about fetch.
 *
 * @module
 */

import { AuthError, HTTPError } from "./errors.js";
import { parseRetryAfter } from "./policy.js";

/**
 * Extra request headers: fixed, or a function called before each request (for credentials that change).
 *
 * @typedef {HeadersInit | (() => HeadersInit | Promise<HeadersInit>)} HeadersSource
 */

/**
 * @typedef {object} TransportOptions
 * @property {string} [baseUrl] prefix of relative URLs, e.g. `https://api.example.com` or `/api`
 * @property {string} [token] sent as `Authorization: Bearer <token>` (wins over an Authorization in `headers`)
 * @property {HeadersSource} [headers] for hosts that authenticate otherwise
 * @property {typeof globalThis.fetch} [fetch] defaults to `globalThis.fetch`
 */

/**
 * What one request got.
 *
 * @typedef {object} Answer
 * @property {string} url
 * @property {number} status 0 when no usable answer came (network error, dropped connection, cut body)
 * @property {string | null} etag
 * @property {number | null} retryAfterMs the `Retry-After` header of a 429 or 5xx, in milliseconds
 * @property {unknown} body the decoded JSON body; undefined when there was none or it was not JSON
 * @property {unknown} [cause] the network error behind status 0
 */

/**
 * How a poller treats an answer (docs/clients.md, rules 1 to 5): a body to read, nothing new, a failure
 * to retry, or an error that ends the poll.
 *
 * @typedef {"ok" | "not-modified" | "retry" | HTTPError} Verdict
 */

const ABSOLUTE_URL = /^[a-z][a-z\d+.-]*:/i;

/** Sends requests for one poller; never throws for a failed exchange, only when aborted. */
export class Transport {
  /** @param {TransportOptions} [options] */
  constructor(options = {}) {
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== "function") throw new TypeError("no fetch: pass the fetch option");
    // Called through a closure: browsers reject window.fetch called as a method of another object.
    /** @type {typeof globalThis.fetch} */
    this.fetch = (input, init) => fetchImpl(input, init);
    this.baseUrl = options.baseUrl;
    this.token = options.token;
    this.headers = options.headers;
  }

  /**
   * The absolute URL of `path`: absolute URLs as they are, others appended to `baseUrl` (a prefix, so
   * `https://host/api` + `/jobs/1/progress/` gives `https://host/api/jobs/1/progress/`), then resolved
   * against the page's location in a browser.
   *
   * @param {string} path
   * @returns {string}
   * @throws {TypeError} when the URL stays relative outside a browser
   */
  resolve(path) {
    let url = path;
    if (!ABSOLUTE_URL.test(url) && this.baseUrl) {
      url = `${this.baseUrl.replace(/\/+$/, "")}/${url.replace(/^\/+/, "")}`;
    }
    if (ABSOLUTE_URL.test(url)) return new URL(url).href;
    const here = globalThis.location?.href;
    if (here) return new URL(url, here).href;
    throw new TypeError(`${path} is relative: pass baseUrl`);
  }

  /**
   * Sends one request and reads its answer whole.
   *
   * @param {string} url an absolute URL
   * @param {{method?: string, etag?: string | null, json?: unknown, signal: AbortSignal}} request
   * @returns {Promise<Answer>}
   * @throws {unknown} only `signal.reason`, once the signal is aborted
   */
  async send(url, { method = "GET", etag = null, json, signal }) {
    const headers = new Headers(typeof this.headers === "function" ? await this.headers() : this.headers);
    headers.set("Accept", "application/json");
    if (this.token) headers.set("Authorization", `Bearer ${this.token}`);
    if (etag !== null) headers.set("If-None-Match", etag);
    if (json !== undefined) headers.set("Content-Type", "application/json");
    try {
      const response = await this.fetch(url, {
        method,
        headers,
        body: json === undefined ? undefined : JSON.stringify(json),
        signal,
        // The poller keeps the ETag itself; the browser cache must not turn a 304 into a stale 200.
        cache: "no-store",
      });
      const text = await response.text();
      const retryable = response.status === 429 || response.status >= 500;
      return {
        url,
        status: response.status,
        etag: response.headers.get("ETag"),
        retryAfterMs: retryable ? parseRetryAfter(response.headers.get("Retry-After")) : null,
        body: decodeJson(text),
      };
    } catch (cause) {
      if (signal.aborted) throw signal.reason;
      return { url, status: 0, etag: null, retryAfterMs: null, body: undefined, cause };
    }
  }
}

/**
 * @param {string} text
 * @returns {unknown}
 */
function decodeJson(text) {
  if (text === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * Sorts an answer by the policy's rules: 200 with a JSON body → "ok"; 304 → "not-modified"; no answer,
 * 429, 5xx, or anything else unusable (a 200 that is not JSON, an unexpected status) → "retry";
 * 401/403 → AuthError; any other 4xx → HTTPError.
 *
 * @param {Answer} answer
 * @returns {Verdict}
 */
export function classify(answer) {
  const { status } = answer;
  if (status === 200) return answer.body === undefined ? "retry" : "ok";
  if (status === 304) return "not-modified";
  if (status === 401 || status === 403) return httpError(answer, AuthError);
  if (status >= 400 && status < 500 && status !== 429) return httpError(answer, HTTPError);
  return "retry";
}

/**
 * The error an answer stands for, with the contract's `{"error": {"code", "message"}}` when present.
 *
 * @template {HTTPError} E
 * @param {Answer} answer
 * @param {new (status: number, code: string, message: string, url: string) => E} ErrorClass
 * @returns {E}
 */
export function httpError(answer, ErrorClass) {
  const detail = /** @type {{error?: {code?: unknown, message?: unknown}} | undefined} */ (answer.body)?.error;
  const code = typeof detail?.code === "string" ? detail.code : `http_${answer.status}`;
  const message = typeof detail?.message === "string" ? detail.message : `HTTP ${answer.status} from ${answer.url}`;
  return new ErrorClass(answer.status, code, message, answer.url);
}
