/**
 * A real HTTP server on 127.0.0.1 that plays scripted answers per path and records every request it
 * gets, so the tests run the real client, over the real global fetch, against it.
 *
 * @module
 */

import { createServer } from "node:http";
import { performance } from "node:perf_hooks";

/**
 * One scripted answer.
 *
 * @typedef {object} Reply
 * @property {number} [status] default 200
 * @property {Record<string, string>} [headers]
 * @property {unknown} [body] a string is sent as is, anything else as JSON (with its content type)
 * @property {number} [delayMs] wait this long before answering
 * @property {boolean} [drop] destroy the connection without answering
 */

/**
 * A request the server got.
 *
 * @typedef {object} SeenRequest
 * @property {string} method
 * @property {string} path the path and query string
 * @property {import("node:http").IncomingHttpHeaders} headers lowercased names
 * @property {string} body
 * @property {any} json the body decoded, or undefined
 * @property {number} at arrival time, performance.now()
 */

/**
 * Answers for one route: played in order, the last one repeating; or a function of the request.
 *
 * @typedef {Reply[] | ((request: SeenRequest, index: number) => Reply)} Script
 */

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class ScriptedServer {
  /** @type {SeenRequest[]} every request, in arrival order */
  requests = [];
  /** the most requests that were being answered at the same time */
  maxInFlight = 0;
  #inFlight = 0;
  /** @type {Map<string, Script>} */
  #scripts = new Map();
  /** @type {Map<string, number>} */
  #played = new Map();
  #server = createServer((request, response) => this.#handle(request, response));
  url = "";

  /**
   * Starts a server on a free port.
   *
   * @returns {Promise<ScriptedServer>}
   */
  static async start() {
    const server = new ScriptedServer();
    await new Promise((resolve) => server.#server.listen(0, "127.0.0.1", () => resolve(undefined)));
    const address = /** @type {import("node:net").AddressInfo} */ (server.#server.address());
    server.url = `http://127.0.0.1:${address.port}`;
    return server;
  }

  /**
   * Sets the answers of a route: `"/path"` for any method, or `"POST /path"`.
   *
   * @param {string} route
   * @param {Script} script
   * @returns {this}
   */
  script(route, script) {
    this.#scripts.set(route, script);
    this.#played.set(route, 0);
    return this;
  }

  /**
   * The requests to one path (query string included).
   *
   * @param {string} path
   * @returns {SeenRequest[]}
   */
  requestsTo(path) {
    return this.requests.filter((request) => request.path === path);
  }

  /**
   * Resolves once the server has seen `count` requests (to `path` when given).
   *
   * @param {number} count
   * @param {string} [path]
   * @param {number} [timeoutMs]
   */
  async waitForRequests(count, path, timeoutMs = 5000) {
    const started = performance.now();
    const seen = () => (path === undefined ? this.requests : this.requestsTo(path)).length;
    while (seen() < count) {
      if (performance.now() - started > timeoutMs) throw new Error(`saw ${seen()} of ${count} requests`);
      await sleep(2);
    }
  }

  /** Stops the server and drops its connections. */
  async close() {
    this.#server.closeAllConnections();
    await new Promise((resolve) => this.#server.close(() => resolve(undefined)));
  }

  /**
   * @param {import("node:http").IncomingMessage} request
   * @param {import("node:http").ServerResponse} response
   */
  async #handle(request, response) {
    const at = performance.now();
    this.#inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.#inFlight);
    response.on("close", () => {
      this.#inFlight -= 1;
    });
    let body = "";
    for await (const chunk of request) body += chunk;
    /** @type {SeenRequest} */
    const seen = {
      method: request.method ?? "GET",
      path: request.url ?? "/",
      headers: request.headers,
      body,
      json: body ? JSON.parse(body) : undefined,
      at,
    };
    this.requests.push(seen);
    const reply = this.#replyTo(seen);
    if (reply.delayMs) await sleep(reply.delayMs);
    if (reply.drop) {
      request.socket.destroy();
      return;
    }
    const headers = { ...reply.headers };
    let text = "";
    if (typeof reply.body === "string") {
      text = reply.body;
    } else if (reply.body !== undefined) {
      text = JSON.stringify(reply.body);
      headers["content-type"] ??= "application/json";
    }
    response.writeHead(reply.status ?? 200, headers);
    response.end(text);
  }

  /**
   * @param {SeenRequest} request
   * @returns {Reply}
   */
  #replyTo(request) {
    const path = request.path.split("?")[0];
    const route = [`${request.method} ${path}`, path].find((name) => this.#scripts.has(name));
    if (route === undefined) {
      return { status: 404, body: { error: { code: "not_found", message: `no script for ${request.method} ${path}` } } };
    }
    const script = /** @type {Script} */ (this.#scripts.get(route));
    const index = /** @type {number} */ (this.#played.get(route));
    this.#played.set(route, index + 1);
    if (typeof script === "function") return script(request, index);
    return script[Math.min(index, script.length - 1)];
  }
}
