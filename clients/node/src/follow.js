// A streamed process's output, in order. Output events carry the process's own seq (not the
// state log's), and the runtime keeps recent output, so a gap is refilled with `exec_output`
// rather than a snapshot.

import { Subscriber } from "zeromq";

import { decodeFrame } from "./codec.js";
import { ClientClosed, Timeout } from "./errors.js";
import { WELCOME } from "./protocol.js";
import { joinEvents, receiveWithin } from "./subscription.js";

const FOLLOW_IDLE_MS = 1_000;

/** The items of an `exec_output` page from seq `expected` on, shaped like the live events. */
function* catchUp(page, expected, processId) {
  if (page.truncated) {
    yield { type: "truncated", process_id: processId, missed: page.truncated };
    expected += page.truncated;
  }
  for (const chunk of page.chunks ?? []) {
    if (chunk.seq >= expected) {
      yield {
        type: "exec.output",
        seq: chunk.seq,
        ts: chunk.ts ?? 0,
        workspace_id: page.process.workspace_id,
        process_id: processId,
        stream: chunk.stream,
        data: chunk.data,
      };
    }
  }
  if (page.exit) yield page.exit;
}

/**
 * The body of `Client.follow()`: see there.
 * @param {import("./client.js").Client} client
 * @param {{process_id: string, workspace_id: string, topic?: string}} processInfo
 * @param {{idleMs?: number, timeoutMs?: number, joinTimeoutMs?: number}} [options]
 */
export async function* follow(client, processInfo, options = {}) {
  if (client.closed) throw new ClientClosed();
  const idleMs = options.idleMs ?? FOLLOW_IDLE_MS;
  const deadline = options.timeoutMs == null ? null : Date.now() + options.timeoutMs;
  const { workspace_id: workspaceId, process_id: processId } = processInfo;
  const topic = processInfo.topic ?? `exec.${workspaceId}.${processId}`;
  const socket = new Subscriber(client._subscriberOptions());
  const handle = { close: () => socket.closed || socket.close() };
  client._track(handle);
  try {
    socket.subscribe(topic);
    socket.subscribe(WELCOME);
    socket.connect(client.eventsEndpoint);
    const { early } = await joinEvents(socket, options.joinTimeoutMs ?? client.joinTimeoutMs);
    let expected = 1;
    let heard = Date.now(); // when this process last had news
    for (;;) {
      let wait = idleMs;
      if (deadline !== null) {
        const remaining = deadline - Date.now();
        if (remaining <= 0) throw new Timeout(`process ${processId} did not end within ${options.timeoutMs} ms`);
        wait = Math.max(1, Math.min(wait, remaining));
      }
      const frames = early.length ? early.shift() : await receiveWithin(socket, wait);
      if (frames !== null) {
        // Topics are prefixes: exec.ws.p_1 also matches exec.ws.p_12, hence the equality.
        const event = frames.length === 2 && frames[0].toString() === topic ? decodeFrame(frames[1]) : undefined;
        const ours = event && (event.type === "exec.output" || event.type === "exec.exit");
        if (ours && event.seq === expected) {
          yield event;
          expected += 1;
          heard = Date.now();
          if (event.type === "exec.exit") return;
          continue;
        }
        if (!(ours && event.seq > expected) && Date.now() - heard < idleMs) continue; // not news
      }
      // A gap, or quiet for idleMs (the exit itself may have been missed): ask the runtime.
      heard = Date.now();
      const page = await client.execOutput(workspaceId, processId, expected - 1);
      for (const item of catchUp(page, expected, processId)) {
        yield item;
        expected = item.type === "truncated" ? expected + item.missed : item.seq + 1;
        if (item.type === "exec.exit") return;
      }
    }
  } catch (error) {
    if (error instanceof ClientClosed && client.closed) return;
    throw error;
  } finally {
    client._untrack(handle);
    handle.close();
  }
}
