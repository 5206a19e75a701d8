/**
 * The errors a poll ends with. Everything the client raises on its own derives from one root:
 *
 * ```
 * Error
 *  └─ JobpulseError            any failure this client reports
 *      ├─ HTTPError            an answer that retrying cannot fix: a 4xx other than 429 (status, code)
 *      │   ├─ AuthError        401 or 403: the token is missing, expired, forged or not allowed
 *      │   └─ NotFoundError    404 from the DB-backed record after repeated UNKNOWN answers
 *      └─ DeadlineError        `timeoutMs` passed before the job reached a terminal state
 * ```
 *
 * An abort through the caller's `AbortSignal` (or a batch poller's `stop()`) is not a JobpulseError: the
 * poll rejects with the signal's reason, an `AbortError` DOMException unless the caller chose another.
 * Network errors, 429 and 5xx answers are never raised: they are retried (docs/clients.md, rule 4).
 *
 * @module
 */

/** The root of every error this client raises, so one `instanceof` check catches them all. */
export class JobpulseError extends Error {
  /**
   * @param {string} message
   * @param {ErrorOptions} [options]
   */
  constructor(message, options) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An HTTP answer the poll cannot go past; `code` and `message` come from the error body when it has one. */
export class HTTPError extends JobpulseError {
  /**
   * @param {number} status the HTTP status code
   * @param {string} code the contract's snake_case error code (`http_<status>` when the body had none)
   * @param {string} message the human text of the error body
   * @param {string} url the URL that answered
   */
  constructor(status, code, message, url) {
    super(message);
    /** @readonly */
    this.status = status;
    /** @readonly */
    this.code = code;
    /** @readonly */
    this.url = url;
  }
}

/** 401 or 403: retrying with the same credentials would fail again. */
export class AuthError extends HTTPError {}

/** The DB-backed record answered 404: the job never existed, or belongs to someone else. */
export class NotFoundError extends HTTPError {}

/** The poll's `timeoutMs` passed before the job reached a terminal state. */
export class DeadlineError extends JobpulseError {
  /** @param {number} timeoutMs the deadline the poll was given */
  constructor(timeoutMs) {
    super(`no terminal state within ${timeoutMs} ms`);
    /** @readonly */
    this.timeoutMs = timeoutMs;
  }
}

/**
 * The reason a stop or removal rejects with: what `AbortController.abort()` would give.
 *
 * @param {string} message
 * @returns {DOMException}
 */
export function abortError(message) {
  return new DOMException(message, "AbortError");
}
