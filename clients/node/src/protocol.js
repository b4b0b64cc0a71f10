// Constants of wire protocol v1 that callers may need as well as this client.

/** The one-frame message the event socket sends each new subscriber (events have two frames). */
export const WELCOME = Buffer.from("\x00welcome", "latin1");

/**
 * The PLAIN username a subscriber presents to the event socket, with the token as password
 * (docs/protocol.md, "Transport security").
 */
export const PLAIN_USERNAME = "workspaces";

/** Topics of the events the state log sequences (one global `seq` across them). */
export const LOG_TOPICS = Object.freeze(["actor", "alert", "github", "mcp", "provider", "workspace"]);

/** Every op of wire protocol v1 (runtime/messages/args.py OPS), by its wire name. */
export const OPS = Object.freeze([
  "ping",
  "providers",
  "create",
  "get",
  "list",
  "exec",
  "exec_stdin",
  "exec_kill",
  "exec_list",
  "exec_output",
  "write_file",
  "read_file",
  "destroy",
  "extend",
  "stats",
  "snapshot",
  "github_app_set",
  "github_app_list",
  "github_app_delete",
  "github_key_rotate",
  "github_audit",
  "git_clone",
  "mcp_list",
  "mcp_call",
]);

export const DEFAULT_ENDPOINT = "tcp://127.0.0.1:7710";
export const DEFAULT_EVENTS_ENDPOINT = "tcp://127.0.0.1:7711";
export const DEFAULT_STATE_DIR = "~/.local/state/agent-workspaces";
