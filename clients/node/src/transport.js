// Requests and replies over one DEALER socket, one MessagePack frame each:
//   {id, op, token, args}  ->  {id, ok: true, result} | {id, ok: false, error: {code, message, retryable}}
// Concurrent requests are matched to their replies by id. A retry (after a timeout or a retryable
// error) resends the same id from the same routing id, so the runtime never runs a request twice.

import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

import { Dealer } from "zeromq";

import { decodeFrame, encodeRequest } from "./codec.js";
import { ClientClosed, InternalError, Timeout, WorkspaceError, errorForCode } from "./errors.js";

const RETRY_PAUSE_MS = 200;
const RETRY_PAUSE_MAX_MS = 2_000;

/** The request socket of a Client: framing, reply matching, timeouts and retries. */
export class Transport {
  /**
   * @param {{endpoint: string, routingId: string, token: string,
   *   curve?: {curveServerKey: string, curvePublicKey: string, curveSecretKey: string} | null}} options
   *   `curve`: connect by CURVE with these keys (zeromq.js socket options); without, no mechanism
   *   (every request carries the token).
   */
  constructor({ endpoint, routingId, token, curve = null }) {
    this.endpoint = endpoint;
    // Not enumerable, so printing a client (which holds its transport) never shows the token.
    Object.defineProperty(this, "_token", { value: token, enumerable: false });
    this._prefix = randomBytes(4).toString("hex");
    this._counter = 0;
    // A set per id: calls that share a request id (CallOptions.requestId) all take its one reply.
    /** @type {Map<string, Set<{settle: (reply: any) => void, fail: (error: Error) => void}>>} */
    this._pending = new Map();
    this._closed = false;
    // The keys are socket options, set before connecting; the socket keeps them, this object does not.
    this._socket = new Dealer({ routingId, linger: 0, ...curve });
    this._socket.connect(endpoint);
    this._sending = Promise.resolve();
    this._receiving = this._receiveLoop();
  }

  get closed() {
    return this._closed;
  }

  /** Close the socket; requests still waiting fail with ClientClosed. */
  close() {
    if (this._closed) return;
    this._closed = true;
    const error = new ClientClosed();
    for (const waiters of this._pending.values()) for (const waiter of waiters) waiter.fail(error);
    this._pending.clear();
    this._socket.close();
  }

  /** A new request id (unique for this transport). */
  newRequestId() {
    this._counter += 1;
    return `${this._prefix}-${this._counter}`;
  }

  /**
   * Send one request and wait for its result, resending it (same id) up to `retries` times.
   * @param {string} op
   * @param {object} args
   * @param {{requestId: string, timeoutMs: number, retries: number}} options
   */
  async request(op, args, { requestId: id, timeoutMs: waitMs, retries }) {
    const payload = encodeRequest(id, op, this._token, args);
    let pause = RETRY_PAUSE_MS;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this._attempt(op, id, payload, waitMs);
      } catch (error) {
        if (!(error instanceof WorkspaceError) || !error.retryable || attempt >= retries || this._closed) throw error;
      }
      await sleep(pause);
      pause = Math.min(pause * 2, RETRY_PAUSE_MAX_MS);
      if (this._closed) throw new ClientClosed();
    }
  }

  async _receiveLoop() {
    const socket = this._socket;
    for (;;) {
      let frames;
      try {
        frames = await socket.receive();
      } catch (error) {
        if (socket.closed) return;
        await sleep(10); // not expected on a DEALER; do not spin
        continue;
      }
      const reply = frames.length === 1 ? decodeFrame(frames[0]) : undefined;
      if (!reply || typeof reply !== "object" || typeof reply.id !== "string") continue; // not a reply
      const waiters = this._pending.get(reply.id);
      if (!waiters) continue; // the late reply to a request that already timed out
      this._pending.delete(reply.id);
      for (const waiter of waiters) waiter.settle(reply);
    }
  }

  _send(payload) {
    // A zeromq socket takes one send at a time: queue them.
    const sent = this._sending.then(() => this._socket.send(payload));
    this._sending = sent.catch(() => {});
    return sent;
  }

  _attempt(op, id, payload, waitMs) {
    return new Promise((resolve, reject) => {
      let waiters = this._pending.get(id);
      if (!waiters) this._pending.set(id, (waiters = new Set()));
      const waiter = {
        settle: (reply) => {
          clearTimeout(timer);
          if (reply.ok) {
            resolve(reply.result);
          } else {
            const error = reply.error ?? {};
            reject(
              typeof error.code === "string"
                ? errorForCode(error.code, error.message ?? "", error.retryable)
                : new InternalError("malformed error reply"),
            );
          }
        },
        fail: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      const timer = setTimeout(() => {
        const current = this._pending.get(id);
        current?.delete(waiter);
        if (current?.size === 0) this._pending.delete(id);
        reject(new Timeout(`no reply to ${op} from ${this.endpoint} within ${waitMs} ms`));
      }, waitMs);
      waiters.add(waiter);
      this._send(payload).catch((error) => {
        waiters.delete(waiter);
        if (waiters.size === 0 && this._pending.get(id) === waiters) this._pending.delete(id);
        waiter.fail(this._closed ? new ClientClosed() : error);
      });
    });
  }
}
