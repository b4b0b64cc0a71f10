// Type declarations of @agent-workspaces/client, written against wire protocol v1
// (runtime/messages: args.py, records.py, events.py, processes.py, envelope.py).
//
// Fields that travel on the wire keep their wire (snake_case) names; options that only steer
// this client are camelCase. Bytes fields arrive as Buffers and may be sent as Uint8Array,
// Buffer or (UTF-8) string.

/// <reference types="node" />

// ---------------------------------------------------------------------- protocol constants

/** The one-frame message the event socket sends each new subscriber. */
export const WELCOME: Buffer;
/** The PLAIN username a subscriber presents to the event socket (the token is the password). */
export const PLAIN_USERNAME: "workspaces";
/** Topics of the events the state log sequences (one global `seq` across them). */
export const LOG_TOPICS: readonly LogTopic[];
/** Every op of wire protocol v1, by its wire name. */
export const OPS: readonly OpName[];
export const DEFAULT_ENDPOINT: string;
export const DEFAULT_EVENTS_ENDPOINT: string;
export const DEFAULT_STATE_DIR: string;

export type LogTopic = "actor" | "alert" | "github" | "mcp" | "provider" | "workspace";
export type Bytes = Uint8Array | Buffer | string;

// ---------------------------------------------------------------------- envelopes

/** A request as it travels (one MessagePack map per frame). */
export interface RequestEnvelope<K extends OpName = OpName> {
  id: string;
  op: K;
  token: string;
  args: Ops[K]["args"];
}

export interface ErrorBody {
  code: ErrorCode | string;
  message: string;
  retryable: boolean;
}

/** A reply as it travels. */
export type ReplyEnvelope<R = unknown> =
  | { id: string; ok: true; result: R }
  | { id: string; ok: false; error: ErrorBody };

// ---------------------------------------------------------------------- records

export type State = "creating" | "ready" | "stopping" | "destroyed" | "failed";

/** The wire's workspace record. */
export interface WorkspaceRecord {
  id: string;
  state: State;
  provider: string;
  /** "runsc", "runc", "firecracker" or "e2b". */
  runtime: string;
  image: string;
  cpu: number;
  memory_bytes: number;
  disk_bytes: number;
  labels: Record<string, string>;
  persistent: boolean;
  created_at: number;
  expires_at: number | null;
  from_pool: boolean;
  error: string | null;
  /** Processes the kernel killed at the memory limit while the workspace lived on. */
  oom_kills: number;
  /** The latest disk measurement (null until measured). */
  disk_used_bytes: number | null;
  /** The default provider that was unhealthy when this workspace was created on a fallback. */
  fallback_from: string | null;
}

export interface ProviderStatus {
  name: string;
  healthy: boolean;
  checked_at: number;
  detail: string;
  runtime: string;
  workspaces: number;
  data_root: string;
}

export interface PingResult {
  version: string;
  /** False until start-up reconciliation is done. */
  ready: boolean;
}

export interface ExecResult {
  exit_code: number;
  stdout: Buffer;
  stderr: Buffer;
  timed_out: boolean;
  duration_ms: number;
  /** How it ran: "agent" or "docker". */
  via: string;
}

/** A streamed process, as `spawn` and `execList` report it. */
export interface ProcessInfo {
  process_id: string;
  workspace_id: string;
  /** The event topic of its output: `exec.<workspace_id>.<process_id>`. */
  topic: string;
  cmd: string[];
  pid: number;
  started_at: number;
  running: boolean;
  stdin_open: boolean;
  exit_code: number | null;
  timed_out: boolean;
  ended_at: number | null;
  error: string | null;
  stdout_bytes: number;
  stderr_bytes: number;
}

/** One kept output event of a process (in `exec_output`'s page). */
export interface OutputChunk {
  seq: number;
  stream: "stdout" | "stderr";
  data: Buffer;
  ts: number;
}

/** The result of `exec_output`. */
export interface OutputPage {
  process: ProcessInfo;
  /** Kept output events with seq > after, oldest first. */
  chunks: OutputChunk[];
  /** Output events after `after` that are no longer kept. */
  truncated: number;
  /** The exit event, once the process has ended. */
  exit: ProcessExitEvent | null;
}

export interface Snapshot {
  /** The state log's seq these records reflect. */
  seq: number;
  workspaces: WorkspaceRecord[];
}

export interface Alert {
  key: string;
  resource: string;
  message: string;
  value: number;
  limit: number;
  workspace_id?: string | null;
  threshold?: number | null;
  [field: string]: unknown;
}

export interface Stats {
  workspaces: number;
  by_state: Partial<Record<State, number>>;
  capacity: { active: number; limit: number };
  pool: {
    size: number;
    target: number;
    booting: number;
    claims: number;
    misses: number;
    refill_failures: number;
    evictions: number;
  };
  reaper: Record<string, unknown>;
  host: { cpu_pct: number | null; mem_pct: number; disk_pct: number; [field: string]: unknown };
  sampler: { interval_s: number; sampled_at: number | null; took_ms: number | null };
  alerts: Alert[];
  usage: Record<string, Record<string, unknown>>;
  [field: string]: unknown;
}

export interface GithubApp {
  name: string;
  app_id: number;
  installation_id: number;
  created_at: number;
}

export interface CloneResult {
  path: string;
  commit: string;
}

export type McpState = "starting" | "ready" | "failed" | "stopped";

export interface McpServerStatus {
  name: string;
  state: McpState;
  workspace_id: string | null;
  restarts: number;
  error: string | null;
  image: string;
  /** "stdio" or "streamable-http". */
  transport: string;
  process_id: string | null;
  retry_at: number | null;
}

/** A JSON-RPC message (request, notification or response). */
export type JsonRpcMessage = Record<string, unknown>;

// ---------------------------------------------------------------------- args

export interface CreateArgs {
  provider?: string;
  image?: string;
  cpu?: number;
  /** A size such as "4G" or "256M", or a number of bytes. */
  memory?: number | string;
  disk?: number | string;
  env?: Record<string, string>;
  labels?: Record<string, string>;
  ttl_seconds?: number;
  persistent?: boolean;
}

export interface ListArgs {
  /** Every label must match. */
  labels?: Record<string, string>;
  state?: State;
}

export interface RunArgs {
  /** Working directory (default /workspace). */
  cwd?: string;
  env?: Record<string, string>;
  /** Bytes for the command's standard input. */
  stdin?: Bytes;
  /** Kill the command's process group after this long. */
  timeout_s?: number;
}

export interface SpawnArgs extends RunArgs {
  /** Keep stdin open for `execStdin`. */
  stdin_open?: boolean;
}

export interface ExecStdinArgs {
  /** End the process's stdin after `data`. */
  close?: boolean;
}

export interface WriteFileArgs {
  /** A file mode (0 to 0o7777). */
  mode?: number;
}

export interface GithubAppSetArgs {
  name: string;
  app_id: number;
  installation_id: number;
  /** PEM; stored only encrypted, never part of a reply or event. */
  private_key: string;
}

export interface AuditArgs {
  after?: number;
  /** 1 to 1000 (default 100). */
  limit?: number;
}

export interface GitCloneArgs {
  /** The GitHub App whose installation token the clone uses (none: a public repository). */
  app?: string;
  ref?: string;
  /** Where under /workspace (default: the repository's name). */
  path?: string;
  depth?: number;
}

/** Each op's args and result, as they travel (see `Client.request`). */
export interface Ops {
  ping: { args: Record<string, never>; result: PingResult };
  providers: { args: Record<string, never>; result: ProviderStatus[] };
  create: { args: CreateArgs; result: WorkspaceRecord };
  get: { args: { workspace_id: string }; result: WorkspaceRecord };
  list: { args: ListArgs; result: WorkspaceRecord[] };
  exec: {
    args: SpawnArgs & { workspace_id: string; cmd: string[] | string; stream?: boolean };
    result: ExecResult | ProcessInfo;
  };
  exec_stdin: {
    args: { workspace_id: string; process_id: string; data?: Uint8Array; close?: boolean };
    result: Record<string, never>;
  };
  exec_kill: {
    args: { workspace_id: string; process_id: string; signal?: string | number };
    result: Record<string, never>;
  };
  exec_list: { args: { workspace_id: string }; result: ProcessInfo[] };
  exec_output: { args: { workspace_id: string; process_id: string; after?: number }; result: OutputPage };
  write_file: {
    args: { workspace_id: string; path: string; data: Uint8Array; mode?: number };
    result: Record<string, never>;
  };
  read_file: { args: { workspace_id: string; path: string }; result: { data: Buffer } };
  destroy: { args: { workspace_id: string }; result: Record<string, never> };
  extend: { args: { workspace_id: string; ttl_seconds: number }; result: WorkspaceRecord };
  stats: { args: Record<string, never>; result: Stats };
  snapshot: { args: Record<string, never>; result: Snapshot };
  github_app_set: { args: GithubAppSetArgs; result: GithubApp };
  github_app_list: { args: Record<string, never>; result: GithubApp[] };
  github_app_delete: { args: { name: string }; result: Record<string, never> };
  github_key_rotate: { args: { key: string }; result: { rotated: number } };
  github_audit: { args: AuditArgs; result: GithubCredentialUsedEvent[] };
  git_clone: { args: GitCloneArgs & { workspace_id: string; repo: string }; result: CloneResult };
  mcp_list: { args: Record<string, never>; result: McpServerStatus[] };
  mcp_call: { args: { name: string; message: JsonRpcMessage }; result: JsonRpcMessage };
}

export type OpName = keyof Ops;

// ---------------------------------------------------------------------- events

/** Every state-log event carries a global, monotonic seq, its commit time and its type. */
export interface EventBase {
  seq: number;
  ts: number;
  type: string;
}

/** Topic `workspace`: a workspace's record changed (`record` is the record after the change). */
export interface WorkspaceStateEvent extends EventBase {
  type: "workspace.state";
  workspace_id: string;
  state: State;
  record: WorkspaceRecord;
  reason: string | null;
  pooled: boolean;
}

interface AlertFields extends EventBase {
  key: string;
  resource: string;
  message: string;
  value: number;
  limit: number;
  workspace_id: string | null;
  threshold: number | null;
}

/** Topic `alert`: a resource crossed its threshold. */
export interface AlertRaisedEvent extends AlertFields {
  type: "alert.raised";
}

/** Topic `alert`: the condition of an earlier alert.raised with the same key is over. */
export interface AlertClearedEvent extends AlertFields {
  type: "alert.cleared";
}

/** Topic `actor`: an actor raised; `restarted` says whether it was started again. */
export interface ActorCrashedEvent extends EventBase {
  type: "actor.crashed";
  actor: string;
  reason: string;
  restarted: boolean;
  workspace_id: string | null;
}

/** Topic `provider`: a provider turned healthy or unhealthy (or its detail changed). */
export interface ProviderHealthEvent extends EventBase {
  type: "provider.health";
  provider: string;
  healthy: boolean;
  detail: string;
  runtime: string;
}

/** Topic `github`: an App was set, deleted, or every key rotated (`app` empty). */
export interface GithubAppEvent extends EventBase {
  type: "github.app";
  action: "set" | "deleted" | "rotated" | string;
  app: string;
}

/** Topic `github`: an audit record of a credential's use. */
export interface GithubCredentialUsedEvent extends EventBase {
  type: "github.used";
  app: string;
  workspace_id: string;
  repo: string;
  /** "ok" or the wire error code. */
  outcome: string;
  error: string | null;
}

/** Topic `mcp`: an MCP server's status changed. */
export interface McpStateEvent extends EventBase {
  type: "mcp.state";
  name: string;
  state: McpState;
  workspace_id: string | null;
  restarts: number;
  error: string | null;
}

/** Topic `mcp`: a JSON-RPC notification an MCP server sent. */
export interface McpNotificationEvent extends EventBase {
  type: "mcp.notification";
  name: string;
  message: JsonRpcMessage;
}

/** Every event the state log records. */
export type StateEvent =
  | WorkspaceStateEvent
  | AlertRaisedEvent
  | AlertClearedEvent
  | ActorCrashedEvent
  | ProviderHealthEvent
  | GithubAppEvent
  | GithubCredentialUsedEvent
  | McpStateEvent
  | McpNotificationEvent;

/**
 * Yielded by `events()` instead of the events it could not deliver: the live workspaces as of
 * `seq` (from the `snapshot` op). Events with a seq up to `seq` are then skipped.
 */
export interface ResyncItem {
  type: "resync";
  /** "gap": events after `after` were missed; "initial": asked for with `snapshot: true`. */
  reason: "gap" | "initial";
  seq: number;
  /** The last seq seen before the snapshot (null: none). */
  after: number | null;
  workspaces: WorkspaceRecord[];
}

export type EventItem = StateEvent | ResyncItem;

/** Topic `exec.<workspace_id>.<process_id>`: an output chunk (seq is the process's own). */
export interface ProcessOutputEvent {
  type: "exec.output";
  seq: number;
  ts: number;
  workspace_id: string;
  process_id: string;
  stream: "stdout" | "stderr";
  data: Buffer;
}

/** The last event of a streamed process; `exit_code` is null when it was lost. */
export interface ProcessExitEvent {
  type: "exec.exit";
  seq: number;
  ts: number;
  workspace_id: string;
  process_id: string;
  exit_code: number | null;
  timed_out: boolean;
  duration_ms: number;
  error: string | null;
}

/** `missed` output events of the process were no longer kept by the runtime. */
export interface TruncatedItem {
  type: "truncated";
  process_id: string;
  missed: number;
}

export type FollowItem = ProcessOutputEvent | TruncatedItem | ProcessExitEvent;

export interface EventsOptions {
  /** Topic prefixes to yield (default: every state-log topic). All are received for gap detection. */
  topics?: string[];
  /**
   * The last seq the caller saw: the first event above after + 1 is a gap, answered with a
   * resync; events at or below it are skipped.
   */
  after?: number;
  /** Start with a resync item (reason "initial"), taken once the subscription is live. */
  snapshot?: boolean;
  /** How long to wait for the welcome frame (default: the client's joinTimeoutMs). */
  joinTimeoutMs?: number;
}

/** The state log's events with gap detection; an async iterator (`for await`). */
export declare class EventStream implements AsyncIterableIterator<EventItem> {
  /**
   * Resolves to true once the subscription is in place (the welcome came): nothing published later
   * is missed; to false when no welcome came within joinTimeoutMs (no runtime there, or it refused
   * the handshake: a wrong token, or with CURVE a client key it does not list).
   */
  readonly ready: Promise<boolean>;
  /** The newest seq seen or re-synced to (null before the first). */
  readonly seq: number | null;
  readonly closed: boolean;
  next(): Promise<IteratorResult<EventItem, undefined>>;
  return(value?: unknown): Promise<IteratorResult<EventItem, undefined>>;
  throw(error?: unknown): Promise<IteratorResult<EventItem, undefined>>;
  [Symbol.asyncIterator](): EventStream;
  /** Stop: a pending next() resolves as done. */
  close(): void;
}

export interface FollowOptions {
  /** Ask the runtime (exec_output) after this long without news (default 1000). */
  idleMs?: number;
  /** Throw Timeout if the process has not ended by then. */
  timeoutMs?: number;
  joinTimeoutMs?: number;
}

// ---------------------------------------------------------------------- errors

export type ErrorCode =
  | "bad_request"
  | "disabled"
  | "unauthorized"
  | "not_found"
  | "conflict"
  | "capacity"
  | "provider_unavailable"
  | "timeout"
  | "internal";

/** Root of every error the runtime reports (and of this client's Timeout). */
export declare class WorkspaceError extends Error {
  static readonly code: string;
  static readonly defaultRetryable: boolean;
  constructor(message: string, options?: { retryable?: boolean; code?: string });
  /** The wire error code. */
  readonly code: ErrorCode | string;
  /** Whether the same request may succeed if sent again later. */
  readonly retryable: boolean;
}
export declare class BadRequest extends WorkspaceError {}
export declare class Disabled extends WorkspaceError {}
export declare class Unauthorized extends WorkspaceError {}
export declare class NotFound extends WorkspaceError {}
export declare class Conflict extends WorkspaceError {}
export declare class CapacityExceeded extends WorkspaceError {}
export declare class ProviderUnavailable extends WorkspaceError {}
export declare class Timeout extends WorkspaceError {}
export declare class InternalError extends WorkspaceError {}
/** The client was closed while a request waited, or used after close(). */
export declare class ClientClosed extends Error {
  constructor(message?: string);
}

export const ERRORS: Readonly<Record<ErrorCode, typeof WorkspaceError>>;
export function errorForCode(code: string, message: string, retryable: boolean): WorkspaceError;

/** WORKSPACE_AUTH_TOKEN, else STATE_DIR/token (throws BadRequest when neither is there). */
export function readToken(options?: { stateDir?: string; env?: Record<string, string | undefined> }): string;

/** A CURVE key pair as Z85 text (40 characters each). */
export interface CurveKeyPair {
  publicKey: string;
  secretKey: string;
}

/**
 * A client's key pair from its key file (ZeroMQ's certificate format, as `workspaces keys new NAME`
 * writes it). Throws BadRequest when the file is missing, readable by others (it must be mode 0600)
 * or holds no key pair.
 */
export function readKeyFile(path: string): CurveKeyPair;
/** A public key given as Z85 text or as the path of a key file (the server's server.key); else throws BadRequest. */
export function readPublicKey(value: string): string;

// ---------------------------------------------------------------------- the client

export interface ClientOptions {
  /** Request endpoint (default: WORKSPACE_ZMQ_ENDPOINT or tcp://127.0.0.1:7710). */
  endpoint?: string;
  /** Event endpoint (default: WORKSPACE_ZMQ_EVENTS_ENDPOINT or tcp://127.0.0.1:7711). */
  eventsEndpoint?: string;
  /** The shared secret (default: readToken()). */
  token?: string;
  /** How long to wait for a reply by default (30000). */
  timeoutMs?: number;
  /** Resends with the same id after a timeout or a retryable error (default 0). */
  retries?: number;
  /** The DEALER routing id (default random); request ids are deduplicated per routing id. */
  routingId?: string;
  /** How long an event subscription waits for its welcome (10000). */
  joinTimeoutMs?: number;
  /**
   * With clientKeyFile, connect both sockets by CURVE (a runtime with WORKSPACE_ZMQ_CURVE=true): the
   * runtime's public key, 40 Z85 characters or the path of its server.key. Default:
   * WORKSPACE_ZMQ_SERVER_KEY, else STATE_DIR/curve/server.key when the runtime is on this machine.
   */
  serverKey?: string | null;
  /**
   * This client's key file (mode 0600), as `workspaces keys new NAME` writes it (default:
   * WORKSPACE_ZMQ_CLIENT_KEY; null: no CURVE). One of serverKey and clientKeyFile without the
   * other throws BadRequest.
   */
  clientKeyFile?: string | null;
}

export interface CallOptions {
  /** How long to wait for the reply (per attempt). */
  timeoutMs?: number;
  /** The request id: sending the same id again (from the same client) never runs it twice. */
  requestId?: string;
  /** Overrides the client's retries for this call. */
  retries?: number;
}

export declare class Client {
  constructor(options?: ClientOptions);
  readonly endpoint: string;
  readonly eventsEndpoint: string;
  readonly routingId: string;
  timeoutMs: number;
  retries: number;
  joinTimeoutMs: number;
  readonly closed: boolean;
  /** Whether the client connects by CURVE. */
  readonly curve: boolean;
  /** The runtime's public key when connected by CURVE, else null. */
  readonly serverKey: string | null;
  /** This client's public key when connected by CURVE (as `workspaces keys list` shows it), else null. */
  readonly clientPublicKey: string | null;

  /** Close the sockets; waiting requests fail with ClientClosed, event streams end. */
  close(): void;
  /** A new request id, unique for this client. */
  newRequestId(): string;
  /** Send any op by its wire name and wait for its result. */
  request<K extends OpName>(op: K, args?: Ops[K]["args"], options?: CallOptions): Promise<Ops[K]["result"]>;

  ping(options?: CallOptions): Promise<PingResult>;
  /** Poll ping until the runtime is ready. */
  waitReady(options?: { timeoutMs?: number; intervalMs?: number }): Promise<PingResult>;
  providers(options?: CallOptions): Promise<ProviderStatus[]>;
  /** Create a workspace; resolves once it is ready. */
  create(args?: CreateArgs, options?: CallOptions): Promise<WorkspaceRecord>;
  get(workspaceId: string, options?: CallOptions): Promise<WorkspaceRecord>;
  list(args?: ListArgs, options?: CallOptions): Promise<WorkspaceRecord[]>;
  /** Run a command (argv, or a string run by `sh -c`) and wait for it. */
  exec(workspaceId: string, cmd: string[] | string, args?: RunArgs, options?: CallOptions): Promise<ExecResult>;
  /** Start a command in the background (exec with stream: true); follow it with follow(). */
  spawn(workspaceId: string, cmd: string[] | string, args?: SpawnArgs, options?: CallOptions): Promise<ProcessInfo>;
  execStdin(
    workspaceId: string,
    processId: string,
    data?: Bytes,
    args?: ExecStdinArgs,
    options?: CallOptions,
  ): Promise<void>;
  execKill(workspaceId: string, processId: string, signal?: string | number, options?: CallOptions): Promise<void>;
  execList(workspaceId: string, options?: CallOptions): Promise<ProcessInfo[]>;
  execOutput(workspaceId: string, processId: string, after?: number, options?: CallOptions): Promise<OutputPage>;
  /** Idempotent: destroying a destroyed workspace succeeds. */
  destroy(workspaceId: string, options?: CallOptions): Promise<void>;
  writeFile(workspaceId: string, path: string, data: Bytes, args?: WriteFileArgs, options?: CallOptions): Promise<void>;
  readFile(workspaceId: string, path: string, options?: CallOptions): Promise<Buffer>;
  extend(workspaceId: string, ttlSeconds: number, options?: CallOptions): Promise<WorkspaceRecord>;
  stats(options?: CallOptions): Promise<Stats>;
  snapshot(options?: CallOptions): Promise<Snapshot>;
  githubAppSet(args: GithubAppSetArgs, options?: CallOptions): Promise<GithubApp>;
  githubAppList(options?: CallOptions): Promise<GithubApp[]>;
  githubAppDelete(name: string, options?: CallOptions): Promise<void>;
  /** Re-encrypt every App's key under `key` (hex or base64); resolves to how many were. */
  githubKeyRotate(key: string, options?: CallOptions): Promise<number>;
  githubAudit(args?: AuditArgs, options?: CallOptions): Promise<GithubCredentialUsedEvent[]>;
  gitClone(workspaceId: string, repo: string, args?: GitCloneArgs, options?: CallOptions): Promise<CloneResult>;
  mcpList(options?: CallOptions): Promise<McpServerStatus[]>;
  mcpCall(name: string, message: JsonRpcMessage, options?: CallOptions): Promise<JsonRpcMessage>;

  /** The state log's events with gap detection (resync items from `snapshot`). */
  events(options?: EventsOptions): EventStream;
  /** A streamed process's output in order, gaps refilled with exec_output, ending with its exit. */
  follow(
    processInfo: Pick<ProcessInfo, "workspace_id" | "process_id"> & { topic?: string },
    options?: FollowOptions,
  ): AsyncGenerator<FollowItem, void, undefined>;
}

export default Client;
