/**
 * Shared test data: contract-shaped bodies, a fake `document`, fast policy options.
 *
 * @module
 */

/** @import { ProgressRecord, State } from "../src/record.js" */
/** @import { Reply, SeenRequest } from "./scripted-server.js" */

export const JOB_ID = "3f0c9a52-8d1e-4c7b-9a0e-2b6f4d1c8e77";
export const VIDEO_ID = "b7e2d4a1-5c3f-4e8a-9d6b-1f0a2c3e4d5f";
export const TOKEN = "test-token";
export const PROGRESS_PATH = `/jobs/${JOB_ID}/progress/`;
export const RECORD_PATH = `/jobs/${JOB_ID}/`;

/** Small, deterministic delays: the tests measure spacing, so no jitter unless a test asks for it. */
export const FAST = Object.freeze({ minIntervalMs: 10, maxIntervalMs: 2000, jitter: 0, errorDelayMs: 20 });

/** Terminal states, for the shape of a record. */
const TERMINAL = new Set(["SUCCESS", "READY", "REVIEW_REQUIRED", "REJECTED_BAD_INPUT", "FAILED", "CANCELLED"]);

/**
 * A progress body as the API sends it.
 *
 * @param {State} state
 * @param {number} version
 * @param {Partial<ProgressRecord>} [extra]
 * @returns {ProgressRecord}
 */
export function progress(state, version, extra = {}) {
  const terminal = TERMINAL.has(state);
  return {
    id: JOB_ID,
    kind: "spreadsheet_import",
    state,
    terminal,
    percent: terminal ? 100 : 10 * version,
    current: 100 * version,
    total: 1000,
    stage: "validating",
    message: `version ${version}`,
    error_reason: null,
    details: null,
    eta_seconds: null,
    updated_at: "2026-11-27T08:00:00.123Z",
    version,
    poll_after_ms: terminal ? null : 20,
    ...extra,
  };
}

/**
 * The UNKNOWN body.
 *
 * @param {number} [pollAfterMs]
 * @param {string} [id]
 * @returns {ProgressRecord}
 */
export function unknown(pollAfterMs = 20, id = JOB_ID) {
  return {
    id, kind: null, state: "UNKNOWN", terminal: false, percent: null, current: null, total: null, stage: null,
    message: null, error_reason: null, details: null, eta_seconds: null, updated_at: null, version: 0,
    poll_after_ms: pollAfterMs,
  };
}

/**
 * A 200 answer with a progress body and its ETag (none for UNKNOWN, as the contract says).
 *
 * @param {ProgressRecord} record
 * @param {Partial<Reply>} [extra]
 * @returns {Reply}
 */
export function ok(record, extra = {}) {
  /** @type {Record<string, string>} */
  const headers = record.state === "UNKNOWN" ? {} : { etag: `"${record.version}"` };
  return { status: 200, headers, body: record, ...extra };
}

/**
 * An error answer with the contract's error body.
 *
 * @param {number} status
 * @param {string} code
 * @param {Record<string, string>} [headers]
 * @returns {Reply}
 */
export function failure(status, code, headers = {}) {
  return { status, headers, body: { error: { code, message: `${code} message` } } };
}

/**
 * The DB-backed record of `GET /jobs/{id}/`.
 *
 * @param {State} state
 * @param {Record<string, unknown>} [extra]
 */
export function dbRecord(state, extra = {}) {
  return {
    id: JOB_ID,
    kind: "spreadsheet_import",
    state,
    terminal: TERMINAL.has(state),
    percent: 100,
    error_reason: null,
    options: {},
    input: { filename: "rows.csv", size_bytes: 120, content_type: "text/csv" },
    result: { rows: 3 },
    created_at: "2026-11-27T08:00:00.000Z",
    started_at: "2026-11-27T08:00:01.000Z",
    finished_at: "2026-11-27T08:00:02.000Z",
    ...extra,
  };
}

/**
 * The time between consecutive requests, in ms.
 *
 * @param {SeenRequest[]} requests
 * @returns {number[]}
 */
export function gaps(requests) {
  return requests.slice(1).map((request, index) => request.at - requests[index].at);
}

/**
 * A stand-in for `document`: a `hidden` flag and `visibilitychange` events, listeners counted.
 */
export class FakeDocument extends EventTarget {
  hidden = false;
  listeners = 0;

  /** @param {boolean} hidden */
  constructor(hidden = false) {
    super();
    this.hidden = hidden;
  }

  /** @param {boolean} hidden */
  setHidden(hidden) {
    this.hidden = hidden;
    this.dispatchEvent(new Event("visibilitychange"));
  }

  /**
   * @param {string} type
   * @param {EventListenerOrEventListenerObject | null} listener
   * @param {AddEventListenerOptions | boolean} [options]
   */
  addEventListener(type, listener, options) {
    this.listeners += 1;
    super.addEventListener(type, listener, options);
  }

  /**
   * @param {string} type
   * @param {EventListenerOrEventListenerObject | null} listener
   * @param {EventListenerOptions | boolean} [options]
   */
  removeEventListener(type, listener, options) {
    this.listeners -= 1;
    super.removeEventListener(type, listener, options);
  }
}

/** @param {number} ms */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
