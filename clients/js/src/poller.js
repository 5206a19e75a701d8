/**
 * The single-job poller: `pollJob` follows one job's progress URL under the polling policy of
 * docs/clients.md until the job reaches a terminal state. `pollExcelJob` and `pollVideoJob` are the
 * originating front end's names for the two progress routes.
 *
 * @module
 */

import { AuthError, NotFoundError } from "./errors.js";
import { Pacer } from "./pacer.js";
import { INITIAL_HINT_MS, PollPolicy } from "./policy.js";
import { isNewRecord, isProgressBody, isTerminal, progressFromDbRecord } from "./record.js";
import { Transport, classify, httpError } from "./transport.js";

/** @import { PolicyOptions } from "./policy.js" */
/** @import { ProgressRecord } from "./record.js" */
/** @import { TransportOptions } from "./transport.js" */
/** @import { PacerOptions } from "./pacer.js" */

/**
 * @typedef {object} PollCallbacks
 * @property {(record: ProgressRecord) => void} [onProgress] called with each new record (an UNKNOWN only
 *   when the previous one reported was not UNKNOWN), the final one included; if it throws, the poll ends
 *   with that error
 * @property {() => number} [random] uniform in [0, 1), for the jitter; Math.random by default
 */

/** @typedef {TransportOptions & PacerOptions & PolicyOptions & PollCallbacks} PollOptions */

/**
 * Polls a job's progress URL until its record is terminal, and resolves with that record.
 *
 * Never more than one request at a time; the delays follow docs/clients.md. Network errors, 429 and
 * 5xx are retried without end: only `timeoutMs`, `signal`, or an answer that retrying cannot fix ends
 * the poll early.
 *
 * @param {string} url the progress URL (`/jobs/{id}/progress/`), absolute or relative to `baseUrl`; the
 *   DB-backed record, asked after repeated UNKNOWN answers, is this URL without its `progress/` segment
 * @param {PollOptions} [options]
 * @returns {Promise<ProgressRecord>} the terminal record
 * @throws {import("./errors.js").AuthError} on 401 or 403
 * @throws {import("./errors.js").HTTPError} on any other 4xx but 429
 * @throws {NotFoundError} when the DB record answers 404 after `unknownChecks` UNKNOWN answers
 * @throws {import("./errors.js").DeadlineError} when `timeoutMs` passes
 * @throws {unknown} `signal.reason` when the caller aborts (an AbortError DOMException by default)
 */
export async function pollJob(url, options = {}) {
  const policy = new PollPolicy(options, options.random);
  const transport = new Transport(options);
  const progressUrl = transport.resolve(url);
  const recordUrl = dbRecordUrl(progressUrl);
  const pacer = new Pacer(options);
  try {
    return await follow({ progressUrl, recordUrl, transport, policy, pacer, onProgress: options.onProgress });
  } catch (error) {
    throw pacer.signal.aborted ? pacer.signal.reason : error;
  } finally {
    pacer.close();
  }
}

/**
 * Polls `GET /jobs/{id}/progress/`: a spreadsheet import or an AI inference job.
 *
 * @param {string} id the job's id
 * @param {PollOptions} [options]
 * @returns {Promise<ProgressRecord>}
 */
export async function pollExcelJob(id, options) {
  return pollJob(`/jobs/${encodeId(id)}/progress/`, options);
}

/**
 * Polls `GET /media/videos/{id}/progress/`: a video job.
 *
 * @param {string} id the video's id
 * @param {PollOptions} [options]
 * @returns {Promise<ProgressRecord>}
 */
export async function pollVideoJob(id, options) {
  return pollJob(`/media/videos/${encodeId(id)}/progress/`, options);
}

/**
 * @param {unknown} id
 * @returns {string}
 */
function encodeId(id) {
  if (typeof id !== "string" || id === "") throw new TypeError(`a job id must be a non-empty string, got ${String(id)}`);
  return encodeURIComponent(id);
}

/**
 * `/jobs/{id}/progress/` → `/jobs/{id}/` (the query string, if any, is kept).
 *
 * @param {string} progressUrl an absolute URL
 * @returns {string}
 */
function dbRecordUrl(progressUrl) {
  const url = new URL(progressUrl);
  const path = url.pathname.replace(/\/progress\/?$/, "/");
  if (path === url.pathname) throw new TypeError(`${progressUrl} does not end with a progress/ segment`);
  url.pathname = path;
  return url.href;
}

/**
 * @typedef {object} Poll
 * @property {string} progressUrl
 * @property {string} recordUrl
 * @property {Transport} transport
 * @property {PollPolicy} policy
 * @property {Pacer} pacer
 * @property {((record: ProgressRecord) => void) | undefined} onProgress
 */

/**
 * The loop of rules 1 to 5.
 *
 * @param {Poll} poll
 * @returns {Promise<ProgressRecord>}
 */
async function follow({ progressUrl, recordUrl, transport, policy, pacer, onProgress }) {
  let hint = INITIAL_HINT_MS;
  let quiet = 0;
  let unknowns = 0;
  let errors = 0;
  /** @type {string | null} */
  let etag = null;
  /** @type {ProgressRecord | null} */
  let seen = null;
  /** @type {ProgressRecord | null} */
  let reported = null;
  let delay = 0;

  for (;;) {
    await pacer.ready(delay);
    const answer = await transport.send(progressUrl, { etag, signal: pacer.signal });
    const verdict = classify(answer);
    if (verdict instanceof Error) throw verdict;
    // A 200 that is not a progress record (a proxy's page, say) is a failed request too.
    if (verdict === "retry" || (verdict === "ok" && !isProgressBody(answer.body))) {
      errors += 1;
      delay = policy.errorDelay(errors, answer.retryAfterMs);
      continue;
    }
    errors = 0;
    if (verdict === "not-modified") {
      quiet += 1;
      delay = policy.quietDelay(hint, quiet);
      continue;
    }

    const record = /** @type {ProgressRecord} */ (answer.body);
    // A record without an ETag (UNKNOWN) has nothing to revalidate: keep no stale ETag for a later one.
    etag = answer.etag;
    if (typeof record.poll_after_ms === "number") hint = record.poll_after_ms;
    const previous = seen;
    seen = record;

    if (record.state === "UNKNOWN") {
      if (reported?.state !== "UNKNOWN") reported = report(onProgress, record);
      quiet += 1;
      unknowns += 1;
      delay = policy.quietDelay(hint, quiet);
      if (unknowns >= policy.options.unknownChecks) {
        unknowns = 0;
        const final = await askDbRecord(transport, recordUrl, pacer.signal);
        if (final) {
          report(onProgress, final);
          return final;
        }
      }
    } else if (isNewRecord(previous, record)) {
      reported = report(onProgress, record);
      quiet = 0;
      unknowns = 0;
      if (isTerminal(record)) return record;
      delay = policy.delay(hint);
    } else {
      quiet += 1;
      delay = policy.quietDelay(hint, quiet);
    }
  }
}

/**
 * @param {((record: ProgressRecord) => void) | undefined} onProgress
 * @param {ProgressRecord} record
 * @returns {ProgressRecord} the record reported
 */
function report(onProgress, record) {
  onProgress?.(record);
  return record;
}

/**
 * Rule 3's one look at the DB-backed record: its terminal record in the progress shape, or null to go on
 * polling (a non-terminal state, or any failure but a 404, 401 or 403).
 *
 * @param {Transport} transport
 * @param {string} recordUrl
 * @param {AbortSignal} signal
 * @returns {Promise<ProgressRecord | null>}
 * @throws {NotFoundError} on 404
 * @throws {AuthError} on 401 or 403 (rule 5: the token is no longer good)
 */
async function askDbRecord(transport, recordUrl, signal) {
  const answer = await transport.send(recordUrl, { signal });
  if (answer.status === 404) throw httpError(answer, NotFoundError);
  if (answer.status === 401 || answer.status === 403) throw httpError(answer, AuthError);
  if (answer.status !== 200 || !isProgressBody(answer.body) || !isTerminal(answer.body)) return null;
  return progressFromDbRecord(/** @type {Record<string, unknown>} */ (answer.body));
}
