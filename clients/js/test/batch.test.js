import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";

import { BATCH_LIMIT, createBatchPoller } from "../src/batch.js";
import { AuthError, HTTPError } from "../src/errors.js";
import { FAST, FakeDocument, TOKEN, failure, gaps, progress, sleep, unknown } from "./fixtures.js";
import { ScriptedServer } from "./scripted-server.js";

/** @import { BatchOptions } from "../src/batch.js" */
/** @import { ProgressRecord, State } from "../src/record.js" */
/** @import { Reply, SeenRequest } from "./scripted-server.js" */

const BATCH_PATH = "/progress/batch/";

/** @type {ScriptedServer} */
let server;
/** @type {import("../src/batch.js").BatchPoller[]} stopped after each test, failed ones included */
let pollers = [];

beforeEach(async () => {
  server = await ScriptedServer.start();
});

afterEach(async () => {
  for (const poller of pollers) poller.stop();
  pollers = [];
  await server.close();
});

/**
 * Creates a batch poller on the test server, recording what onProgress got.
 *
 * @param {BatchOptions} [options]
 */
function batchPoller(options = {}) {
  /** @type {[string, ProgressRecord][]} */
  const reported = [];
  const poller = createBatchPoller({
    baseUrl: server.url,
    token: TOKEN,
    document: null,
    ...FAST,
    onProgress: (id, record) => reported.push([id, record]),
    ...options,
  });
  pollers.push(poller);
  return { poller, reported };
}

/**
 * A batch answer built from a function of (id, tick number).
 *
 * @param {(id: string, tick: number) => ProgressRecord} itemFor
 * @returns {(request: SeenRequest) => Reply}
 */
function answerWith(itemFor) {
  /** @type {Map<string, number>} */
  const ticks = new Map();
  return (request) => {
    /** @type {string[]} */
    const ids = request.json.ids;
    /** @type {Record<string, ProgressRecord>} */
    const items = {};
    for (const id of ids) {
      const tick = ticks.get(id) ?? 0;
      ticks.set(id, tick + 1);
      items[id] = { ...itemFor(id, tick), id };
    }
    return { body: { items } };
  };
}

/**
 * @param {State[]} states the state of each tick; the last one repeats
 * @returns {(id: string, tick: number) => ProgressRecord}
 */
function states(...states) {
  return (_id, tick) => {
    const state = states[Math.min(tick, states.length - 1)];
    return progress(state, states.indexOf(state) + 1);
  };
}

describe("createBatchPoller", () => {
  it("sends one POST per tick with every pending id, and drops an id once it is terminal", async () => {
    /** @type {Record<string, (id: string, tick: number) => ProgressRecord>} */
    const plans = {
      a: states("RUNNING", "SUCCESS"),
      b: states("RUNNING", "RUNNING", "RUNNING", "FAILED"),
      c: states("PENDING", "RUNNING", "READY"),
    };
    server.script(`POST ${BATCH_PATH}`, answerWith((id, tick) => plans[id](id, tick)));
    const { poller, reported } = batchPoller();
    const results = Promise.all(["a", "b", "c"].map((id) => poller.add(id)));
    assert.equal(poller.size, 3);
    const [a, b, c] = await results;
    assert.deepEqual([a.state, b.state, c.state], ["SUCCESS", "FAILED", "READY"]);
    assert.equal(poller.size, 0);
    const bodies = server.requests.map((request) => request.json);
    assert.deepEqual(bodies, [
      { ids: ["a", "b", "c"] }, { ids: ["a", "b", "c"] }, { ids: ["b", "c"] }, { ids: ["b"] },
    ]);
    for (const request of server.requests) {
      assert.equal(request.method, "POST");
      assert.equal(request.headers.authorization, `Bearer ${TOKEN}`);
      assert.equal(request.headers["content-type"], "application/json");
    }
    assert.deepEqual(
      reported.map(([id, record]) => `${id}:${record.state}`),
      ["a:RUNNING", "b:RUNNING", "c:PENDING", "a:SUCCESS", "c:RUNNING", "c:READY", "b:FAILED"],
    );
    await sleep(60);
    assert.equal(server.requests.length, 4, "no tick while no job is watched");
  });

  it("hands each item's details to onProgress and its promise", async () => {
    const details = { file: "people.csv", counts: { valid: 2 } };
    server.script(`POST ${BATCH_PATH}`, answerWith((id, tick) => (
      id === "a" ? progress(tick === 0 ? "RUNNING" : "SUCCESS", tick + 1, { details }) : progress("SUCCESS", 1)
    )));
    const { poller, reported } = batchPoller();
    const [a, b] = await Promise.all([poller.add("a"), poller.add("b")]);
    assert.deepEqual(a.details, details);
    assert.equal(b.details, null);
    assert.deepEqual(reported.filter(([id]) => id === "a").map(([, record]) => record.details), [details, details]);
  });

  it("splits more than 500 ids into chunks of 500, one request each, in sequence", async () => {
    server.script(`POST ${BATCH_PATH}`, answerWith(states("RUNNING", "SUCCESS")));
    const { poller } = batchPoller({ onProgress: undefined });
    const ids = Array.from({ length: 1203 }, (_, index) => `job-${index}`);
    const records = await Promise.all(ids.map((id) => poller.add(id)));
    assert.ok(records.every((record) => record.state === "SUCCESS"));
    const sizes = server.requests.map((request) => request.json.ids.length);
    assert.deepEqual(sizes, [BATCH_LIMIT, BATCH_LIMIT, 203, BATCH_LIMIT, BATCH_LIMIT, 203]);
    assert.deepEqual(server.requests.slice(0, 3).flatMap((request) => request.json.ids), ids);
    assert.equal(server.maxInFlight, 1);
  });

  it("waits the smallest poll_after_ms times backoff ** quiet, quiet counting ticks without change", async () => {
    server.script(`POST ${BATCH_PATH}`, answerWith((id, tick) => {
      if (tick === 4) return progress("SUCCESS", 2);
      return progress("RUNNING", 1, { poll_after_ms: id === "fast" ? 20 : 500 });
    }));
    const { poller } = batchPoller({ backoff: 2 });
    await Promise.all([poller.add("fast"), poller.add("slow")]);
    const measured = gaps(server.requests);
    const expected = [20, 40, 80, 160];
    measured.forEach((gap, index) => {
      const what = `tick ${index + 1}: ${gap} ms, expected ${expected[index]}`;
      assert.ok(gap >= expected[index] - 3 && gap < expected[index] + 150, what);
    });
  });

  it("keeps polling UNKNOWN items without asking any DB record", async () => {
    server.script(`POST ${BATCH_PATH}`, answerWith((_id, tick) => (tick < 4 ? unknown(10) : progress("CANCELLED", 3))));
    const { poller, reported } = batchPoller({ backoff: 1 });
    assert.equal((await poller.add("x")).state, "CANCELLED");
    assert.deepEqual(reported.map(([, record]) => record.state), ["UNKNOWN", "CANCELLED"]);
    assert.ok(server.requests.every((request) => request.path === BATCH_PATH));
  });

  it("retries network errors and 503 with the error delay and Retry-After", async () => {
    const good = answerWith(states("SUCCESS"));
    server.script(`POST ${BATCH_PATH}`, (request, index) => {
      if (index === 0) return { drop: true };
      if (index === 1) return failure(503, "redis_unavailable", { "retry-after": "0" });
      if (index === 2) return failure(502, "bad_gateway");
      return good(request);
    });
    const { poller } = batchPoller();
    assert.equal((await poller.add("a")).state, "SUCCESS");
    const measured = gaps(server.requests);
    assert.equal(measured.length, 3);
    assert.ok(measured[0] >= 17, `error delay after the 1st failure: ${measured[0]} ms`);
    assert.ok(measured[1] < 15, `Retry-After: 0 taken as is: ${measured[1]} ms`);
    assert.ok(measured[2] >= 77, `error delay after the 3rd failure: ${measured[2]} ms`);
  });

  it("rejects only the id whose onProgress threw", async () => {
    server.script(`POST ${BATCH_PATH}`, answerWith(states("RUNNING", "SUCCESS")));
    const boom = new Error("row missing");
    const { poller } = batchPoller({
      onProgress: (id) => {
        if (id === "a") throw boom;
      },
    });
    const [a, b] = await Promise.allSettled([poller.add("a"), poller.add("b")]);
    assert.deepEqual(a, { status: "rejected", reason: boom });
    assert.equal(b.status === "fulfilled" && b.value.state, "SUCCESS");
    assert.deepEqual(server.requests.map((request) => request.json.ids), [["a", "b"], ["b"]]);
  });

  it("rejects every pending promise with AuthError on 401, tells onError, and stops", async () => {
    server.script(`POST ${BATCH_PATH}`, [failure(401, "expired_token")]);
    /** @type {Error[]} */
    const errors = [];
    const { poller } = batchPoller({ onError: (error) => errors.push(error) });
    const results = await Promise.allSettled([poller.add("a"), poller.add("b")]);
    for (const result of results) {
      assert.equal(result.status, "rejected");
      assert.ok(result.reason instanceof AuthError);
      assert.equal(result.reason.code, "expired_token");
    }
    assert.equal(errors.length, 1);
    assert.equal(poller.size, 0);
    await assert.rejects(poller.add("c"), AuthError);
    await sleep(50);
    assert.equal(server.requests.length, 1);
  });

  it("rejects every pending promise with HTTPError on a 422", async () => {
    server.script(`POST ${BATCH_PATH}`, [failure(422, "invalid_ids")]);
    const { poller } = batchPoller();
    const error = await poller.add("a").catch((e) => e);
    assert.ok(error instanceof HTTPError && !(error instanceof AuthError));
    assert.equal(error.status, 422);
  });

  it("rejects pending promises with an AbortError on stop(), mid-request, and sends nothing more", async () => {
    server.script(`POST ${BATCH_PATH}`, [{ body: { items: {} }, delayMs: 300 }]);
    const document = new FakeDocument();
    const { poller } = batchPoller({ document });
    const pending = [poller.add("a"), poller.add("b")];
    await server.waitForRequests(1);
    poller.stop();
    for (const result of await Promise.allSettled(pending)) {
      assert.equal(result.status, "rejected");
      assert.equal(result.reason.name, "AbortError");
    }
    assert.equal(poller.size, 0);
    assert.equal((await poller.add("c").catch((e) => e)).name, "AbortError");
    await sleep(350);
    assert.equal(server.requests.length, 1);
    assert.equal(document.listeners, 0);
  });

  it("polls soon after an id is added to an idle poller, and goes idle when the last id is removed", async () => {
    server.script(`POST ${BATCH_PATH}`, answerWith(() => progress("RUNNING", 1, { poll_after_ms: 30 })));
    const document = new FakeDocument();
    const { poller } = batchPoller({ document, backoff: 1 });
    await sleep(40);
    assert.equal(server.requests.length, 0, "nothing to watch, nothing sent");
    const a = poller.add("a");
    assert.equal(poller.add("a"), a, "the same job gets the same promise");
    await server.waitForRequests(1);
    assert.ok(performance.now() - server.requests[0].at < 40);
    await server.waitForRequests(3);
    poller.remove("a");
    assert.equal((await a.catch((e) => e)).name, "AbortError");
    assert.equal(poller.size, 0);
    await sleep(20);
    assert.equal(document.listeners, 0, "an idle poller holds no listener");
    const seen = server.requests.length;
    await sleep(100);
    assert.equal(server.requests.length, seen, "an idle poller sends nothing");
    const b = poller.add("b");
    await server.waitForRequests(seen + 1);
    assert.deepEqual(server.requests.at(-1)?.json, { ids: ["b"] });
    poller.stop();
    await b.catch(() => {});
  });

  it("asks for an id added during the wait soon, not after the current long delay", async () => {
    server.script(`POST ${BATCH_PATH}`, answerWith(() => progress("RUNNING", 1, { poll_after_ms: 1500 })));
    const { poller } = batchPoller({ minIntervalMs: 50 });
    void poller.add("a");
    await server.waitForRequests(1);
    await sleep(80);
    void poller.add("b");
    await server.waitForRequests(2);
    const gap = server.requests[1].at - server.requests[0].at;
    assert.ok(gap >= 80 && gap < 250, `the new id was asked ${gap} ms after the first tick (delay 1500)`);
    assert.deepEqual(server.requests[1].json, { ids: ["a", "b"] });
  });

  it("asks for an id added during a request soon after its answer, minIntervalMs apart", async () => {
    const answer = answerWith(() => progress("RUNNING", 1, { poll_after_ms: 1500 }));
    server.script(`POST ${BATCH_PATH}`, (request, index) => ({
      ...answer(request),
      delayMs: index === 0 ? 100 : 0,
    }));
    const { poller } = batchPoller({ minIntervalMs: 50 });
    void poller.add("a");
    await server.waitForRequests(1);
    void poller.add("b");
    await server.waitForRequests(2);
    const gap = server.requests[1].at - server.requests[0].at;
    assert.ok(gap >= 100 + 50 - 3 && gap < 350, `the new id was asked ${gap} ms after the first request`);
    assert.deepEqual(server.requests[1].json, { ids: ["a", "b"] });
    assert.equal(server.maxInFlight, 1);
  });

  it("sends nothing while the page is hidden, and polls at once when it is shown", async () => {
    server.script(`POST ${BATCH_PATH}`, answerWith(states("RUNNING", "SUCCESS")));
    const document = new FakeDocument(true);
    const { poller } = batchPoller({ document });
    const result = poller.add("a");
    await sleep(80);
    assert.equal(server.requests.length, 0);
    document.setHidden(false);
    assert.equal((await result).state, "SUCCESS");
    assert.equal(server.requests.length, 2);
  });
});
