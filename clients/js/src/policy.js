/**
 * The delay rules of the polling policy (docs/clients.md), as pure functions and one small class, so
 * they can be tested without a server. The poller decides which rule applies; this module says how long
 * to wait.
 *
 * @module
 */

/**
 * @typedef {object} PolicyOptions
 * @property {number} [minIntervalMs] no delay is shorter (a Retry-After excepted); default 250
 * @property {number} [maxIntervalMs] no delay is longer (a Retry-After excepted); default 30000
 * @property {number} [backoff] growth factor per answer that brought nothing new; default 1.5
 * @property {number} [jitter] each delay is multiplied by a uniform factor in [1 - jitter, 1 + jitter]; default 0.1
 * @property {number} [unknownChecks] consecutive UNKNOWN answers before the DB record is asked once; default 5
 * @property {number} [errorDelayMs] first delay after a network error or a 5xx without Retry-After; default 1000
 */

/** @typedef {Readonly<Required<PolicyOptions>>} Policy */

/** The defaults of docs/clients.md, shared with the Python client. */
export const DEFAULT_POLICY = /** @type {Policy} */ (
  Object.freeze({
    minIntervalMs: 250,
    maxIntervalMs: 30_000,
    backoff: 1.5,
    jitter: 0.1,
    unknownChecks: 5,
    errorDelayMs: 1_000,
  })
);

/** The `hint` a poller starts with, before the server has given it a `poll_after_ms`. */
export const INITIAL_HINT_MS = 1_000;

/**
 * Fills in the defaults and rejects values that would break the rules (a delay of zero or less, a backoff
 * that shrinks, a jitter that could make a delay zero); the Python client accepts the same ranges.
 *
 * @param {PolicyOptions} [options]
 * @returns {Policy}
 * @throws {RangeError} on a value out of range
 */
export function resolvePolicy(options = {}) {
  /** @param {keyof PolicyOptions} name */
  const pick = (name) => {
    const value = options[name] ?? DEFAULT_POLICY[name];
    if (typeof value !== "number" || Number.isNaN(value)) {
      throw new RangeError(`${name} must be a number, got ${String(value)}`);
    }
    return value;
  };
  const policy = {
    minIntervalMs: pick("minIntervalMs"),
    maxIntervalMs: pick("maxIntervalMs"),
    backoff: pick("backoff"),
    jitter: pick("jitter"),
    unknownChecks: pick("unknownChecks"),
    errorDelayMs: pick("errorDelayMs"),
  };
  if (!(policy.minIntervalMs > 0) || !Number.isFinite(policy.minIntervalMs)) {
    throw new RangeError("minIntervalMs must be a finite number > 0");
  }
  if (policy.maxIntervalMs < policy.minIntervalMs) {
    throw new RangeError("maxIntervalMs must be >= minIntervalMs");
  }
  if (policy.backoff < 1 || !Number.isFinite(policy.backoff)) {
    throw new RangeError("backoff must be a finite number >= 1");
  }
  if (policy.jitter < 0 || policy.jitter >= 1) {
    throw new RangeError("jitter must be in [0, 1)");
  }
  if (!Number.isInteger(policy.unknownChecks) || policy.unknownChecks < 1) {
    throw new RangeError("unknownChecks must be an integer >= 1");
  }
  if (!(policy.errorDelayMs > 0) || !Number.isFinite(policy.errorDelayMs)) {
    throw new RangeError("errorDelayMs must be a finite number > 0");
  }
  return Object.freeze(policy);
}

/**
 * `delayMs` times a uniform factor in [1 - jitter, 1 + jitter), so that many pollers started together
 * drift apart instead of hitting the server in step.
 *
 * @param {number} delayMs
 * @param {number} jitter
 * @param {() => number} [random] a uniform number in [0, 1); Math.random by default
 * @returns {number}
 */
export function jittered(delayMs, jitter, random = Math.random) {
  return delayMs * (1 - jitter + 2 * jitter * random());
}

/**
 * `delayMs` kept within [minMs, maxMs].
 *
 * @param {number} delayMs
 * @param {number} minMs
 * @param {number} maxMs
 * @returns {number}
 */
export function clamp(delayMs, minMs, maxMs) {
  return Math.min(maxMs, Math.max(minMs, delayMs));
}

/**
 * A `Retry-After` header value in milliseconds: delta-seconds or an HTTP date (RFC 9110, section 10.2.3).
 * A date in the past gives 0.
 *
 * @param {string | null | undefined} value the header value
 * @param {number} [nowMs] the current time, epoch milliseconds
 * @returns {number | null} null when the header is absent or unreadable
 */
export function parseRetryAfter(value, nowMs = Date.now()) {
  if (value == null) return null;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // Only something shaped like an HTTP date: Date.parse also reads bare numbers like "1.5" as years.
  if (!/[a-z]/i.test(text)) return null;
  const at = Date.parse(text);
  return Number.isNaN(at) ? null : Math.max(0, at - nowMs);
}

/** A resolved policy plus its random source: turns the poller's counters into the next delay. */
export class PollPolicy {
  /**
   * @param {PolicyOptions} [options]
   * @param {() => number} [random] a uniform number in [0, 1); Math.random by default
   */
  constructor(options, random = Math.random) {
    /** @readonly */
    this.options = resolvePolicy(options);
    /** @readonly */
    this.random = random;
  }

  /**
   * Any delay but a Retry-After: jittered, then clamped to [minIntervalMs, maxIntervalMs].
   *
   * @param {number} delayMs
   * @returns {number}
   */
  delay(delayMs) {
    const { jitter, minIntervalMs, maxIntervalMs } = this.options;
    return clamp(jittered(delayMs, jitter, this.random), minIntervalMs, maxIntervalMs);
  }

  /**
   * Rules 2 and 3: the delay after `quiet` consecutive answers that brought nothing new.
   *
   * @param {number} hintMs the last `poll_after_ms` given
   * @param {number} quiet
   * @returns {number}
   */
  quietDelay(hintMs, quiet) {
    return this.delay(hintMs * this.options.backoff ** quiet);
  }

  /**
   * Rule 4: the delay after `errors` consecutive failed requests; a Retry-After wins and is used as is.
   *
   * @param {number} errors at least 1
   * @param {number | null} retryAfterMs
   * @returns {number}
   */
  errorDelay(errors, retryAfterMs) {
    if (retryAfterMs !== null) return retryAfterMs;
    return this.delay(this.options.errorDelayMs * 2 ** (errors - 1));
  }
}
