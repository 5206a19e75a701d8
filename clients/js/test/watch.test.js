import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, it } from "node:test";

import { JOB_ID, PROGRESS_PATH, TOKEN, VIDEO_ID, failure, ok, progress, unknown } from "./fixtures.js";
import { ScriptedServer } from "./scripted-server.js";

const WATCH = fileURLToPath(new URL("../scripts/watch.mjs", import.meta.url));

/** @type {ScriptedServer} */
let server;

beforeEach(async () => {
  server = await ScriptedServer.start();
});

afterEach(async () => {
  await server.close();
});

/**
 * Runs watch.mjs and parses its JSON lines.
 *
 * @param {string[]} args
 * @returns {Promise<{code: number, events: any[], stderr: string}>}
 */
function watch(args) {
  return new Promise((resolve) => {
    execFile(process.execPath, [WATCH, ...args], { timeout: 10_000 }, (error, stdout, stderr) => {
      const code = error ? Number(error.code) : 0;
      const events = stdout.split("\n").filter(Boolean).map((line) => JSON.parse(line));
      resolve({ code, events, stderr });
    });
  });
}

describe("scripts/watch.mjs", () => {
  it("prints each progress record and the final one for --job, exit 0", async () => {
    server.script(PROGRESS_PATH, [ok(unknown()), ok(progress("RUNNING", 1)), ok(progress("SUCCESS", 2))]);
    const { code, events } = await watch([
      "--base-url", server.url, "--token", TOKEN, "--job", JOB_ID, "--min-interval-ms", "10",
    ]);
    assert.equal(code, 0);
    assert.deepEqual(events.map((event) => [event.event, event.record.state]), [
      ["progress", "UNKNOWN"], ["progress", "RUNNING"], ["progress", "SUCCESS"], ["done", "SUCCESS"],
    ]);
    assert.equal(server.requests[0].headers.authorization, `Bearer ${TOKEN}`);
  });

  it("asks the DB record after --unknown-checks UNKNOWNs for --video", async () => {
    server.script(`/media/videos/${VIDEO_ID}/progress/`, [ok(unknown(10))]);
    server.script(`/media/videos/${VIDEO_ID}/`, [failure(404, "not_found")]);
    const { code, events } = await watch([
      "--base-url", server.url, "--token", TOKEN, "--video", VIDEO_ID, "--unknown-checks", "2", "--min-interval-ms", "10",
    ]);
    assert.equal(code, 1);
    assert.deepEqual(events.at(-1), {
      event: "error", name: "NotFoundError", message: "not_found message", status: 404, code: "not_found",
      statuses: { 200: 2, 404: 1 },
    });
    assert.equal(server.requests.length, 3);
  });

  it("follows several jobs with --batch", async () => {
    server.script("POST /progress/batch/", (request, index) => {
      const state = index === 0 ? "RUNNING" : "SUCCESS";
      /** @type {string[]} */
      const ids = request.json.ids;
      return { body: { items: Object.fromEntries(ids.map((id) => [id, progress(state, index + 1, { id })])) } };
    });
    const { code, events } = await watch([
      "--base-url", server.url, "--token", TOKEN, "--batch", "a,b", "--min-interval-ms", "10",
    ]);
    assert.equal(code, 0);
    assert.deepEqual(events.slice(0, 4).map((event) => `${event.event}:${event.id}:${event.record.state}`), [
      "progress:a:RUNNING", "progress:b:RUNNING", "progress:a:SUCCESS", "progress:b:SUCCESS",
    ]);
    assert.equal(events[4].event, "done");
    assert.deepEqual(events[4].statuses, { 200: 2 });
    assert.deepEqual(Object.keys(events[4].records), ["a", "b"]);
    assert.equal(events[4].records.b.state, "SUCCESS");
  });

  it("prints an error event and exits 1 on 401", async () => {
    server.script(PROGRESS_PATH, [failure(401, "invalid_token")]);
    const { code, events } = await watch(["--base-url", server.url, "--token", "bad", "--job", JOB_ID]);
    assert.equal(code, 1);
    assert.deepEqual(events, [
      {
        event: "error", name: "AuthError", message: "invalid_token message", status: 401, code: "invalid_token",
        statuses: { 401: 1 },
      },
    ]);
  });

  it("exits 2 on bad usage", async () => {
    const { code, events, stderr } = await watch(["--base-url", server.url, "--job", "a", "--video", "b"]);
    assert.equal(code, 2);
    assert.deepEqual(events, []);
    assert.match(stderr, /usage/);
  });
});
