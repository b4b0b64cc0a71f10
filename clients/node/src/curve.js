// CurveZMQ credentials, found the way the runtime's own clients find them (runtime/wire/keys.py,
// runtime/wire/security.py): the server's public key and this client's key pair. A runtime with
// WORKSPACE_ZMQ_CURVE=true admits only clients whose public key it lists, on both its sockets.
//
// Key files are ZeroMQ's certificate format (ZPL, as czmq, pyzmq's zmq.auth and
// `workspaces keys new NAME` write them):
//
//     metadata
//     curve
//         public-key = "<40 Z85 characters>"
//         secret-key = "<40 Z85 characters>"     (only in the client's .key_secret file)

import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

import { BadRequest } from "./errors.js";
import { DEFAULT_STATE_DIR } from "./protocol.js";
import { expandHome } from "./token.js";

const Z85_KEY_RE = /^[0-9A-Za-z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;
const KEY_LINE_RE = /^\s*(public|secret)-key\s*=\s*"?([^"\s]+)"?\s*$/;

/** Whether `value` is a CURVE key as Z85 text (40 characters). */
export function isZ85Key(value) {
  return typeof value === "string" && Z85_KEY_RE.test(value);
}

function parse(text) {
  const found = {};
  for (const line of text.split(/\r?\n/)) {
    const match = KEY_LINE_RE.exec(line);
    if (match && isZ85Key(match[2])) found[match[1]] = match[2];
  }
  return { publicKey: found.public ?? null, secretKey: found.secret ?? null };
}

function reason(error) {
  return error?.code === "ENOENT" ? "no such file" : (error?.message ?? String(error));
}

/**
 * A client's key pair from its key file (`workspaces keys new NAME` writes it as
 * STATE_DIR/curve/issued/NAME.key_secret). The file must be private (mode 0600), as the Python
 * client requires: a secret key readable by others is refused.
 * @param {string} path
 * @returns {{publicKey: string, secretKey: string}}
 */
export function readKeyFile(path) {
  const file = expandHome(path);
  let text;
  try {
    // Windows has no POSIX modes to check.
    const mode = process.platform === "win32" ? 0 : statSync(file).mode & 0o777;
    if (mode & 0o077) {
      const octal = mode.toString(8).padStart(4, "0");
      throw new BadRequest(`key file ${file} has mode ${octal}: it must be private (run: chmod 600 ${file})`);
    }
    text = readFileSync(file, "utf8");
  } catch (error) {
    if (error instanceof BadRequest) throw error;
    throw new BadRequest(`cannot read the key file ${file}: ${reason(error)}`);
  }
  const { publicKey, secretKey } = parse(text);
  if (publicKey === null || secretKey === null) {
    throw new BadRequest(`${file} holds no CURVE key pair (make one with: workspaces keys new NAME)`);
  }
  return { publicKey, secretKey };
}

/**
 * A public key given as Z85 text (40 characters) or as the path of a key file (the server's
 * STATE_DIR/curve/server.key).
 * @param {string} value
 * @returns {string}
 */
export function readPublicKey(value) {
  const text = String(value).trim();
  if (isZ85Key(text)) return text;
  const file = expandHome(text);
  let content;
  try {
    content = readFileSync(file, "utf8");
  } catch (error) {
    const what = JSON.stringify(value);
    throw new BadRequest(`${what} is neither a 40-character Z85 public key nor a readable key file: ${reason(error)}`);
  }
  const { publicKey } = parse(content);
  if (publicKey === null) throw new BadRequest(`${file} holds no CURVE public key`);
  return publicKey;
}

/**
 * The CURVE socket options of a client (zeromq.js names), or null for none. `serverKey` and
 * `clientKeyFile` default to WORKSPACE_ZMQ_SERVER_KEY and WORKSPACE_ZMQ_CLIENT_KEY (empty: unset);
 * with a client key but no server key, the server key of this machine's runtime
 * (STATE_DIR/curve/server.key) is used if there is one, as the Python client does.
 * @param {{serverKey?: string | null, clientKeyFile?: string | null, stateDir?: string,
 *   env?: Record<string, string | undefined>}} [options]
 * @returns {{curveServerKey: string, curvePublicKey: string, curveSecretKey: string} | null}
 */
export function curveOptions(options = {}) {
  const env = options.env ?? process.env;
  const serverKey = (options.serverKey === undefined ? env.WORKSPACE_ZMQ_SERVER_KEY : options.serverKey) || null;
  const clientKeyFile =
    (options.clientKeyFile === undefined ? env.WORKSPACE_ZMQ_CLIENT_KEY : options.clientKeyFile) || null;
  if (clientKeyFile === null) {
    if (serverKey !== null) {
      throw new BadRequest(
        "a CURVE server key is set (serverKey or WORKSPACE_ZMQ_SERVER_KEY) but no client key: set clientKeyFile " +
          "or WORKSPACE_ZMQ_CLIENT_KEY to the path of this client's key file (made by: workspaces keys new NAME)",
      );
    }
    return null;
  }
  const pair = readKeyFile(clientKeyFile);
  let server = serverKey;
  if (server === null) {
    const stateDir = expandHome(options.stateDir ?? env.WORKSPACE_STATE_DIR ?? DEFAULT_STATE_DIR);
    const local = join(stateDir, "curve", "server.key");
    if (!existsSync(local)) {
      throw new BadRequest(
        "a CURVE client key is set (clientKeyFile or WORKSPACE_ZMQ_CLIENT_KEY) but no server key: set serverKey or " +
          "WORKSPACE_ZMQ_SERVER_KEY to the server's public key (workspaces keys list, on the server) or the path " +
          "of its server.key",
      );
    }
    server = local;
  }
  return { curveServerKey: readPublicKey(server), curvePublicKey: pair.publicKey, curveSecretKey: pair.secretKey };
}
