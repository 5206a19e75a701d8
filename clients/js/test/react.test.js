import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";

import * as React from "react";
import TestRenderer from "react-test-renderer";

import { AuthError } from "../src/errors.js";
import { useWorkerJobPoller } from "../src/react.js";
import { FAST, JOB_ID, PROGRESS_PATH, TOKEN, VIDEO_ID, failure, ok, progress, sleep, unknown } from "./fixtures.js";
import { ScriptedServer } from "./scripted-server.js";

/** @import { JobPollerState, HookOptions } from "../src/react.js" */
/** @import { PolicyOptions } from "../src/policy.js" */

Object.assign(globalThis, { IS_REACT_ACT_ENVIRONMENT: true });
const { act } = TestRenderer;
/** A concurrent root: React warns about updates outside act there (legacy roots warn only under Jest). */
const CONCURRENT = /** @type {TestRenderer.TestRendererOptions} */ (/** @type {unknown} */ ({ unstable_isConcurrent: true }));

/** @type {ScriptedServer} */
let server;
/** @type {unknown[][]} what React logged through console.error */
let consoleErrors = [];
const consoleError = console.error;

beforeEach(async () => {
  server = await ScriptedServer.start();
  consoleErrors = [];
  console.error = (...args) => consoleErrors.push(args);
});

afterEach(async () => {
  console.error = consoleError;
  await server.close();
  assert.deepEqual(consoleErrors, [], "React logged no warning or error");
});

/**
 * Renders a component that calls the hook with `props` and records every state it returned.
 *
 * @param {HookOptions & PolicyOptions} props
 */
async function renderProbe(props) {
  /** @type {JobPollerState[]} */
  const renders = [];
  /** @param {HookOptions & PolicyOptions} hookProps */
  function Probe(hookProps) {
    renders.push(useWorkerJobPoller(hookProps));
    return null;
  }
  /** @type {TestRenderer.ReactTestRenderer | undefined} */
  let renderer;
  await act(async () => {
    renderer = TestRenderer.create(React.createElement(Probe, props), CONCURRENT);
  });
  const root = /** @type {TestRenderer.ReactTestRenderer} */ (renderer);
  return {
    renders,
    /** @param {HookOptions & PolicyOptions} next */
    update: (next) => act(async () => root.update(React.createElement(Probe, next))),
    unmount: () => act(async () => root.unmount()),
    last: () => /** @type {JobPollerState} */ (renders.at(-1)),
  };
}

/**
 * Lets the poll run until `done` holds, in short act scopes: a concurrent root renders when a scope ends,
 * and every answer lands inside one (nothing but microtasks runs between two scopes).
 *
 * @param {() => boolean} done
 * @param {number} [timeoutMs]
 */
async function runUntil(done, timeoutMs = 3000) {
  const started = performance.now();
  while (!done()) {
    if (performance.now() - started > timeoutMs) throw new Error("timed out");
    await act(() => sleep(5));
  }
}

/** The hook's options for the test job on the test server. */
const base = () => ({
  kind: /** @type {const} */ ("spreadsheet_import"), id: JOB_ID, baseUrl: server.url, token: TOKEN, ...FAST,
});

describe("useWorkerJobPoller", () => {
  it("goes UNKNOWN, RUNNING, SUCCESS and ends with done", async () => {
    server.script(PROGRESS_PATH, [ok(unknown()), ok(unknown()), ok(progress("RUNNING", 1)), ok(progress("SUCCESS", 2))]);
    const probe = await renderProbe(base());
    assert.deepEqual(probe.renders[0], { progress: null, state: null, error: null, done: false });
    await runUntil(() => probe.last().done);
    const states = probe.renders.map((render) => render.state).filter((state, index, all) => state !== all[index - 1]);
    assert.deepEqual(states, [null, "UNKNOWN", "RUNNING", "SUCCESS"]);
    const final = probe.last();
    assert.equal(final.done, true);
    assert.equal(final.error, null);
    assert.equal(final.progress?.version, 2);
    assert.equal(server.requests[0].headers.authorization, `Bearer ${TOKEN}`);
    await probe.unmount();
  });

  it("aborts the poll on unmount: no request and no state update after it", async () => {
    server.script(PROGRESS_PATH, [
      ok(progress("RUNNING", 1, { poll_after_ms: 40 })), { ...ok(progress("RUNNING", 2)), delayMs: 80 },
    ]);
    const probe = await renderProbe(base());
    await runUntil(() => server.requests.length === 2);
    const rendersBefore = probe.renders.length;
    await probe.unmount();
    await sleep(250);
    assert.equal(server.requests.length, 2, "the answer in flight was dropped and nothing more was sent");
    assert.equal(probe.renders.length, rendersBefore);
    assert.equal(probe.renders.at(-1)?.error, null, "the abort is not reported as an error");
  });

  it("reports an AuthError as error, with done", async () => {
    server.script(PROGRESS_PATH, [failure(401, "invalid_token")]);
    const probe = await renderProbe(base());
    await runUntil(() => probe.last().done);
    assert.ok(probe.last().error instanceof AuthError);
    assert.equal(probe.last().progress, null);
    await probe.unmount();
  });

  it("restarts for another job and does not show the old job's record meanwhile", async () => {
    server.script(PROGRESS_PATH, [ok(progress("RUNNING", 1, { poll_after_ms: 1000 }))]);
    const videoPath = `/media/videos/${VIDEO_ID}/progress/`;
    server.script(videoPath, [ok(progress("READY", 3, { id: VIDEO_ID, kind: "video" }))]);
    const probe = await renderProbe(base());
    await runUntil(() => probe.last().state === "RUNNING");
    const rendersBefore = probe.renders.length;
    await probe.update({ ...base(), kind: "video", id: VIDEO_ID });
    assert.equal(probe.renders[rendersBefore].progress, null, "the first render for the video shows no record");
    await runUntil(() => probe.last().done);
    assert.equal(probe.last().state, "READY");
    assert.deepEqual(server.requests.map((request) => request.path), [PROGRESS_PATH, videoPath]);
    await probe.unmount();
  });

  it("restarts with a new token, keeping the record it has", async () => {
    server.script(PROGRESS_PATH, [ok(progress("RUNNING", 1, { poll_after_ms: 1000 }))]);
    const probe = await renderProbe(base());
    await runUntil(() => probe.last().state === "RUNNING");
    await probe.update({ ...base(), token: "fresh-token" });
    assert.equal(probe.last().state, "RUNNING");
    await runUntil(() => server.requests.length === 2);
    assert.equal(server.requests[1].headers.authorization, "Bearer fresh-token");
    await probe.unmount();
  });

  it("does not restart when re-rendered with equal options in new objects", async () => {
    server.script(PROGRESS_PATH, [ok(progress("RUNNING", 1, { poll_after_ms: 1000 }))]);
    const probe = await renderProbe({ ...base(), headers: { "x-tenant": "a" } });
    await runUntil(() => probe.last().state === "RUNNING");
    await probe.update({ ...base(), headers: { "x-tenant": "b" } });
    await act(() => sleep(60));
    assert.equal(server.requests.length, 1, "no new poll");
    await probe.unmount();
  });

  it("polls nothing while disabled or without an id", async () => {
    server.script(PROGRESS_PATH, [ok(progress("SUCCESS", 1))]);
    const probe = await renderProbe({ ...base(), enabled: false });
    await probe.update({ ...base(), id: null });
    await act(() => sleep(50));
    assert.equal(server.requests.length, 0);
    await probe.update(base());
    await runUntil(() => probe.last().done);
    assert.equal(probe.last().state, "SUCCESS");
    await probe.unmount();
  });
});
