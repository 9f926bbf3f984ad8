// tickwire.js: a Tickwire client for browsers (and Node), protocol version 5.
//
// A plain ES module: no build step, no dependencies. It follows shared/PROTOCOL.md byte for
// byte; the pure functions below are tested against shared/tests/vectors/ by
// assets/web/test/vectors.test.mjs (`node --test assets/web/test/`).
//
// Numbers: every protocol integer up to 32 bits (ticks, ids, sequence numbers, checksums,
// quantized state) is a plain Number, which holds it exactly. The two u64 fields
// (Hello/Welcome `resumeToken`, Ping/Pong `clientTime`) exceed Number's exact range
// (2^53), so decoders always return them as BigInt; encoders take a BigInt, or a Number
// that is a safe non-negative integer.
//
// Usage:
//
//   import { TickwireClient, BUTTON_FIRE } from "./tickwire.js";
//   const client = new TickwireClient("ws://127.0.0.1:8080/ws", { name: "ada" });
//   client.onopen = (welcome) => { /* welcome.entityId, welcome.tickRate, ... */ };
//   client.onsnapshot = (view, info) => { /* view: dequantized entities, id-sorted */ };
//   client.onclose = ({ code, reason }) => {};
//   setInterval(() => client.sendInput({ moveX: 1, moveY: 0, aimYaw: 0, buttons: 0 }), 33);
//
// Without a seat the client joins the server's default room. To play in a room of a kind,
// get a seat from the matchmaker first (PROTOCOL.md section 12):
//
//   const seat = await matchmake("http://127.0.0.1:8080", "arena", { maxClients: 8 });
//   const client = new TickwireClient(seat.ws_url, { name: "ada", seat: seat.seat_token });

// ---------------------------------------------------------------------------------------
// Constants (PROTOCOL.md section 4)

export const PROTOCOL_VERSION = 5;
export const MAX_CLIENT_MESSAGE_BYTES = 512;
export const MAX_SERVER_MESSAGE_BYTES = 1 << 20;
export const MAX_INPUT_FRAMES = 8;
export const MAX_NAME_BYTES = 32;
export const MAX_SEAT_BYTES = 128;
export const MAX_AUTH_BYTES = 256;
export const MAX_REASON_BYTES = 123;
export const MAX_VIEW_ENTITIES = 65536;
export const DEFAULT_RING = 32;
export const POS_SCALE = 64;
export const VEL_SCALE = 64;
export const YAW_BITS = 12;
export const MAX_WORLD_EXTENT = 16_000_000;

/** `InputFrame.buttons` bit 0: fire. */
export const BUTTON_FIRE = 1;
/** `InputFrame.buttons` bit 1: secondary fire (the arena's hitscan weapon). */
export const BUTTON_SECONDARY = 2;

/** Close codes (PROTOCOL.md section 6). */
export const CLOSE = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  UNSUPPORTED_DATA: 1003,
  ABNORMAL: 1006,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  TRY_AGAIN_LATER: 1013,
  ACK_TIMEOUT: 4000,
  UNSUPPORTED_VERSION: 4001,
  SESSION_REPLACED: 4002,
  SEAT_REQUIRED: 4003,
  SEAT_EXPIRED: 4004,
  SEAT_INVALID: 4005,
  SEAT_OTHER_NODE: 4006,
  ROOM_UNAVAILABLE: 4007,
  TOKEN_REQUIRED: 4008,
  TOKEN_EXPIRED: 4009,
  TOKEN_INVALID: 4010,
  TOKEN_WRONG_ROOM: 4011,
  TOO_FAR_BEHIND: 4012,
  FLOODING: 4013,
});

const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;
const U64_MAX = (1n << 64n) - 1n;

/** Malformed bytes, a broken limit, or a value that cannot be encoded. */
export class ProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = "ProtocolError";
  }
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// ---------------------------------------------------------------------------------------
// Envelope encoding: bincode 2 "standard" (PROTOCOL.md section 2)

class Writer {
  constructor() {
    this.bytes = [];
  }
  u8(v) {
    if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new ProtocolError(`not a u8: ${v}`);
    this.bytes.push(v);
  }
  i8(v) {
    if (!Number.isInteger(v) || v < -128 || v > 127) throw new ProtocolError(`not an i8: ${v}`);
    this.bytes.push(v & 0xff);
  }
  bool(v) {
    this.bytes.push(v ? 1 : 0);
  }
  // Shortest-form varint of an unsigned integer of at most `bits` bits (16, 32 or 64).
  varint(v, bits) {
    let big;
    if (typeof v === "bigint") {
      big = v;
    } else if (Number.isSafeInteger(v)) {
      big = BigInt(v);
    } else {
      throw new ProtocolError(`not an integer: ${v}`);
    }
    const max = bits === 64 ? U64_MAX : (1n << BigInt(bits)) - 1n;
    if (big < 0n || big > max) throw new ProtocolError(`${v} does not fit u${bits}`);
    if (big < 251n) {
      this.bytes.push(Number(big));
      return;
    }
    let width;
    if (big < 1n << 16n) {
      this.bytes.push(0xfb);
      width = 2;
    } else if (big < 1n << 32n) {
      this.bytes.push(0xfc);
      width = 4;
    } else {
      this.bytes.push(0xfd);
      width = 8;
    }
    for (let i = 0; i < width; i++) {
      this.bytes.push(Number(big & 0xffn));
      big >>= 8n;
    }
  }
  u16(v) {
    this.varint(v, 16);
  }
  u32(v) {
    this.varint(v, 32);
  }
  u64(v) {
    this.varint(v, 64);
  }
  f32(v) {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.bytes.push(...b);
  }
  rawBytes(b) {
    this.u64(b.length);
    for (const x of b) this.bytes.push(x);
  }
  string(s, maxBytes) {
    const b = utf8Encoder.encode(s);
    if (maxBytes !== undefined && b.length > maxBytes) {
      throw new ProtocolError(`string of ${b.length} bytes, limit ${maxBytes}`);
    }
    this.rawBytes(b);
  }
  finish() {
    return Uint8Array.from(this.bytes);
  }
}

class Reader {
  constructor(bytes) {
    this.b = bytes;
    this.p = 0;
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  need(n) {
    if (this.p + n > this.b.length) throw new ProtocolError("truncated message");
  }
  u8() {
    this.need(1);
    return this.b[this.p++];
  }
  i8() {
    return (this.u8() << 24) >> 24;
  }
  bool() {
    const v = this.u8();
    if (v > 1) throw new ProtocolError(`bad bool byte ${v}`);
    return v === 1;
  }
  // A varint for an unsigned field of `bits` bits. Like the reference decoder, a longer form
  // than necessary is accepted, a form wider than the field is not.
  varint(bits) {
    const first = this.u8();
    if (first < 251) return bits === 64 ? BigInt(first) : first;
    let v;
    if (first === 0xfb) {
      this.need(2);
      v = this.dv.getUint16(this.p, true);
      this.p += 2;
    } else if (first === 0xfc && bits >= 32) {
      this.need(4);
      v = this.dv.getUint32(this.p, true);
      this.p += 4;
    } else if (first === 0xfd && bits >= 64) {
      this.need(8);
      const big = this.dv.getBigUint64(this.p, true);
      this.p += 8;
      return big;
    } else {
      throw new ProtocolError(`bad varint byte 0x${first.toString(16)} for a u${bits}`);
    }
    return bits === 64 ? BigInt(v) : v;
  }
  u16() {
    return this.varint(16);
  }
  u32() {
    return this.varint(32);
  }
  u64() {
    return this.varint(64);
  }
  // A length prefix (a u64 varint), checked against what is left.
  len(itemBytes = 1) {
    const n = this.u64();
    if (n * BigInt(itemBytes) > BigInt(this.b.length - this.p)) {
      throw new ProtocolError("truncated message (length past the end)");
    }
    return Number(n);
  }
  f32() {
    this.need(4);
    const v = this.dv.getFloat32(this.p, true);
    this.p += 4;
    return v;
  }
  rawBytes() {
    const n = this.len();
    const out = this.b.slice(this.p, this.p + n);
    this.p += n;
    return out;
  }
  string(maxBytes) {
    const b = this.rawBytes();
    if (maxBytes !== undefined && b.length > maxBytes) {
      throw new ProtocolError(`string of ${b.length} bytes, limit ${maxBytes}`);
    }
    try {
      return utf8Decoder.decode(b);
    } catch {
      throw new ProtocolError("invalid UTF-8");
    }
  }
  option(read) {
    const tag = this.u8();
    if (tag === 0) return null;
    if (tag === 1) return read();
    throw new ProtocolError(`bad Option tag ${tag}`);
  }
  end() {
    if (this.p !== this.b.length) {
      throw new ProtocolError(`${this.b.length - this.p} trailing bytes`);
    }
  }
}

function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new ProtocolError("expected binary data");
}

function readFrame(r) {
  return {
    seq: r.u32(),
    moveX: r.i8(),
    moveY: r.i8(),
    aimYaw: r.u16(),
    buttons: r.u8(),
    viewTick: r.u32(),
    interpMs: r.u16(),
  };
}

/**
 * Encodes a client message:
 * `{type: "Hello", protocolVersion, name, resumeToken, seat, auth}` (resumeToken: BigInt or
 * null; seat: the matchmaker's seat token, a string, or null; auth: a signed player token
 * from the game's backend, a string, or null),
 * `{type: "Input", ackTick, frames: [{seq, moveX, moveY, aimYaw, buttons, viewTick, interpMs}]}`
 * (viewTick and interpMs default to 0),
 * `{type: "Ping", clientTime}` (BigInt), `{type: "Leave"}`. Returns a Uint8Array.
 * Throws ProtocolError for values out of range or a broken limit (name over 32 bytes, seat
 * over 128 bytes, auth over 256 bytes, more than 8 frames, over 512 bytes).
 */
export function encodeClientMessage(msg) {
  const w = new Writer();
  switch (msg.type) {
    case "Hello":
      w.u32(0);
      w.u16(msg.protocolVersion ?? PROTOCOL_VERSION);
      w.string(msg.name ?? "", MAX_NAME_BYTES);
      if (msg.resumeToken === null || msg.resumeToken === undefined) {
        w.u8(0);
      } else {
        w.u8(1);
        w.u64(msg.resumeToken);
      }
      if (msg.seat === null || msg.seat === undefined) {
        w.u8(0);
      } else {
        w.u8(1);
        w.string(msg.seat, MAX_SEAT_BYTES);
      }
      if (msg.auth === null || msg.auth === undefined) {
        w.u8(0);
      } else {
        w.u8(1);
        w.string(msg.auth, MAX_AUTH_BYTES);
      }
      break;
    case "Input": {
      const frames = msg.frames ?? [];
      if (frames.length > MAX_INPUT_FRAMES) {
        throw new ProtocolError(`${frames.length} input frames, limit ${MAX_INPUT_FRAMES}`);
      }
      w.u32(1);
      w.u32(msg.ackTick ?? 0);
      w.u64(frames.length);
      for (const f of frames) {
        w.u32(f.seq);
        w.i8(f.moveX);
        w.i8(f.moveY);
        w.u16(f.aimYaw);
        w.u8(f.buttons);
        w.u32(f.viewTick ?? 0);
        w.u16(f.interpMs ?? 0);
      }
      break;
    }
    case "Ping":
      w.u32(2);
      w.u64(msg.clientTime);
      break;
    case "Leave":
      w.u32(3);
      break;
    default:
      throw new ProtocolError(`unknown client message type ${msg.type}`);
  }
  const out = w.finish();
  if (out.length > MAX_CLIENT_MESSAGE_BYTES) {
    throw new ProtocolError(`client message of ${out.length} bytes, limit ${MAX_CLIENT_MESSAGE_BYTES}`);
  }
  return out;
}

/** Decodes a client message (what a server reads); the inverse of encodeClientMessage. */
export function decodeClientMessage(data) {
  const bytes = asBytes(data);
  if (bytes.length > MAX_CLIENT_MESSAGE_BYTES) throw new ProtocolError("client message too big");
  const r = new Reader(bytes);
  let msg;
  const variant = r.u32();
  switch (variant) {
    case 0:
      msg = {
        type: "Hello",
        protocolVersion: r.u16(),
        name: r.string(MAX_NAME_BYTES),
        resumeToken: r.option(() => r.u64()),
        seat: r.option(() => r.string(MAX_SEAT_BYTES)),
        auth: r.option(() => r.string(MAX_AUTH_BYTES)),
      };
      break;
    case 1: {
      const ackTick = r.u32();
      const n = r.len(5);
      if (n > MAX_INPUT_FRAMES) throw new ProtocolError(`${n} input frames, limit ${MAX_INPUT_FRAMES}`);
      const frames = [];
      for (let i = 0; i < n; i++) frames.push(readFrame(r));
      msg = { type: "Input", ackTick, frames };
      break;
    }
    case 2:
      msg = { type: "Ping", clientTime: r.u64() };
      break;
    case 3:
      msg = { type: "Leave" };
      break;
    default:
      throw new ProtocolError(`unknown client message variant ${variant}`);
  }
  r.end();
  return msg;
}

/**
 * Encodes a server message (what a server writes); the inverse of decodeServerMessage.
 * Mostly for tests and tools.
 */
export function encodeServerMessage(msg) {
  const w = new Writer();
  switch (msg.type) {
    case "Welcome":
      w.u32(0);
      w.u16(msg.protocolVersion);
      w.u32(msg.clientId);
      w.u32(msg.entityId);
      w.u16(msg.tickRate);
      w.u16(msg.snapshotEvery);
      for (const v of msg.worldMin) w.f32(v);
      for (const v of msg.worldMax) w.f32(v);
      w.u64(msg.resumeToken);
      break;
    case "Snapshot":
      w.u32(1);
      w.u32(msg.tick);
      w.u32(msg.baselineAge);
      w.u32(msg.lastInput);
      w.u32(msg.checksum);
      w.bool(msg.partial ?? false);
      w.rawBytes(msg.body);
      break;
    case "Pong":
      w.u32(2);
      w.u64(msg.clientTime);
      w.u32(msg.serverTick);
      break;
    case "Disconnect":
      w.u32(3);
      w.u16(msg.code);
      w.string(msg.reason ?? "", MAX_REASON_BYTES);
      break;
    default:
      throw new ProtocolError(`unknown server message type ${msg.type}`);
  }
  return w.finish();
}

/**
 * Decodes a server message strictly (unknown variants, truncation, trailing bytes, bad UTF-8
 * and messages over 1 MiB throw ProtocolError):
 * `{type: "Welcome", protocolVersion, clientId, entityId, tickRate, snapshotEvery, worldMin,
 * worldMax, resumeToken}` (worldMin/worldMax: [x, y, z] numbers; resumeToken: BigInt),
 * `{type: "Snapshot", tick, baselineAge, lastInput, checksum, partial, body}` (partial: a
 * boolean, PROTOCOL.md 7.4; body: Uint8Array),
 * `{type: "Pong", clientTime, serverTick}` (clientTime: BigInt),
 * `{type: "Disconnect", code, reason}`.
 */
export function decodeServerMessage(data) {
  const bytes = asBytes(data);
  if (bytes.length > MAX_SERVER_MESSAGE_BYTES) {
    throw new ProtocolError(`server message of ${bytes.length} bytes, limit ${MAX_SERVER_MESSAGE_BYTES}`);
  }
  const r = new Reader(bytes);
  let msg;
  const variant = r.u32();
  switch (variant) {
    case 0:
      msg = {
        type: "Welcome",
        protocolVersion: r.u16(),
        clientId: r.u32(),
        entityId: r.u32(),
        tickRate: r.u16(),
        snapshotEvery: r.u16(),
        worldMin: [r.f32(), r.f32(), r.f32()],
        worldMax: [r.f32(), r.f32(), r.f32()],
        resumeToken: r.u64(),
      };
      break;
    case 1:
      msg = {
        type: "Snapshot",
        tick: r.u32(),
        baselineAge: r.u32(),
        lastInput: r.u32(),
        checksum: r.u32(),
        partial: r.bool(),
        body: r.rawBytes(),
      };
      break;
    case 2:
      msg = { type: "Pong", clientTime: r.u64(), serverTick: r.u32() };
      break;
    case 3:
      msg = { type: "Disconnect", code: r.u16(), reason: r.string(MAX_REASON_BYTES) };
      break;
    default:
      throw new ProtocolError(`unknown server message variant ${variant}`);
  }
  r.end();
  return msg;
}

// ---------------------------------------------------------------------------------------
// Quantization (PROTOCOL.md 7.3)

/**
 * The quantizer of a world: `{min, max, maxQ, posBits}` per axis, computed exactly like the
 * server (f32 arithmetic). Throws ProtocolError for unusable bounds.
 */
export function makeQuantizer(worldMin, worldMax) {
  const min = [0, 0, 0];
  const max = [0, 0, 0];
  const maxQ = [0, 0, 0];
  const posBits = [0, 0, 0];
  for (let a = 0; a < 3; a++) {
    min[a] = Math.fround(worldMin[a]);
    max[a] = Math.fround(worldMax[a]);
    if (!Number.isFinite(min[a]) || !Number.isFinite(max[a])) {
      throw new ProtocolError("world bounds must be finite");
    }
    if (max[a] < min[a]) throw new ProtocolError("world max must be >= min on every axis");
    const extent = Math.fround(max[a] - min[a]);
    if (extent > MAX_WORLD_EXTENT) throw new ProtocolError("world too large");
    maxQ[a] = Math.round(Math.fround(extent * POS_SCALE));
    posBits[a] = maxQ[a] === 0 ? 0 : 32 - Math.clz32(maxQ[a]);
  }
  return Object.freeze({ min, max, maxQ, posBits });
}

/** World position of a quantized position `[x, y, z]`. */
export function dequantizePos(q, pos) {
  return [q.min[0] + pos[0] / POS_SCALE, q.min[1] + pos[1] / POS_SCALE, q.min[2] + pos[2] / POS_SCALE];
}

/**
 * A view entry (quantized integers) in world terms:
 * `{id, kind, x, y, z, vx, vy, vz, yaw, health, flags}`, yaw in radians counter-clockwise
 * from +x, velocities in units per second.
 */
export function dequantize(q, e) {
  return {
    id: e.id,
    kind: e.kind,
    x: q.min[0] + e.pos[0] / POS_SCALE,
    y: q.min[1] + e.pos[1] / POS_SCALE,
    z: q.min[2] + e.pos[2] / POS_SCALE,
    vx: e.vel[0] / VEL_SCALE,
    vy: e.vel[1] / VEL_SCALE,
    vz: e.vel[2] / VEL_SCALE,
    yaw: (e.yaw / (1 << YAW_BITS)) * 2 * Math.PI,
    health: e.health,
    flags: e.flags,
  };
}

// ---------------------------------------------------------------------------------------
// Snapshot bodies (PROTOCOL.md section 7)
//
// A view is an array of entries sorted by id:
// `{id, kind, pos: [x, y, z], vel: [x, y, z], yaw, health, flags}` with quantized integers
// (the same shape as the vectors' JSON). Views share unchanged entries with their baselines:
// treat entries as read-only.

/** A snapshot body that breaks PROTOCOL.md 7.8. */
export class SnapshotError extends ProtocolError {
  constructor(message) {
    super(`malformed snapshot body: ${message}`);
    this.name = "SnapshotError";
  }
}

const MIN_NEW_ENTITY_BITS = 1 + 16 + 1 + YAW_BITS + 16 + 16;
const MAX_EG0_PREFIX = 32;

class BitReader {
  constructor(bytes) {
    this.b = bytes;
    this.pos = 0;
    this.len = bytes.length * 8;
  }
  remaining() {
    return this.len - this.pos;
  }
  bit() {
    if (this.pos >= this.len) throw new SnapshotError("ends in the middle of a value");
    const v = (this.b[this.pos >> 3] >> (this.pos & 7)) & 1;
    this.pos++;
    return v;
  }
  // `n` (0..=32) bits, least significant first.
  bits(n) {
    if (this.pos + n > this.len) throw new SnapshotError("ends in the middle of a value");
    let v = 0;
    let shift = 0;
    while (shift < n) {
      const off = this.pos & 7;
      const take = Math.min(8 - off, n - shift);
      const chunk = (this.b[this.pos >> 3] >> off) & ((1 << take) - 1);
      v += chunk * 2 ** shift; // not |=: the result may need all 32 bits
      shift += take;
      this.pos += take;
    }
    return v;
  }
  eg0() {
    let k = 0;
    while (this.bit() === 0) {
      k++;
      if (k > MAX_EG0_PREFIX) throw new SnapshotError("eg0 code too long");
    }
    const v = 2 ** k + this.bits(k) - 1;
    if (v > U32_MAX) throw new SnapshotError("eg0 value over 2^32 - 1");
    return v;
  }
  onlyPaddingLeft() {
    const left = this.remaining();
    if (left >= 8) return false;
    return this.bits(left) === 0;
  }
}

const i16 = (v) => (v << 16) >> 16;

// A change code (7.5): returns the new value (not yet range-checked).
function readChange(r, base, absBits, signed16) {
  if (r.bit() === 0) return base;
  let z;
  if (r.bit() === 0) {
    z = r.bits(5) + 1;
  } else if (r.bit() === 0) {
    z = r.bits(8) + 33;
  } else if (r.bit() === 0) {
    z = r.bits(12) + 289;
  } else {
    const raw = r.bits(absBits);
    return signed16 ? i16(raw) : raw;
  }
  return base + (z % 2 === 0 ? z / 2 : -(z + 1) / 2);
}

function readFull(r, q, id) {
  const e = { id, kind: r.bits(16), pos: [0, 0, 0], vel: [0, 0, 0], yaw: 0, health: 0, flags: 0 };
  for (let a = 0; a < 3; a++) {
    e.pos[a] = r.bits(q.posBits[a]);
    if (e.pos[a] > q.maxQ[a]) throw new SnapshotError("position outside the world");
  }
  if (r.bit() === 1) {
    for (let a = 0; a < 3; a++) e.vel[a] = i16(r.bits(16));
  }
  e.yaw = r.bits(YAW_BITS);
  e.health = r.bits(16);
  e.flags = r.bits(16);
  return e;
}

function readChanged(r, q, base) {
  const e = {
    id: base.id,
    kind: base.kind,
    pos: base.pos.slice(),
    vel: base.vel.slice(),
    yaw: base.yaw,
    health: base.health,
    flags: base.flags,
  };
  if (r.bit() === 1) {
    for (let a = 0; a < 3; a++) {
      const bits = q.posBits[a];
      if (bits === 0) continue;
      const v = readChange(r, base.pos[a], bits, false);
      if (v < 0 || v > q.maxQ[a]) throw new SnapshotError("position outside the world");
      e.pos[a] = v;
    }
  }
  if (r.bit() === 1) {
    const mask = r.bits(5);
    if (mask & 1) {
      for (let a = 0; a < 3; a++) e.vel[a] = i16(readChange(r, base.vel[a], 16, true));
    }
    if (mask & 2) e.yaw = r.bits(YAW_BITS);
    if (mask & 4) e.health = r.bits(16);
    if (mask & 8) e.flags = r.bits(16);
    if (mask & 16) e.kind = r.bits(16);
  }
  return e;
}

/**
 * Decodes a snapshot body against `baseline` (an id-sorted view; `[]` for a full snapshot)
 * with quantizer `q`. Returns the new id-sorted view; throws SnapshotError for a malformed
 * body (7.8). Never modifies `baseline`.
 */
export function decodeSnapshotBody(q, baseline, body, listed = null) {
  const r = new BitReader(asBytes(body));
  const len = baseline.length;

  const removedCount = r.eg0();
  if (removedCount > len) throw new SnapshotError(`${removedCount} removed of ${len}`);
  const removed = new Uint8Array(len);
  let prev = -1;
  for (let i = 0; i < removedCount; i++) {
    const index = prev + 1 + r.eg0();
    if (index >= len) throw new SnapshotError(`names baseline entry ${index} of ${len}`);
    removed[index] = 1;
    prev = index;
  }

  const changedCount = r.eg0();
  if (changedCount > len - removedCount) throw new SnapshotError(`${changedCount} changed`);
  const current = baseline.slice();
  prev = -1;
  for (let i = 0; i < changedCount; i++) {
    const index = prev + 1 + r.eg0();
    if (index >= len || removed[index]) {
      throw new SnapshotError(`names baseline entry ${index} of ${len}`);
    }
        current[index] = readChanged(r, q, baseline[index]);
    if (listed) listed.add(baseline[index].id);
    prev = index;
  }
  const survivors = removedCount === 0 ? current : current.filter((_, i) => !removed[i]);

  const newCount = r.eg0();
  if (
    newCount > MAX_VIEW_ENTITIES - Math.min(survivors.length, MAX_VIEW_ENTITIES) ||
    newCount > Math.floor(r.remaining() / MIN_NEW_ENTITY_BITS)
  ) {
    throw new SnapshotError(`claims ${newCount} new entities`);
  }
  let view = survivors;
  if (newCount > 0) {
    const added = [];
    prev = -1;
    for (let i = 0; i < newCount; i++) {
      const id = prev + 1 + r.eg0();
      if (id > U32_MAX) throw new SnapshotError("entity id over 2^32 - 1");
            added.push(readFull(r, q, id));
      if (listed) listed.add(id);
      prev = id;
    }
    // Both lists are id-sorted: merge them, refusing a duplicate id.
    view = [];
    let i = 0;
    let j = 0;
    while (i < survivors.length || j < added.length) {
      if (j === added.length || (i < survivors.length && survivors[i].id < added[j].id)) {
        view.push(survivors[i++]);
      } else if (i === survivors.length || added[j].id < survivors[i].id) {
        view.push(added[j++]);
      } else {
        throw new SnapshotError(`duplicate entity id ${added[j].id}`);
      }
    }
  }
  if (!r.onlyPaddingLeft()) throw new SnapshotError("trailing data");
  return view;
}

const FNV_OFFSET = 0x811c9dc5 | 0;
const FNV_PRIME = 0x01000193;

/**
 * The entity hash of PROTOCOL.md 7.7: FNV-1a (32-bit) over the entity's 30 little-endian
 * bytes `id u32, kind u16, pos 3 x u32, vel 3 x i16, yaw u16, health u16, flags u16`.
 * Returns an unsigned Number.
 */
export function entityHash(e) {
  let h = FNV_OFFSET;
  const byte = (b) => {
    h = Math.imul(h ^ b, FNV_PRIME);
  };
  const u16 = (v) => {
    byte(v & 0xff);
    byte((v >>> 8) & 0xff);
  };
  const u32 = (v) => {
    u16(v & 0xffff);
    u16(v >>> 16);
  };
  u32(e.id);
  u16(e.kind);
  u32(e.pos[0]);
  u32(e.pos[1]);
  u32(e.pos[2]);
  u16(e.vel[0] & 0xffff);
  u16(e.vel[1] & 0xffff);
  u16(e.vel[2] & 0xffff);
  u16(e.yaw);
  u16(e.health);
  u16(e.flags);
  return h >>> 0;
}

/**
 * The view checksum of PROTOCOL.md 7.7: the sum of every entity's `entityHash`, modulo 2^32
 * (the order does not matter). Returns an unsigned Number; the empty view gives 0.
 */
export function viewChecksum(view) {
  let sum = 0;
  for (const e of view) {
    sum = (sum + entityHash(e)) >>> 0;
  }
  return sum;
}

// ---------------------------------------------------------------------------------------
// Snapshot history (PROTOCOL.md section 8)

/**
 * The client side of delta compression: keeps the last `capacity` verified snapshots as
 * possible baselines. `receive(msg)` returns `{status, tick, ...}` where status is one of
 * "current" (verified, now the newest view; `full` says whether it was a full snapshot),
 * "stale" (older than the newest: kept as a baseline, or dropped if it could never be one),
 * "duplicate", or a rejection that changes nothing: "missing-baseline" (not a desync: wait),
 * "bad-baseline-age", "malformed" (with `error`), "desync" (checksum mismatch, with
 * `expected` and `actual`).
 */
export class SnapshotReceiver {
  constructor(quantizer, capacity = DEFAULT_RING) {
    this.quantizer = quantizer;
    this.capacity = Math.max(1, capacity);
        /** Held snapshots, oldest first: `{tick, lastInput, view, asOf}`. */
    this.held = [];
  }

  /**
   * Per entry of `view`: the tick of the snapshot that last refreshed it. All equal to the
   * view's tick unless a bandwidth budget held entities back (`partial`, PROTOCOL.md 7.4):
   * draw a not-refreshed entity from its samples at their as-of ticks, not as of now.
   */
  get asOf() {
    return this.held.length ? this.held[this.held.length - 1].asOf : [];
  }

  /** The tick to acknowledge: the newest verified snapshot, or 0 before any. */
  get ackTick() {
    return this.held.length ? this.held[this.held.length - 1].tick : 0;
  }

  /** The newest verified view (quantized, id-sorted). */
  get view() {
    return this.held.length ? this.held[this.held.length - 1].view : [];
  }

  /** The newest input `seq` the server had applied at the newest verified snapshot. */
  get lastInput() {
    return this.held.length ? this.held[this.held.length - 1].lastInput : 0;
  }

  _find(tick) {
    for (let i = 0; i < this.held.length; i++) if (this.held[i].tick === tick) return i;
    return -1;
  }

  receive(msg) {
    const tick = msg.tick;
    let at = this.held.length;
    while (at > 0 && this.held[at - 1].tick > tick) at--;
    if (at > 0 && this.held[at - 1].tick === tick) return { status: "duplicate", tick };
    if (at === 0 && this.held.length === this.capacity) return { status: "stale", tick, kept: false };
        let baseline = [];
    let baseAsOf = [];
    let baselineTick = null;
    if (msg.baselineAge !== 0) {
      if (msg.baselineAge > tick) return { status: "bad-baseline-age", tick };
      baselineTick = tick - msg.baselineAge;
      const i = this._find(baselineTick);
      if (i < 0) return { status: "missing-baseline", tick, baselineTick };
            baseline = this.held[i].view;
      baseAsOf = this.held[i].asOf;
    }
    let view;
    const listed = msg.partial ? new Set() : null;
    try {
      view = decodeSnapshotBody(this.quantizer, baseline, msg.body, listed);
    } catch (error) {
      if (error instanceof ProtocolError) return { status: "malformed", tick, error };
      throw error;
    }
    const actual = viewChecksum(view);
    if (actual !== msg.checksum) {
      return { status: "desync", tick, expected: msg.checksum, actual };
    }
    if (this.held.length === this.capacity) {
      this.held.shift();
      at--;
    }
        let asOf;
    if (listed) {
      const before = new Map(baseline.map((e, i) => [e.id, baseAsOf[i]]));
      asOf = view.map((e) => (listed.has(e.id) ? tick : (before.get(e.id) ?? tick)));
    } else {
      asOf = view.map(() => tick);
    }
    this.held.splice(at, 0, { tick, lastInput: msg.lastInput, view, asOf });
    const full = msg.baselineAge === 0;
    if (at === this.held.length - 1) return { status: "current", tick, full, baselineTick, view };
    return { status: "stale", tick, kept: true };
  }
}

// ---------------------------------------------------------------------------------------
// The client

const now = () => (typeof performance !== "undefined" ? performance.now() : Date.now());

/**
 * A Tickwire connection, in the manner of the browser's WebSocket:
 *
 *   const c = new TickwireClient(url, { name });
 *   c.onopen = (welcome) => ...;          // Welcome received (camelCase fields)
 *   c.onsnapshot = (view, info) => ...;   // a new verified view, dequantized
 *   c.onclose = ({ code, reason }) => ...;
 *   c.onerror = (error) => ...;
 *   c.sendInput({ moveX, moveY, aimYaw, buttons, interpMs });
 *   c.close();
 *
 * Options: `name` (at most 32 bytes of UTF-8), `resumeToken` (BigInt from an earlier
 * Welcome), `seat` (the `seat_token` of a matchmake() answer, connecting to its `ws_url`;
 * single-use, so leave it out when resuming; without one the server puts the player in its
 * default room), `auth` (a signed player token from the game's backend, PROTOCOL.md
 * section 13; required by a server with `--auth-secret-file`), `WebSocket` (a constructor; default globalThis.WebSocket), `pingIntervalMs`
 * (default 1000), `history` (baselines kept, default 32), `autoAck` (default true: after a
 * verified snapshot, if no Input has carried the new ack within about one snapshot
 * interval, send an Input with no frames so the server never times the client out),
 * `interpMs` (default 100: how far behind the newest snapshot you draw other entities; each
 * input frame reports it, with the newest snapshot's tick, for lag compensation, PROTOCOL.md
 * 5.3; pass `interpMs` to sendInput to report the exact value per frame).
 *
 * `view` in onsnapshot is an id-sorted array of dequantized entities
 * `{id, kind, x, y, z, vx, vy, vz, yaw, health, flags}`; `info` holds `tick`, `lastInput`,
 * `full`, `bytes`, `baselineTick`, `quantized` (the view as held, integers) and `self` (your
 * own entity, or null).
 */
export class TickwireClient {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;

  constructor(url, options = {}) {
    const {
      name = "",
      resumeToken = null,
      seat = null,
      auth = null,
      WebSocket: WebSocketImpl = globalThis.WebSocket,
      pingIntervalMs = 1000,
      history = DEFAULT_RING,
      autoAck = true,
      interpMs = 100,
    } = options;
    if (utf8Encoder.encode(name).length > MAX_NAME_BYTES) {
      throw new RangeError(`name is longer than ${MAX_NAME_BYTES} bytes of UTF-8`);
    }
    if (seat !== null && (typeof seat !== "string" || utf8Encoder.encode(seat).length > MAX_SEAT_BYTES)) {
      throw new RangeError(`seat must be a string of at most ${MAX_SEAT_BYTES} bytes`);
    }
    if (auth !== null && (typeof auth !== "string" || utf8Encoder.encode(auth).length > MAX_AUTH_BYTES)) {
      throw new RangeError(`auth must be a string of at most ${MAX_AUTH_BYTES} bytes`);
    }
    if (typeof WebSocketImpl !== "function") {
      throw new TypeError("no WebSocket implementation: pass options.WebSocket");
    }
    this.url = String(url);
    this.name = name;
    /** The interpolation delay each input frame reports by default (ms, 0..65535). */
    this.interpMs = interpMs;
    /** CONNECTING until the Welcome, then OPEN; CLOSING after close()/Disconnect; CLOSED. */
    this.readyState = TickwireClient.CONNECTING;
    /** The server's Welcome, once received. */
    this.welcome = null;
    /** The quantizer built from the Welcome's world bounds. */
    this.quantizer = null;
    /** The snapshot history (SnapshotReceiver), once welcomed. */
    this.receiver = null;
    this.onopen = null;
    this.onsnapshot = null;
    this.onclose = null;
    this.onerror = null;
    this.onpong = null;
    /** Live counters. `bytesPerSec` and `snapshotsPerSec` are over the last second. */
    this.stats = {
      snapshots: 0,
      snapshotsPerSec: 0,
      bytesIn: 0,
      bytesOut: 0,
      bytesPerSec: 0,
      rttMs: null,
      desyncs: 0,
      malformed: 0,
      missingBaselines: 0,
      stale: 0,
      duplicates: 0,
      entities: 0,
      tick: 0,
      lastInput: 0,
      serverTick: 0,
      inputsSent: 0,
    };
    this._history = history;
    this._autoAck = autoAck;
    this._pingIntervalMs = pingIntervalMs;
    this._resumeToken = resumeToken;
    this._seat = seat;
    this._auth = auth;
    this._nextSeq = 1;
    this._recent = [];
    this._sentAck = 0;
    this._ackTimer = null;
    this._secondTimer = null;
    this._closeTimer = null;
    this._disconnect = null;
    this._closed = false;
    this._window = { at: now(), bytes: 0, snapshots: 0 };

    const ws = new WebSocketImpl(this.url);
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    ws.onopen = () => {
      this._send({
        type: "Hello",
        protocolVersion: PROTOCOL_VERSION,
        name: this.name,
        resumeToken: this._resumeToken,
        seat: this._seat,
        auth: this._auth,
      });
    };
    ws.onmessage = (ev) => this._onMessage(ev.data);
    ws.onerror = () => this._emitError(new Error(`WebSocket error on ${this.url}`));
    ws.onclose = (ev) => this._onClose(ev.code, ev.reason);
  }

  /**
   * Sends one new input frame, with the newest earlier frames (up to 8 in all) and the ack of
   * the newest verified snapshot. `moveX`/`moveY`: -1..1 (sent as 1/127 steps; the server
   * normalises longer vectors); `aimYaw`: radians counter-clockwise from +x; `buttons`: bit
   * mask (BUTTON_FIRE); `interpMs`: how far behind the newest verified snapshot (the frame's
   * `viewTick`) you were drawing the other entities when you sampled this input (default:
   * the `interpMs` option), which lag compensation rewinds them by (PROTOCOL.md 5.3).
   * Returns the frame as sent (`{seq, moveX, moveY, aimYaw, buttons, viewTick, interpMs}`,
   * wire units), or null when not connected (before the Welcome or after close).
   */
  sendInput({ moveX = 0, moveY = 0, aimYaw = 0, buttons = 0, interpMs = this.interpMs } = {}) {
    if (this.readyState !== TickwireClient.OPEN) return null;
    if (this._nextSeq > U32_MAX) {
      // The protocol's answer to sequence exhaustion is a new connection.
      this._emitError(new ProtocolError("input sequence exhausted: reconnect"));
      this.close();
      return null;
    }
    const frame = {
      seq: this._nextSeq++,
      moveX: toI8(moveX),
      moveY: toI8(moveY),
      aimYaw: yawToU16(aimYaw),
      buttons: (buttons | 0) & 0xff,
      viewTick: this.receiver ? this.receiver.ackTick : 0,
      interpMs: Math.min(0xffff, Math.max(0, Math.round(interpMs))) || 0,
    };
    this._recent.push(frame);
    if (this._recent.length > MAX_INPUT_FRAMES) this._recent.shift();
    this._sendInputMessage(this._recent);
    this.stats.inputsSent++;
    return { ...frame };
  }

  /** Sends a Ping now (the client also pings every `pingIntervalMs`). */
  ping() {
    if (this.readyState !== TickwireClient.OPEN) return;
    this._send({ type: "Ping", clientTime: BigInt(Math.round(now() * 1000)) });
  }

  /**
   * Leaves: sends Leave and waits (up to 2 s) for the server's close 1000. Before the Welcome
   * it just closes the socket.
   */
  close() {
    if (this.readyState >= TickwireClient.CLOSING) return;
    const welcomed = this.readyState === TickwireClient.OPEN;
    this.readyState = TickwireClient.CLOSING;
    this._stopTimers();
    if (welcomed) {
      this._send({ type: "Leave" });
      this._closeTimer = setTimeout(() => this._closeSocket(1000), 2000);
    } else {
      this._closeSocket(1000);
    }
  }

  _closeSocket(code, reason) {
    try {
      this._ws.close(code, reason);
    } catch {
      // Already closing.
    }
  }

  _sendInputMessage(frames) {
    const ackTick = this.receiver ? this.receiver.ackTick : 0;
    this._send({ type: "Input", ackTick, frames });
    this._sentAck = ackTick;
  }

  _send(msg) {
    if (this._ws.readyState !== 1) return false;
    const bytes = encodeClientMessage(msg);
    this._ws.send(bytes);
    this.stats.bytesOut += bytes.length;
    return true;
  }

  _emitError(error) {
    if (this.onerror) this.onerror(error);
  }

  _fail(error) {
    // A server that breaks the protocol: report it and hang up.
    this._emitError(error);
    this._stopTimers();
    if (this.readyState < TickwireClient.CLOSING) this.readyState = TickwireClient.CLOSING;
    this._closeSocket(1000);
  }

  _onMessage(data) {
    if (typeof data === "string") {
      this._fail(new ProtocolError("the server sent a text message"));
      return;
    }
    let bytes;
    let msg;
    try {
      bytes = asBytes(data);
      this.stats.bytesIn += bytes.length;
      this._window.bytes += bytes.length;
      msg = decodeServerMessage(bytes);
    } catch (error) {
      this._fail(error);
      return;
    }
    switch (msg.type) {
      case "Welcome":
        this._onWelcome(msg);
        break;
      case "Snapshot":
        this._onSnapshot(msg, bytes.length);
        break;
      case "Pong": {
        const rtt = (Math.round(now() * 1000) - Number(msg.clientTime)) / 1000;
        if (rtt >= 0) this.stats.rttMs = rtt;
        this.stats.serverTick = msg.serverTick;
        if (this.onpong) this.onpong({ rttMs: rtt, serverTick: msg.serverTick });
        break;
      }
      case "Disconnect":
        this._disconnect = { code: msg.code, reason: msg.reason };
        if (this.readyState < TickwireClient.CLOSING) this.readyState = TickwireClient.CLOSING;
        this._stopTimers();
        break;
    }
  }

  _onWelcome(welcome) {
    if (this.welcome) {
      this._fail(new ProtocolError("a second Welcome"));
      return;
    }
    let quantizer;
    try {
      quantizer = makeQuantizer(welcome.worldMin, welcome.worldMax);
    } catch (error) {
      this._fail(error);
      return;
    }
    if (this.readyState !== TickwireClient.CONNECTING) return;
    this.welcome = welcome;
    this.quantizer = quantizer;
    this.receiver = new SnapshotReceiver(quantizer, this._history);
    this.readyState = TickwireClient.OPEN;
    this._window = { at: now(), bytes: 0, snapshots: 0 };
    this._secondTimer = setInterval(() => this._everySecond(), this._pingIntervalMs);
    this.ping();
    if (this.onopen) this.onopen(welcome);
  }

  _onSnapshot(msg, bytes) {
    if (!this.receiver) {
      this._fail(new ProtocolError("a Snapshot before the Welcome"));
      return;
    }
    const got = this.receiver.receive(msg);
    const s = this.stats;
    switch (got.status) {
      case "current":
        break;
      case "stale":
        s.stale++;
        this._scheduleAck();
        return;
      case "duplicate":
        s.duplicates++;
        return;
      case "missing-baseline":
        // Not a desync: keep acknowledging the newest good tick and wait.
        s.missingBaselines++;
        return;
      case "desync":
        s.desyncs++;
        return;
      default:
        s.malformed++;
        return;
    }
    s.snapshots++;
    this._window.snapshots++;
    s.tick = got.tick;
    s.lastInput = msg.lastInput;
    s.entities = got.view.length;
    this._scheduleAck();
    if (!this.onsnapshot) return;
    const q = this.quantizer;
    const view = got.view.map((e) => dequantize(q, e));
    const me = this.welcome.entityId;
    const self = view.find((e) => e.id === me) ?? null;
    this.onsnapshot(view, {
      tick: got.tick,
      lastInput: msg.lastInput,
      full: got.full,
      baselineTick: got.baselineTick,
      bytes,
      quantized: got.view,
      self,
    });
  }

  _scheduleAck() {
    if (!this._autoAck || this._ackTimer !== null) return;
    const w = this.welcome;
    const interval = (1000 * Math.max(1, w.snapshotEvery)) / Math.max(1, w.tickRate);
    this._ackTimer = setTimeout(() => {
      this._ackTimer = null;
      if (this.readyState === TickwireClient.OPEN && this.receiver.ackTick > this._sentAck) {
        this._sendInputMessage([]);
      }
    }, interval * 1.5);
  }

  _everySecond() {
    const t = now();
    const secs = Math.max(1e-3, (t - this._window.at) / 1000);
    this.stats.bytesPerSec = this._window.bytes / secs;
    this.stats.snapshotsPerSec = this._window.snapshots / secs;
    this._window = { at: t, bytes: 0, snapshots: 0 };
    this.ping();
  }

  _stopTimers() {
    if (this._secondTimer !== null) clearInterval(this._secondTimer);
    if (this._ackTimer !== null) clearTimeout(this._ackTimer);
    this._secondTimer = null;
    this._ackTimer = null;
  }

  _onClose(code, reason) {
    if (this._closed) return;
    this._closed = true;
    this._stopTimers();
    if (this._closeTimer !== null) clearTimeout(this._closeTimer);
    this.readyState = TickwireClient.CLOSED;
    // The close code is authoritative; the Disconnect message may carry the reason.
    const why = reason || (this._disconnect && this._disconnect.reason) || "";
    if (this.onclose) this.onclose({ code: code ?? CLOSE.ABNORMAL, reason: why });
  }
}

/** -1..1 to a wire i8 (1/127 steps), clamped; NaN is 0. */
export function toI8(v) {
  const x = Math.round(Number(v) * 127);
  if (!Number.isFinite(x)) return 0;
  return Math.max(-127, Math.min(127, x));
}

/** Radians (counter-clockwise from +x) to the wire's 1/65536 turns. */
export function yawToU16(rad) {
  const r = Number(rad);
  if (!Number.isFinite(r)) return 0;
  const turns = (((r / (2 * Math.PI)) % 1) + 1) % 1;
  return Math.round(turns * 65536) % 65536;
}

// ---------------------------------------------------------------------------------------
// Matchmaking (PROTOCOL.md section 12)

/**
 * A matchmaking request that failed: `status` is the HTTP status (0 when there was no HTTP
 * answer), `error` the server's error code (`"room_full"`, `"room_locked"`,
 * `"directory_unavailable"`, ...; null when the answer had none).
 */
export class MatchmakeError extends Error {
  constructor(status, error, message) {
    super(message);
    this.name = "MatchmakeError";
    this.status = status;
    this.error = error;
  }
}

/** The URL of a matchmaking request: `mode` "join_or_create" or "create" for a room kind. */
export function matchmakeUrl(baseUrl, kind, mode = "join_or_create") {
  if (mode !== "join_or_create" && mode !== "create") {
    throw new RangeError(`matchmake mode must be "join_or_create" or "create", not ${mode}`);
  }
  return `${String(baseUrl).replace(/\/+$/, "")}/matchmake/${mode}/${encodeURIComponent(kind)}`;
}

/**
 * Gets a seat in a room of `kind` from the matchmaker at `baseUrl` (the server's HTTP origin,
 * e.g. "http://127.0.0.1:8080"): POST /matchmake/{mode}/{kind} with `{"max_clients": N}`
 * when `maxClients` is given (the capacity of a room this request creates). `mode`:
 * "join_or_create" (default: the first open room of the kind with a free place, or a new one)
 * or "create" (always a new room). `fetch`: an implementation (default globalThis.fetch).
 *
 * Resolves to the parsed answer `{room_id, ws_url, quic_url, seat_token, expires_in_s}`:
 * connect to `ws_url` within `expires_in_s` seconds with `{ seat: seat_token }`. A seat is
 * single-use. Rejects with a MatchmakeError on a non-2xx answer (409 room full or locked, 503
 * directory unavailable: retry later) or an answer without `ws_url` and `seat_token`.
 */
export async function matchmake(baseUrl, kind, options = {}) {
  const { mode = "join_or_create", maxClients, fetch: fetchImpl = globalThis.fetch } = options;
  const url = matchmakeUrl(baseUrl, kind, mode);
  if (typeof fetchImpl !== "function") throw new TypeError("no fetch implementation: pass options.fetch");
  const body = {};
  if (maxClients !== undefined && maxClients !== null) {
    if (!Number.isInteger(maxClients) || maxClients < 1) {
      throw new RangeError(`maxClients must be a positive integer, not ${maxClients}`);
    }
    body.max_clients = maxClients;
  }
  const res = await fetchImpl(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  let answer = null;
  try {
    answer = await res.json();
  } catch {
    answer = null;
  }
  if (!res.ok) {
    const error = answer && typeof answer.error === "string" ? answer.error : null;
    const message = answer && typeof answer.message === "string" ? `: ${answer.message}` : "";
    throw new MatchmakeError(res.status, error, `matchmake ${url}: ${res.status} ${error ?? "error"}${message}`);
  }
  if (!answer || typeof answer.ws_url !== "string" || typeof answer.seat_token !== "string") {
    throw new MatchmakeError(res.status, null, `matchmake ${url}: answer lacks ws_url or seat_token`);
  }
  return answer;
}
