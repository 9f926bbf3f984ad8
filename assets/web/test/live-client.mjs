// tickwire.js against a live server: connect, verify 60 snapshots, move, leave.
// Run by server/tests/js_client.rs with TICKWIRE_URL set to an in-process server's /ws
// (Node 22+, or Node 20 with --experimental-websocket, for the global WebSocket).
// Prints one JSON line with the outcome; exits non-zero on any failure.

import { PROTOCOL_VERSION, TickwireClient } from "../tickwire.js";

const url = process.env.TICKWIRE_URL;
if (!url) {
  console.error("set TICKWIRE_URL=ws://host:port/ws");
  process.exit(2);
}

const fail = (why) => {
  console.error(`FAIL: ${why}`);
  process.exit(1);
};
const deadline = setTimeout(() => fail("timed out after 15 s"), 15000);

const client = new TickwireClient(url, { name: "node-live" });
let start = null;
let dir = null;
let stopSeq = null;
let moved = null;
let inputTimer = null;
let move = [0, 0];

client.onerror = (e) => fail(`error: ${e.message}`);
client.onopen = (welcome) => {
  if (welcome.protocolVersion !== PROTOCOL_VERSION) fail(`protocol ${welcome.protocolVersion}`);
  inputTimer = setInterval(() => {
    const frame = client.sendInput({ moveX: move[0], moveY: move[1] });
    if (stopSeq === null && moved === null && client.stats.snapshots >= 60 && frame) {
      // 60 verified snapshots: stop, and wait for the server to apply the stop.
      move = [0, 0];
      stopSeq = frame.seq + 1;
    }
  }, 1000 / welcome.tickRate);
};
client.onsnapshot = (view, info) => {
  if (!info.self) fail(`own entity ${client.welcome.entityId} not in view`);
  if (view.some((e, i) => i > 0 && view[i - 1].id >= e.id)) fail("view not id-sorted");
  if (start === null) {
    start = { x: info.self.x, y: info.self.y };
    // Diagonally towards the middle: an obstacle can block one axis, never both.
    dir = [start.x > 0 ? -1 : 1, start.y > 0 ? -1 : 1];
    move = dir;
  }
  if (stopSeq !== null && info.lastInput >= stopSeq && moved === null) {
    moved = Math.hypot(info.self.x - start.x, info.self.y - start.y);
    client.close();
  }
};
client.onclose = ({ code, reason }) => {
  clearInterval(inputTimer);
  clearTimeout(deadline);
  const s = client.stats;
  console.log(JSON.stringify({ code, reason, moved, ...s, rttMs: s.rttMs }));
  if (code !== 1000) fail(`closed with ${code} ${reason}`);
  if (s.snapshots < 60) fail(`only ${s.snapshots} snapshots`);
  if (s.desyncs !== 0 || s.malformed !== 0) fail(`${s.desyncs} desyncs, ${s.malformed} malformed`);
  if (!(moved > 2)) fail(`moved only ${moved} units`);
  if (s.rttMs === null) fail("no Pong");
  process.exit(0);
};
