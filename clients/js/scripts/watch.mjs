#!/usr/bin/env node
/**
 * Follows jobs through the browser client from a shell, one JSON line per event on stdout; the Python
 * integration tests run it against the real API.
 *
 *   node clients/js/scripts/watch.mjs --base-url URL --token T (--job ID | --video ID | --batch ID,ID,...)
 *     [--unknown-checks N] [--min-interval-ms N] [--max-interval-ms N] [--timeout-ms N]
 *
 * --job and --video print `{"event":"progress","record":...}` per reported record, then
 * `{"event":"done","record":...}`. --batch prints `{"event":"progress","id":...,"record":...}`, then
 * `{"event":"done","records":{"<id>":...}}`. A failure prints `{"event":"error","name":...,"message":...}`
 * (plus `status` and `code` for an HTTP error). The last line also carries `statuses`, the answers got
 * by status (`{"200": 41, "304": 9}`; `"error"` for a request that got none), which
 * bench/client_requests.py counts. Exit status: 0 done, 1 error, 2 bad usage.
 */

import { parseArgs } from "node:util";

import { DeadlineError, createBatchPoller, pollExcelJob, pollVideoJob } from "../src/index.js";

const USAGE = `usage: watch.mjs --base-url URL --token T (--job ID | --video ID | --batch ID,ID,...)
                 [--unknown-checks N] [--min-interval-ms N] [--max-interval-ms N] [--timeout-ms N]`;

/** @param {Record<string, unknown>} event */
function emit(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

/** @param {Record<string, unknown>} event the last line: with the answers counted by status */
function finish(event) {
  emit({ ...event, statuses });
}

/** @param {string} message */
function usage(message) {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(2);
}

/**
 * @param {string | undefined} value
 * @param {string} name
 * @returns {number | undefined}
 */
function number(value, name) {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (value.trim() === "" || !Number.isFinite(parsed)) usage(`--${name} must be a number, got ${value}`);
  return parsed;
}

/** @param {unknown} error */
function fail(error) {
  const { name = "Error", message = String(error), status, code } = /** @type {Record<string, any>} */ (error ?? {});
  finish({ event: "error", name, message, ...(status === undefined ? {} : { status, code }) });
  process.exitCode = 1;
}

/** @type {ReturnType<typeof parseArgs>["values"]} */
let values;
try {
  ({ values } = parseArgs({
    options: {
      "base-url": { type: "string" },
      token: { type: "string" },
      job: { type: "string" },
      video: { type: "string" },
      batch: { type: "string" },
      "unknown-checks": { type: "string" },
      "min-interval-ms": { type: "string" },
      "max-interval-ms": { type: "string" },
      "timeout-ms": { type: "string" },
    },
  }));
} catch (error) {
  usage(/** @type {Error} */ (error).message);
  throw error;
}

const targets = ["job", "video", "batch"].filter((name) => values[name] !== undefined);
if (targets.length !== 1) usage("give exactly one of --job, --video, --batch");
const baseUrl = /** @type {string | undefined} */ (values["base-url"]);
if (!baseUrl) usage("--base-url is required");

const controller = new AbortController();
for (const signal of /** @type {const} */ (["SIGINT", "SIGTERM"])) process.once(signal, () => controller.abort());

/** @type {Record<string, number>} */
const statuses = {};
/**
 * @param {Parameters<typeof fetch>[0]} input
 * @param {Parameters<typeof fetch>[1]} [init]
 * @returns {Promise<Response>}
 */
async function countingFetch(input, init) {
  try {
    const response = await fetch(input, init);
    statuses[response.status] = (statuses[response.status] ?? 0) + 1;
    return response;
  } catch (error) {
    statuses.error = (statuses.error ?? 0) + 1;
    throw error;
  }
}

const options = {
  baseUrl,
  fetch: countingFetch,
  token: /** @type {string | undefined} */ (values.token),
  unknownChecks: number(/** @type {string | undefined} */ (values["unknown-checks"]), "unknown-checks"),
  minIntervalMs: number(/** @type {string | undefined} */ (values["min-interval-ms"]), "min-interval-ms"),
  maxIntervalMs: number(/** @type {string | undefined} */ (values["max-interval-ms"]), "max-interval-ms"),
};
const timeoutMs = number(/** @type {string | undefined} */ (values["timeout-ms"]), "timeout-ms");

if (values.batch !== undefined) {
  const ids = String(values.batch).split(",").map((id) => id.trim()).filter(Boolean);
  if (ids.length === 0) usage("--batch needs at least one id");
  const poller = createBatchPoller({ ...options, onProgress: (id, record) => emit({ event: "progress", id, record }) });
  controller.signal.addEventListener("abort", () => poller.stop());
  let timedOut = false;
  const deadline = timeoutMs === undefined ? undefined : setTimeout(() => {
    timedOut = true;
    poller.stop();
  }, timeoutMs);
  try {
    const records = await Promise.all(ids.map((id) => poller.add(id)));
    finish({ event: "done", records: Object.fromEntries(ids.map((id, index) => [id, records[index]])) });
  } catch (error) {
    poller.stop();
    fail(timedOut ? new DeadlineError(/** @type {number} */ (timeoutMs)) : error);
  } finally {
    clearTimeout(deadline);
  }
} else {
  const poll = values.video === undefined ? pollExcelJob : pollVideoJob;
  const id = String(values.video ?? values.job);
  try {
    const record = await poll(id, {
      ...options,
      timeoutMs,
      signal: controller.signal,
      onProgress: (progress) => emit({ event: "progress", record: progress }),
    });
    finish({ event: "done", record });
  } catch (error) {
    fail(error);
  }
}
