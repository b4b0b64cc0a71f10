// A Node.js client for the agent workspaces runtime: wire protocol v1 (ZeroMQ + MessagePack).
//
// This file only gathers the public API; each concept lives in its own module:
//   protocol.js      constants of the wire protocol (ops, topics, default endpoints)
//   errors.js        one error class per wire error code
//   token.js         finding the shared secret
//   curve.js         CURVE keys (a runtime with WORKSPACE_ZMQ_CURVE=true): key files, defaults
//   codec.js         MessagePack framing of requests, replies and events
//   transport.js     the DEALER socket: reply matching by id, timeouts, retries that reuse the id
//   subscription.js  joining the PUB socket (the welcome frame) and reading from it
//   events.js        the state log's events, with gap detection and re-sync
//   follow.js        a streamed process's output, gaps refilled from exec_output
//   client.js        the Client, one method per op
// index.d.ts declares the same shape.

export {
  DEFAULT_ENDPOINT,
  DEFAULT_EVENTS_ENDPOINT,
  DEFAULT_STATE_DIR,
  LOG_TOPICS,
  OPS,
  PLAIN_USERNAME,
  WELCOME,
} from "./protocol.js";
export {
  BadRequest,
  CapacityExceeded,
  ClientClosed,
  Conflict,
  Disabled,
  ERRORS,
  InternalError,
  NotFound,
  ProviderUnavailable,
  Timeout,
  Unauthorized,
  WorkspaceError,
  errorForCode,
} from "./errors.js";
export { readToken } from "./token.js";
export { readKeyFile, readPublicKey } from "./curve.js";
export { EventStream } from "./events.js";
export { Client, Client as default } from "./client.js";
