// The client against a live runtime: WORKSPACES_ENDPOINT, WORKSPACES_EVENTS_ENDPOINT and
// WORKSPACES_TOKEN name it (tests/integration/test_node_client.py starts one and sets them).
// Every workspace created here is destroyed at the end.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { BadRequest, Client, Conflict, NotFound, Unauthorized, WorkspaceError } from "../src/index.js";

const ENDPOINT = process.env.WORKSPACES_ENDPOINT;
const EVENTS_ENDPOINT = process.env.WORKSPACES_EVENTS_ENDPOINT;
const TOKEN = process.env.WORKSPACES_TOKEN;
const SKIP =
  ENDPOINT && EVENTS_ENDPOINT && TOKEN
    ? false
    : "no live runtime: set WORKSPACES_ENDPOINT, WORKSPACES_EVENTS_ENDPOINT and WORKSPACES_TOKEN " +
      "(tests/integration/test_node_client.py does)";
if (SKIP) console.log(`# skipping the live runtime tests: ${SKIP}`);

const SMALL = { memory: "256M", cpu: 1 };
const RUN = randomBytes(4).toString("hex");

/** The next item of an async iterator, or a failure after `ms`. */
async function nextWithin(iterator, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  try {
    const { value, done } = await Promise.race([iterator.next(), timeout]);
    assert.ok(!done, `${what}: the stream ended`);
    return value;
  } finally {
    clearTimeout(timer);
  }
}

async function collect(iterable) {
  const items = [];
  for await (const item of iterable) items.push(item);
  return items;
}

describe("a live runtime", { skip: SKIP }, () => {
  let client;
  let workspace;
  const created = new Set();

  async function create(args = {}, options) {
    const record = await client.create({ ...SMALL, labels: { suite: "node-client", run: RUN }, ...args }, options);
    created.add(record.id);
    return record;
  }

  before(async () => {
    client = new Client({
      endpoint: ENDPOINT,
      eventsEndpoint: EVENTS_ENDPOINT,
      token: TOKEN,
      timeoutMs: 120_000,
      retries: 2,
    });
    await client.waitReady({ timeoutMs: 60_000 });
  });

  after(async () => {
    if (!client) return;
    const failures = [];
    for (const id of created) {
      try {
        await client.destroy(id);
      } catch (error) {
        failures.push(`${id}: ${error}`);
      }
    }
    client.close();
    assert.deepEqual(failures, [], "every workspace the tests created is destroyed");
  });

  test("ping and providers", async () => {
    const pong = await client.ping();
    assert.equal(pong.ready, true);
    assert.equal(typeof pong.version, "string");
    const providers = await client.providers();
    assert.ok(providers.length >= 1);
    assert.ok(providers.some((provider) => provider.healthy), JSON.stringify(providers));
  });

  test("create a small workspace", async () => {
    workspace = await create();
    assert.match(workspace.id, /^ws_/);
    assert.equal(workspace.state, "ready");
    assert.equal(workspace.memory_bytes, 256 * 1024 * 1024);
    assert.equal(workspace.cpu, 1);
    assert.deepEqual(workspace.labels, { suite: "node-client", run: RUN });
    const got = await client.get(workspace.id);
    assert.equal(got.id, workspace.id);
    const listed = await client.list({ labels: { run: RUN } });
    assert.deepEqual(
      listed.map((record) => record.id),
      [workspace.id],
    );
  });

  test("exec: uname -a exits 0 with its stdout as bytes", async () => {
    const result = await client.exec(workspace.id, ["uname", "-a"]);
    assert.equal(result.exit_code, 0);
    assert.ok(result.stdout instanceof Uint8Array && Buffer.isBuffer(result.stdout));
    assert.match(result.stdout.toString(), /^Linux /);
    assert.equal(result.stderr.length, 0);
    assert.equal(result.timed_out, false);
  });

  test("exec: a shell string, stdin bytes, exit code and stderr", async () => {
    const counted = await client.exec(workspace.id, "wc -c", { stdin: Buffer.from([0, 1, 2, 255, 10]) });
    assert.equal(counted.stdout.toString().trim(), "5");
    const failing = await client.exec(workspace.id, "echo oops >&2; exit 7");
    assert.equal(failing.exit_code, 7);
    assert.equal(failing.stderr.toString(), "oops\n");
    const env = await client.exec(workspace.id, "echo $GREETING from $(pwd)", { env: { GREETING: "hi" }, cwd: "/tmp" });
    assert.equal(env.stdout.toString(), "hi from /tmp\n");
    const slow = await client.exec(workspace.id, "sleep 30", { timeout_s: 1 });
    assert.equal(slow.timed_out, true);
  });

  test("streamed exec: follow yields the output in order, then exit code 3", async () => {
    const process = await client.spawn(workspace.id, ["sh", "-c", "echo a; echo b >&2; exit 3"]);
    assert.match(process.process_id, /\S/);
    assert.equal(process.topic, `exec.${workspace.id}.${process.process_id}`);
    const items = await collect(client.follow(process, { timeoutMs: 60_000 }));
    const exit = items.at(-1);
    assert.equal(exit.type, "exec.exit");
    assert.equal(exit.exit_code, 3);
    const outputs = items.filter((item) => item.type === "exec.output");
    assert.deepEqual(
      items.map((item) => item.seq),
      items.map((_, index) => index + 1),
      "per-process seq 1, 2, ... without a gap",
    );
    assert.ok(outputs.every((item) => Buffer.isBuffer(item.data)));
    const text = (stream) =>
      Buffer.concat(outputs.filter((item) => item.stream === stream).map((item) => item.data)).toString();
    assert.equal(text("stdout"), "a\n");
    assert.equal(text("stderr"), "b\n");
    const listed = await client.execList(workspace.id);
    const ended = listed.find((info) => info.process_id === process.process_id);
    assert.equal(ended.running, false);
    assert.equal(ended.exit_code, 3);
    const page = await client.execOutput(workspace.id, process.process_id, 0);
    assert.equal(page.exit.exit_code, 3);
    assert.deepEqual(
      page.chunks.map((chunk) => chunk.seq),
      outputs.map((item) => item.seq),
    );
  });

  test("streamed exec: stdin fed through execStdin, and execKill", async () => {
    const cat = await client.spawn(workspace.id, ["cat"], { stdin_open: true });
    await client.execStdin(workspace.id, cat.process_id, Buffer.from([0x00, 0xff, 0x0a]));
    await client.execStdin(workspace.id, cat.process_id, "last line\n", { close: true });
    const echoed = await collect(client.follow(cat, { timeoutMs: 60_000 }));
    const data = Buffer.concat(echoed.filter((item) => item.type === "exec.output").map((item) => item.data));
    assert.deepEqual(data, Buffer.concat([Buffer.from([0x00, 0xff, 0x0a]), Buffer.from("last line\n")]));
    assert.equal(echoed.at(-1).exit_code, 0);
    await assert.rejects(client.execStdin(workspace.id, cat.process_id, "too late"), Conflict);

    const sleeper = await client.spawn(workspace.id, "sleep 300");
    await client.execKill(workspace.id, sleeper.process_id, "KILL");
    const killed = await collect(client.follow(sleeper, { timeoutMs: 60_000 }));
    assert.equal(killed.at(-1).type, "exec.exit");
    assert.equal(killed.at(-1).exit_code, 137);
  });

  test("files: binary bytes (0x00 to 0xff) round-trip", async () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const data = Buffer.concat([bytes, Buffer.from([0x00, 0xff, 0x00]), bytes]);
    await client.writeFile(workspace.id, "dir/binary.bin", data, { mode: 0o640 });
    const back = await client.readFile(workspace.id, "dir/binary.bin");
    assert.ok(Buffer.isBuffer(back));
    assert.deepEqual(back, data);
    const mode = await client.exec(workspace.id, "stat -c %a dir/binary.bin");
    assert.equal(mode.stdout.toString(), "640\n");
    await assert.rejects(client.readFile(workspace.id, "dir/missing.bin"), NotFound);
  });

  test("extend, stats and snapshot", async () => {
    const extended = await client.extend(workspace.id, 7200);
    assert.ok(extended.expires_at - Date.now() / 1000 > 7000);
    const stats = await client.stats();
    assert.ok(stats.workspaces >= 1);
    assert.equal(typeof stats.capacity.limit, "number");
    const snapshot = await client.snapshot();
    assert.ok(snapshot.seq > 0);
    assert.ok(snapshot.workspaces.some((record) => record.id === workspace.id));
  });

  test("events: a forced gap (after: 0) is re-synced by a snapshot holding the workspace", async () => {
    const stream = client.events({ topics: ["workspace"], after: 0 });
    try {
      await stream.ready; // subscribed: the extend's event cannot be missed
      const before = await client.snapshot();
      await client.extend(workspace.id, 3600);
      const resync = await nextWithin(stream, 30_000, "resync");
      assert.equal(resync.type, "resync");
      assert.equal(resync.reason, "gap");
      assert.equal(resync.after, 0);
      assert.ok(resync.seq > before.seq, "the snapshot is taken after the event that showed the gap");
      assert.ok(resync.workspaces.some((record) => record.id === workspace.id));

      const extended = await client.extend(workspace.id, 1800);
      let event;
      do {
        event = await nextWithin(stream, 30_000, "workspace event");
      } while (event.workspace_id !== workspace.id);
      assert.equal(event.type, "workspace.state");
      assert.ok(event.seq > resync.seq);
      assert.equal(event.state, "ready");
      assert.equal(event.record.expires_at, extended.expires_at);
    } finally {
      stream.close();
    }
  });

  test("events: snapshot: true starts with a resync, then follows a new workspace's states in order", async () => {
    const stream = client.events({ topics: ["workspace"], snapshot: true });
    let other;
    try {
      const initial = await nextWithin(stream, 30_000, "initial resync");
      assert.deepEqual([initial.type, initial.reason], ["resync", "initial"]);
      assert.ok(initial.workspaces.some((record) => record.id === workspace.id));
      other = await create();
      await client.destroy(other.id);
      const states = [];
      let last = initial.seq;
      while (states.at(-1) !== "destroyed") {
        const event = await nextWithin(stream, 60_000, "state of the new workspace");
        assert.notEqual(event.type, "resync", "no gap expected");
        assert.ok(event.seq > last, "seq increases");
        last = event.seq;
        if (event.workspace_id === other.id) states.push(event.state);
      }
      assert.equal(states[0], "creating");
      assert.ok(states.includes("ready"));
    } finally {
      stream.close();
    }
  });

  test("errors: a missing workspace is NotFound (not retryable), a bad arg BadRequest", async () => {
    const missing = await client.get("ws_000000000000").catch((error) => error);
    assert.ok(missing instanceof NotFound);
    assert.ok(missing instanceof WorkspaceError);
    assert.equal(missing.code, "not_found");
    assert.equal(missing.retryable, false);
    assert.match(missing.message, /ws_000000000000 does not exist/);

    const bad = await client.create({ memory: "lots" }).catch((error) => error);
    assert.ok(bad instanceof BadRequest, String(bad));
    assert.equal(bad.code, "bad_request");
    assert.equal(bad.retryable, false);
    assert.match(bad.message, /memory/);

    const typo = await client.request("create", { memroy: "1G" }).catch((error) => error);
    assert.ok(typo instanceof BadRequest, String(typo));

    const stranger = new Client({ endpoint: ENDPOINT, eventsEndpoint: EVENTS_ENDPOINT, token: "not-the-token-at-all" });
    try {
      await assert.rejects(stranger.ping(), Unauthorized);
    } finally {
      stranger.close();
    }
  });

  test("retries reuse the id: the same request id twice creates one workspace", async () => {
    const requestId = `node-create-${RUN}`;
    const first = await create({}, { requestId });
    const again = await create({}, { requestId });
    assert.equal(again.id, first.id);
    const listed = await client.list({ labels: { run: RUN } });
    assert.equal(listed.filter((record) => record.id === first.id).length, 1);
    assert.equal(listed.length, 2, "the shared workspace and this one, nothing more");
    await client.destroy(first.id);
  });

  test("a new client with the same routing id and request id gets the same workspace", async () => {
    const options = { endpoint: ENDPOINT, eventsEndpoint: EVENTS_ENDPOINT, token: TOKEN, timeoutMs: 120_000 };
    const routingId = `node-agent-${RUN}`;
    const requestId = `node-restart-${RUN}`;
    const args = { ...SMALL, labels: { suite: "node-client", run: RUN, restart: "yes" } };
    const before = new Client({ ...options, routingId });
    let first;
    try {
      first = await before.create(args, { requestId });
      created.add(first.id);
    } finally {
      before.close();
    }
    const after = new Client({ ...options, routingId });
    try {
      const again = await after.create(args, { requestId });
      assert.equal(again.id, first.id);
      assert.equal((await client.list({ labels: { restart: "yes", run: RUN } })).length, 1);
      await after.destroy(first.id);
    } finally {
      after.close();
    }
  });

  test("destroy, and destroy again", async () => {
    await client.destroy(workspace.id);
    await client.destroy(workspace.id);
    assert.equal((await client.get(workspace.id)).state, "destroyed");
    await assert.rejects(client.exec(workspace.id, "true"), Conflict);
    const left = await client.list({ labels: { run: RUN } });
    assert.deepEqual(left, []);
  });
});
