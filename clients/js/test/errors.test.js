import assert from "node:assert/strict";
import { describe, it } from "node:test";

import * as client from "../src/index.js";
import { AuthError, DeadlineError, HTTPError, JobpulseError, NotFoundError } from "../src/index.js";

describe("errors", () => {
  it("derive from one root, as the tree in errors.js draws", () => {
    const auth = new AuthError(401, "invalid_token", "bad token", "http://x/jobs/1/progress/");
    const missing = new NotFoundError(404, "not_found", "no such job", "http://x/jobs/1/");
    const deadline = new DeadlineError(500);
    for (const error of [auth, missing, deadline]) {
      assert.ok(error instanceof JobpulseError);
      assert.ok(error instanceof Error);
    }
    assert.ok(auth instanceof HTTPError && missing instanceof HTTPError);
    assert.ok(!(deadline instanceof HTTPError));
    assert.deepEqual([auth.name, missing.name, deadline.name], ["AuthError", "NotFoundError", "DeadlineError"]);
    assert.deepEqual([auth.status, auth.code, auth.message], [401, "invalid_token", "bad token"]);
    assert.equal(deadline.timeoutMs, 500);
  });

  it("are exported with everything public, and the hook is not", () => {
    assert.deepEqual(Object.keys(client).sort(), [
      "AuthError", "BATCH_LIMIT", "DEFAULT_POLICY", "DeadlineError", "HTTPError", "INITIAL_HINT_MS", "JobpulseError",
      "NotFoundError", "PollPolicy", "TERMINAL_STATES", "clamp", "createBatchPoller", "isTerminal", "jittered",
      "parseRetryAfter", "pollExcelJob", "pollJob", "pollVideoJob", "resolvePolicy",
    ]);
  });
});
