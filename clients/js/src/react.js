/**
 * `useWorkerJobPoller`, the React hook of the originating front end, on top of `pollExcelJob` and
 * `pollVideoJob`. React is an optional peer dependency: only this entry point (`@jobpulse/client/react`)
 * imports it.
 *
 * @module
 */

import * as React from "react";

import { pollExcelJob, pollVideoJob } from "./poller.js";

/** @import { PolicyOptions } from "./policy.js" */
/** @import { JobKind, ProgressRecord, State } from "./record.js" */
/** @import { HeadersSource } from "./transport.js" */

/**
 * @typedef {object} HookOptions
 * @property {JobKind} kind `video` polls `/media/videos/{id}/progress/`, any other kind `/jobs/{id}/progress/`
 * @property {string | null | undefined} id nothing is polled without one
 * @property {string} [baseUrl]
 * @property {string} [token]
 * @property {HeadersSource} [headers] read at each request: a new object does not restart the poll
 * @property {boolean} [enabled] false pauses polling (an abort, then a fresh poll when true again); default true
 * @property {number} [timeoutMs]
 */

/**
 * @typedef {object} JobPollerState
 * @property {ProgressRecord | null} progress the last record reported
 * @property {State | null} state `progress?.state`, or null before the first record
 * @property {Error | null} error why the poll ended early (never an abort of this hook's own doing)
 * @property {boolean} done true once the poll has ended: a terminal record, or an error
 */

/** @typedef {{key: string, progress: ProgressRecord | null, error: Error | null, done: boolean}} Snapshot */

/**
 * Polls one job while the component is mounted and reports its progress.
 *
 * The poll restarts when `kind`, `id`, `baseUrl`, `token`, `enabled` or a policy option changes (options
 * are compared by value, so an inline options object does not restart it), and is aborted on unmount.
 *
 * @param {HookOptions & PolicyOptions} options
 * @returns {JobPollerState}
 */
export function useWorkerJobPoller(options) {
  const { kind, id, baseUrl, token, headers, enabled = true, timeoutMs } = options;
  const { minIntervalMs, maxIntervalMs, backoff, jitter, unknownChecks, errorDelayMs } = options;
  // Progress belongs to one job: after a switch to another, the old job's record is not shown.
  const key = JSON.stringify([kind, id, baseUrl ?? null]);
  const [snapshot, setSnapshot] = React.useState(() => emptySnapshot(key));
  const headersRef = React.useRef(headers);
  React.useEffect(() => {
    headersRef.current = headers; // after commit: a render React throws away must not change them
  });

  React.useEffect(() => {
    if (!enabled || !id) return undefined;
    const controller = new AbortController();
    /** @param {(previous: Snapshot) => Omit<Snapshot, "key">} change */
    const update = (change) => {
      if (!controller.signal.aborted) {
        setSnapshot((previous) => ({ ...change(previous.key === key ? previous : emptySnapshot(key)), key }));
      }
    };
    // A restart for the same job (a new token, say) keeps the last record but not the last outcome.
    setSnapshot((previous) =>
      previous.key === key && previous.done ? { ...previous, error: null, done: false } : previous,
    );
    const poll = kind === "video" ? pollVideoJob : pollExcelJob;
    poll(id, {
      baseUrl,
      token,
      headers: () => readHeaders(headersRef.current),
      signal: controller.signal,
      timeoutMs,
      minIntervalMs,
      maxIntervalMs,
      backoff,
      jitter,
      unknownChecks,
      errorDelayMs,
      onProgress: (record) => update(() => ({ progress: record, error: null, done: false })),
    }).then(
      (record) => update(() => ({ progress: record, error: null, done: true })),
      (error) => update((previous) => ({ progress: previous.progress, error: asError(error), done: true })),
    );
    return () => controller.abort();
  }, [
    kind, id, baseUrl, token, enabled, timeoutMs, minIntervalMs, maxIntervalMs, backoff, jitter, unknownChecks, errorDelayMs,
  ]);

  const current = snapshot.key === key ? snapshot : emptySnapshot(key);
  return {
    progress: current.progress,
    state: current.progress?.state ?? null,
    error: current.error,
    done: current.done,
  };
}

/**
 * @param {string} key
 * @returns {Snapshot}
 */
function emptySnapshot(key) {
  return { key, progress: null, error: null, done: false };
}

/**
 * @param {HeadersSource | undefined} headers
 * @returns {HeadersInit | Promise<HeadersInit>}
 */
function readHeaders(headers) {
  return typeof headers === "function" ? headers() : (headers ?? {});
}

/**
 * @param {unknown} error
 * @returns {Error}
 */
function asError(error) {
  return error instanceof Error ? error : new Error(String(error));
}
