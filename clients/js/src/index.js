/**
 * @jobpulse/client: follow a background job's live progress from a browser (or Node 20+), under the
 * polling policy of docs/clients.md. The React hook lives in `@jobpulse/client/react`.
 *
 * @module
 */

export { createBatchPoller, BATCH_LIMIT } from "./batch.js";
export { AuthError, DeadlineError, HTTPError, JobpulseError, NotFoundError } from "./errors.js";
export { pollExcelJob, pollJob, pollVideoJob } from "./poller.js";
export {
  DEFAULT_POLICY, INITIAL_HINT_MS, PollPolicy, clamp, jittered, parseRetryAfter, resolvePolicy,
} from "./policy.js";
export { TERMINAL_STATES, isTerminal } from "./record.js";

/**
 * A job's state as the wire spells it: PENDING, RUNNING, PROCESSING, FALLBACK_TO_GPU (passing), SUCCESS,
 * READY, REVIEW_REQUIRED, REJECTED_BAD_INPUT, FAILED, CANCELLED (terminal), UNKNOWN (no record yet or
 * any more: keep polling).
 *
 * @typedef {"PENDING" | "RUNNING" | "PROCESSING" | "FALLBACK_TO_GPU" | "SUCCESS" | "READY"
 *   | "REVIEW_REQUIRED" | "REJECTED_BAD_INPUT" | "FAILED" | "CANCELLED" | "UNKNOWN"} State
 */

/**
 * A job's progress record (the contract's progress body): id, kind, state, terminal, percent, current,
 * total, stage, message, error_reason, details, eta_seconds, updated_at, version, poll_after_ms.
 *
 * @typedef {import("./record.js").ProgressRecord} ProgressRecord
 */

/** @typedef {import("./record.js").JobKind} JobKind */
/** @typedef {import("./poller.js").PollOptions} PollOptions */
/** @typedef {import("./batch.js").BatchOptions} BatchOptions */
/** @typedef {import("./batch.js").BatchPoller} BatchPoller */
/** @typedef {import("./policy.js").PolicyOptions} PolicyOptions */
/** @typedef {import("./transport.js").HeadersSource} HeadersSource */
/** @typedef {import("./pacer.js").VisibilitySource} VisibilitySource */
