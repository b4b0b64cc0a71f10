// The state log's events as an async iterator. `seq` is one sequence across every state-log
// topic, so a missing number means missed events; the stream then re-syncs from a snapshot.

import { Subscriber } from "zeromq";

import { decodeFrame } from "./codec.js";
import { ClientClosed } from "./errors.js";
import { LOG_TOPICS, WELCOME } from "./protocol.js";
import { joinEvents, receiveWithin } from "./subscription.js";

/**
 * The state log's events, live from the moment the subscription is in place (`ready`), with gap
 * detection by `seq`. Created by `Client.events()`; an async iterator (use `for await`).
 */
export class EventStream {
  /**
   * @param {import("./client.js").Client} client
   * @param {{topics?: string[], after?: number, snapshot?: boolean, joinTimeoutMs?: number}} options
   */
  constructor(client, options = {}) {
    const unknown = (options.topics ?? []).filter((topic) => !LOG_TOPICS.includes(topic));
    if (unknown.length) {
      // A process's output (exec.*) numbers its own seq: follow() reads it.
      throw new TypeError(`not state-log topics: ${unknown.join(", ")} (topics: ${LOG_TOPICS.join(", ")})`);
    }
    this._client = client;
    this._topics = options.topics?.length ? [...options.topics] : null;
    this._after = options.after ?? null;
    this._snapshot = Boolean(options.snapshot);
    this._closed = false;
    // Every state-log topic is received, whatever `topics` asks for: `seq` is global across
    // them, so a gap is only visible in the whole sequence. `topics` filters what is yielded.
    this._socket = new Subscriber(client._subscriberOptions());
    for (const topic of LOG_TOPICS) this._socket.subscribe(topic);
    this._socket.subscribe(WELCOME);
    this._socket.connect(client.eventsEndpoint);
    client._track(this);
    this._early = [];
    /**
     * Resolves once the subscription is in place (true: nothing published afterwards is missed),
     * or to false when no welcome came within joinTimeoutMs (no runtime, or the handshake was refused).
     */
    this.ready = joinEvents(this._socket, options.joinTimeoutMs ?? client.joinTimeoutMs).then(({ early, welcomed }) => {
      this._early = early;
      return welcomed;
    });
    this.ready.catch(() => {}); // surfaced by next() as well
    this._iterator = this._run();
  }

  /** The newest `seq` seen (or taken from a snapshot); null before the first event. */
  get seq() {
    return this._last ?? null;
  }

  get closed() {
    return this._closed;
  }

  next() {
    return this._iterator.next();
  }

  return(value) {
    this.close();
    return this._iterator.return(value);
  }

  throw(error) {
    this.close();
    return this._iterator.throw(error);
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  /** Stop: a pending `next()` resolves as done. */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._client._untrack(this);
    if (!this._socket.closed) this._socket.close();
  }

  _wanted(topic) {
    return this._topics === null || this._topics.includes(topic);
  }

  async _receive() {
    if (this._closed) return null;
    if (this._early.length) return this._early.shift();
    try {
      return await receiveWithin(this._socket, -1);
    } catch (error) {
      if (error instanceof ClientClosed) return null;
      throw error;
    }
  }

  async _resync(reason) {
    const after = this._last ?? null;
    const snapshot = await this._client.snapshot();
    this._last = snapshot.seq;
    return { type: "resync", reason, seq: snapshot.seq, after, workspaces: snapshot.workspaces };
  }

  async *_run() {
    try {
      try {
        await this.ready;
      } catch (error) {
        if (this._closed) return;
        throw error;
      }
      this._last = this._after;
      if (this._snapshot) {
        const resync = await this._resync("initial");
        if (this._closed) return;
        yield resync;
      }
      for (;;) {
        const frames = await this._receive();
        if (frames === null || this._closed) return;
        if (frames.length !== 2) continue;
        const topic = frames[0].toString();
        if (!LOG_TOPICS.includes(topic)) continue; // e.g. a prefix's namesake: not in this sequence
        const event = decodeFrame(frames[1]);
        if (event === null || typeof event !== "object" || typeof event.seq !== "number") continue;
        if (this._last !== null && event.seq <= this._last) continue; // had it (or the snapshot has it)
        if (this._last !== null && event.seq > this._last + 1) {
          // Missed events (dropped by a slow reader, or before `after`): re-sync from a snapshot,
          // taken now that the subscription is live, then go on from its seq.
          const resync = await this._resync("gap");
          if (this._closed) return;
          yield resync;
          if (event.seq <= this._last) continue;
        }
        this._last = event.seq;
        if (this._wanted(topic)) yield event;
      }
    } catch (error) {
      if (error instanceof ClientClosed && this._closed) return; // closed while taking a snapshot
      throw error;
    } finally {
      this.close();
    }
  }
}

if (typeof Symbol.asyncDispose === "symbol") {
  // `await using stream = client.events()` where the runtime supports explicit resource management.
  EventStream.prototype[Symbol.asyncDispose] = async function asyncDispose() {
    this.close();
  };
}
