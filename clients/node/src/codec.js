// MessagePack in and out. Bytes fields (stdin, data, stdout, stderr) are sent as MessagePack bin
// and come back as Buffers, so callers can `.toString()` them.

import { decode, encode } from "@msgpack/msgpack";

/** Bytes as a Buffer (a view, not a copy); anything else unchanged. */
function asBuffer(value) {
  if (Buffer.isBuffer(value)) return value;
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/** Decoded MessagePack with every bin value as a Buffer (so `.toString()` gives text). */
function withBuffers(value) {
  if (value instanceof Uint8Array) return asBuffer(value);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = withBuffers(value[i]);
    return value;
  }
  if (value !== null && typeof value === "object") {
    for (const key of Object.keys(value)) value[key] = withBuffers(value[key]);
  }
  return value;
}

/** Bytes for a bin field: Uint8Array/Buffer as is, strings as UTF-8. */
export function toBytes(value, name) {
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") return Buffer.from(value, "utf8");
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new TypeError(`${name} must be a Uint8Array, Buffer or string`);
}

/** Args without the fields left unset (undefined or null): the runtime applies its defaults. */
function compact(args) {
  const out = {};
  for (const [key, value] of Object.entries(args ?? {})) {
    if (value !== undefined && value !== null) out[key] = value;
  }
  return out;
}

/** One request frame: `{id, op, token, args}`. */
export function encodeRequest(id, op, token, args) {
  return encode({ id, op, token, args: compact(args) }, { ignoreUndefined: true });
}

/** A decoded frame, or undefined if it is not MessagePack (a stray frame must not stop a reader). */
export function decodeFrame(frame) {
  try {
    return withBuffers(decode(frame));
  } catch {
    return undefined;
  }
}
