// The Client: one method per op of wire protocol v1, plus event subscriptions.
//
// Fields that travel on the wire keep their wire (snake_case) names, in arguments and results
// alike; options that only steer this client are camelCase (timeoutMs, requestId, retries).

import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

import { toBytes } from "./codec.js";
import { curveOptions } from "./curve.js";
import { ClientClosed, Timeout } from "./errors.js";
import { EventStream } from "./events.js";
import { follow as followProcess } from "./follow.js";
import { DEFAULT_ENDPOINT, DEFAULT_EVENTS_ENDPOINT, PLAIN_USERNAME } from "./protocol.js";
import { readToken } from "./token.js";
import { Transport } from "./transport.js";

const EXEC_WAIT_WITHOUT_TIMEOUT_MS = 600_000;
const EXEC_WAIT_MARGIN_MS = 30_000;
const JOIN_TIMEOUT_MS = 10_000;

/** A connection to a runtime: one method per op of wire protocol v1. */
export class Client {
  /**
   * @param {object} [options]
   * @param {string} [options.endpoint] Request endpoint (default: WORKSPACE_ZMQ_ENDPOINT or tcp://127.0.0.1:7710).
   * @param {string} [options.eventsEndpoint] Event endpoint (default: WORKSPACE_ZMQ_EVENTS_ENDPOINT or tcp://127.0.0.1:7711).
   * @param {string} [options.token] The shared secret (default: readToken()).
   * @param {number} [options.timeoutMs] How long to wait for a reply by default (30 s).
   * @param {number} [options.retries] Resends (same id) after a timeout or a retryable error (0).
   * @param {string} [options.routingId] The DEALER routing id (default: random); the runtime
   *   recognises a retried request id only from the same routing id.
   * @param {number} [options.joinTimeoutMs] How long an event subscription waits for its welcome (10 s).
   * @param {string | null} [options.serverKey] With `clientKeyFile`, connect by CURVE: the runtime's public
   *   key (40 Z85 characters) or the path of its server.key (default: WORKSPACE_ZMQ_SERVER_KEY, else
   *   STATE_DIR/curve/server.key of a runtime on this machine).
   * @param {string | null} [options.clientKeyFile] This client's key file, as `workspaces keys new NAME`
   *   writes it (default: WORKSPACE_ZMQ_CLIENT_KEY). null: no CURVE, whatever the environment says.
   */
  constructor(options = {}) {
    const env = process.env;
    this.endpoint = options.endpoint ?? env.WORKSPACE_ZMQ_ENDPOINT ?? DEFAULT_ENDPOINT;
    this.eventsEndpoint = options.eventsEndpoint ?? env.WORKSPACE_ZMQ_EVENTS_ENDPOINT ?? DEFAULT_EVENTS_ENDPOINT;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.retries = options.retries ?? 0;
    this.joinTimeoutMs = options.joinTimeoutMs ?? JOIN_TIMEOUT_MS;
    this.routingId = options.routingId ?? `client-${randomBytes(8).toString("hex")}`;
    // Both before any socket exists, so a throw leaks none.
    const token = options.token ?? readToken();
    const curve = curveOptions({ serverKey: options.serverKey, clientKeyFile: options.clientKeyFile });
    // Without CURVE the event socket checks the token once, at the handshake (ZeroMQ PLAIN): a
    // subscriber with a wrong one gets no events at all. With CURVE both sockets admit this client
    // by its public key instead (requests still carry the token). Neither the token nor the secret
    // key is enumerable, so they are never printed with the client.
    Object.defineProperty(this, "_token", { value: token, enumerable: false });
    Object.defineProperty(this, "_curve", { value: curve && Object.freeze(curve), enumerable: false });
    /** The runtime's public key when connected by CURVE, else null. */
    this.serverKey = curve?.curveServerKey ?? null;
    /** This client's public key when connected by CURVE (the one `workspaces keys list` shows), else null. */
    this.clientPublicKey = curve?.curvePublicKey ?? null;
    this._streams = new Set();
    this._closed = false;
    this._transport = new Transport({ endpoint: this.endpoint, routingId: this.routingId, token, curve });
  }

  /** Whether the client connects by CURVE. */
  get curve() {
    return this._curve !== null;
  }

  get closed() {
    return this._closed;
  }

  /** Close the sockets; requests still waiting fail with ClientClosed, event streams end. */
  close() {
    if (this._closed) return;
    this._closed = true;
    for (const stream of [...this._streams]) stream.close();
    this._transport.close();
  }

  /** Options of a Subscriber socket on the event stream: CURVE with this client's keys, else PLAIN with its token. */
  _subscriberOptions() {
    if (this._curve) return { linger: 0, ...this._curve };
    return { linger: 0, plainUsername: PLAIN_USERNAME, plainPassword: this._token };
  }

  /** Register an event subscription (anything with `close()`) so that `close()` ends it. */
  _track(stream) {
    if (this._closed) {
      stream.close();
      throw new ClientClosed();
    }
    this._streams.add(stream);
  }

  _untrack(stream) {
    this._streams.delete(stream);
  }

  /** A new request id (unique for this client). */
  newRequestId() {
    return this._transport.newRequestId();
  }

  /**
   * Send one request and wait for its result (any op, by its wire name).
   * @param {string} op
   * @param {object} [args]
   * @param {{timeoutMs?: number, requestId?: string, retries?: number}} [options]
   */
  async request(op, args = {}, options = {}) {
    if (this._closed) throw new ClientClosed();
    return this._transport.request(op, args, {
      requestId: options.requestId ?? this.newRequestId(),
      timeoutMs: options.timeoutMs ?? this.timeoutMs,
      retries: options.retries ?? this.retries,
    });
  }

  // ------------------------------------------------------------------ ops

  /** `ping`: `{version, ready}` (ready is false until start-up reconciliation is done). */
  ping(options) {
    return this.request("ping", {}, options);
  }

  /** Wait until `ping` says the runtime is ready (or `timeoutMs` passes). */
  async waitReady({ timeoutMs = 60_000, intervalMs = 200 } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Timeout(`the runtime at ${this.endpoint} was not ready within ${timeoutMs} ms`);
      try {
        const pong = await this.ping({ timeoutMs: Math.min(remaining, 5_000), retries: 0 });
        if (pong.ready) return pong;
      } catch (error) {
        if (!(error instanceof Timeout)) throw error;
      }
      await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
    }
  }

  /** `providers`: every provider's health, runtime and workspace count. */
  providers(options) {
    return this.request("providers", {}, options);
  }

  /** `create`: a workspace, once it is ready. Args: provider, image, cpu, memory, disk, env, labels, ttl_seconds, persistent. */
  create(args = {}, options) {
    return this.request("create", args, options);
  }

  /** `get`: one workspace's record. */
  get(workspaceId, options) {
    return this.request("get", { workspace_id: workspaceId }, options);
  }

  /** `list`: workspaces whose labels all match (and in `state`, if given). */
  list(args = {}, options) {
    return this.request("list", args, options);
  }

  _runArgs(workspaceId, cmd, args) {
    const out = { ...args, workspace_id: workspaceId, cmd };
    if (out.stdin !== undefined && out.stdin !== null) out.stdin = toBytes(out.stdin, "stdin");
    return out;
  }

  /**
   * `exec`: run a command and wait for it. `cmd` is argv, or a string run by `sh -c`.
   * Args: cwd, env, stdin (bytes or string), timeout_s. The reply is awaited for timeout_s + 30 s
   * (600 s without a timeout) unless `options.timeoutMs` says otherwise.
   */
  exec(workspaceId, cmd, args = {}, options = {}) {
    const timeoutS = args.timeout_s;
    const timeoutMs =
      options.timeoutMs ?? (timeoutS == null ? EXEC_WAIT_WITHOUT_TIMEOUT_MS : timeoutS * 1000 + EXEC_WAIT_MARGIN_MS);
    return this.request("exec", this._runArgs(workspaceId, cmd, args), { ...options, timeoutMs });
  }

  /**
   * `exec` with `stream: true`: start a command in the background; returns its ProcessInfo at once.
   * Follow its output with `follow()`. Args as for exec, plus stdin_open.
   */
  spawn(workspaceId, cmd, args = {}, options) {
    return this.request("exec", { ...this._runArgs(workspaceId, cmd, args), stream: true }, options);
  }

  /** `exec_stdin`: write bytes to a streamed process's stdin; `{close: true}` ends it. */
  async execStdin(workspaceId, processId, data = Buffer.alloc(0), args = {}, options) {
    const request = { workspace_id: workspaceId, process_id: processId, data: toBytes(data, "data"), ...args };
    await this.request("exec_stdin", request, options);
  }

  /** `exec_kill`: send a signal (name or number; default TERM) to the process's whole group. */
  async execKill(workspaceId, processId, signal = "TERM", options) {
    await this.request("exec_kill", { workspace_id: workspaceId, process_id: processId, signal }, options);
  }

  /** `exec_list`: the workspace's streamed processes, running and recently ended. */
  execList(workspaceId, options) {
    return this.request("exec_list", { workspace_id: workspaceId }, options);
  }

  /** `exec_output`: the output events kept for a process with seq > `after` (to fill a gap). */
  execOutput(workspaceId, processId, after = 0, options) {
    return this.request("exec_output", { workspace_id: workspaceId, process_id: processId, after }, options);
  }

  /** `destroy`: destroy a workspace (destroying a destroyed workspace succeeds). */
  async destroy(workspaceId, options) {
    await this.request("destroy", { workspace_id: workspaceId }, options);
  }

  /** `write_file`: write bytes (or a UTF-8 string) to `path` under /workspace. Args: mode. */
  async writeFile(workspaceId, path, data, args = {}, options) {
    const request = { workspace_id: workspaceId, path, data: toBytes(data, "data"), ...args };
    await this.request("write_file", request, options);
  }

  /** `read_file`: the contents of `path` under /workspace, as a Buffer. */
  async readFile(workspaceId, path, options) {
    const result = await this.request("read_file", { workspace_id: workspaceId, path }, options);
    return result.data;
  }

  /** `extend`: move the workspace's expiry to now + `ttlSeconds`; returns the record. */
  extend(workspaceId, ttlSeconds, options) {
    return this.request("extend", { workspace_id: workspaceId, ttl_seconds: ttlSeconds }, options);
  }

  /** `stats`: workspaces, capacity, pool, host resources, alerts and usage. */
  stats(options) {
    return this.request("stats", {}, options);
  }

  /** `snapshot`: every live workspace's record and the event `seq` they reflect. */
  snapshot(options) {
    return this.request("snapshot", {}, options);
  }

  /** `github_app_set`: register (or replace) a GitHub App; its private key is stored only encrypted. */
  githubAppSet(args, options) {
    return this.request("github_app_set", args, options);
  }

  /** `github_app_list`: the registered GitHub Apps (never their keys). */
  githubAppList(options) {
    return this.request("github_app_list", {}, options);
  }

  /** `github_app_delete`: forget a GitHub App and its key. */
  async githubAppDelete(name, options) {
    await this.request("github_app_delete", { name }, options);
  }

  /** `github_key_rotate`: re-encrypt every App's key under `key`; returns how many were. */
  async githubKeyRotate(key, options) {
    const result = await this.request("github_key_rotate", { key }, options);
    return result.rotated;
  }

  /** `github_audit`: the recorded uses of credentials with seq > `after`, oldest first. */
  githubAudit(args = {}, options) {
    return this.request("github_audit", args, options);
  }

  /** `git_clone`: clone `repo` (owner/name or a URL) into the workspace. Args: app, ref, path, depth. */
  gitClone(workspaceId, repo, args = {}, options = {}) {
    const timeoutMs = options.timeoutMs ?? EXEC_WAIT_WITHOUT_TIMEOUT_MS;
    return this.request("git_clone", { ...args, workspace_id: workspaceId, repo }, { ...options, timeoutMs });
  }

  /** `mcp_list`: the configured MCP servers and their states. */
  mcpList(options) {
    return this.request("mcp_list", {}, options);
  }

  /** `mcp_call`: one JSON-RPC message to the MCP server `name`; its response (`{}` for a notification). */
  mcpCall(name, message, options) {
    return this.request("mcp_call", { name, message }, options);
  }

  // ------------------------------------------------------------------ events

  /**
   * The state log's events (workspace.state, alert.*, provider.health, actor.crashed, github.*,
   * mcp.*) as an async iterator, with gap detection. See EventStream and the README.
   * @param {{topics?: string[], after?: number, snapshot?: boolean, joinTimeoutMs?: number}} [options]
   */
  events(options = {}) {
    if (this._closed) throw new ClientClosed();
    return new EventStream(this, options);
  }


  /**
   * A streamed process's output events in order (by its own seq), refilled from `exec_output` when
   * one is missing or the stream is quiet for `idleMs`, ending with its exit event. Output the
   * runtime no longer keeps is reported as one `{type: "truncated", missed}` item.
   * @param {{process_id: string, workspace_id: string, topic?: string}} processInfo
   * @param {{idleMs?: number, timeoutMs?: number, joinTimeoutMs?: number}} [options]
   */
  follow(processInfo, options = {}) {
    return followProcess(this, processInfo, options);
  }
}

if (typeof Symbol.asyncDispose === "symbol") {
  // `await using client = new Client(...)` where the runtime supports explicit resource management.
  Client.prototype[Symbol.asyncDispose] = async function asyncDispose() {
    this.close();
  };
}
