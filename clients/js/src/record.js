/**
 * The progress record of the HTTP contract (/work/shared/CONTRACT.md, "Progress body"): its type, its
 * states, and the few questions a poller asks of it.
 *
 * @module
 */

/**
 * A job's state as the wire spells it. UNKNOWN comes only from the progress endpoints: no record (never
 * existed, not the caller's, or expired); clients keep polling.
 *
 * @typedef {"PENDING" | "RUNNING" | "PROCESSING" | "FALLBACK_TO_GPU" | "SUCCESS" | "READY"
 *   | "REVIEW_REQUIRED" | "REJECTED_BAD_INPUT" | "FAILED" | "CANCELLED" | "UNKNOWN"} State
 */

/**
 * A job kind's name: a built-in one, or any other the deployment declares (`GET /kinds/` lists them).
 * `(string & {})` keeps the built-in names as editor suggestions.
 *
 * @typedef {"spreadsheet_import" | "ai_inference" | "video" | (string & {})} JobKind
 */

/**
 * A job's progress, as every progress endpoint, batch item and SSE event carries it.
 *
 * @typedef {object} ProgressRecord
 * @property {string} id the job's id (a UUID)
 * @property {JobKind | null} kind null when UNKNOWN
 * @property {State} state
 * @property {boolean} terminal true once the state can no longer change
 * @property {number | null} percent 0..100
 * @property {number | null} current progress in the job's own unit (rows, milliseconds of video, pages)
 * @property {number | null} total the same unit
 * @property {string | null} stage
 * @property {string | null} message
 * @property {string | null} error_reason user-safe words on why the job failed or was rejected
 * @property {Record<string, unknown> | null} details a small JSON object the job's worker attached (say the
 *   current file, or counts by category); null when it set none, and on UNKNOWN
 * @property {number | null} eta_seconds null until it can be estimated
 * @property {string | null} updated_at ISO 8601, UTC
 * @property {number} version grows with every accepted write; 0 when there is no progress record: UNKNOWN,
 *   or a record read from the DB after repeated UNKNOWN answers
 * @property {number | null} poll_after_ms the server's hint for the next poll; null on terminal records
 */

/** The states after which a job never changes (a review of REVIEW_REQUIRED aside). */
export const TERMINAL_STATES = /** @type {ReadonlySet<State>} */ (
  new Set(["SUCCESS", "READY", "REVIEW_REQUIRED", "REJECTED_BAD_INPUT", "FAILED", "CANCELLED"])
);

/** The keys of a progress record, in the contract's order. */
const PROGRESS_KEYS = /** @type {const} */ ([
  "id", "kind", "state", "terminal", "percent", "current", "total", "stage", "message", "error_reason",
  "details", "eta_seconds", "updated_at", "version", "poll_after_ms",
]);

/**
 * Whether a record ends the poll.
 *
 * @param {{state: string, terminal?: unknown}} record
 * @returns {boolean}
 */
export function isTerminal(record) {
  return record.terminal === true || TERMINAL_STATES.has(/** @type {State} */ (record.state));
}

/**
 * Whether `next` brings something the caller has not seen: it is the first record, or its version or
 * state differs (a record deleted and recreated starts again at version 1, so "lower" counts as new).
 *
 * @param {ProgressRecord | null} previous
 * @param {ProgressRecord} next
 * @returns {boolean}
 */
export function isNewRecord(previous, next) {
  return previous === null || previous.version !== next.version || previous.state !== next.state;
}

/**
 * Whether a decoded JSON body can be read as a progress record (an object with a string state).
 *
 * @param {unknown} body
 * @returns {body is ProgressRecord}
 */
export function isProgressBody(body) {
  return typeof body === "object" && body !== null && typeof (/** @type {{state?: unknown}} */ (body).state) === "string";
}

/**
 * A DB-backed record (`GET /jobs/{id}/`) in the progress shape: the fields it has, the others null,
 * `version` 0 and `poll_after_ms` null, so a caller handles one shape whichever endpoint ended the poll.
 *
 * @param {Record<string, unknown>} dbRecord
 * @returns {ProgressRecord}
 */
export function progressFromDbRecord(dbRecord) {
  /** @type {Record<string, unknown>} */
  const record = {};
  for (const key of PROGRESS_KEYS) record[key] = dbRecord[key] ?? null;
  record.version = 0;
  record.poll_after_ms = null;
  if (typeof record.terminal !== "boolean") record.terminal = isTerminal({ state: String(record.state) });
  return /** @type {ProgressRecord} */ (record);
}
