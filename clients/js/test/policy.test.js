import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { DEFAULT_POLICY, INITIAL_HINT_MS, PollPolicy, clamp, jittered, parseRetryAfter, resolvePolicy } from "../src/policy.js";
import { TERMINAL_STATES, isNewRecord, isTerminal, progressFromDbRecord } from "../src/record.js";
import { dbRecord, progress } from "./fixtures.js";

describe("policy defaults", () => {
  it("are the ones of docs/clients.md", () => {
    assert.deepEqual({ ...DEFAULT_POLICY }, {
      minIntervalMs: 250, maxIntervalMs: 30_000, backoff: 1.5, jitter: 0.1, unknownChecks: 5, errorDelayMs: 1_000,
    });
    assert.equal(INITIAL_HINT_MS, 1_000);
    assert.deepEqual(resolvePolicy(), DEFAULT_POLICY);
    assert.deepEqual(resolvePolicy({ backoff: undefined, jitter: 0 }), { ...DEFAULT_POLICY, jitter: 0 });
  });

  it("refuse values that break the rules", () => {
    for (const bad of [
      { minIntervalMs: -1 }, { minIntervalMs: 0 }, { minIntervalMs: 500, maxIntervalMs: 100 }, { backoff: 0.9 },
      { jitter: 1 }, { jitter: 1.5 }, { jitter: -0.1 }, { errorDelayMs: 0 }, { errorDelayMs: -5 },
      { unknownChecks: 0 }, { unknownChecks: 2.5 }, { backoff: Number.NaN },
      { minIntervalMs: /** @type {any} */ ("250") },
    ]) {
      assert.throws(() => resolvePolicy(bad), RangeError, JSON.stringify(bad));
    }
  });
});

describe("jittered", () => {
  it("stays within [1 - jitter, 1 + jitter] times the delay", () => {
    assert.equal(jittered(1000, 0.1, () => 0), 900);
    assert.equal(jittered(1000, 0.1, () => 0.5), 1000);
    assert.ok(Math.abs(jittered(1000, 0.1, () => 0.999999) - 1100) < 0.001);
    assert.equal(jittered(1000, 0, () => 0.3), 1000);
    for (let i = 0; i < 1000; i += 1) {
      const delay = jittered(1000, 0.25);
      assert.ok(delay >= 750 && delay <= 1250, `${delay}`);
    }
  });
});

describe("clamp", () => {
  it("keeps a delay within bounds", () => {
    assert.equal(clamp(5, 250, 30_000), 250);
    assert.equal(clamp(1e9, 250, 30_000), 30_000);
    assert.equal(clamp(Infinity, 250, 30_000), 30_000);
    assert.equal(clamp(700, 250, 30_000), 700);
  });
});

describe("parseRetryAfter", () => {
  const now = Date.parse("2026-11-27T08:00:00Z");

  it("reads delta-seconds", () => {
    assert.equal(parseRetryAfter("1", now), 1000);
    assert.equal(parseRetryAfter(" 120 ", now), 120_000);
    assert.equal(parseRetryAfter("0", now), 0);
  });

  it("reads an HTTP date, a past one as 0", () => {
    assert.equal(parseRetryAfter("Fri, 27 Nov 2026 08:00:30 GMT", now), 30_000);
    assert.equal(parseRetryAfter("Fri, 27 Nov 2026 07:59:00 GMT", now), 0);
  });

  it("gives null for an absent or unreadable value", () => {
    for (const value of [null, undefined, "", "soon", "-1", "1.5", "in 5 s"]) {
      assert.equal(parseRetryAfter(value, now), null, String(value));
    }
  });
});

describe("PollPolicy", () => {
  const policy = new PollPolicy({ jitter: 0 });

  it("clamps the hint itself (rule 1)", () => {
    assert.equal(policy.delay(1000), 1000);
    assert.equal(policy.delay(10), 250);
    assert.equal(policy.delay(60_000), 30_000);
  });

  it("grows the hint by backoff ** quiet (rules 2 and 3)", () => {
    assert.equal(policy.quietDelay(1000, 0), 1000);
    assert.equal(policy.quietDelay(1000, 1), 1500);
    assert.equal(policy.quietDelay(1000, 2), 2250);
    assert.equal(policy.quietDelay(1000, 20), 30_000);
  });

  it("doubles the error delay, and takes a Retry-After as it is (rule 4)", () => {
    assert.deepEqual([1, 2, 3, 4].map((errors) => policy.errorDelay(errors, null)), [1000, 2000, 4000, 8000]);
    assert.equal(policy.errorDelay(40, null), 30_000);
    assert.equal(policy.errorDelay(1, 120_000), 120_000, "not clamped to maxIntervalMs");
    assert.equal(policy.errorDelay(3, 0), 0, "not raised to minIntervalMs");
  });

  it("jitters with the random source it was given, before clamping", () => {
    const low = new PollPolicy({ jitter: 0.2 }, () => 0);
    assert.equal(low.delay(1000), 800);
    assert.equal(low.delay(300), 250);
    const high = new PollPolicy({ jitter: 0.2 }, () => 0.5);
    assert.equal(high.errorDelay(2, null), 2000);
  });
});

describe("records", () => {
  it("know the terminal states", () => {
    assert.deepEqual([...TERMINAL_STATES].sort(), ["CANCELLED", "FAILED", "READY", "REJECTED_BAD_INPUT", "REVIEW_REQUIRED", "SUCCESS"]);
    assert.equal(isTerminal(progress("FALLBACK_TO_GPU", 1)), false);
    assert.equal(isTerminal({ state: "READY" }), true);
  });

  it("count a changed version or state as new", () => {
    assert.equal(isNewRecord(null, progress("RUNNING", 3)), true);
    assert.equal(isNewRecord(progress("RUNNING", 3), progress("RUNNING", 3)), false);
    assert.equal(isNewRecord(progress("RUNNING", 3), progress("RUNNING", 1)), true);
    assert.equal(isNewRecord(progress("RUNNING", 3), progress("FALLBACK_TO_GPU", 3)), true);
  });

  it("put a DB record in the progress shape", () => {
    const shaped = progressFromDbRecord(dbRecord("CANCELLED", { terminal: undefined, percent: 12.5 }));
    assert.deepEqual(Object.keys(shaped), [
      "id", "kind", "state", "terminal", "percent", "current", "total", "stage", "message", "error_reason",
      "details", "eta_seconds", "updated_at", "version", "poll_after_ms",
    ]);
    assert.equal(shaped.details, null);
    assert.equal(shaped.terminal, true);
    assert.equal(shaped.percent, 12.5);
    assert.equal(shaped.poll_after_ms, null);
  });
});
