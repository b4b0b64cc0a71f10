// Reading the runtime's PUB socket. Events come as two frames [topic, MessagePack map]; a new
// subscriber is greeted with one frame (WELCOME), after which its subscriptions are known to be
// in place, so nothing published afterwards is missed.

import { WELCOME } from "./protocol.js";
import { ClientClosed } from "./errors.js";

/**
 * Wait for the welcome on a SUB socket subscribed to WELCOME (and its topics), then unsubscribe
 * from it. Events that arrive first are returned, so the caller can read them before the rest;
 * `welcomed` is false when no welcome came in time (no runtime there, or it refused the handshake).
 * @returns {Promise<{early: Buffer[][], welcomed: boolean}>}
 */
export async function joinEvents(socket, timeoutMs) {
  const early = [];
  let welcomed = false;
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) break; // still usable: only the very first events could be missed
      socket.receiveTimeout = remaining;
      let frames;
      try {
        frames = await socket.receive();
      } catch (error) {
        if (socket.closed) throw new ClientClosed("the event stream was closed");
        if (error?.code === "EAGAIN") break;
        throw error;
      }
      if (frames.length === 1) {
        welcomed = true; // the subscriptions are in place
        break;
      }
      early.push(frames);
    }
  } finally {
    if (!socket.closed) {
      socket.unsubscribe(WELCOME);
      socket.receiveTimeout = -1;
    }
  }
  return { early, welcomed };
}

/** The next message, or null once `timeoutMs` passed (-1: wait for ever); throws ClientClosed when closed. */
export async function receiveWithin(socket, timeoutMs) {
  if (socket.closed) throw new ClientClosed("the event stream was closed");
  socket.receiveTimeout = timeoutMs;
  try {
    return await socket.receive();
  } catch (error) {
    if (socket.closed) throw new ClientClosed("the event stream was closed");
    if (error?.code === "EAGAIN") return null;
    throw error;
  }
}
