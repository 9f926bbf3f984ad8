// The Tickwire arena demo: a canvas view of the world, driven by tickwire.js.
//
// Remote entities are drawn about 100 ms in the past, interpolated between snapshots. Your
// own player is predicted from your inputs (the arena's rules: 8 units/s, sliding along walls
// and obstacles) and reconciled with every snapshot: the server's position, plus the inputs it
// has not applied yet (`last_input`) replayed on top.
//
// window.tickwireStats = {snapshots, desyncs, entities, connected, self, predicted, ...} is
// kept current for tests and curious developers (`self` is the server-confirmed position,
// `selfFlags` and `selfHealth` your entity's flags and health).

import { BUTTON_FIRE, TickwireClient } from "./tickwire.js";
import { WORLD } from "./world.js";

// Arena rules (server/src/game.rs, ArenaRules::default()).
const PLAYER_SPEED = 8; // units per second
const BODY_RADIUS = 0.5;
const KIND_PLAYER = 1;
const KIND_NPC = 2;
const KIND_PROJECTILE = 3;
const MAX_HEALTH = 100;
// Flag bits this page draws the same way whatever the game (flags are game-defined; the arena
// sets none; the tag example, server/examples/tag, sets 0x1 on whoever is "it", 0x2 on the
// player who just passed it on, and 0x4 on everyone, because its health is the score).
const FLAG_MARKED = 0x1; // a red ring around it, red on the minimap, "marked" in the HUD
const FLAG_PROTECTED = 0x2; // drawn faded
const FLAG_SCORE = 0x4; // health is a score: drawn as a number above it, not as a health bar

const INTERP_DELAY_MS = 100;
const BUFFER_SNAPSHOTS = 32;
const MAX_PENDING_INPUTS = 120;

const params = new URLSearchParams(location.search);
const wsUrl = (() => {
  if (params.get("server")) return params.get("server");
  const u = new URL("ws", location.href);
  u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  u.search = "";
  u.hash = "";
  return u.href;
})();
const playerName = (params.get("name") || `web-${Math.floor(Math.random() * 9000) + 1000}`).slice(0, 32);

const canvas = document.getElementById("view");
const ctx = canvas.getContext("2d");
const hud = document.getElementById("hud");

const stats = {
  connected: false,
  status: "connecting",
  snapshots: 0,
  desyncs: 0,
  malformed: 0,
  missingBaselines: 0,
  entities: 0,
  tick: 0,
  rttMs: null,
  snapshotsPerSec: 0,
  kbPerSec: 0,
  entityId: null,
  self: null,
  selfFlags: 0,
  selfHealth: 0,
  predicted: null,
  kinds: {},
};
window.tickwireStats = stats;

// ---- connection -------------------------------------------------------------------------

let client = null;
let welcome = null;
let tickMs = 1000 / 30;
let inputTimer = null;
let reconnectDelay = 500;
let resumeToken = null;
let obstacles = [];
let worldMin = WORLD.min;
let worldMax = WORLD.max;

// Snapshot buffer for interpolation: {tick, entities: Map(id -> dequantized entity)}.
let buffer = [];
// Local time (ms) of server tick 0, estimated from arrivals: tickTime(t) = t * tickMs + offset.
let clockOffset = null;

// Prediction state.
let serverSelf = null; // {x, y} from the newest snapshot
let pending = []; // sent frames the server has not applied: {seq, moveX, moveY}
let predicted = null; // after every pending frame
let predictedPrev = null; // before the newest frame
let lastSendAt = 0;
let smoothing = { x: 0, y: 0 }; // visual correction, decays to 0

function connect() {
  stats.status = "connecting";
  client = new TickwireClient(wsUrl, { name: playerName, resumeToken });
  client.onopen = (w) => {
    welcome = w;
    resumeToken = w.resumeToken;
    reconnectDelay = 500;
    tickMs = 1000 / w.tickRate;
    worldMin = w.worldMin;
    worldMax = w.worldMax;
    // world.js describes the built-in arena; a server on another world gets no obstacles.
    const same = [0, 1].every((a) => worldMin[a] === WORLD.min[a] && worldMax[a] === WORLD.max[a]);
    obstacles = same ? WORLD.obstacles : [];
    buffer = [];
    clockOffset = null;
    serverSelf = null;
    pending = [];
    predicted = predictedPrev = null;
    stats.connected = true;
    stats.status = "connected";
    stats.entityId = w.entityId;
    clearInterval(inputTimer);
    inputTimer = setInterval(sendInput, tickMs);
  };
  client.onsnapshot = onSnapshot;
  client.onerror = (e) => console.warn("tickwire:", e.message);
  client.onclose = ({ code, reason }) => {
    clearInterval(inputTimer);
    stats.connected = false;
    stats.status = `closed ${code}${reason ? ` (${reason})` : ""}`;
    // Reconnect (resuming the same player) unless the code says not to (PROTOCOL.md 6).
    // 4002: another tab resumed this player; 4001: wrong version; 4003: the server needs a
    // seat; 4008-4011: the server needs a (new) player token; 100x: a bug or a goodbye.
    if ([1000, 1002, 1003, 1009, 4001, 4002, 4003, 4008, 4009, 4010, 4011, 4013].includes(code)) return;
    stats.status += `, reconnecting in ${(reconnectDelay / 1000).toFixed(1)} s`;
    setTimeout(connect, reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, 10000);
  };
}

function onSnapshot(view, info) {
  const t = performance.now();
  const entities = new Map();
  const kinds = {};
  for (const e of view) {
    entities.set(e.id, e);
    kinds[e.kind] = (kinds[e.kind] || 0) + 1;
  }
  buffer.push({ tick: info.tick, entities });
  if (buffer.length > BUFFER_SNAPSHOTS) buffer.shift();

  // Track the server clock: arrivals jitter, so follow slowly and jump on big errors.
  const sample = t - info.tick * tickMs;
  if (clockOffset === null || Math.abs(sample - clockOffset) > 250) clockOffset = sample;
  else clockOffset += (sample - clockOffset) * 0.05;

  if (info.self) reconcile(info.self, info.lastInput);

  stats.entities = view.length;
  stats.tick = info.tick;
  stats.kinds = kinds;
  stats.self = info.self ? { x: info.self.x, y: info.self.y } : null;
  const mine = entities.get(stats.entityId);
  stats.selfFlags = mine ? mine.flags : 0;
  stats.selfHealth = mine ? mine.health : 0;
  syncStats();
}

// Copies the client's counters (rejected snapshots never reach onSnapshot, so this also runs
// on a timer).
function syncStats() {
  if (!client) return;
  const s = client.stats;
  stats.snapshots = s.snapshots;
  stats.desyncs = s.desyncs;
  stats.malformed = s.malformed;
  stats.missingBaselines = s.missingBaselines;
  stats.rttMs = s.rttMs;
  stats.snapshotsPerSec = s.snapshotsPerSec;
  stats.kbPerSec = s.bytesPerSec / 1000;
}
setInterval(syncStats, 250);

// ---- input and prediction ---------------------------------------------------------------

const keys = new Set();
const mouse = { x: null, y: null, down: false, clicked: false };
let aimYaw = 0;
let userZoom = 1;

const KEY_DIRS = {
  KeyW: [0, 1],
  ArrowUp: [0, 1],
  KeyS: [0, -1],
  ArrowDown: [0, -1],
  KeyA: [-1, 0],
  ArrowLeft: [-1, 0],
  KeyD: [1, 0],
  ArrowRight: [1, 0],
};
const KEY_BY_NAME = { w: "KeyW", a: "KeyA", s: "KeyS", d: "KeyD" };

function keyCode(e) {
  if (KEY_DIRS[e.code]) return e.code;
  if (KEY_DIRS[e.key]) return e.key;
  return KEY_BY_NAME[(e.key || "").toLowerCase()] || e.code;
}

addEventListener("keydown", (e) => {
  const k = keyCode(e);
  if (KEY_DIRS[k]) {
    keys.add(k);
    e.preventDefault();
  } else if (e.code === "Space") {
    mouse.clicked = true;
    e.preventDefault();
  }
});
addEventListener("keyup", (e) => keys.delete(keyCode(e)));
addEventListener("blur", () => keys.clear());
canvas.addEventListener("mousemove", (e) => {
  mouse.x = e.offsetX;
  mouse.y = e.offsetY;
});
canvas.addEventListener("mousedown", (e) => {
  mouse.x = e.offsetX;
  mouse.y = e.offsetY;
  mouse.down = true;
  mouse.clicked = true;
});
addEventListener("mouseup", () => (mouse.down = false));
canvas.addEventListener(
  "wheel",
  (e) => {
    userZoom = Math.min(8, Math.max(0.125, userZoom * Math.exp(-e.deltaY * 0.001)));
    e.preventDefault();
  },
  { passive: false },
);

function moveIntent() {
  let x = 0;
  let y = 0;
  for (const k of keys) {
    x += KEY_DIRS[k][0];
    y += KEY_DIRS[k][1];
  }
  const len = Math.hypot(x, y);
  return len > 0 ? [x / len, y / len] : [0, 0];
}

function sendInput() {
  if (!client) return;
  const [mx, my] = moveIntent();
  const fire = mouse.down || mouse.clicked;
  mouse.clicked = false;
  // Lag compensation (PROTOCOL.md 5.3): say how far behind the newest snapshot the others
  // are on screen right now, so the server tests a shot against what you aimed at.
  const viewTick = client.receiver ? client.receiver.ackTick : 0;
  const renderTick = (performance.now() - INTERP_DELAY_MS - clockOffset) / tickMs;
  const interpMs = viewTick > 0 && clockOffset !== null ? Math.max(0, (viewTick - renderTick) * tickMs) : INTERP_DELAY_MS;
  const frame = client.sendInput({ moveX: mx, moveY: my, aimYaw, buttons: fire ? BUTTON_FIRE : 0, interpMs });
  if (!frame) return;
  pending.push(frame);
  if (pending.length > MAX_PENDING_INPUTS) pending.shift();
  if (predicted) {
    predictedPrev = predicted;
    predicted = step(predicted, frame);
    stats.predicted = { x: predicted.x, y: predicted.y };
  }
  lastSendAt = performance.now();
}

// One tick of the arena's player movement (Arena::step / Arena::slide).
function step(p, frame) {
  let vx = frame.moveX / 127;
  let vy = frame.moveY / 127;
  const l2 = vx * vx + vy * vy;
  if (l2 > 1) {
    const l = Math.sqrt(l2);
    vx /= l;
    vy /= l;
  }
  const dt = tickMs / 1000;
  const pos = [p.x, p.y];
  const delta = [vx * PLAYER_SPEED * dt, vy * PLAYER_SPEED * dt];
  for (let a = 0; a < 2; a++) {
    const next = pos.slice();
    next[a] = Math.min(worldMax[a], Math.max(worldMin[a], next[a] + delta[a]));
    if (!blocked(next[0], next[1])) pos[a] = next[a];
  }
  return { x: pos[0], y: pos[1] };
}

function blocked(x, y) {
  for (const o of obstacles) {
    const nx = Math.min(o.max[0], Math.max(o.min[0], x));
    const ny = Math.min(o.max[1], Math.max(o.min[1], y));
    const dx = nx - x;
    const dy = ny - y;
    if (dx * dx + dy * dy < BODY_RADIUS * BODY_RADIUS) return true;
  }
  return false;
}

function reconcile(self, lastInput) {
  const before = predicted ? displayedSelf() : null;
  serverSelf = { x: self.x, y: self.y };
  pending = pending.filter((f) => f.seq > lastInput);
  let p = serverSelf;
  let prev = serverSelf;
  for (const f of pending) {
    prev = p;
    p = step(p, f);
  }
  predicted = p;
  predictedPrev = prev;
  stats.predicted = { x: p.x, y: p.y };
  if (before) {
    const after = displayedSelf(true);
    const ex = before.x - after.x;
    const ey = before.y - after.y;
    // Hide small corrections by easing them out; snap on big ones (a respawn, a wall).
    smoothing = Math.hypot(ex, ey) > 4 ? { x: 0, y: 0 } : { x: ex, y: ey };
  }
}

function displayedSelf(raw = false) {
  if (!predicted) return null;
  const a = Math.min(1, Math.max(0, (performance.now() - lastSendAt) / tickMs));
  const x = predictedPrev.x + (predicted.x - predictedPrev.x) * a;
  const y = predictedPrev.y + (predicted.y - predictedPrev.y) * a;
  return raw ? { x, y } : { x: x + smoothing.x, y: y + smoothing.y };
}

// ---- interpolation ----------------------------------------------------------------------

function interpolated(now) {
  if (buffer.length === 0) return [];
  const renderTick = (now - INTERP_DELAY_MS - clockOffset) / tickMs;
  let i = buffer.length - 1;
  while (i > 0 && buffer[i - 1].tick > renderTick) i--;
  const b = buffer[i];
  const a = i > 0 ? buffer[i - 1] : b;
  if (a === b || renderTick >= b.tick) return [...b.entities.values()];
  const f = Math.min(1, Math.max(0, (renderTick - a.tick) / (b.tick - a.tick)));
  const out = [];
  for (const e of b.entities.values()) {
    const old = a.entities.get(e.id);
    if (!old) {
      out.push(e);
      continue;
    }
    out.push({ ...e, x: old.x + (e.x - old.x) * f, y: old.y + (e.y - old.y) * f, yaw: lerpAngle(old.yaw, e.yaw, f) });
  }
  return out;
}

function lerpAngle(a, b, f) {
  let d = (b - a) % (2 * Math.PI);
  if (d > Math.PI) d -= 2 * Math.PI;
  if (d < -Math.PI) d += 2 * Math.PI;
  return a + d * f;
}

// ---- drawing ----------------------------------------------------------------------------

let fitRadius = 60; // world units from you to the screen edge, follows what the server shows
let lastFrame = performance.now();

const COLORS = {
  background: "#0b1020",
  world: "#121a2e",
  gridMinor: "rgba(120,150,200,0.07)",
  gridMajor: "rgba(120,150,200,0.16)",
  bounds: "#5d7bb8",
  obstacle: "#3a4a6b",
  obstacleEdge: "#7d93c4",
  player: "#4aa8ff",
  npc: "#ff9f43",
  projectile: "#ffe066",
  other: "#b0b0b0",
  self: "#5cff9d",
  marked: "#ff4d6d",
};

function resize() {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return [w, h];
}

function frame() {
  const now = performance.now();
  const dt = Math.min(0.1, (now - lastFrame) / 1000);
  lastFrame = now;
  const decay = Math.exp(-dt / 0.1);
  smoothing = { x: smoothing.x * decay, y: smoothing.y * decay };

  const [w, h] = resize();
  ctx.fillStyle = COLORS.background;
  ctx.fillRect(0, 0, w, h);

  const others = buffer.length ? interpolated(now) : [];
  const me = stats.entityId;
  const selfPos = displayedSelf() || stats.self;
  if (!selfPos) {
    // Nothing to centre on until the first snapshot that shows you.
    ctx.fillStyle = "#8b97b3";
    ctx.font = "16px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.fillText(stats.connected ? "waiting for the first snapshot…" : stats.status, w / 2, h / 2);
    ctx.textAlign = "left";
    drawHud();
    requestAnimationFrame(frame);
    return;
  }

  // Zoom: fit what the server sends you (your view radius), then the wheel.
  let far = 40;
  for (const e of others) if (e.id !== me) far = Math.max(far, Math.hypot(e.x - selfPos.x, e.y - selfPos.y));
  fitRadius = Math.max(far + 10, fitRadius * Math.exp(-dt * 0.05));
  const scale = (Math.min(w, h) / 2 / fitRadius) * userZoom;
  const sx = (x) => w / 2 + (x - selfPos.x) * scale;
  const sy = (y) => h / 2 - (y - selfPos.y) * scale;

  if (mouse.x !== null && predicted) {
    const wx = selfPos.x + (mouse.x - w / 2) / scale;
    const wy = selfPos.y - (mouse.y - h / 2) / scale;
    aimYaw = Math.atan2(wy - selfPos.y, wx - selfPos.x);
  }

  drawWorld(w, h, scale, sx, sy);
  for (const e of others) if (e.id !== me && e.kind === KIND_PROJECTILE) drawEntity(e, scale, sx, sy, false);
  for (const e of others) if (e.id !== me && e.kind !== KIND_PROJECTILE) drawEntity(e, scale, sx, sy, false);
  const selfEntity = buffer.length ? buffer[buffer.length - 1].entities.get(me) : null;
  if (selfEntity) drawEntity({ ...selfEntity, x: selfPos.x, y: selfPos.y, yaw: aimYaw }, scale, sx, sy, true);
  if (mouse.x !== null && predicted) {
    ctx.strokeStyle = "rgba(92,255,157,0.25)";
    ctx.setLineDash([4, 6]);
    ctx.beginPath();
    ctx.moveTo(sx(selfPos.x), sy(selfPos.y));
    ctx.lineTo(mouse.x, mouse.y);
    ctx.stroke();
    ctx.setLineDash([]);
  }
  drawMinimap(w, h, others, selfPos, scale);
  drawHud();
  requestAnimationFrame(frame);
}

function drawWorld(w, h, scale, sx, sy) {
  const [x0, y0] = worldMin;
  const [x1, y1] = worldMax;
  ctx.fillStyle = COLORS.world;
  ctx.fillRect(sx(x0), sy(y1), (x1 - x0) * scale, (y1 - y0) * scale);

  // Grid: 10-unit lines when they are far enough apart, 100-unit lines always.
  const left = Math.max(x0, worldXAt(scale, sx, 0));
  const right = Math.min(x1, worldXAt(scale, sx, w));
  const top = Math.min(y1, worldYAt(scale, sy, 0));
  const bottom = Math.max(y0, worldYAt(scale, sy, h));
  for (const [stepU, color] of [
    [10, COLORS.gridMinor],
    [100, COLORS.gridMajor],
  ]) {
    if (stepU * scale < 6) continue;
    ctx.strokeStyle = color;
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let x = Math.ceil(left / stepU) * stepU; x <= right; x += stepU) {
      ctx.moveTo(Math.round(sx(x)) + 0.5, sy(top));
      ctx.lineTo(Math.round(sx(x)) + 0.5, sy(bottom));
    }
    for (let y = Math.ceil(bottom / stepU) * stepU; y <= top; y += stepU) {
      ctx.moveTo(sx(left), Math.round(sy(y)) + 0.5);
      ctx.lineTo(sx(right), Math.round(sy(y)) + 0.5);
    }
    ctx.stroke();
  }

  ctx.strokeStyle = COLORS.bounds;
  ctx.lineWidth = 2;
  ctx.strokeRect(sx(x0), sy(y1), (x1 - x0) * scale, (y1 - y0) * scale);

  for (const o of obstacles) {
    const rx = sx(o.min[0]);
    const ry = sy(o.max[1]);
    const rw = (o.max[0] - o.min[0]) * scale;
    const rh = (o.max[1] - o.min[1]) * scale;
    ctx.fillStyle = COLORS.obstacle;
    ctx.fillRect(rx, ry, rw, rh);
    ctx.strokeStyle = COLORS.obstacleEdge;
    ctx.lineWidth = 1.5;
    ctx.strokeRect(rx, ry, rw, rh);
  }
}

// World coordinate at a screen column/row (inverse of sx/sy).
function worldXAt(scale, sx, px) {
  return (px - sx(0)) / scale;
}
function worldYAt(scale, sy, py) {
  return (sy(0) - py) / scale;
}

function drawEntity(e, scale, sx, sy, isSelf) {
  const x = sx(e.x);
  const y = sy(e.y);
  if (e.kind === KIND_PROJECTILE) {
    const r = Math.max(3, 0.15 * scale);
    const speed = Math.hypot(e.vx, e.vy);
    if (speed > 0) {
      // A short trail along the velocity.
      const tail = Math.min(40, speed * 0.15 * scale + 8);
      ctx.strokeStyle = "rgba(255,224,102,0.45)";
      ctx.lineWidth = r;
      ctx.beginPath();
      ctx.moveTo(x, y);
      ctx.lineTo(x - (e.vx / speed) * tail, y + (e.vy / speed) * tail);
      ctx.stroke();
    }
    ctx.fillStyle = COLORS.projectile;
    ctx.beginPath();
    ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.fill();
    return;
  }
  const color = isSelf
    ? COLORS.self
    : e.kind === KIND_PLAYER
      ? COLORS.player
      : e.kind === KIND_NPC
        ? COLORS.npc
        : COLORS.other;
  const r = Math.max(isSelf ? 9 : e.kind === KIND_PLAYER ? 7.5 : 6, BODY_RADIUS * scale);
  if (e.flags & FLAG_PROTECTED) ctx.globalAlpha = 0.45;
  if (e.flags & FLAG_MARKED) {
    ctx.strokeStyle = COLORS.marked;
    ctx.lineWidth = 3;
    ctx.beginPath();
    ctx.arc(x, y, r + 3, 0, 2 * Math.PI);
    ctx.stroke();
  }
  if (isSelf) {
    ctx.strokeStyle = "rgba(92,255,157,0.35)";
    ctx.lineWidth = 3;
    ctx.beginPath();
    ctx.arc(x, y, r + 6, 0, 2 * Math.PI);
    ctx.stroke();
  }
  ctx.fillStyle = color;
  ctx.beginPath();
  ctx.arc(x, y, r, 0, 2 * Math.PI);
  ctx.fill();
  // Facing.
  ctx.strokeStyle = "#ffffff";
  ctx.lineWidth = 2;
  ctx.beginPath();
  ctx.moveTo(x, y);
  ctx.lineTo(x + Math.cos(e.yaw) * (r + 5), y - Math.sin(e.yaw) * (r + 5));
  ctx.stroke();
  if (e.flags & FLAG_SCORE) {
    ctx.fillStyle = "#dfe6f5";
    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.fillText(String(e.health), x, y - r - 6);
    ctx.textAlign = "left";
  } else if (e.health < MAX_HEALTH) {
    const bw = r * 2.4;
    ctx.fillStyle = "rgba(0,0,0,0.6)";
    ctx.fillRect(x - bw / 2, y - r - 9, bw, 4);
    ctx.fillStyle = e.health > 40 ? "#5cff9d" : "#ff5c5c";
    ctx.fillRect(x - bw / 2, y - r - 9, (bw * Math.min(e.health, MAX_HEALTH)) / MAX_HEALTH, 4);
  }
  if (isSelf) {
    ctx.fillStyle = COLORS.self;
    ctx.font = "12px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.fillText(`you (${playerName})`, x, y + r + 16);
    ctx.textAlign = "left";
  }
  ctx.globalAlpha = 1;
}

function drawMinimap(w, h, others, selfPos, scale) {
  const size = Math.min(200, Math.min(w, h) * 0.3);
  const pad = 12;
  const mx = w - size - pad;
  const my = h - size - pad;
  const [x0, y0] = worldMin;
  const [x1, y1] = worldMax;
  const k = size / Math.max(x1 - x0, y1 - y0, 1e-6);
  const px = (x) => mx + (x - x0) * k;
  const py = (y) => my + size - (y - y0) * k;
  ctx.fillStyle = "rgba(8,12,24,0.85)";
  ctx.fillRect(mx - 4, my - 4, size + 8, size + 8);
  ctx.fillStyle = COLORS.world;
  ctx.fillRect(px(x0), py(y1), (x1 - x0) * k, (y1 - y0) * k);
  ctx.strokeStyle = COLORS.bounds;
  ctx.lineWidth = 1;
  ctx.strokeRect(px(x0), py(y1), (x1 - x0) * k, (y1 - y0) * k);
  ctx.fillStyle = COLORS.obstacleEdge;
  for (const o of obstacles) {
    ctx.fillRect(px(o.min[0]), py(o.max[1]), Math.max(1, (o.max[0] - o.min[0]) * k), Math.max(1, (o.max[1] - o.min[1]) * k));
  }
  for (const e of others) {
    if (e.kind === KIND_PROJECTILE || e.id === stats.entityId) continue;
    const marked = e.flags & FLAG_MARKED;
    ctx.fillStyle = marked ? COLORS.marked : e.kind === KIND_PLAYER ? COLORS.player : COLORS.npc;
    ctx.fillRect(px(e.x) - (marked ? 2 : 1), py(e.y) - (marked ? 2 : 1), marked ? 4 : 2, marked ? 4 : 2);
  }
  // The main view's extent, and you.
  const hw = w / 2 / scale;
  const hh = h / 2 / scale;
  ctx.strokeStyle = "rgba(92,255,157,0.6)";
  ctx.strokeRect(px(selfPos.x - hw), py(selfPos.y + hh), Math.max(2, 2 * hw * k), Math.max(2, 2 * hh * k));
  ctx.fillStyle = COLORS.self;
  ctx.beginPath();
  ctx.arc(px(selfPos.x), py(selfPos.y), 3, 0, 2 * Math.PI);
  ctx.fill();
  ctx.fillStyle = "rgba(200,210,230,0.7)";
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillText(WORLD.name === "arena" && obstacles.length ? "arena" : "world", mx, my - 8);
}

let hudText = "";
function drawHud() {
  const s = client ? client.stats : null;
  const rate = welcome ? welcome.tickRate : 0;
  const snapRate = welcome ? welcome.tickRate / Math.max(1, welcome.snapshotEvery) : 0;
  syncStats();
  const pos = stats.self ? `(${stats.self.x.toFixed(1)}, ${stats.self.y.toFixed(1)})` : "-";
  const lines = [
    `<b>Tickwire</b> <span class="${stats.connected ? "ok" : "bad"}">● ${escapeHtml(stats.status)}</span>`,
    s
      ? `ping ${s.rttMs === null ? "-" : `${s.rttMs.toFixed(1)} ms`} · tick ${rate} Hz (${snapRate.toFixed(0)} snapshots/s sent)`
      : "",
    s ? `${s.snapshotsPerSec.toFixed(1)} snapshots/s · ${(s.bytesPerSec / 1000).toFixed(1)} kB/s in` : "",
    `entities ${stats.entities} · desyncs ${stats.desyncs}${stats.malformed ? ` · malformed ${stats.malformed}` : ""} · tick ${stats.tick}`,
    `you: entity ${stats.entityId ?? "-"} at ${pos}${selfFlagsHud()}`,
    `<span class="help">WASD/arrows move · mouse aims · click or space fires · wheel zooms</span>`,
  ].filter(Boolean);
  const text = lines.join("<br>");
  if (text !== hudText) {
    hud.innerHTML = text;
    hudText = text;
  }
}

// Your entity's flags, as the game-agnostic words above (tag: "marked" means you are it).
function selfFlagsHud() {
  const f = stats.selfFlags;
  return (
    (f & FLAG_SCORE ? ` · score ${stats.selfHealth}` : "") +
    (f & FLAG_MARKED ? ' · <b class="bad">marked</b>' : "") +
    (f & FLAG_PROTECTED ? " · protected" : "")
  );
}

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

connect();
requestAnimationFrame(frame);
