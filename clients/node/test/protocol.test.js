// The client against a scripted stand-in of the runtime's sockets (a ROUTER and an XPUB on
// loopback): framing, matching replies by id, retries that reuse the id, error classes, and gap
// handling in events() and follow(). Needs no runtime.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { decode, encode } from "@msgpack/msgpack";
import { Context, Reply, Router, XPublisher } from "zeromq";

import {
  BadRequest,
  CapacityExceeded,
  Client,
  ClientClosed,
  Conflict,
  Disabled,
  ERRORS,
  InternalError,
  NotFound,
  OPS,
  PLAIN_USERNAME,
  ProviderUnavailable,
  Timeout,
  Unauthorized,
  WorkspaceError,
} from "../src/index.js";

const TOKEN = "fake-runtime-token-0123456789";

/**
 * A ROUTER and an XPUB that answer requests with `handle(request)` (undefined: no answer). The
 * XPUB admits subscribers as the runtime's does: PLAIN with the token, decided by a ZAP handler.
 */
class FakeRuntime {
  constructor() {
    this.requests = [];
    this.identities = [];
    this.zapAnswers = [];
    this.handle = () => ({ ok: true, result: {} });
    // A context of its own: the ZAP endpoint is one per context, and a closed fake's socket
    // releases it asynchronously, so the next suite's fake could not bind it in a shared one.
    const context = new Context();
    this.router = new Router({ linger: 0, context });
    // allSubs: every subscription shows (subscribed() waits for one), not only a topic's first.
    this.pub = new XPublisher({
      linger: 0,
      welcomeMessage: "\x00welcome",
      plainServer: true,
      verbosity: "allSubs",
      context,
    });
    this.zap = new Reply({ linger: 0, context });
  }

  async start() {
    await this.zap.bind("inproc://zeromq.zap.01"); // before any handshake needs it
    this._zapping = this._serveZap();
    await this.router.bind("tcp://127.0.0.1:*");
    await this.pub.bind("tcp://127.0.0.1:*");
    this.endpoint = this.router.lastEndpoint;
    this.eventsEndpoint = this.pub.lastEndpoint;
    this._serving = this._serve();
    this._draining = this._drainSubscriptions();
    return this;
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
      this.requests.push(request);
      this.identities.push(identity.toString());
      const answer = await this.handle(request);
      if (answer !== undefined) await this.reply(identity, { id: request.id, ...answer });
    }
  }

  async _serveZap() {
    for (;;) {
      let request;
      try {
        request = await this.zap.receive();
      } catch {
        return; // closed
      }
      const [version, requestId, , , , mechanism, username, password] = request;
      const ok =
        mechanism.toString() === "PLAIN" && username?.toString() === PLAIN_USERNAME && password?.toString() === TOKEN;
      this.zapAnswers.push(ok ? "200" : "400");
      await this.zap.send([version, requestId, ok ? "200" : "400", ok ? "OK" : "wrong token", "", ""]);
    }
  }

  async _drainSubscriptions() {
    this.subscriptions = [];
    for (;;) {
      try {
        const [message] = await this.pub.receive();
        this.subscriptions.push(message);
      } catch {
        return;
      }
    }
  }

  /**
   * Resolves once the XPUB has taken in a subscription to `topic` among those after index `since`.
   * The welcome only says the subscription left the client: what is published before the XPUB's
   * I/O thread has read it is dropped.
   */
  async subscribed(topic, since) {
    const deadline = Date.now() + 5000;
    const wanted = (message) => message[0] === 1 && message.subarray(1).toString() === topic;
    while (!this.subscriptions.slice(since).some(wanted)) {
      if (Date.now() > deadline) throw new Error(`no subscription to ${topic} within 5000 ms`);
      await sleep(5);
    }
  }

  reply(identity, body) {
    return this.router.send([identity, encode(body)]);
  }

  publish(topic, event) {
    return this.pub.send([topic, encode(event)]);
  }

  client(options = {}) {
    return new Client({
      endpoint: this.endpoint,
      eventsEndpoint: this.eventsEndpoint,
      token: TOKEN,
      timeoutMs: 2000,
      ...options,
    });
  }

  close() {
    this.router.close();
    this.pub.close();
    this.zap.close();
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

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

describe("wire framing and replies", () => {
  let fake;
  let client;
  before(async () => {
    fake = await new FakeRuntime().start();
    client = fake.client();
  });
  after(() => {
    client.close();
    fake.close();
  });

  test("a request is one MessagePack map {id, op, token, args}; bytes go as bin, text as str", async () => {
    fake.requests.length = 0;
    fake.handle = () => ({ ok: true, result: {} });
    await client.writeFile("ws_1", "a.bin", Buffer.from([0, 255]), { mode: 0o644 });
    await client.exec("ws_1", ["cat"], { stdin: "text becomes bytes", cwd: undefined, env: null });
    const [write, exec] = fake.requests;
    assert.deepEqual(Object.keys(write).sort(), ["args", "id", "op", "token"]);
    assert.equal(write.op, "write_file");
    assert.equal(write.token, TOKEN);
    assert.equal(typeof write.id, "string");
    assert.ok(write.args.data instanceof Uint8Array, "data travels as bin");
    assert.deepEqual([...write.args.data], [0, 255]);
    assert.deepEqual(write.args, { workspace_id: "ws_1", path: "a.bin", data: write.args.data, mode: 0o644 });
    assert.ok(exec.args.stdin instanceof Uint8Array, "a string stdin travels as bin");
    assert.equal(Buffer.from(exec.args.stdin).toString(), "text becomes bytes");
    // Unset options are left out (the runtime refuses null for some fields, e.g. env).
    assert.deepEqual(Object.keys(exec.args).sort(), ["cmd", "stdin", "workspace_id"]);
    assert.notEqual(write.id, exec.id);
    assert.match(fake.identities[0], /^client-[0-9a-f]{16}$/);
  });

  test("spawn is exec with stream: true", async () => {
    fake.requests.length = 0;
    fake.handle = () => ({ ok: true, result: { process_id: "proc_1" } });
    await client.spawn("ws_1", "sleep 1", { stdin_open: true });
    assert.deepEqual(fake.requests[0].args, {
      workspace_id: "ws_1",
      cmd: "sleep 1",
      stdin_open: true,
      stream: true,
    });
  });

  test("concurrent requests are matched to their replies by id, whatever their order", async () => {
    const held = [];
    fake.handle = (request) => {
      held.push(request);
      return undefined;
    };
    const calls = ["ws_a", "ws_b", "ws_c"].map((id) => client.get(id));
    while (held.length < 3) await sleep(5);
    const identity = Buffer.from(fake.identities.at(-1));
    for (const request of [...held].reverse()) {
      await fake.reply(identity, { id: request.id, ok: true, result: { id: request.args.workspace_id } });
    }
    assert.deepEqual(
      (await Promise.all(calls)).map((record) => record.id),
      ["ws_a", "ws_b", "ws_c"],
    );
  });

  test("bin results come back as Buffers", async () => {
    fake.handle = () => ({
      ok: true,
      result: { exit_code: 0, stdout: new Uint8Array([104, 105]), stderr: new Uint8Array(), timed_out: false },
    });
    const result = await client.exec("ws_1", "echo hi");
    assert.ok(Buffer.isBuffer(result.stdout));
    assert.equal(result.stdout.toString(), "hi");
    fake.handle = () => ({ ok: true, result: { data: new Uint8Array([0, 1, 255]) } });
    const data = await client.readFile("ws_1", "x");
    assert.ok(Buffer.isBuffer(data));
    assert.deepEqual([...data], [0, 1, 255]);
  });

  test("every wire error code has its class under WorkspaceError", async () => {
    const classes = {
      bad_request: BadRequest,
      disabled: Disabled,
      unauthorized: Unauthorized,
      not_found: NotFound,
      conflict: Conflict,
      capacity: CapacityExceeded,
      provider_unavailable: ProviderUnavailable,
      timeout: Timeout,
      internal: InternalError,
    };
    assert.deepEqual(Object.keys(ERRORS).sort(), Object.keys(classes).sort());
    for (const [code, cls] of Object.entries(classes)) {
      fake.handle = () => ({ ok: false, error: { code, message: `about ${code}`, retryable: false } });
      const error = await client.ping().catch((e) => e);
      assert.ok(error instanceof cls, `${code} -> ${cls.name}`);
      assert.ok(error instanceof WorkspaceError);
      assert.equal(error.code, code);
      assert.equal(error.message, `about ${code}`);
      assert.equal(error.retryable, false);
      assert.equal(error.name, cls.name);
    }
    fake.handle = () => ({ ok: false, error: { code: "brand_new", message: "from the future", retryable: true } });
    const unknown = await client.ping().catch((e) => e);
    assert.equal(unknown.constructor, WorkspaceError);
    assert.equal(unknown.code, "brand_new");
    assert.equal(unknown.retryable, true);
  });

  test("a method exists for every op", () => {
    const methods = {
      ping: "ping",
      providers: "providers",
      create: "create",
      get: "get",
      list: "list",
      exec: "exec",
      exec_stdin: "execStdin",
      exec_kill: "execKill",
      exec_list: "execList",
      exec_output: "execOutput",
      write_file: "writeFile",
      read_file: "readFile",
      destroy: "destroy",
      extend: "extend",
      stats: "stats",
      snapshot: "snapshot",
      github_app_set: "githubAppSet",
      github_app_list: "githubAppList",
      github_app_delete: "githubAppDelete",
      github_key_rotate: "githubKeyRotate",
      github_audit: "githubAudit",
      git_clone: "gitClone",
      mcp_list: "mcpList",
      mcp_call: "mcpCall",
    };
    assert.deepEqual([...OPS].sort(), Object.keys(methods).sort());
    for (const method of Object.values(methods)) assert.equal(typeof client[method], "function", method);
    assert.equal(typeof client.spawn, "function");
  });
});

describe("retries reuse the request id", () => {
  let fake;
  before(async () => {
    fake = await new FakeRuntime().start();
  });
  after(() => fake.close());

  test("after a timeout, the same id is sent again and its reply is taken", async () => {
    const client = fake.client({ timeoutMs: 150, retries: 2 });
    try {
      fake.requests.length = 0;
      fake.handle = (request) => (fake.requests.length < 3 ? undefined : { ok: true, result: { id: "ws_x" } });
      const record = await client.create({ memory: "256M" });
      assert.equal(record.id, "ws_x");
      assert.equal(fake.requests.length, 3);
      assert.equal(new Set(fake.requests.map((r) => r.id)).size, 1, "one id for every attempt");
      assert.equal(new Set(fake.identities.slice(-3)).size, 1, "from one routing id");
    } finally {
      client.close();
    }
  });

  test("a late reply to an earlier attempt answers the retry", async () => {
    const client = fake.client({ timeoutMs: 150, retries: 3 });
    try {
      fake.requests.length = 0;
      fake.handle = (request) => {
        if (fake.requests.length === 1) {
          // Answered late: after the first attempt timed out, while the second waits.
          const identity = Buffer.from(fake.identities.at(-1));
          setTimeout(() => fake.reply(identity, { id: request.id, ok: true, result: { id: "late" } }), 400);
        }
        return undefined; // the runtime drops duplicates of a request still in flight
      };
      const record = await client.get("ws_late");
      assert.equal(record.id, "late");
      assert.ok(fake.requests.length >= 2);
      assert.equal(new Set(fake.requests.map((r) => r.id)).size, 1);
    } finally {
      client.close();
    }
  });

  test("a retryable error is retried (with backoff) under the same id; a non-retryable one is not", async () => {
    const client = fake.client({ retries: 2 });
    try {
      fake.requests.length = 0;
      fake.handle = () =>
        fake.requests.length === 1
          ? { ok: false, error: { code: "capacity", message: "full", retryable: true } }
          : { ok: true, result: { id: "ws_y" } };
      const started = Date.now();
      assert.equal((await client.create()).id, "ws_y");
      assert.ok(Date.now() - started >= 150, "waited before retrying");
      assert.equal(fake.requests.length, 2);
      assert.equal(fake.requests[0].id, fake.requests[1].id);

      fake.requests.length = 0;
      fake.handle = () => ({ ok: false, error: { code: "not_found", message: "no", retryable: false } });
      await assert.rejects(client.get("ws_none"), NotFound);
      assert.equal(fake.requests.length, 1);
    } finally {
      client.close();
    }
  });

  test("without retries a silent runtime is a retryable Timeout; requestId is sent as given", async () => {
    const client = fake.client({ timeoutMs: 100 });
    try {
      fake.requests.length = 0;
      fake.handle = () => undefined;
      const error = await client.create({}, { requestId: "my-request-1" }).catch((e) => e);
      assert.ok(error instanceof Timeout);
      assert.equal(error.code, "timeout");
      assert.equal(error.retryable, true);
      assert.equal(fake.requests.length, 1);
      assert.equal(fake.requests[0].id, "my-request-1");
    } finally {
      client.close();
    }
  });

  test("close() fails what still waits with ClientClosed", async () => {
    const client = fake.client({ timeoutMs: 10_000 });
    fake.handle = () => undefined;
    const waiting = client.ping();
    await sleep(50);
    client.close();
    await assert.rejects(waiting, ClientClosed);
    await assert.rejects(client.ping(), ClientClosed);
  });
});

describe("events and follow against a scripted event stream", () => {
  let fake;
  let client;
  before(async () => {
    fake = await new FakeRuntime().start();
    client = fake.client();
  });
  after(() => {
    client.close();
    fake.close();
  });

  const workspaceEvent = (seq, id = "ws_1") => ({
    seq,
    ts: 1,
    type: "workspace.state",
    workspace_id: id,
    state: "ready",
    record: { id },
  });

  test("a gap in seq yields a resync from snapshot, then only newer events", async () => {
    fake.handle = (request) =>
      request.op === "snapshot" ? { ok: true, result: { seq: 7, workspaces: [{ id: "ws_snap" }] } } : undefined;
    const since = fake.subscriptions.length;
    const stream = client.events({ topics: ["workspace"] });
    await within(stream.ready, 5000, "welcome");
    await fake.subscribed("workspace", since);
    await fake.publish("workspace", workspaceEvent(3));
    await fake.publish("alert", { seq: 4, ts: 1, type: "alert.raised", key: "k" }); // not yielded, but seen
    await fake.publish("workspace", workspaceEvent(5));
    await fake.publish("workspace", workspaceEvent(7)); // 6 missed
    await fake.publish("workspace", workspaceEvent(6)); // late: covered by the snapshot
    await fake.publish("workspace", workspaceEvent(8));
    const items = [];
    for await (const item of stream) {
      items.push(item);
      if (items.length === 4) break;
    }
    assert.deepEqual(
      items.map((item) => [item.type, item.seq]),
      [
        ["workspace.state", 3],
        ["workspace.state", 5],
        ["resync", 7],
        ["workspace.state", 8],
      ],
    );
    assert.equal(items[2].reason, "gap");
    assert.equal(items[2].after, 5);
    assert.deepEqual(items[2].workspaces, [{ id: "ws_snap" }]);
    assert.ok(stream.closed, "break closes the stream");
  });

  test("`after` is the last seq seen: older events are skipped, a jump past it re-syncs", async () => {
    fake.handle = (request) =>
      request.op === "snapshot" ? { ok: true, result: { seq: 12, workspaces: [] } } : undefined;
    const since = fake.subscriptions.length;
    const stream = client.events({ after: 10 });
    await within(stream.ready, 5000, "welcome");
    await fake.subscribed("workspace", since);
    await fake.publish("workspace", workspaceEvent(9));
    await fake.publish("workspace", workspaceEvent(12));
    await fake.publish("workspace", workspaceEvent(13));
    const first = await within(stream.next(), 5000, "resync");
    const second = await within(stream.next(), 5000, "event");
    assert.deepEqual([first.value.type, first.value.seq, first.value.after], ["resync", 12, 10]);
    assert.deepEqual([second.value.type, second.value.seq], ["workspace.state", 13]);
    stream.close();
    assert.deepEqual(await stream.next(), { value: undefined, done: true });
  });

  test("the event socket admits a subscriber by its token (PLAIN): a wrong token gets no events", async () => {
    const stranger = fake.client({ token: "not-the-token-at-all", joinTimeoutMs: 300 });
    const since = fake.subscriptions.length;
    const stream = client.events({ topics: ["workspace"] });
    const spy = stranger.events({ topics: ["workspace"] });
    try {
      await within(stream.ready, 5000, "welcome");
      await fake.subscribed("workspace", since);
      await within(spy.ready, 5000, "giving up on a welcome that never comes");
      assert.ok(fake.zapAnswers.includes("400"), "the stranger was refused at the handshake");
      const spied = spy.next();
      await fake.publish("workspace", workspaceEvent(1, "ws_secret"));
      const got = await within(stream.next(), 5000, "event");
      assert.equal(got.value.workspace_id, "ws_secret");
      const nothing = await Promise.race([spied.then(() => "an event"), sleep(500).then(() => "nothing")]);
      assert.equal(nothing, "nothing");
    } finally {
      stream.close();
      spy.close();
      stranger.close();
    }
  });

  test("close() ends a next() that waits for an event", async () => {
    const stream = client.events();
    await within(stream.ready, 5000, "welcome");
    const waiting = stream.next();
    await sleep(50);
    stream.close();
    assert.deepEqual(await within(waiting, 2000, "end"), { value: undefined, done: true });
  });

  test("follow yields a process's events in order, refilling a gap from exec_output", async () => {
    const info = { workspace_id: "ws_f", process_id: "proc_1", topic: "exec.ws_f.proc_1" };
    const base = { ts: 1, workspace_id: "ws_f", process_id: "proc_1" };
    const output = (seq, stream, text) => ({ ...base, type: "exec.output", seq, stream, data: Buffer.from(text) });
    const exit = { ...base, type: "exec.exit", seq: 4, exit_code: 3, timed_out: false, duration_ms: 1, error: null };
    const asked = [];
    fake.handle = (request) => {
      if (request.op !== "exec_output") return undefined;
      asked.push(request.args.after);
      return {
        ok: true,
        result: {
          process: { ...info, running: false },
          chunks: [{ seq: 2, stream: "stderr", data: new Uint8Array([98, 10]), ts: 1 }],
          truncated: 0,
          exit: null,
        },
      };
    };
    const seen = [];
    const following = (async () => {
      for await (const item of client.follow(info, { idleMs: 5000, timeoutMs: 10_000 })) seen.push(item);
    })();
    while (!fake.subscriptions?.some((s) => s.toString().includes("exec.ws_f.proc_1"))) await sleep(5);
    await sleep(50);
    await fake.publish("exec.ws_f.proc_12", output(1, "stdout", "another process\n")); // a longer topic
    await fake.publish(info.topic, output(1, "stdout", "a\n"));
    await fake.publish(info.topic, output(3, "stdout", "c\n")); // 2 missed: refilled
    await fake.publish(info.topic, output(3, "stdout", "c\n"));
    await fake.publish(info.topic, exit);
    await within(following, 10_000, "follow");
    assert.deepEqual(asked, [1]);
    assert.deepEqual(
      seen.map((item) => [item.type, item.seq, item.data?.toString() ?? item.exit_code]),
      [
        ["exec.output", 1, "a\n"],
        ["exec.output", 2, "b\n"],
        ["exec.output", 3, "c\n"],
        ["exec.exit", 4, 3],
      ],
    );
    assert.ok(Buffer.isBuffer(seen[1].data));
  });

  test("follow asks exec_output when the stream is quiet, and reports truncated output", async () => {
    const info = { workspace_id: "ws_q", process_id: "proc_q", topic: "exec.ws_q.proc_q" };
    fake.handle = (request) =>
      request.op === "exec_output"
        ? {
            ok: true,
            result: {
              process: { ...info, running: false },
              chunks: [{ seq: 3, stream: "stdout", data: new Uint8Array([122]), ts: 1 }],
              truncated: 2,
              exit: { type: "exec.exit", seq: 4, ts: 1, ...info, exit_code: 0, timed_out: false, duration_ms: 1 },
            },
          }
        : undefined;
    const items = [];
    for await (const item of client.follow(info, { idleMs: 100 })) items.push(item);
    assert.deepEqual(
      items.map((item) => item.type),
      ["truncated", "exec.output", "exec.exit"],
    );
    assert.equal(items[0].missed, 2);
  });
});

test("events refuses topics outside the state log (a process's output has its own seq)", () => {
  const client = new Client({ endpoint: "tcp://127.0.0.1:1", eventsEndpoint: "tcp://127.0.0.1:2", token: "t" });
  try {
    assert.throws(() => client.events({ topics: ["exec."] }), /not state-log topics: exec\./);
  } finally {
    client.close();
  }
});
