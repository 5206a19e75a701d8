/**
 * When a poller may send its next request: after its delay, never while the page is hidden, at once when
 * the page is shown again, and never after the caller aborted or the deadline passed.
 *
 * @module
 */

import { DeadlineError } from "./errors.js";

/**
 * The part of `document` a pacer watches; any EventTarget with a `hidden` flag will do.
 *
 * @typedef {object} VisibilitySource
 * @property {boolean} hidden
 * @property {(type: "visibilitychange", listener: () => void) => void} addEventListener
 * @property {(type: "visibilitychange", listener: () => void) => void} removeEventListener
 */

/**
 * @typedef {object} PacerOptions
 * @property {AbortSignal} [signal] the caller's: aborting it ends the poll with its reason
 * @property {number} [timeoutMs] the poll ends with a DeadlineError after this long
 * @property {VisibilitySource | null} [document] `globalThis.document` when undefined; null turns
 *   visibility handling off
 */

// setTimeout fires at once for delays past 2^31 - 1 ms; longer waits are cut to this (about 24.8 days).
const MAX_TIMER_MS = 2 ** 31 - 1;

/** One poll's clock: its waits, its visibility handling and its end (caller abort or deadline). */
export class Pacer {
  #controller = new AbortController();
  /** @type {VisibilitySource | undefined} */
  #document;
  /** @type {AbortSignal | undefined} */
  #callerSignal;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #deadline;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #timer;
  /** @type {number} */
  #wakeAt = Infinity;
  /** @type {(() => void) | null} ends the current wait early */
  #wake = null;

  #onCallerAbort = () => this.abort(this.#callerSignal?.reason);

  #onVisibilityChange = () => {
    if (this.#document && !this.#document.hidden) this.hurry(0);
  };

  /** @param {PacerOptions} [options] */
  constructor(options = {}) {
    const { signal, timeoutMs } = options;
    if (timeoutMs !== undefined && !(timeoutMs >= 0)) throw new RangeError("timeoutMs must be a number >= 0");
    const document = options.document === undefined ? globalThis.document : options.document;
    if (signal?.aborted) {
      this.abort(signal.reason);
      return;
    }
    if (signal) {
      this.#callerSignal = signal;
      signal.addEventListener("abort", this.#onCallerAbort);
    }
    if (timeoutMs !== undefined && timeoutMs <= MAX_TIMER_MS) {
      this.#deadline = setTimeout(() => this.abort(new DeadlineError(timeoutMs)), timeoutMs);
    }
    if (document) {
      this.#document = document;
      document.addEventListener("visibilitychange", this.#onVisibilityChange);
    }
  }

  /** Aborted when the poll must end; pass it to every request so an abort cuts the request short. */
  get signal() {
    return this.#controller.signal;
  }

  /**
   * Waits `delayMs`, then for as long as the page is hidden. A page shown again ends the wait at once.
   *
   * @param {number} delayMs
   * @returns {Promise<void>}
   * @throws {unknown} the abort reason (the caller's, or a DeadlineError) once the poll must end
   */
  async ready(delayMs) {
    if (delayMs > 0) await this.#sleep(delayMs);
    while (this.#document?.hidden) await this.#sleep(Infinity);
    this.signal.throwIfAborted();
  }

  /**
   * Ends the current wait within `withinMs` if it would last longer (a new job for a batch, a page shown).
   *
   * @param {number} withinMs
   */
  hurry(withinMs) {
    if (this.#wake === null || performance.now() + withinMs >= this.#wakeAt) return;
    const wake = this.#wake;
    clearTimeout(this.#timer);
    this.#wakeAt = performance.now() + withinMs;
    this.#timer = setTimeout(wake, withinMs);
  }

  /**
   * Ends the poll: the current wait and request reject with `reason`.
   *
   * @param {unknown} reason
   */
  abort(reason) {
    this.#controller.abort(reason);
  }

  /** Drops every timer and listener; call it on every exit path. */
  close() {
    clearTimeout(this.#deadline);
    clearTimeout(this.#timer);
    this.#wake = null;
    this.#callerSignal?.removeEventListener("abort", this.#onCallerAbort);
    this.#document?.removeEventListener("visibilitychange", this.#onVisibilityChange);
  }

  /**
   * @param {number} ms Infinity waits for a wake-up only
   * @returns {Promise<void>}
   */
  #sleep(ms) {
    const signal = this.signal;
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(signal.reason);
        return;
      }
      const done = () => {
        clearTimeout(this.#timer);
        signal.removeEventListener("abort", onAbort);
        this.#wake = null;
        this.#wakeAt = Infinity;
      };
      const onAbort = () => {
        done();
        reject(signal.reason);
      };
      this.#wake = () => {
        done();
        resolve();
      };
      signal.addEventListener("abort", onAbort);
      this.#wakeAt = performance.now() + ms;
      if (ms !== Infinity) this.#timer = setTimeout(this.#wake, Math.min(ms, MAX_TIMER_MS));
    });
  }
}
