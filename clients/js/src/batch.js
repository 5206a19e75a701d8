/**
 * The batch poller: many jobs watched with one `POST /progress/batch/` per tick, for pages that show a
 * list of jobs. It follows the polling policy of docs/clients.md with these differences:
 *
 * - a tick asks for every pending id; more than 500 ids (the endpoint's limit) are split into chunks of
 *   500, sent one after the other, so one poller never has two requests in flight;
 * - `quiet` counts ticks in which no item changed, and the next delay is the smallest `poll_after_ms`
 *   among the pending items times `backoff ** quiet`;
 * - UNKNOWN items simply keep being polled: the batch poller never asks the DB-backed records (that
 *   would cost one request per job, which is what a batch avoids); use `pollJob` where that matters;
 * - there is no deadline: `remove(id)` and `stop()` end the polls.
 *
 * @module
 */

import { abortError } from "./errors.js";
import { Pacer } from "./pacer.js";
import { INITIAL_HINT_MS, PollPolicy } from "./policy.js";
import { isNewRecord, isProgressBody, isTerminal } from "./record.js";
import { Transport, classify } from "./transport.js";

/** @import { PolicyOptions } from "./policy.js" */
/** @import { ProgressRecord } from "./record.js" */
/** @import { TransportOptions } from "./transport.js" */
/** @import { VisibilitySource } from "./pacer.js" */

/** The most ids the batch endpoint takes in one request. */
export const BATCH_LIMIT = 500;

/**
 * @typedef {object} BatchCallbacks
 * @property {(id: string, record: ProgressRecord) => void} [onProgress] called with each id's new records,
 *   the final one included; if it throws, that id's promise rejects with the error
 * @property {(error: Error) => void} [onError] called once when an answer stops the poller (an AuthError on
 *   401/403, an HTTPError on another 4xx), before every pending promise rejects with the error
 * @property {() => number} [random] uniform in [0, 1), for the jitter; Math.random by default
 * @property {VisibilitySource | null} [document] `globalThis.document` when undefined; null turns
 *   visibility handling off
 */

/** @typedef {TransportOptions & PolicyOptions & BatchCallbacks} BatchOptions */

/**
 * @typedef {object} BatchPoller
 * @property {(id: string) => Promise<ProgressRecord>} add starts watching a job (a job already watched
 *   gets the same promise); resolves with its terminal record
 * @property {(id: string) => void} remove stops watching a job; its promise rejects with an AbortError
 * @property {() => void} stop stops everything; pending promises reject with an AbortError and later
 *   `add` calls too
 * @property {number} size how many jobs are being watched
 */

/**
 * @typedef {object} Entry
 * @property {Promise<ProgressRecord>} promise
 * @property {(record: ProgressRecord) => void} resolve
 * @property {(error: unknown) => void} reject
 * @property {ProgressRecord | null} last the last record seen
 * @property {boolean} asked whether a request has asked for it yet
 */

/**
 * @typedef {object} Tick
 * @property {boolean} failed
 * @property {number | null} retryAfterMs
 * @property {boolean} changed
 * @property {number | null} hintMs the smallest `poll_after_ms` among the pending items
 */

/**
 * Creates a poller that watches any number of jobs with one request per tick. It sends nothing while it
 * watches no job, and polls as soon as a job is added.
 *
 * The promises `add` returns are marked handled: a caller that only uses `onProgress` may ignore them
 * without unhandled-rejection noise (use `onError` to hear about a fatal answer).
 *
 * @param {BatchOptions} [options]
 * @returns {BatchPoller}
 */
export function createBatchPoller(options = {}) {
  const policy = new PollPolicy(options, options.random);
  const transport = new Transport(options);
  const batchUrl = transport.resolve("/progress/batch/");
  /** @type {Map<string, Entry>} */
  const entries = new Map();
  /** @type {Pacer | null} the running loop's pacer; null while idle */
  let pacer = null;
  /** @type {{reason: unknown} | null} why the poller stopped, for good */
  let stopped = null;
  let errors = 0;
  let lastAnswerAt = -Infinity;

  /** @param {unknown} reason */
  const stopWith = (reason) => {
    stopped = { reason };
    const pending = [...entries.values()];
    entries.clear();
    pacer?.abort(reason);
    pacer = null;
    for (const entry of pending) entry.reject(reason);
  };

  /**
   * One request per chunk of ids, in sequence.
   *
   * @param {AbortSignal} signal
   * @returns {Promise<Tick>}
   */
  const tick = async (signal) => {
    const ids = [...entries.keys()];
    let changed = false;
    let hintMs = Infinity;
    for (let start = 0; start < ids.length; start += BATCH_LIMIT) {
      const chunk = ids.slice(start, start + BATCH_LIMIT).filter((id) => entries.has(id)); // removed meanwhile
      if (chunk.length === 0) continue;
      for (const id of chunk) /** @type {Entry} */ (entries.get(id)).asked = true;
      const answer = await transport.send(batchUrl, { method: "POST", json: { ids: chunk }, signal });
      signal.throwIfAborted();
      const verdict = classify(answer);
      if (verdict instanceof Error) throw verdict;
      const items = verdict === "ok" ? itemsOf(answer.body) : null;
      if (items === null) return { failed: true, retryAfterMs: answer.retryAfterMs, changed, hintMs: null };
      for (const id of chunk) {
        const entry = entries.get(id);
        const record = items[id] ?? items[id.toLowerCase()];
        if (!entry || !isProgressBody(record)) continue;
        if (isNewRecord(entry.last, record)) {
          entry.last = record;
          changed = true;
          try {
            options.onProgress?.(id, record);
          } catch (error) {
            entries.delete(id);
            entry.reject(error);
            continue;
          }
          if (isTerminal(record)) {
            entries.delete(id);
            entry.resolve(record);
            continue;
          }
        }
        if (typeof record.poll_after_ms === "number") hintMs = Math.min(hintMs, record.poll_after_ms);
      }
    }
    return { failed: false, retryAfterMs: null, changed, hintMs: Number.isFinite(hintMs) ? hintMs : null };
  };

  /** @param {Pacer} current */
  const run = async (current) => {
    let hint = INITIAL_HINT_MS;
    let quiet = 0;
    let delay = 0;
    errors = 0;
    try {
      await null; // ids added in the same turn as the first one join the first tick
      while (entries.size > 0) {
        await current.ready(delay);
        if (entries.size === 0) break;
        const outcome = await tick(current.signal);
        lastAnswerAt = performance.now();
        if (outcome.failed) {
          errors += 1;
          delay = policy.errorDelay(errors, outcome.retryAfterMs);
          continue;
        }
        errors = 0;
        quiet = outcome.changed ? 0 : quiet + 1;
        if (outcome.hintMs !== null) hint = outcome.hintMs;
        delay = policy.quietDelay(hint, quiet);
        // Jobs added while the request was in flight are asked for soon, as if added during the wait.
        if ([...entries.values()].some((entry) => !entry.asked)) {
          delay = Math.min(delay, policy.options.minIntervalMs);
        }
      }
    } catch (error) {
      if (!current.signal.aborted) {
        options.onError?.(/** @type {Error} */ (error));
        stopWith(error);
      }
    } finally {
      current.close();
      if (pacer === current) pacer = null;
    }
  };

  return {
    add(id) {
      if (typeof id !== "string" || id === "") {
        return handled(Promise.reject(new TypeError(`a job id must be a non-empty string, got ${String(id)}`)));
      }
      if (stopped) return handled(Promise.reject(stopped.reason));
      const existing = entries.get(id);
      if (existing) return existing.promise;
      /** @type {Entry["resolve"]} */
      let resolve = () => {};
      /** @type {Entry["reject"]} */
      let reject = () => {};
      const promise = handled(
        new Promise((settle, fail) => {
          resolve = settle;
          reject = fail;
        }),
      );
      entries.set(id, { promise, resolve, reject, last: null, asked: false });
      if (pacer === null) {
        pacer = new Pacer({ document: options.document });
        void run(pacer);
      } else if (errors === 0) {
        // A new job deserves its first answer soon, but not sooner than minIntervalMs after the last one.
        pacer.hurry(Math.max(0, lastAnswerAt + policy.options.minIntervalMs - performance.now()));
      }
      return promise;
    },

    remove(id) {
      const entry = entries.get(id);
      if (!entry) return;
      entries.delete(id);
      entry.reject(abortError(`stopped watching job ${id}`));
      if (entries.size === 0 && pacer !== null) {
        pacer.abort(abortError("no job left to watch"));
        pacer = null;
      }
    },

    stop() {
      if (!stopped) stopWith(abortError("the batch poller was stopped"));
    },

    get size() {
      return entries.size;
    },
  };
}

/**
 * The `items` map of a batch answer, or null when the body is not one.
 *
 * @param {unknown} body
 * @returns {Record<string, unknown> | null}
 */
function itemsOf(body) {
  const items = typeof body === "object" && body !== null ? /** @type {{items?: unknown}} */ (body).items : null;
  return typeof items === "object" && items !== null ? /** @type {Record<string, unknown>} */ (items) : null;
}

/**
 * `promise`, marked handled so that a rejection nobody awaits is not reported as unhandled.
 *
 * @template T
 * @param {Promise<T>} promise
 * @returns {Promise<T>}
 */
function handled(promise) {
  promise.catch(() => {});
  return promise;
}
