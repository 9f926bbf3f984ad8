// tickwire.js against the protocol's test vectors (shared/tests/vectors/) and PROTOCOL.md.
// Run: node --test assets/web/test/   (server/tests/js_client.rs runs it in `cargo test`).

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";

import {
  CLOSE,
  MAX_SEAT_BYTES,
  MatchmakeError,
  PROTOCOL_VERSION,
  ProtocolError,
  SnapshotError,
  SnapshotReceiver,
  TickwireClient,
  decodeClientMessage,
  decodeServerMessage,
  decodeSnapshotBody,
  dequantize,
  dequantizePos,
  entityHash,
  encodeClientMessage,
  encodeServerMessage,
  makeQuantizer,
  matchmake,
  matchmakeUrl,
  toI8,
  viewChecksum,
  yawToU16,
} from "../tickwire.js";

const VECTORS = new URL("../../../shared/tests/vectors/", import.meta.url);

function hex(text) {
  const clean = text.replace(/\s+/g, "");
  assert.equal(clean.length % 2, 0, "even number of hex digits");
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function loadVectors() {
  const names = readdirSync(VECTORS)
    .filter((f) => f.endsWith(".json"))
    .map((f) => f.slice(0, -5))
    .sort();
  return names.map((name) => ({
    name,
    bytes: hex(readFileSync(new URL(`${name}.hex`, VECTORS), "utf8")),
    json: JSON.parse(readFileSync(new URL(`${name}.json`, VECTORS), "utf8")),
  }));
}

const vectors = loadVectors();
const byName = Object.fromEntries(vectors.map((v) => [v.name, v]));

const camel = (s) => s.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
// u64 fields are decimal strings in the JSON (PROTOCOL.md section 9).
const U64_FIELDS = new Set(["resume_token", "client_time"]);

/** The message tickwire.js should produce for a vector's JSON. */
function expectedMessage(json) {
  const msg = { type: json.message };
  for (const [k, v] of Object.entries(json.fields)) {
    if (k === "body_len") continue;
    if (k === "body_hex") {
      msg.body = hex(v);
    } else if (U64_FIELDS.has(k)) {
      msg[camel(k)] = v === null ? null : BigInt(v);
    } else if (k === "frames") {
      msg.frames = v.map((f) => Object.fromEntries(Object.entries(f).map(([fk, fv]) => [camel(fk), fv])));
    } else {
      msg[camel(k)] = v;
    }
  }
  return msg;
}

test("the vector set is complete", () => {
  const names = vectors.map((v) => v.name);
  for (const n of [
    "hello",
    "hello_resume",
    "hello_seat",
    "hello_auth",
    "input",
    "ping",
    "leave",
    "welcome",
    "snapshot_full",
        "snapshot_delta",
    "snapshot_partial",
    "pong",
    "disconnect",
  ]) {
    assert.ok(names.includes(n), `vector ${n} present`);
  }
});

for (const v of vectors) {
  test(`vector ${v.name}: decodes to its JSON and re-encodes to the same bytes`, () => {
    const { json, bytes } = v;
    assert.equal(bytes.length, json.length, "length");
    assert.equal(bytes[0], json.variant, "variant index");
    const expected = expectedMessage(json);
    if (json.direction === "client_to_server") {
      assert.deepEqual(decodeClientMessage(bytes), expected);
      assert.deepEqual(encodeClientMessage(expected), bytes, "client message re-encodes");
    } else {
      assert.equal(json.direction, "server_to_client");
      const got = decodeServerMessage(bytes);
      assert.deepEqual(got, expected);
      if (json.fields.body_len !== undefined) assert.equal(got.body.length, json.fields.body_len);
      assert.deepEqual(encodeServerMessage(got), bytes, "server message re-encodes");
    }
  });
}

for (const v of vectors.filter((v) => v.json.message === "Snapshot")) {
  test(`vector ${v.name}: body decodes against its baseline to the view and checksum`, () => {
    const { json, bytes } = v;
    const q = makeQuantizer(json.world.min, json.world.max);
    assert.deepEqual(q.maxQ, json.world.max_q);
    assert.deepEqual(q.posBits, json.world.pos_bits);
    assert.equal(viewChecksum(json.baseline_view), json.baseline_checksum);
    const msg = decodeServerMessage(bytes);
    assert.equal(msg.baselineAge === 0 ? null : msg.tick - msg.baselineAge, json.baseline_tick);
    const view = decodeSnapshotBody(q, json.baseline_view, msg.body);
    assert.deepEqual(view, json.view);
    assert.equal(viewChecksum(view), json.view_checksum);
    assert.equal(msg.checksum, json.view_checksum);
  });
}

test("a fresh receiver takes snapshot_full then snapshot_delta and acks 303", () => {
  const full = decodeServerMessage(byName.snapshot_full.bytes);
  const delta = decodeServerMessage(byName.snapshot_delta.bytes);
  const w = byName.snapshot_full.json.world;
  const r = new SnapshotReceiver(makeQuantizer(w.min, w.max));
  assert.equal(r.ackTick, 0);
  assert.equal(r.receive(full).status, "current");
  assert.equal(r.ackTick, 300);
  assert.equal(r.lastInput, 249);
  assert.deepEqual(r.view, byName.snapshot_full.json.view);
  assert.equal(r.receive(full).status, "duplicate");
  const got = r.receive(delta);
  assert.equal(got.status, "current");
  assert.equal(got.full, false);
  assert.equal(r.ackTick, 303);
  assert.equal(r.lastInput, 251);
  assert.deepEqual(r.view, byName.snapshot_delta.json.view);
  assert.deepEqual(
    r.held.map((h) => h.tick),
    [300, 303],
  );
    // The baseline itself was not touched by decoding the delta.
  assert.deepEqual(r.held[0].view, byName.snapshot_full.json.view);
  assert.deepEqual(r.asOf, byName.snapshot_delta.json.view_as_of);
  // A partial snapshot: entity 7 stays as of 303.
  const partial = decodeServerMessage(byName.snapshot_partial.bytes);
  assert.equal(partial.partial, true);
  assert.equal(r.receive(partial).status, "current");
  assert.deepEqual(r.view, byName.snapshot_partial.json.view);
  assert.deepEqual(r.asOf, byName.snapshot_partial.json.view_as_of);
  assert.deepEqual(r.asOf, [306, 303, 306]);
  r.held.pop();
  // The Input acknowledging it (the `input` vector acknowledges 300 with frames 250, 251).
  const input = expectedMessage(byName.input.json);
  assert.deepEqual(encodeClientMessage({ ...input, ackTick: 300 }), byName.input.bytes);
});

test("rejected snapshots change nothing: missing baseline, desync, malformed", () => {
  const full = decodeServerMessage(byName.snapshot_full.bytes);
  const delta = decodeServerMessage(byName.snapshot_delta.bytes);
  const q = makeQuantizer([-1000, -1000, 0], [1000, 1000, 0]);
  const r = new SnapshotReceiver(q);
  assert.deepEqual(r.receive(delta), { status: "missing-baseline", tick: 303, baselineTick: 300 });
  assert.equal(r.ackTick, 0);
  assert.equal(r.receive({ ...delta, baselineAge: 304 }).status, "bad-baseline-age");
  const bad = r.receive({ ...full, checksum: full.checksum ^ 1 });
  assert.equal(bad.status, "desync");
  assert.equal(bad.actual, full.checksum);
  assert.equal(r.ackTick, 0);
  assert.equal(r.receive(full).status, "current");
  for (const body of [
    new Uint8Array(0), // empty: ends in the middle of a value
    delta.body.slice(0, delta.body.length - 3), // truncated
    Uint8Array.from([...delta.body, 0]), // a whole extra byte
  ]) {
    const got = r.receive({ ...delta, body });
    assert.equal(got.status, "malformed", `body of ${body.length} bytes`);
    assert.ok(got.error instanceof SnapshotError);
  }
  assert.equal(r.ackTick, 300);
  assert.deepEqual(r.view, byName.snapshot_full.json.view);
  assert.equal(r.receive(delta).status, "current");
  assert.equal(r.ackTick, 303);
});

test("out-of-order snapshots are kept as baselines, not as the view; history is 32", () => {
  const q = makeQuantizer([-1000, -1000, 0], [1000, 1000, 0]);
  const r = new SnapshotReceiver(q);
  const empty = { baselineAge: 0, lastInput: 0, checksum: 0, body: Uint8Array.of(0x07) };
  assert.equal(r.receive({ ...empty, tick: 10 }).status, "current");
  assert.deepEqual(r.receive({ ...empty, tick: 5 }), { status: "stale", tick: 5, kept: true });
  assert.equal(r.ackTick, 10);
  for (let t = 11; t < 11 + 40; t++) assert.equal(r.receive({ ...empty, tick: t }).status, "current");
  assert.equal(r.held.length, 32);
  assert.equal(r.held[0].tick, 50 - 31);
  assert.deepEqual(r.receive({ ...empty, tick: 1 }), { status: "stale", tick: 1, kept: false });
  assert.equal(r.held.length, 32);
});

test("malformed bodies from PROTOCOL.md 7.8 are rejected", () => {
  const q = makeQuantizer([-1000, -1000, 0], [1000, 1000, 0]);
  const base = byName.snapshot_full.json.view;
  // The smallest body, the empty full snapshot.
  assert.deepEqual(decodeSnapshotBody(q, [], Uint8Array.of(0x07)), []);
  // Non-zero padding bits.
  assert.throws(() => decodeSnapshotBody(q, [], Uint8Array.of(0x87)), SnapshotError);
  // removed_count 1 against an empty baseline: `010` then padding.
  assert.throws(() => decodeSnapshotBody(q, [], Uint8Array.of(0b010)), SnapshotError);
  // removed index past the end: removed_count 1 (`010`), gap 3 (`00100`).
  assert.throws(() => decodeSnapshotBody(q, base, Uint8Array.of(0b00100010, 0)), SnapshotError);
  // an eg0 code with 33 zeros.
  assert.throws(() => decodeSnapshotBody(q, [], new Uint8Array(6)), SnapshotError);
  // A new id that is already in the view: removed 0, changed 0, new 1 with id gap 3 (id 3).
  const dup = fullEntityBody(q, 3);
  assert.throws(() => decodeSnapshotBody(q, base, dup), /duplicate/);
  assert.equal(decodeSnapshotBody(q, [], dup).length, 1);
});

// A body (removed 0, changed 0, new 1) adding one entity `id` at the world's origin.
function fullEntityBody(q, id) {
  const bits = [];
  const put = (v, n) => {
    for (let i = 0; i < n; i++) bits.push(Math.floor(v / 2 ** i) % 2);
  };
  const eg0 = (v) => {
    const m = v + 1;
    const k = Math.floor(Math.log2(m));
    put(0, k);
    put(1, 1);
    put(m - 2 ** k, k);
  };
  eg0(0);
  eg0(0);
  eg0(1);
  eg0(id);
  put(1, 16); // kind
  for (let a = 0; a < 3; a++) put(q.maxQ[a] >>> 1, q.posBits[a]);
  put(0, 1); // vel flag
  put(0, 12);
  put(100, 16);
  put(0, 16);
  const out = new Uint8Array(Math.ceil(bits.length / 8));
  bits.forEach((b, i) => {
    out[i >> 3] |= b << (i & 7);
  });
  return out;
}

test("checksum of PROTOCOL.md 7.7: entity 3's 30 bytes, its hash, a view of it", () => {
  const bytes = hex("03 00 00 00 01 00 a0 fc 00 00 f0 f4 00 00 00 00 00 00 80 00 a0 ff 00 00 00 04 64 00 00 00");
  const fnv = (data) => {
    let h = 0x811c9dc5;
    for (const b of data) h = Math.imul(h ^ b, 0x01000193) >>> 0;
    return h;
  };
  const e3 = byName.snapshot_full.json.view[0];
  assert.equal(fnv(bytes), 0xd5d56ae6);
  assert.equal(entityHash(e3), 0xd5d56ae6);
  // The view checksum is the sum of the entity hashes, mod 2^32, in any order.
  assert.equal(viewChecksum([e3]), 0xd5d56ae6);
  assert.equal(viewChecksum([]), 0);
  const two = byName.snapshot_full.json.view;
  const sum = two.reduce((s, e) => (s + entityHash(e)) >>> 0, 0);
  assert.equal(viewChecksum(two), sum);
  assert.equal(viewChecksum([...two].reverse()), sum);
});

test("dequantize gives back the float state of PROTOCOL.md 9.5", () => {
  const q = makeQuantizer([-1000, -1000, 0], [1000, 1000, 0]);
  const e = dequantize(q, byName.snapshot_full.json.view[0]);
  assert.equal(e.id, 3);
  assert.equal(e.kind, 1);
  assert.deepEqual([e.x, e.y, e.z], [10.5, -20.25, 0]);
  assert.deepEqual([e.vx, e.vy, e.vz], [2, -1.5, 0]);
  assert.ok(Math.abs(e.yaw - Math.PI / 2) < 1e-12);
  assert.deepEqual(dequantizePos(q, [80016, 57600, 0]), [250.25, -100, 0]);
  // f32 arithmetic for max_q, including a bound that is not exact in f32.
  assert.deepEqual(makeQuantizer([0, 0, 0], [0.1, 1, 0]).maxQ, [6, 64, 0]);
  assert.throws(() => makeQuantizer([0, 0, 0], [-1, 0, 0]), ProtocolError);
  assert.throws(() => makeQuantizer([0, 0, 0], [Infinity, 0, 0]), ProtocolError);
});

test("varints follow PROTOCOL.md 2.1 and decoders are strict", () => {
  const ping = (t) => Array.from(encodeClientMessage({ type: "Ping", clientTime: t }));
  assert.deepEqual(ping(250n), [2, 0xfa]);
  assert.deepEqual(ping(251n), [2, 0xfb, 0xfb, 0x00]);
  assert.deepEqual(ping(300), [2, 0xfb, 0x2c, 0x01]);
  assert.deepEqual(ping(65535n), [2, 0xfb, 0xff, 0xff]);
  assert.deepEqual(ping(65536n), [2, 0xfc, 0x00, 0x00, 0x01, 0x00]);
  assert.deepEqual(ping(2n ** 32n), [2, 0xfd, 0, 0, 0, 0, 1, 0, 0, 0]);
  assert.deepEqual(ping(2n ** 64n - 1n), [2, 0xfd, 255, 255, 255, 255, 255, 255, 255, 255]);
  assert.throws(() => ping(2n ** 64n), ProtocolError);
  assert.throws(() => ping(-1), ProtocolError);
  assert.throws(() => ping(2 ** 53), ProtocolError, "unsafe Number");
  // u64 values come back as BigInt, exactly.
  assert.equal(decodeClientMessage(Uint8Array.from(ping(2n ** 64n - 1n))).clientTime, 2n ** 64n - 1n);

  const bad = [
    [0x04], // unknown variant
    [0x00, 0xfc, 1, 0, 0, 0, 0x00, 0x00], // protocol_version (u16) in the 4-byte form
    [0x02, 0xfe], // fe first byte
    [0x02, 0x05, 0x00], // trailing byte
    [0x00, 0x01, 0x03, 0x61], // truncated string
    [0x00, 0x01, 0x01, 0xff, 0x00], // invalid UTF-8
    [0x00, 0x01, 0x00, 0x02], // bad Option tag
    [0x01, 0x00, 0x09, ...Array(45).fill(0)], // 9 frames
  ];
  for (const b of bad) assert.throws(() => decodeClientMessage(Uint8Array.from(b)), ProtocolError, `${b}`);
  assert.throws(() => decodeServerMessage(Uint8Array.of(0x04)), ProtocolError);
  assert.throws(() => decodeServerMessage(new Uint8Array((1 << 20) + 1)), ProtocolError);
  assert.throws(() => decodeServerMessage(byName.welcome.bytes.slice(0, 38)), ProtocolError);
  assert.throws(() => decodeServerMessage(Uint8Array.from([...byName.pong.bytes, 0])), ProtocolError);
  const longReason = encodeServerMessage({ type: "Disconnect", code: 1000, reason: "x".repeat(123) });
  assert.equal(decodeServerMessage(longReason).reason.length, 123);
  assert.throws(() => encodeServerMessage({ type: "Disconnect", code: 1000, reason: "x".repeat(124) }));
  // Client limits.
  assert.throws(() => encodeClientMessage({ type: "Hello", name: "x".repeat(33) }), ProtocolError);
  // A seat of 128 bytes is fine, 129 is not, either way.
  const seated = encodeClientMessage({ type: "Hello", name: "", seat: "s".repeat(MAX_SEAT_BYTES) });
  assert.equal(decodeClientMessage(seated).seat.length, MAX_SEAT_BYTES);
  assert.throws(() => encodeClientMessage({ type: "Hello", name: "", seat: "s".repeat(129) }), ProtocolError);
  const over = Uint8Array.from([0x00, 0x02, 0x00, 0x00, 0x01, 0x81, ...Array(129).fill(0x73)]);
  assert.throws(() => decodeClientMessage(over), ProtocolError);
  // A version-1 Hello (no seat field) is truncated to a version-2 decoder.
  assert.throws(() => decodeClientMessage(Uint8Array.of(0x00, 0x01, 0x03, 0x61, 0x64, 0x61, 0x00)), ProtocolError);
  const frame = { seq: 1, moveX: 0, moveY: 0, aimYaw: 0, buttons: 0 };
  assert.throws(() => encodeClientMessage({ type: "Input", ackTick: 0, frames: Array(9).fill(frame) }), ProtocolError);
  assert.throws(() => encodeClientMessage({ type: "Input", ackTick: 0, frames: [{ ...frame, moveX: 128 }] }));
});

test("input helpers: -1..1 to i8, radians to 1/65536 turns", () => {
  assert.equal(toI8(1), 127);
  assert.equal(toI8(-1), -127);
  assert.equal(toI8(5), 127);
  assert.equal(toI8(NaN), 0);
  assert.equal(yawToU16(Math.PI / 2), 16384);
  assert.equal(yawToU16(-Math.PI / 2), 49152);
  assert.equal(yawToU16(2 * Math.PI), 0);
});

// A WebSocket stand-in: records what the client sends and lets the test play the server.
class FakeSocket {
  static last = null;
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    FakeSocket.last = this;
  }
  send(bytes) {
    this.sent.push(decodeClientMessage(bytes));
  }
  close(code) {
    this.closedWith = code;
  }
  open() {
    this.readyState = 1;
    this.onopen({});
  }
  deliver(bytes) {
    this.onmessage({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
  }
  serverClose(code, reason) {
    this.readyState = 3;
    this.onclose({ code, reason });
  }
  sentOf(type) {
    return this.sent.filter((m) => m.type === type);
  }
}

test("TickwireClient: handshake, snapshots, acks, redundant frames, missing baselines, close", () => {
  const client = new TickwireClient("ws://test/ws", { name: "ada", WebSocket: FakeSocket });
  const ws = FakeSocket.last;
  const events = [];
  client.onopen = (w) => events.push(["open", w.entityId]);
  client.onsnapshot = (view, info) => events.push(["snapshot", info.tick, view.length, info.self && info.self.x]);
  client.onclose = (c) => events.push(["close", c.code, c.reason]);
  client.onerror = (e) => events.push(["error", e.message]);
  assert.equal(client.sendInput({ moveX: 1 }), null, "no input before the Welcome");

  ws.open();
  assert.deepEqual(ws.sent, [{ type: "Hello", protocolVersion: PROTOCOL_VERSION, name: "ada", resumeToken: null, seat: null, auth: null }]);
  assert.deepEqual(encodeClientMessage(ws.sent[0]), byName.hello.bytes);
  ws.deliver(byName.welcome.bytes);
  assert.equal(client.readyState, TickwireClient.OPEN);
  assert.equal(client.welcome.resumeToken, 81985529216486895n);
  assert.equal(ws.sentOf("Ping").length, 1, "pings right away");

  const f1 = client.sendInput({ moveX: 1, moveY: -1, aimYaw: Math.PI / 2, buttons: 1 });
  assert.deepEqual(f1, { seq: 1, moveX: 127, moveY: -127, aimYaw: 16384, buttons: 1, viewTick: 0, interpMs: 100 });
  assert.deepEqual(ws.sentOf("Input").at(-1), { type: "Input", ackTick: 0, frames: [f1] });

  ws.deliver(byName.snapshot_full.bytes);
  assert.deepEqual(events.at(-1), ["snapshot", 300, 3, 10.5]);
  const f2 = client.sendInput({ interpMs: 42.4 });
  assert.equal(ws.sentOf("Input").at(-1).ackTick, 300);
  assert.deepEqual([f2.viewTick, f2.interpMs], [300, 42], "the frame says what was on screen");
  ws.deliver(byName.snapshot_delta.bytes);
  assert.deepEqual(events.at(-1), ["snapshot", 303, 3, 11]);
  assert.equal(client.stats.snapshots, 2);
  assert.equal(client.stats.entities, 3);
  assert.equal(client.stats.lastInput, 251);

  for (let i = 0; i < 10; i++) client.sendInput({ moveX: 0.5 });
  const last = ws.sentOf("Input").at(-1);
  assert.equal(last.ackTick, 303);
  assert.deepEqual(
    last.frames.map((f) => f.seq),
    [5, 6, 7, 8, 9, 10, 11, 12],
    "the newest 8 frames, oldest first",
  );

  // A delta against a tick never received: not a desync, the ack stays at 303.
  const orphan = decodeServerMessage(byName.snapshot_delta.bytes);
  ws.deliver(encodeServerMessage({ ...orphan, tick: 310, baselineAge: 5 }));
  assert.equal(client.stats.missingBaselines, 1);
  assert.equal(client.stats.desyncs, 0);
  // A checksum that does not match: a desync, and still nothing changes.
  ws.deliver(encodeServerMessage({ ...orphan, tick: 311, baselineAge: 11, checksum: 1 }));
  assert.equal(client.stats.desyncs, 1);
  client.sendInput({});
  assert.equal(ws.sentOf("Input").at(-1).ackTick, 303);
  assert.equal(client.stats.snapshots, 2);

  ws.deliver(byName.disconnect.bytes);
  ws.serverClose(4000, "");
  assert.deepEqual(events.at(-1), ["close", CLOSE.ACK_TIMEOUT, "ack timeout"]);
  assert.equal(client.readyState, TickwireClient.CLOSED);
  assert.equal(client.sendInput({}), null);
  assert.ok(!events.some((e) => e[0] === "error"), JSON.stringify(events));
});

test("TickwireClient: close() sends Leave; garbage from the server is an error", () => {
  const a = new TickwireClient("ws://test/ws", { WebSocket: FakeSocket });
  const ws = FakeSocket.last;
  ws.open();
  ws.deliver(byName.welcome.bytes);
  a.close();
  assert.equal(a.readyState, TickwireClient.CLOSING);
  assert.deepEqual(ws.sentOf("Leave"), [{ type: "Leave" }]);
  let closed = null;
  a.onclose = (c) => (closed = c);
  ws.serverClose(1000, "bye");
  assert.deepEqual(closed, { code: 1000, reason: "bye" });

  const b = new TickwireClient("ws://test/ws", { WebSocket: FakeSocket });
  const ws2 = FakeSocket.last;
  const errors = [];
  b.onerror = (e) => errors.push(e);
  ws2.open();
  ws2.deliver(Uint8Array.of(0x09));
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof ProtocolError);
  assert.equal(ws2.closedWith, 1000);
  ws2.serverClose(1000, "");
  assert.throws(() => new TickwireClient("ws://x/ws", { name: "é".repeat(17), WebSocket: FakeSocket }), RangeError);
});

test("TickwireClient: a seat goes into the Hello; a bad one is refused up front", () => {
  const seat = byName.hello_seat.json.fields.seat;
  new TickwireClient("ws://test/ws", { name: "ada", seat, WebSocket: FakeSocket });
  const ws = FakeSocket.last;
  ws.open();
  assert.deepEqual(ws.sent, [{ type: "Hello", protocolVersion: PROTOCOL_VERSION, name: "ada", resumeToken: null, seat, auth: null }]);
  assert.deepEqual(encodeClientMessage(ws.sent[0]), byName.hello_seat.bytes);
  assert.throws(() => new TickwireClient("ws://x/ws", { seat: "s".repeat(129), WebSocket: FakeSocket }), RangeError);
  assert.throws(() => new TickwireClient("ws://x/ws", { seat: 7, WebSocket: FakeSocket }), RangeError);
  assert.equal(CLOSE.SEAT_REQUIRED, 4003);
  assert.equal(CLOSE.ROOM_UNAVAILABLE, 4007);
  assert.equal(CLOSE.TRY_AGAIN_LATER, 1013);
});

test("TickwireClient: a player token goes into the Hello; a bad one is refused up front", () => {
  const auth = byName.hello_auth.json.fields.auth;
  new TickwireClient("ws://test/ws", { name: "ada", auth, WebSocket: FakeSocket });
  const ws = FakeSocket.last;
  ws.open();
  assert.deepEqual(ws.sent, [{ type: "Hello", protocolVersion: PROTOCOL_VERSION, name: "ada", resumeToken: null, seat: null, auth }]);
  assert.deepEqual(encodeClientMessage(ws.sent[0]), byName.hello_auth.bytes);
  assert.throws(() => new TickwireClient("ws://x/ws", { auth: "t".repeat(257), WebSocket: FakeSocket }), RangeError);
  assert.equal(CLOSE.TOKEN_REQUIRED, 4008);
  assert.equal(CLOSE.TOKEN_WRONG_ROOM, 4011);
  assert.equal(CLOSE.FLOODING, 4013);
});

// A fetch stand-in: records the request and answers with `status` and `body`.
function fakeFetch(status, body, calls) {
  return async (url, init) => {
    calls.push({ url, method: init.method, body: JSON.parse(init.body) });
    return {
      ok: status >= 200 && status < 300,
      status,
      json: async () => (typeof body === "string" ? JSON.parse(body) : body),
    };
  };
}

test("matchmake: POSTs the request, returns the answer, throws the server's error", async () => {
  const answer = {
    room_id: "r8kq2mz4tb",
    ws_url: "ws://127.0.0.1:8080/ws",
    quic_url: "quic://127.0.0.1:4433",
    seat_token: "r8kq2mz4tb.3f9d0c1a2b4e6f7a8c9d0e1f2a",
    expires_in_s: 30,
  };
  const calls = [];
  const got = await matchmake("http://127.0.0.1:8080/", "arena", { maxClients: 8, fetch: fakeFetch(200, answer, calls) });
  assert.deepEqual(got, answer);
  assert.deepEqual(calls, [
    { url: "http://127.0.0.1:8080/matchmake/join_or_create/arena", method: "POST", body: { max_clients: 8 } },
  ]);
  await matchmake("http://h", "a b", { mode: "create", fetch: fakeFetch(200, answer, calls) });
  assert.deepEqual(calls.at(-1), { url: "http://h/matchmake/create/a%20b", method: "POST", body: {} });
  assert.equal(matchmakeUrl("http://h", "arena"), "http://h/matchmake/join_or_create/arena");
  assert.throws(() => matchmakeUrl("http://h", "arena", "join"), RangeError);
  await assert.rejects(matchmake("http://h", "arena", { maxClients: 0, fetch: fakeFetch(200, answer, []) }), RangeError);

  await assert.rejects(
    matchmake("http://h", "arena", { fetch: fakeFetch(409, { error: "room_full", message: "8 of 8" }, []) }),
    (e) => e instanceof MatchmakeError && e.status === 409 && e.error === "room_full" && /room_full: 8 of 8/.test(e.message),
  );
  await assert.rejects(
    matchmake("http://h", "arena", { fetch: fakeFetch(503, { error: "directory_unavailable" }, []) }),
    (e) => e instanceof MatchmakeError && e.status === 503 && e.error === "directory_unavailable",
  );
  await assert.rejects(
    matchmake("http://h", "arena", { fetch: fakeFetch(502, "not json", []) }),
    (e) => e instanceof MatchmakeError && e.status === 502 && e.error === null,
  );
  await assert.rejects(
    matchmake("http://h", "arena", { fetch: fakeFetch(200, { room_id: "x" }, []) }),
    (e) => e instanceof MatchmakeError && e.error === null,
  );
});
