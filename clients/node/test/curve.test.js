// CURVE (a runtime with WORKSPACE_ZMQ_CURVE=true): reading key files and the defaults from the
// environment, the errors at construction, the secret never shown, and a scripted CurveZMQ
// stand-in of the runtime's two sockets that admits listed client keys only. Needs no runtime.

import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import { inspect } from "node:util";

import { decode, encode } from "@msgpack/msgpack";
import { Context, Reply, Router, XPublisher, curveKeyPair } from "zeromq";

import { BadRequest, Client, Timeout, readKeyFile, readPublicKey } from "../src/index.js";

const TOKEN = "fake-runtime-token-0123456789";
const VARIABLES = ["WORKSPACE_ZMQ_SERVER_KEY", "WORKSPACE_ZMQ_CLIENT_KEY", "WORKSPACE_STATE_DIR"];
const saved = Object.fromEntries(VARIABLES.map((name) => [name, process.env[name]]));

let dir;
before(() => {
  dir = mkdtempSync(join(tmpdir(), "workspaces-curve-test-"));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
  for (const [name, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});
beforeEach(() => {
  // The tests say which keys a client gets; the environment of the run must not add any.
  for (const name of VARIABLES) delete process.env[name];
});

let files = 0;

/** A certificate as `workspaces keys new` writes it (runtime/wire/keys.py `_write`), private by default. */
function certificate({ publicKey, secretKey = null }, { mode = 0o600, name = `key-${++files}` } = {}) {
  const path = join(dir, secretKey ? `${name}.key_secret` : `${name}.key`);
  const lines = [
    `#   ZeroMQ CURVE ${secretKey ? "secret" : "public"} certificate, made by \`workspaces keys\` on 2025-01-01`,
    secretKey ? "#   DO NOT share this file: it holds a secret key." : "#   A public key: safe to share.",
    "metadata",
    "curve",
    `    public-key = "${publicKey}"`,
    ...(secretKey ? [`    secret-key = "${secretKey}"`] : []),
  ];
  writeFileSync(path, lines.join("\n") + "\n", { mode });
  chmodSync(path, mode); // whatever the umask let through
  return path;
}

const Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/** Z85 text of a 32-byte key, as the runtime's ZAP handler compares it with the listed keys. */
function z85(bytes) {
  let out = "";
  for (let i = 0; i < bytes.length; i += 4) {
    let value = bytes.readUInt32BE(i);
    const chunk = [];
    for (let j = 0; j < 5; j++) {
      chunk.unshift(Z85[value % 85]);
      value = Math.floor(value / 85);
    }
    out += chunk.join("");
  }
  return out;
}

/** Resolves once `condition()` holds (checked every 10 ms); fails after `ms`. */
async function pollUntil(condition, ms, what) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** An assert.throws check: a BadRequest whose message says `text`. */
function badRequest(text) {
  return (error) => error instanceof BadRequest && error.message.includes(text);
}

async function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe("key files", () => {
  test("a client key file as `workspaces keys new` writes it gives its public and secret key", () => {
    const pair = curveKeyPair();
    assert.deepEqual(readKeyFile(certificate(pair)), pair);
  });

  const posix = { skip: process.platform === "win32" };
  test("a key file readable by others is refused, naming the chmod that fixes it", posix, () => {
    const path = certificate(curveKeyPair(), { mode: 0o644 });
    assert.throws(() => readKeyFile(path), badRequest(`chmod 600 ${path}`));
  });

  test("a missing key file, or one without a key pair, is a clear error", () => {
    const missing = join(dir, "nowhere.key_secret");
    assert.throws(() => readKeyFile(missing), badRequest(missing));
    const publicOnly = certificate({ publicKey: curveKeyPair().publicKey });
    chmodSync(publicOnly, 0o600);
    assert.throws(() => readKeyFile(publicOnly), badRequest("no CURVE key pair"));
  });

  test("a server key is 40 Z85 characters or the public key of a key file", () => {
    const { publicKey } = curveKeyPair();
    assert.equal(readPublicKey(publicKey), publicKey);
    assert.equal(readPublicKey(` ${publicKey}\n`), publicKey);
    assert.equal(readPublicKey(certificate({ publicKey }, { mode: 0o644 })), publicKey);
    assert.throws(() => readPublicKey("not-a-key"), badRequest("neither a 40-character Z85"));
  });
});

describe("choosing CURVE", () => {
  test("a server key without a client key, or a client key without a server key, throws at construction", () => {
    const pair = curveKeyPair();
    process.env.WORKSPACE_STATE_DIR = join(dir, "no-runtime-here");
    assert.throws(() => new Client({ token: TOKEN, serverKey: pair.publicKey }), badRequest("no client key"));
    assert.throws(() => new Client({ token: TOKEN, clientKeyFile: certificate(pair) }), badRequest("no server key"));
    process.env.WORKSPACE_ZMQ_SERVER_KEY = pair.publicKey;
    assert.throws(() => new Client({ token: TOKEN }), badRequest("WORKSPACE_ZMQ_SERVER_KEY) but no client key"));
  });

  test("the keys default from WORKSPACE_ZMQ_SERVER_KEY and WORKSPACE_ZMQ_CLIENT_KEY; null turns CURVE off", () => {
    const server = curveKeyPair();
    const mine = curveKeyPair();
    process.env.WORKSPACE_ZMQ_SERVER_KEY = certificate({ publicKey: server.publicKey }, { mode: 0o644 });
    process.env.WORKSPACE_ZMQ_CLIENT_KEY = certificate(mine);
    const client = new Client({ token: TOKEN });
    const plain = new Client({ token: TOKEN, serverKey: null, clientKeyFile: null });
    try {
      const chosen = [client.curve, client.serverKey, client.clientPublicKey];
      assert.deepEqual(chosen, [true, server.publicKey, mine.publicKey]);
      assert.deepEqual([plain.curve, plain.serverKey, plain.clientPublicKey], [false, null, null]);
      assert.equal(client._subscriberOptions().curveSecretKey, mine.secretKey, "the event socket uses CURVE too");
      assert.equal(client._subscriberOptions().plainPassword, undefined, "and not PLAIN");
      assert.equal(plain._subscriberOptions().plainPassword, TOKEN);
    } finally {
      client.close();
      plain.close();
    }
  });

  test("with a client key but no server key, the server.key of this machine's runtime is used", () => {
    const server = curveKeyPair();
    const stateDir = join(dir, "state");
    mkdirSync(join(stateDir, "curve"), { recursive: true });
    writeFileSync(join(stateDir, "curve", "server.key"), `curve\n    public-key = "${server.publicKey}"\n`);
    process.env.WORKSPACE_STATE_DIR = stateDir;
    const client = new Client({ token: TOKEN, clientKeyFile: certificate(curveKeyPair()) });
    try {
      assert.equal(client.serverKey, server.publicKey);
    } finally {
      client.close();
    }
  });

  test("neither the secret key nor the token shows when a client is printed, listed or serialised", () => {
    const mine = curveKeyPair();
    const client = new Client({ token: TOKEN, serverKey: curveKeyPair().publicKey, clientKeyFile: certificate(mine) });
    try {
      const shown = [
        inspect(client, { depth: Infinity, showHidden: false }),
        JSON.stringify(client, (key, value) => (key === "_socket" ? undefined : value)),
        Object.keys(client).join(","),
      ];
      for (const text of shown) {
        assert.ok(!text.includes(mine.secretKey), `the secret key shows in: ${text}`);
        assert.ok(!text.includes(TOKEN), `the token shows in: ${text}`);
      }
      assert.ok(shown[0].includes(mine.publicKey), "the public key may show");
    } finally {
      client.close();
    }
  });
});

/**
 * The runtime's two sockets as CurveZMQ servers (ROUTER for requests, XPUB with the welcome for
 * events) and a ZAP handler that admits the listed client public keys, as runtime/wire/zap.py does.
 */
class CurveRuntime {
  constructor() {
    this.keys = curveKeyPair();
    this.listed = new Set();
    this.zapRequests = [];
    const { publicKey, secretKey } = this.keys;
    // A context of its own, as a runtime has: its ZAP handler answers for its sockets only.
    const context = new Context();
    const curve = { linger: 0, context, curveServer: true, curveSecretKey: secretKey, curvePublicKey: publicKey };
    this.router = new Router({ ...curve, zapDomain: "workspaces-requests" });
    this.pub = new XPublisher({ ...curve, zapDomain: "workspaces-events", welcomeMessage: "\x00welcome" });
    this.subscriptions = [];
    this.zap = new Reply({ linger: 0, context });
  }

  async start() {
    await this.zap.bind("inproc://zeromq.zap.01"); // before any handshake needs it
    this._zapping = this._serveZap();
    await this.router.bind("tcp://127.0.0.1:*");
    await this.pub.bind("tcp://127.0.0.1:*");
    this._serving = this._serve();
    this._draining = this._drain();
    return this;
  }

  async _serveZap() {
    for (;;) {
      let request;
      try {
        request = await this.zap.receive();
      } catch {
        return; // closed
      }
      const [version, requestId, domain, , , mechanism, key] = request;
      const publicKey = mechanism.toString() === "CURVE" ? z85(key) : null;
      const ok = publicKey !== null && this.listed.has(publicKey);
      this.zapRequests.push({ domain: domain.toString(), mechanism: mechanism.toString(), publicKey, ok });
      await this.zap.send([version, requestId, ok ? "200" : "400", ok ? "OK" : "not listed", "", ""]);
    }
  }

  async _serve() {
    for (;;) {
      let identity, frame;
      try {
        [identity, frame] = await this.router.receive();
      } catch {
        return; // closed
      }
      const request = decode(frame);
      const result = request.op === "ping" && request.token === TOKEN ? { version: "test", ready: true } : {};
      await this.router.send([identity, encode({ id: request.id, ok: true, result })]);
    }
  }

  async _drain() {
    for (;;) {
      try {
        const [message] = await this.pub.receive(); // a subscription: 1, then the topic
        this.subscriptions.push(message);
      } catch {
        return;
      }
    }
  }

  /** A client with this key file (null: no CURVE); `waitMs` bounds its replies and its welcome. */
  client(keyFile, waitMs) {
    return new Client({
      endpoint: this.router.lastEndpoint,
      eventsEndpoint: this.pub.lastEndpoint,
      token: TOKEN,
      timeoutMs: waitMs,
      joinTimeoutMs: waitMs,
      serverKey: keyFile === null ? null : this.keys.publicKey,
      clientKeyFile: keyFile,
    });
  }

  close() {
    this.router.close();
    this.pub.close();
    this.zap.close();
  }
}

describe("against a scripted CurveZMQ runtime", () => {
  let runtime;
  before(async () => {
    runtime = await new CurveRuntime().start();
  });
  after(() => runtime.close());

  test("a listed key reaches both sockets by CURVE: its requests are answered and its events arrive", async () => {
    const mine = curveKeyPair();
    runtime.listed.add(mine.publicKey);
    const client = runtime.client(certificate(mine), 10_000);
    const stream = client.events({ topics: ["workspace"] });
    try {
      assert.deepEqual(await client.ping(), { version: "test", ready: true });
      assert.equal(await within(stream.ready, 15_000, "welcome"), true);
      // The welcome says the subscription left the client; the publisher may not have taken it
      // in yet (its I/O thread reads it), and ZeroMQ drops what is published before it has.
      const subscribed = (message) => message[0] === 1 && message.subarray(1).toString() === "workspace";
      await pollUntil(() => runtime.subscriptions.some(subscribed), 5000, "the subscription");
      await runtime.pub.send(["workspace", encode({ seq: 1, ts: 1, type: "workspace.state", workspace_id: "ws_1" })]);
      const got = await within(stream.next(), 5000, "event");
      assert.equal(got.value.workspace_id, "ws_1");
      const mineSeen = runtime.zapRequests.filter((request) => request.publicKey === mine.publicKey);
      assert.deepEqual(
        [...new Set(mineSeen.map((request) => `${request.domain} ${request.mechanism} ${request.ok}`))].sort(),
        ["workspaces-events CURVE true", "workspaces-requests CURVE true"],
      );
    } finally {
      stream.close();
      client.close();
    }
  });

  test("an unlisted key gets no reply and no welcome: the runtime refuses its handshakes", async () => {
    const stranger = curveKeyPair();
    const client = runtime.client(certificate(stranger), 1000); // refused: it waits for nothing
    const stream = client.events();
    try {
      await assert.rejects(client.ping(), Timeout);
      assert.equal(await within(stream.ready, 5000, "giving up on the welcome"), false);
      const seen = runtime.zapRequests.filter((request) => request.publicKey === stranger.publicKey);
      const domains = [...new Set(seen.map((request) => request.domain))].sort();
      assert.deepEqual(domains, ["workspaces-events", "workspaces-requests"]);
      assert.ok(seen.every((request) => !request.ok));
    } finally {
      stream.close();
      client.close();
    }
  });

  test("a client without CURVE gets nothing from a CURVE runtime (not even by PLAIN with the token)", async () => {
    const client = runtime.client(null, 1000);
    const stream = client.events();
    try {
      assert.equal(client.curve, false);
      await assert.rejects(client.ping(), Timeout);
      assert.equal(await within(stream.ready, 5000, "giving up on the welcome"), false);
    } finally {
      stream.close();
      client.close();
    }
  });
});
