// Finding the shared secret the same way the runtime's own clients do, so no configuration is
// needed on the machine that runs the runtime.

import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

import { BadRequest } from "./errors.js";
import { DEFAULT_STATE_DIR } from "./protocol.js";

/** `~` and `~/...` under the home directory, as the runtime reads its paths. */
export function expandHome(path) {
  return path === "~" || path.startsWith("~/") ? join(homedir(), path.slice(2)) : path;
}

/**
 * The token as the runtime's own clients find it: WORKSPACE_AUTH_TOKEN, else STATE_DIR/token
 * (STATE_DIR from the option, WORKSPACE_STATE_DIR, or the default ~/.local/state/agent-workspaces).
 * @param {{stateDir?: string, env?: Record<string, string | undefined>}} [options]
 */
export function readToken(options = {}) {
  const env = options.env ?? process.env;
  if (env.WORKSPACE_AUTH_TOKEN) return env.WORKSPACE_AUTH_TOKEN;
  const file = join(expandHome(options.stateDir ?? env.WORKSPACE_STATE_DIR ?? DEFAULT_STATE_DIR), "token");
  let token;
  try {
    token = readFileSync(file, "utf8").trim();
  } catch (error) {
    if (error?.code === "ENOENT") {
      throw new BadRequest(`no token: set WORKSPACE_AUTH_TOKEN or start the runtime once to create ${file}`);
    }
    throw new BadRequest(`cannot read the token file ${file}: ${error?.message ?? error}`);
  }
  if (token.length < 16) throw new BadRequest(`token file ${file} is empty or too short`);
  return token;
}
