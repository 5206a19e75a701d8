import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { performance } from "node:perf_hooks";

import { AuthError, DeadlineError, HTTPError, JobpulseError, NotFoundError } from "../src/errors.js";
import { pollExcelJob, pollJob, pollVideoJob } from "../src/poller.js";
import {
  FAST, FakeDocument, JOB_ID, PROGRESS_PATH, RECORD_PATH, TOKEN, VIDEO_ID,
  dbRecord, failure, gaps, ok, progress, sleep, unknown,
} from "./fixtures.js";
import { ScriptedServer } from "./scripted-server.js";

/** @import { PollOptions } from "../src/poller.js" */
/** @import { ProgressRecord } from "../src/record.js" */

/** @type {ScriptedServer} */
let server;

beforeEach(async () => {
  server = await ScriptedServer.start();
});

afterEach(async () => {
  await server.close();
});

/**
 * Polls the test job with fast options, recording what onProgress got.
 *
 * @param {PollOptions} [options]
 */
function watch(options = {}) {
  /** @type {ProgressRecord[]} */
  const reported = [];
  const result = pollJob(PROGRESS_PATH, {
    baseUrl: server.url,
    token: TOKEN,
    document: null,
    ...FAST,
    onProgress: (record) => reported.push(record),
    ...options,
  });
  return { result, reported };
}

/**
 * A measured gap is at least the delay asked for (timers fire a hair early on a ms clock) and not much more.
 *
 * @param {number} actual
 * @param {number} expected
 * @param {string} what
 */
function assertGap(actual, expected, what) {
  assert.ok(actual >= expected - 3, `${what}: ${actual.toFixed(1)} ms < ${expected} ms`);
  assert.ok(actual < expected + 150, `${what}: ${actual.toFixed(1)} ms, far more than ${expected} ms`);
}

/**
 * @param {Promise<unknown>} promise
 * @returns {Promise<number>} how long it took to settle, in ms
 */
async function settleTime(promise) {
  const started = performance.now();
  await promise.catch(() => {});
  return performance.now() - started;
}

describe("pollJob", () => {
  it("reports UNKNOWN once, then each new record, and resolves with the terminal one", async () => {
    server.script(PROGRESS_PATH, [
      ok(unknown()), ok(unknown()), ok(unknown()), ok(progress("RUNNING", 1)), ok(progress("SUCCESS", 2)),
    ]);
    const { result, reported } = watch();
    const final = await result;
    assert.equal(final.state, "SUCCESS");
    assert.deepEqual(reported.map((record) => record.state), ["UNKNOWN", "RUNNING", "SUCCESS"]);
    const requests = server.requests;
    assert.equal(requests.length, 5);
    for (const request of requests) {
      assert.equal(request.method, "GET");
      assert.equal(request.path, PROGRESS_PATH);
      assert.equal(request.headers.authorization, `Bearer ${TOKEN}`);
      assert.equal(request.headers.accept, "application/json");
    }
    const etags = requests.map((request) => request.headers["if-none-match"]);
    assert.deepEqual(etags, [undefined, undefined, undefined, undefined, '"1"'], "UNKNOWN has no ETag to send back");
    // UNKNOWN answers grow the delay: hint 20 ms times 1.5 ** quiet.
    const measured = gaps(requests);
    assertGap(measured[0], 30, "after the 1st UNKNOWN");
    assertGap(measured[1], 45, "after the 2nd UNKNOWN");
    assertGap(measured[2], 67.5, "after the 3rd UNKNOWN");
    assertGap(measured[3], 20, "after RUNNING, the hint itself");
    assert.equal(server.maxInFlight, 1);
  });

  it("hands the worker's details to onProgress and the result as they came, null when there are none", async () => {
    const details = { file: "people.csv", by_category: { valid: 2, invalid: 1 }, names: ["a", "b"] };
    server.script(PROGRESS_PATH, [
      ok(unknown()),
      ok(progress("RUNNING", 1, { details })),
      ok(progress("RUNNING", 2, { details: { file: "more.csv" } })),
      ok(progress("SUCCESS", 3, { details })),
    ]);
    const { result, reported } = watch();
    assert.deepEqual((await result).details, details);
    assert.deepEqual(reported.map((record) => record.details), [null, details, { file: "more.csv" }, details]);
  });

  it("sends the last ETag as If-None-Match and backs off on 304", async () => {
    server.script(PROGRESS_PATH, [
      ok(progress("RUNNING", 1, { poll_after_ms: 20 })),
      { status: 304, headers: { etag: '"1"' } },
      { status: 304, headers: { etag: '"1"' } },
      ok(progress("RUNNING", 2, { poll_after_ms: 20 })),
      ok(progress("SUCCESS", 3)),
    ]);
    const { result, reported } = watch({ backoff: 2 });
    assert.equal((await result).version, 3);
    assert.deepEqual(reported.map((record) => record.version), [1, 2, 3]);
    const etags = server.requests.map((request) => request.headers["if-none-match"]);
    assert.deepEqual(etags, [undefined, '"1"', '"1"', '"1"', '"2"']);
    const measured = gaps(server.requests);
    assertGap(measured[0], 20, "after the first record");
    assertGap(measured[1], 40, "after one 304");
    assertGap(measured[2], 80, "after two 304s");
    assertGap(measured[3], 20, "after a new record, quiet is 0 again");
  });

  it("counts a 200 with the same version and state as nothing new", async () => {
    server.script(PROGRESS_PATH, [
      ok(progress("RUNNING", 4)), ok(progress("RUNNING", 4)), ok(progress("SUCCESS", 5)),
    ]);
    const { result, reported } = watch({ backoff: 3 });
    await result;
    assert.deepEqual(reported.map((record) => record.version), [4, 5]);
    assertGap(gaps(server.requests)[1], 60, "20 ms times 3 ** 1");
  });

  it("retries dropped connections and a 503, honouring Retry-After, then succeeds", async () => {
    server.script(PROGRESS_PATH, [
      { drop: true },
      { drop: true },
      failure(503, "redis_unavailable", { "retry-after": "1" }),
      ok(progress("SUCCESS", 1)),
    ]);
    const { result, reported } = watch();
    assert.equal((await result).state, "SUCCESS");
    assert.deepEqual(reported.map((record) => record.state), ["SUCCESS"]);
    assert.equal(server.requests.length, 4, "a dropped connection is one request, retried by the poller only");
    const measured = gaps(server.requests);
    assertGap(measured[0], 20, "errorDelayMs after the 1st failure");
    assertGap(measured[1], 40, "doubled after the 2nd");
    assert.ok(measured[2] >= 997, `Retry-After: 1 honoured, waited ${measured[2]} ms`);
    assert.ok(measured[2] < 1300, `Retry-After is used as is, waited ${measured[2]} ms`);
  });

  it("retries 429, a 500 and a 200 that is not JSON with a doubling error delay", async () => {
    server.script(PROGRESS_PATH, [
      failure(429, "too_many_requests"),
      { status: 500, body: "oops" },
      { status: 200, body: "<html>captive portal</html>" },
      ok(progress("SUCCESS", 1)),
    ]);
    const { result } = watch();
    await result;
    const measured = gaps(server.requests);
    assertGap(measured[0], 20, "1st error");
    assertGap(measured[1], 40, "2nd error");
    assertGap(measured[2], 80, "3rd error");
  });

  it("asks the DB record once after unknownChecks UNKNOWNs and ends with NotFoundError on 404", async () => {
    server.script(PROGRESS_PATH, [ok(unknown())]);
    server.script(RECORD_PATH, [failure(404, "not_found")]);
    const { result, reported } = watch({ unknownChecks: 3 });
    const error = await result.then(() => assert.fail("resolved"), (e) => e);
    assert.ok(error instanceof NotFoundError);
    assert.ok(error instanceof JobpulseError);
    assert.equal(error.status, 404);
    assert.equal(error.code, "not_found");
    assert.equal(error.message, "not_found message");
    assert.deepEqual(server.requests.map((request) => request.path), [
      PROGRESS_PATH, PROGRESS_PATH, PROGRESS_PATH, RECORD_PATH,
    ]);
    assert.equal(server.requestsTo(RECORD_PATH)[0].headers.authorization, `Bearer ${TOKEN}`);
    assert.deepEqual(reported.map((record) => record.state), ["UNKNOWN"]);
    await sleep(100);
    assert.equal(server.requests.length, 4, "no request after the poll ended");
  });

  it("ends with AuthError when the DB record answers 401", async () => {
    server.script(PROGRESS_PATH, [ok(unknown())]);
    server.script(RECORD_PATH, [failure(401, "not_authenticated")]);
    const error = await watch({ unknownChecks: 2 }).result.then(() => assert.fail("resolved"), (e) => e);
    assert.ok(error instanceof AuthError);
    await sleep(80);
    assert.equal(server.requests.length, 3, "no request after the poll ended");
  });

  it("resolves with a terminal DB record, in the progress shape", async () => {
    server.script(PROGRESS_PATH, [ok(unknown())]);
    server.script(RECORD_PATH, [{ body: dbRecord("FAILED", { percent: 40, error_reason: "The file is corrupt." }) }]);
    const { result, reported } = watch({ unknownChecks: 2 });
    const final = await result;
    assert.deepEqual(final, {
      id: JOB_ID, kind: "spreadsheet_import", state: "FAILED", terminal: true, percent: 40, current: null,
      total: null, stage: null, message: null, error_reason: "The file is corrupt.", details: null,
      eta_seconds: null, updated_at: null, version: 0, poll_after_ms: null,
    });
    assert.deepEqual(reported, [unknown(), final]);
    assert.equal(server.requestsTo(RECORD_PATH).length, 1);
  });

  it("goes on after a non-terminal DB record, and asks again only after unknownChecks more UNKNOWNs", async () => {
    server.script(PROGRESS_PATH, [
      ok(unknown()), ok(unknown()), ok(unknown()), ok(unknown()), ok(unknown()), ok(progress("SUCCESS", 3)),
    ]);
    server.script(RECORD_PATH, [{ body: dbRecord("RUNNING", { percent: 20, finished_at: null }) }, failure(503, "down")]);
    const { result } = watch({ unknownChecks: 2, backoff: 1.2 });
    assert.equal((await result).state, "SUCCESS");
    const P = PROGRESS_PATH;
    const D = RECORD_PATH;
    assert.deepEqual(server.requests.map((request) => request.path), [P, P, D, P, P, D, P, P]);
    // The UNKNOWN's own delay follows the DB look: quiet kept growing through it.
    const third = server.requests[3].at - server.requests[2].at;
    assert.ok(third >= 20 * 1.2 ** 2 - 3, `after the DB look: ${third} ms`);
  });

  it("ends with AuthError on 401, without retrying", async () => {
    server.script(PROGRESS_PATH, [failure(401, "invalid_token")]);
    const error = await watch().result.then(() => assert.fail("resolved"), (e) => e);
    assert.ok(error instanceof AuthError);
    assert.equal(error.name, "AuthError");
    assert.equal(error.status, 401);
    assert.equal(error.code, "invalid_token");
    await sleep(80);
    assert.equal(server.requests.length, 1);
  });

  it("ends with AuthError on 403", async () => {
    server.script(PROGRESS_PATH, [{ status: 403, body: "forbidden" }]);
    const error = await watch().result.then(() => assert.fail("resolved"), (e) => e);
    assert.ok(error instanceof AuthError);
    assert.equal(error.code, "http_403", "a body that is not the contract's still gives a code");
  });

  it("ends with HTTPError on another 4xx", async () => {
    server.script(PROGRESS_PATH, [failure(400, "malformed_request")]);
    const error = await watch().result.then(() => assert.fail("resolved"), (e) => e);
    assert.ok(error instanceof HTTPError);
    assert.ok(!(error instanceof AuthError));
    assert.equal(error.status, 400);
    assert.equal(error.code, "malformed_request");
    assert.equal(error.message, "malformed_request message");
    assert.equal(error.url, server.url + PROGRESS_PATH);
    assert.equal(server.requests.length, 1);
  });

  it("rejects promptly with an AbortError when aborted mid-wait, and sends nothing more", async () => {
    const document = new FakeDocument();
    server.script(PROGRESS_PATH, [ok(progress("RUNNING", 1, { poll_after_ms: 1500 }))]);
    const controller = new AbortController();
    const { result, reported } = watch({ signal: controller.signal, document });
    await server.waitForRequests(1);
    await sleep(30);
    controller.abort();
    const elapsed = await settleTime(result);
    const error = await result.catch((e) => e);
    assert.ok(error instanceof DOMException);
    assert.equal(error.name, "AbortError");
    assert.ok(elapsed < 50, `rejected ${elapsed} ms after the abort`);
    assert.equal(reported.length, 1);
    assert.equal(document.listeners, 0, "the visibility listener is removed");
    await sleep(100);
    assert.equal(server.requests.length, 1);
  });

  it("rejects with the signal's own reason, also during a request", async () => {
    server.script(PROGRESS_PATH, [{ ...ok(progress("RUNNING", 1)), delayMs: 2000 }]);
    const controller = new AbortController();
    const { result } = watch({ signal: controller.signal });
    await server.waitForRequests(1);
    const reason = new Error("user left the page");
    controller.abort(reason);
    const elapsed = await settleTime(result);
    assert.equal(await result.catch((e) => e), reason);
    assert.ok(elapsed < 50, `rejected ${elapsed} ms after the abort`);
  });

  it("sends nothing for an already aborted signal", async () => {
    const { result } = watch({ signal: AbortSignal.abort() });
    assert.equal((await result.catch((e) => e)).name, "AbortError");
    assert.equal(server.requests.length, 0);
  });

  it("ends with DeadlineError when timeoutMs passes", async () => {
    server.script(PROGRESS_PATH, [ok(progress("RUNNING", 1, { poll_after_ms: 1500 }))]);
    const started = performance.now();
    const error = await watch({ timeoutMs: 120 }).result.catch((e) => e);
    const elapsed = performance.now() - started;
    assert.ok(error instanceof DeadlineError);
    assert.equal(error.timeoutMs, 120);
    assert.ok(elapsed >= 115 && elapsed < 400, `ended after ${elapsed} ms`);
    assert.equal(server.requests.length, 1);
  });

  it("cuts a request in flight at the deadline", async () => {
    server.script(PROGRESS_PATH, [{ ...ok(progress("RUNNING", 1)), delayMs: 2000 }]);
    const error = await watch({ timeoutMs: 60 }).result.catch((e) => e);
    assert.ok(error instanceof DeadlineError);
  });

  it("sends nothing while the page is hidden, and polls at once when it is shown", async () => {
    const document = new FakeDocument(true);
    server.script(PROGRESS_PATH, [
      ok(progress("RUNNING", 1, { poll_after_ms: 30 })), ok(progress("RUNNING", 2, { poll_after_ms: 1000 })),
      ok(progress("SUCCESS", 3)),
    ]);
    const { result } = watch({ document });
    await sleep(120);
    assert.equal(server.requests.length, 0, "hidden from the start: no request");
    let shownAt = performance.now();
    document.setHidden(false);
    await server.waitForRequests(1);
    assert.ok(server.requests[0].at - shownAt < 30, "shown: a request at once");
    document.setHidden(true);
    await sleep(150);
    assert.equal(server.requests.length, 1, "hidden again: the 30 ms delay passed but nothing was sent");
    shownAt = performance.now();
    document.setHidden(false);
    await server.waitForRequests(2);
    assert.ok(server.requests[1].at - shownAt < 30, "shown: a request at once");
    // Shown while waiting out a long delay (1000 ms): the page polls at once, not at the delay's end.
    await sleep(30);
    document.setHidden(true);
    document.setHidden(false);
    assert.equal((await result).state, "SUCCESS");
    assert.ok(server.requests[2].at - server.requests[1].at < 200);
    assert.equal(document.listeners, 0, "the visibility listener is removed");
  });

  it("never has two requests in flight, even when the page is shown during one", async () => {
    const document = new FakeDocument();
    server.script(PROGRESS_PATH, [
      { ...ok(progress("RUNNING", 1, { poll_after_ms: 40 })), delayMs: 150 }, ok(progress("SUCCESS", 2)),
    ]);
    const { result } = watch({ document });
    await server.waitForRequests(1);
    document.setHidden(true);
    document.setHidden(false);
    await sleep(20);
    document.setHidden(true);
    document.setHidden(false);
    await result;
    assert.equal(server.requests.length, 2);
    assert.equal(server.maxInFlight, 1);
    const second = server.requests[1].at - server.requests[0].at;
    assert.ok(second >= 150 + 40 - 3, `the second request waited for the first answer and its delay: ${second} ms`);
  });

  it("counts a recreated record (version back to 1) as new", async () => {
    server.script(PROGRESS_PATH, [
      ok(progress("RUNNING", 5)), ok(progress("RUNNING", 5)), ok(progress("RUNNING", 1)), ok(progress("SUCCESS", 2)),
    ]);
    const { result, reported } = watch();
    await result;
    assert.deepEqual(reported.map((record) => record.version), [5, 1, 2]);
    assert.deepEqual(server.requests.map((request) => request.headers["if-none-match"]), [undefined, '"5"', '"5"', '"1"']);
  });

  it("reports FALLBACK_TO_GPU as a passing state and ends on REVIEW_REQUIRED with error_reason intact", async () => {
    const reason = "Confidence 0.42 is under 0.80: a person must review the text.";
    server.script(PROGRESS_PATH, [
      ok(progress("RUNNING", 1, { kind: "ai_inference" })),
      ok(progress("FALLBACK_TO_GPU", 2, { kind: "ai_inference", percent: 0 })),
      ok(progress("RUNNING", 3, { kind: "ai_inference" })),
      ok(progress("REVIEW_REQUIRED", 4, { kind: "ai_inference", error_reason: reason })),
    ]);
    const { result, reported } = watch();
    const final = await result;
    assert.deepEqual(reported.map((record) => record.state), ["RUNNING", "FALLBACK_TO_GPU", "RUNNING", "REVIEW_REQUIRED"]);
    assert.equal(final.state, "REVIEW_REQUIRED");
    assert.equal(final.error_reason, reason);
    assert.equal(final.terminal, true);
  });

  it("ends on REJECTED_BAD_INPUT with error_reason intact", async () => {
    const reason = "The image is 8x8 pixels; at least 16x16 is needed.";
    server.script(PROGRESS_PATH, [ok(progress("REJECTED_BAD_INPUT", 2, { error_reason: reason }))]);
    const final = await watch().result;
    assert.equal(final.state, "REJECTED_BAD_INPUT");
    assert.equal(final.error_reason, reason);
  });

  it("keeps each jittered delay within [1 - jitter, 1 + jitter] of its base", async () => {
    const records = [1, 2, 3, 4, 5, 6, 7].map((version) => ok(progress("RUNNING", version, { poll_after_ms: 60 })));
    server.script(PROGRESS_PATH, [...records, ok(progress("SUCCESS", 8))]);
    await watch({ jitter: 0.5 }).result;
    for (const gap of gaps(server.requests)) {
      assert.ok(gap >= 30 - 3 && gap < 90 + 100, `a delay of ${gap} ms is outside 60 ms +- 50%`);
    }
  });

  it("draws the jitter from the random option", async () => {
    server.script(PROGRESS_PATH, [ok(progress("RUNNING", 1, { poll_after_ms: 100 })), ok(progress("SUCCESS", 2))]);
    await watch({ jitter: 0.5, random: () => 0 }).result;
    assertGap(gaps(server.requests)[0], 50, "random() = 0: the lowest factor");
  });

  it("clamps delays to [minIntervalMs, maxIntervalMs]", async () => {
    server.script(PROGRESS_PATH, [
      ok(progress("RUNNING", 1, { poll_after_ms: 0 })), ok(progress("RUNNING", 2, { poll_after_ms: 5000 })),
      ok(progress("SUCCESS", 3)),
    ]);
    await watch({ minIntervalMs: 40, maxIntervalMs: 90 }).result;
    const measured = gaps(server.requests);
    assertGap(measured[0], 40, "poll_after_ms 0 raised to minIntervalMs");
    assertGap(measured[1], 90, "poll_after_ms 5000 cut to maxIntervalMs");
  });

  it("sends headers from a function before each request; token wins for Authorization", async () => {
    server.script(PROGRESS_PATH, [ok(progress("RUNNING", 1)), ok(progress("SUCCESS", 2))]);
    let calls = 0;
    await watch({
      token: undefined,
      headers: async () => ({ authorization: `Session s${++calls}`, "x-tenant": "acme" }),
    }).result;
    assert.deepEqual(server.requests.map((request) => request.headers.authorization), ["Session s1", "Session s2"]);
    assert.equal(server.requests[0].headers["x-tenant"], "acme");
    server.requests.length = 0;
    server.script(PROGRESS_PATH, [ok(progress("SUCCESS", 2))]);
    await watch({ headers: { authorization: "Session x" } }).result;
    assert.equal(server.requests[0].headers.authorization, `Bearer ${TOKEN}`);
  });

  it("treats baseUrl as a prefix and takes absolute URLs as they are", async () => {
    const prefixed = `/api${PROGRESS_PATH}`;
    server.script(prefixed, [ok(progress("SUCCESS", 1))]);
    await watch({ baseUrl: `${server.url}/api/` }).result;
    await pollJob(server.url + prefixed, { token: TOKEN, document: null });
    assert.deepEqual(server.requests.map((request) => request.path), [prefixed, prefixed]);
  });

  it("rejects a relative URL without baseUrl outside a browser, and a URL without progress/", async () => {
    await assert.rejects(pollJob(PROGRESS_PATH, { document: null }), TypeError);
    await assert.rejects(pollJob(`${server.url}/jobs/x/`, { document: null }), TypeError);
    await assert.rejects(pollJob(PROGRESS_PATH, { baseUrl: server.url, backoff: 0.5 }), RangeError);
    assert.equal(server.requests.length, 0);
  });

  it("ends with the error onProgress throws", async () => {
    server.script(PROGRESS_PATH, [ok(progress("RUNNING", 1))]);
    const boom = new Error("render failed");
    const error = await watch({ onProgress: () => { throw boom; } }).result.catch((e) => e);
    assert.equal(error, boom);
  });
});

describe("pollExcelJob and pollVideoJob", () => {
  it("poll the job and the video progress routes, with the DB records beside them", async () => {
    server.script(PROGRESS_PATH, [ok(progress("SUCCESS", 1))]);
    const videoPath = `/media/videos/${VIDEO_ID}/progress/`;
    server.script(videoPath, [ok(unknown())]);
    server.script(`/media/videos/${VIDEO_ID}/`, [{ body: dbRecord("READY", { id: VIDEO_ID, kind: "video" }) }]);
    const options = { baseUrl: server.url, token: TOKEN, document: null, ...FAST, unknownChecks: 1 };
    assert.equal((await pollExcelJob(JOB_ID, options)).state, "SUCCESS");
    const video = await pollVideoJob(VIDEO_ID, options);
    assert.equal(video.state, "READY");
    assert.equal(video.kind, "video");
    assert.deepEqual(server.requests.map((request) => request.path), [
      PROGRESS_PATH, videoPath, `/media/videos/${VIDEO_ID}/`,
    ]);
  });

  it("encode the id and refuse an empty one", async () => {
    server.script("/jobs/a%2Fb%3Fc/progress/", [ok(progress("SUCCESS", 1))]);
    await pollExcelJob("a/b?c", { baseUrl: server.url, document: null });
    assert.equal(server.requests[0].path, "/jobs/a%2Fb%3Fc/progress/");
    await assert.rejects(pollVideoJob("", { baseUrl: server.url }), TypeError);
  });
});
