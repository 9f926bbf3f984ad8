//! Keeps `PROTOCOL.md` and `tests/vectors/` honest.
//!
//! Every test vector is built here with the crate's public API and encoded; the bytes must equal
//! the `<!-- vector: NAME -->` hex block in `PROTOCOL.md` and `tests/vectors/NAME.hex`, the
//! decoded meaning must equal `tests/vectors/NAME.json` (generated here and compared as text),
//! and the bit-by-bit walk-throughs (`<!-- bits: NAME -->` blocks) must spell out exactly the
//! bits of the snapshot bodies.
//!
//! To regenerate the `.hex` and `.json` files after a deliberate protocol change, run
//! `TICKWIRE_BLESS=1 cargo test -p tickwire-shared --test protocol_vectors`. `PROTOCOL.md` is
//! never rewritten: on a mismatch the failure message prints the block to paste.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use glam::Vec3;
use tickwire_shared::baseline::{AckOutcome, DEFAULT_RING};
use tickwire_shared::bits::BitWriter;
use tickwire_shared::budget::{BudgetEncoder, BudgetParams, BudgetRing, Budgeted, Weights};
use tickwire_shared::codec::{
    MAX_CLIENT_MESSAGE_BYTES, MAX_SERVER_MESSAGE_BYTES, decode_client, decode_server,
    encode_client, encode_server,
};
use tickwire_shared::message::{
    MAX_INPUT_FRAMES, MAX_NAME_BYTES, MAX_REASON_BYTES, MAX_SEAT_BYTES,
};
use tickwire_shared::quant::{POS_SCALE, VEL_SCALE, YAW_BITS};
use tickwire_shared::replication::{DeltaCache, FullCache, WorldHistory};
use tickwire_shared::snapshot::MAX_VIEW_ENTITIES;
use tickwire_shared::{
    BaselineTracker, ClientId, ClientMessage, EntityId, EntityState, InputFrame, InputSeq,
    PROTOCOL_VERSION, QuantizedState, Quantizer, ReceiveError, Received, ServerMessage,
    SnapshotMessage, SnapshotReceiver, Tick, ViewEntry, Welcome, WorldBounds, view_checksum,
};

type TestResult = Result<(), String>;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
const PROTOCOL_MD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/PROTOCOL.md");

// ---------------------------------------------------------------------------------------------
// The example world and its snapshots.
// ---------------------------------------------------------------------------------------------

const WORLD_MIN: [f32; 3] = [-1000.0, -1000.0, 0.0];
const WORLD_MAX: [f32; 3] = [1000.0, 1000.0, 0.0];
const RESUME_TOKEN: u64 = 0x0123_4567_89ab_cdef;
/// A seat token as a matchmaker might hand out: opaque to the client.
const SEAT: &str = "r8kq2mz4tb.3f9d0c1a2b4e6f7a8c9d0e1f2a";
const AUTH_TOKEN: &str =
    "AYDY23AAAAAACXBsYXllci00MgdkZWZhdWx0XbdPu3yIwpbnKd6tsQURcrqpRbAaJYQxafeLwtuh0k4";

fn quantizer() -> Quantizer {
    match Quantizer::new(WorldBounds {
        min: Vec3::from_array(WORLD_MIN),
        max: Vec3::from_array(WORLD_MAX),
    }) {
        Ok(q) => q,
        Err(e) => panic!("example world bounds rejected: {e}"),
    }
}

fn entity(
    kind: u16,
    pos: [f32; 3],
    vel: [f32; 3],
    yaw: f32,
    health: u16,
    flags: u16,
) -> EntityState {
    EntityState {
        kind,
        pos: Vec3::from_array(pos),
        vel: Vec3::from_array(vel),
        yaw,
        health,
        flags,
    }
}

/// The view of the full snapshot (tick 300), quantized from float state as a server would.
fn view_tick_300(q: &Quantizer) -> Vec<ViewEntry> {
    use std::f32::consts::FRAC_PI_2;
    vec![
        (
            EntityId(3),
            q.quantize(&entity(
                1,
                [10.5, -20.25, 0.0],
                [2.0, -1.5, 0.0],
                FRAC_PI_2,
                100,
                0,
            )),
        ),
        (
            EntityId(7),
            q.quantize(&entity(2, [-500.0, 250.0, 0.0], [0.0; 3], 0.0, 50, 1)),
        ),
        (
            EntityId(12),
            q.quantize(&entity(3, [0.0, 0.0, 0.0], [100.0, 0.0, 0.0], 0.0, 1, 0)),
        ),
    ]
}

/// The view of the delta snapshot (tick 303): entity 3 moved a little, entity 7 lost health,
/// entity 12 left the view, entity 20 entered it.
fn view_tick_303(q: &Quantizer) -> Vec<ViewEntry> {
    use std::f32::consts::{FRAC_PI_2, PI};
    vec![
        (
            EntityId(3),
            q.quantize(&entity(
                1,
                [11.0, -20.375, 0.0],
                [2.0, -1.5, 0.0],
                FRAC_PI_2,
                100,
                0,
            )),
        ),
        (
            EntityId(7),
            q.quantize(&entity(2, [-500.0, 250.0, 0.0], [0.0; 3], 0.0, 45, 1)),
        ),
        (
            EntityId(20),
            q.quantize(&entity(
                3,
                [250.25, -100.0, 0.0],
                [0.0, 50.0, 0.0],
                PI,
                1,
                2,
            )),
        ),
    ]
}

/// The world at tick 306: entity 3 moved on (x + 0.25), entity 7 lost more health (45 → 40),
/// entity 20 did not change.
fn world_tick_306(q: &Quantizer) -> Vec<ViewEntry> {
    let mut v = view_tick_303(q);
    v[0].1.pos[0] += 16;
    v[1].1.health = 40;
    v
}

/// The snapshots 300, 303 and 306 as a server with a bandwidth budget encodes them
/// (`tickwire_shared::budget`): 300 and 303 fit whole, so they are byte for byte the
/// unbudgeted ones; 306 gets a 5-byte body, which holds entity 3 (the client's own, always
/// refreshed) and entity 20 (a projectile, which the example weighs twice), but not entity 7.
/// Returns the three bodies and 306's result.
fn budgeted_snapshots(q: &Quantizer) -> Result<(Vec<Vec<u8>>, Budgeted), String> {
    let views = [
        (Tick(300), view_tick_300(q)),
        (Tick(303), view_tick_303(q)),
        (Tick(306), world_tick_306(q)),
    ];
    let mut history = WorldHistory::new(8);
    let mut ring = BudgetRing::new(DEFAULT_RING);
    let (mut enc, mut full, mut delta) =
        (BudgetEncoder::new(), FullCache::new(), DeltaCache::new());
    let mut bodies = Vec::new();
    let mut last = None;
    for (tick, view) in &views {
        let f = history.begin(*tick);
        for (id, s) in view {
            f.push(*id, *s);
        }
        let frame = history.latest().ok_or("no frame")?;
        full.build(q, frame);
        if let Some((b, _)) = ring.baseline(*tick) {
            delta.build(q, history.get(b).ok_or("no baseline frame")?, frame);
        }
        let cur: Vec<u32> = (0..view.len() as u32).collect();
        let mut out = ring.take_spare();
        let mut w = BitWriter::new();
        let kinds = [1, 1, 1, 2];
        let r = enc.encode(
            &history,
            frame,
            &cur,
            &full,
            |t| (t == delta.base_tick()).then_some(&delta),
            &ring,
            BudgetParams {
                max_body_bytes: if tick.0 == 306 { 5 } else { 1000 },
                force_age: 24,
                own: Some(EntityId(3)),
            },
            Weights {
                center: Some(view[0].1.pos),
                near: 32 * POS_SCALE as u32,
                kinds: &kinds,
            },
            &mut w,
            &mut out,
        );
        ring.push(*tick, out);
        if ring.on_ack(*tick) != AckOutcome::Accepted {
            return Err(format!("the ack of tick {} must be accepted", tick.0));
        }
        bodies.push(w.finish_view().to_vec());
        last = Some(r);
    }
    Ok((bodies, last.ok_or("no snapshot")?))
}

// ---------------------------------------------------------------------------------------------
// Vectors.
// ---------------------------------------------------------------------------------------------

enum Msg {
    Client(ClientMessage),
    Server(ServerMessage),
}

struct Vector {
    name: &'static str,
    msg: Msg,
    /// Extra JSON members for snapshots (world, views), already formatted.
    snapshot: Option<SnapshotExtra>,
}

struct SnapshotExtra {
    baseline_tick: Option<Tick>,
    baseline_view: Vec<ViewEntry>,
    view: Vec<ViewEntry>,
    /// Per entry of `view`, the tick that last refreshed it (PROTOCOL.md 7.4).
    as_of: Vec<Tick>,
}

fn input_frames() -> Vec<InputFrame> {
    vec![
        InputFrame {
            seq: InputSeq(250),
            move_x: 127,
            move_y: -127,
            aim_yaw: 16_384,
            buttons: 0,
            view_tick: Tick(297),
            interp_ms: 100,
        },
        InputFrame {
            seq: InputSeq(251),
            move_x: 0,
            move_y: -1,
            aim_yaw: 300,
            buttons: 1,
            view_tick: Tick(300),
            interp_ms: 100,
        },
    ]
}

fn vectors() -> Result<Vec<Vector>, String> {
    let q = quantizer();
    let v300 = view_tick_300(&q);
    let v303 = view_tick_303(&q);

    // The snapshots exactly as a server produces them: a fresh tracker, then an ack.
    let mut tracker = BaselineTracker::new(q, DEFAULT_RING);
    let full = tracker.encode(Tick(300), InputSeq(249), &v300);
    if !full.full {
        return Err("the first snapshot of a fresh tracker must be full".into());
    }
    if tracker.on_ack(Tick(300)) != AckOutcome::Accepted {
        return Err("the ack of tick 300 must be accepted".into());
    }
    let delta = tracker.encode(Tick(303), InputSeq(251), &v303);
    if delta.full || delta.message.baseline_tick() != Some(Tick(300)) {
        return Err("the second snapshot must be a delta against tick 300".into());
    }
    let (bodies, budgeted) = budgeted_snapshots(&q)?;
    if bodies[0] != full.message.body || bodies[1] != delta.message.body {
        return Err("a budget everything fits in must change nothing".into());
    }
    if !budgeted.partial || budgeted.base != Some(Tick(303)) || budgeted.held_back != 1 {
        return Err(format!(
            "306 must be partial against 303, holding 7 back: {budgeted:?}"
        ));
    }
    let mut v306 = world_tick_306(&q);
    // Entity 7 was not refreshed: the client keeps its state of tick 303.
    v306[1] = v303[1];
    if budgeted.checksum != view_checksum(&v306) {
        return Err("306's checksum must be that of the view the client holds".into());
    }
    let partial = SnapshotMessage {
        tick: Tick(306),
        baseline_age: 3,
        last_input: InputSeq(252),
        checksum: budgeted.checksum,
        partial: true,
        body: bodies[2].clone(),
    };

    Ok(vec![
        Vector {
            name: "hello",
            msg: Msg::Client(ClientMessage::Hello {
                protocol_version: PROTOCOL_VERSION,
                name: "ada".into(),
                resume_token: None,
                seat: None,
                auth: None,
            }),
            snapshot: None,
        },
        Vector {
            name: "hello_seat",
            msg: Msg::Client(ClientMessage::Hello {
                protocol_version: PROTOCOL_VERSION,
                name: "ada".into(),
                resume_token: None,
                seat: Some(SEAT.into()),
                auth: None,
            }),
            snapshot: None,
        },
        Vector {
            name: "hello_auth",
            msg: Msg::Client(ClientMessage::Hello {
                protocol_version: PROTOCOL_VERSION,
                name: "ada".into(),
                resume_token: None,
                seat: None,
                auth: Some(AUTH_TOKEN.into()),
            }),
            snapshot: None,
        },
        Vector {
            name: "hello_resume",
            msg: Msg::Client(ClientMessage::Hello {
                protocol_version: PROTOCOL_VERSION,
                name: "ada".into(),
                resume_token: Some(RESUME_TOKEN),
                seat: None,
                auth: None,
            }),
            snapshot: None,
        },
        Vector {
            name: "input",
            msg: Msg::Client(ClientMessage::Input {
                ack_tick: Tick(300),
                frames: input_frames(),
            }),
            snapshot: None,
        },
        Vector {
            name: "ping",
            msg: Msg::Client(ClientMessage::Ping {
                client_time: 1_234_567,
            }),
            snapshot: None,
        },
        Vector {
            name: "leave",
            msg: Msg::Client(ClientMessage::Leave),
            snapshot: None,
        },
        Vector {
            name: "welcome",
            msg: Msg::Server(ServerMessage::Welcome(Welcome {
                protocol_version: PROTOCOL_VERSION,
                client_id: ClientId(5),
                entity_id: EntityId(3),
                tick_rate: 60,
                snapshot_every: 3,
                world_min: WORLD_MIN,
                world_max: WORLD_MAX,
                resume_token: RESUME_TOKEN,
            })),
            snapshot: None,
        },
        Vector {
            name: "snapshot_full",
            msg: Msg::Server(ServerMessage::Snapshot(full.message)),
            snapshot: Some(SnapshotExtra {
                baseline_tick: None,
                baseline_view: Vec::new(),
                as_of: vec![Tick(300); v300.len()],
                view: v300.clone(),
            }),
        },
        Vector {
            name: "snapshot_delta",
            msg: Msg::Server(ServerMessage::Snapshot(delta.message)),
            snapshot: Some(SnapshotExtra {
                baseline_tick: Some(Tick(300)),
                baseline_view: v300,
                as_of: vec![Tick(303); v303.len()],
                view: v303.clone(),
            }),
        },
        Vector {
            name: "snapshot_partial",
            msg: Msg::Server(ServerMessage::Snapshot(partial)),
            snapshot: Some(SnapshotExtra {
                baseline_tick: Some(Tick(303)),
                baseline_view: v303.clone(),
                view: v306,
                as_of: vec![Tick(306), Tick(303), Tick(306)],
            }),
        },
        Vector {
            name: "pong",
            msg: Msg::Server(ServerMessage::Pong {
                client_time: 1_234_567,
                server_tick: Tick(303),
            }),
            snapshot: None,
        },
        Vector {
            name: "disconnect",
            msg: Msg::Server(ServerMessage::Disconnect {
                code: 4000,
                reason: "ack timeout".into(),
            }),
            snapshot: None,
        },
    ])
}

fn encode(msg: &Msg) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match msg {
        Msg::Client(m) => encode_client(m, &mut out),
        Msg::Server(m) => encode_server(m, &mut out),
    }
    .map_err(|e| e.to_string())?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Hex and JSON text.
// ---------------------------------------------------------------------------------------------

/// Lowercase pairs, 16 to a line, one space apart, newline-terminated.
fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    for line in bytes.chunks(16) {
        let pairs: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        s.push_str(&pairs.join(" "));
        s.push('\n');
    }
    s
}

fn hex_inline(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    text.split_whitespace()
        .map(|pair| {
            if pair.len() != 2 {
                return Err(format!("hex token {pair:?} is not two digits"));
            }
            u8::from_str_radix(pair, 16).map_err(|e| format!("hex token {pair:?}: {e}"))
        })
        .collect()
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_f32s(v: [f32; 3]) -> String {
    format!("[{}, {}, {}]", v[0], v[1], v[2])
}

fn json_entity(id: EntityId, s: &QuantizedState) -> String {
    format!(
        "{{\"id\": {}, \"kind\": {}, \"pos\": [{}, {}, {}], \"vel\": [{}, {}, {}], \"yaw\": {}, \"health\": {}, \"flags\": {}}}",
        id.0,
        s.kind,
        s.pos[0],
        s.pos[1],
        s.pos[2],
        s.vel[0],
        s.vel[1],
        s.vel[2],
        s.yaw,
        s.health,
        s.flags
    )
}

fn json_view(view: &[ViewEntry]) -> String {
    if view.is_empty() {
        return "[]".into();
    }
    let rows: Vec<String> = view
        .iter()
        .map(|(id, s)| format!("    {}", json_entity(*id, s)))
        .collect();
    format!("[\n{}\n  ]", rows.join(",\n"))
}

/// `(message name, variant index, direction, fields as "key": value members)`.
fn describe(msg: &Msg) -> (&'static str, u32, &'static str, Vec<(&'static str, String)>) {
    match msg {
        Msg::Client(m) => {
            let dir = "client_to_server";
            match m {
                ClientMessage::Hello {
                    protocol_version,
                    name,
                    resume_token,
                    seat,
                    auth,
                } => (
                    "Hello",
                    0,
                    dir,
                    vec![
                        ("protocol_version", protocol_version.to_string()),
                        ("name", json_str(name)),
                        (
                            "resume_token",
                            resume_token.map_or("null".into(), |t| json_str(&t.to_string())),
                        ),
                        ("seat", seat.as_deref().map_or("null".into(), json_str)),
                        ("auth", auth.as_deref().map_or("null".into(), json_str)),
                    ],
                ),
                ClientMessage::Input { ack_tick, frames } => {
                    let rows: Vec<String> = frames
                        .iter()
                        .map(|f| {
                            format!(
                                "      {{\"seq\": {}, \"move_x\": {}, \"move_y\": {}, \"aim_yaw\": {}, \"buttons\": {}, \"view_tick\": {}, \"interp_ms\": {}}}",
                                f.seq.0, f.move_x, f.move_y, f.aim_yaw, f.buttons, f.view_tick.0, f.interp_ms
                            )
                        })
                        .collect();
                    (
                        "Input",
                        1,
                        dir,
                        vec![
                            ("ack_tick", ack_tick.0.to_string()),
                            ("frames", format!("[\n{}\n    ]", rows.join(",\n"))),
                        ],
                    )
                }
                ClientMessage::Ping { client_time } => (
                    "Ping",
                    2,
                    dir,
                    vec![("client_time", json_str(&client_time.to_string()))],
                ),
                ClientMessage::Leave => ("Leave", 3, dir, Vec::new()),
            }
        }
        Msg::Server(m) => {
            let dir = "server_to_client";
            match m {
                ServerMessage::Welcome(w) => (
                    "Welcome",
                    0,
                    dir,
                    vec![
                        ("protocol_version", w.protocol_version.to_string()),
                        ("client_id", w.client_id.0.to_string()),
                        ("entity_id", w.entity_id.0.to_string()),
                        ("tick_rate", w.tick_rate.to_string()),
                        ("snapshot_every", w.snapshot_every.to_string()),
                        ("world_min", json_f32s(w.world_min)),
                        ("world_max", json_f32s(w.world_max)),
                        ("resume_token", json_str(&w.resume_token.to_string())),
                    ],
                ),
                ServerMessage::Snapshot(s) => (
                    "Snapshot",
                    1,
                    dir,
                    vec![
                        ("tick", s.tick.0.to_string()),
                        ("baseline_age", s.baseline_age.to_string()),
                        ("last_input", s.last_input.0.to_string()),
                        ("checksum", s.checksum.to_string()),
                        ("partial", s.partial.to_string()),
                        ("body_len", s.body.len().to_string()),
                        ("body_hex", json_str(&hex_inline(&s.body))),
                    ],
                ),
                ServerMessage::Pong {
                    client_time,
                    server_tick,
                } => (
                    "Pong",
                    2,
                    dir,
                    vec![
                        ("client_time", json_str(&client_time.to_string())),
                        ("server_tick", server_tick.0.to_string()),
                    ],
                ),
                ServerMessage::Disconnect { code, reason } => (
                    "Disconnect",
                    3,
                    dir,
                    vec![("code", code.to_string()), ("reason", json_str(reason))],
                ),
            }
        }
    }
}

fn to_json(v: &Vector, bytes: &[u8]) -> String {
    let (message, variant, direction, fields) = describe(&v.msg);
    let mut members = vec![
        ("vector", json_str(v.name)),
        ("direction", json_str(direction)),
        ("message", json_str(message)),
        ("variant", variant.to_string()),
        ("length", bytes.len().to_string()),
    ];
    let fields = if fields.is_empty() {
        "{}".to_string()
    } else {
        let rows: Vec<String> = fields
            .iter()
            .map(|(k, val)| format!("    {}: {}", json_str(k), val))
            .collect();
        format!("{{\n{}\n  }}", rows.join(",\n"))
    };
    members.push(("fields", fields));
    if let Some(extra) = &v.snapshot {
        let q = quantizer();
        let [bx, by, bz] = q.pos_bits();
        let [mx, my, mz] = q.max_q();
        members.push((
            "world",
            format!(
                "{{\"min\": {}, \"max\": {}, \"max_q\": [{mx}, {my}, {mz}], \"pos_bits\": [{bx}, {by}, {bz}]}}",
                json_f32s(WORLD_MIN),
                json_f32s(WORLD_MAX)
            ),
        ));
        members.push((
            "baseline_tick",
            extra
                .baseline_tick
                .map_or("null".into(), |t| t.0.to_string()),
        ));
        members.push(("baseline_view", json_view(&extra.baseline_view)));
        members.push((
            "baseline_checksum",
            view_checksum(&extra.baseline_view).to_string(),
        ));
        members.push(("view", json_view(&extra.view)));
        members.push(("view_checksum", view_checksum(&extra.view).to_string()));
        let as_of: Vec<String> = extra.as_of.iter().map(|t| t.0.to_string()).collect();
        members.push(("view_as_of", format!("[{}]", as_of.join(", "))));
    }
    let rows: Vec<String> = members
        .iter()
        .map(|(k, val)| format!("  {}: {}", json_str(k), val))
        .collect();
    format!("{{\n{}\n}}\n", rows.join(",\n"))
}

// ---------------------------------------------------------------------------------------------
// PROTOCOL.md parsing.
// ---------------------------------------------------------------------------------------------

/// Every `<!-- TAG: NAME -->` marker followed by a fence of `lang`, as (name, block text).
fn md_blocks(md: &str, tag: &str, lang: &str) -> Result<Vec<(String, String)>, String> {
    let prefix = format!("<!-- {tag}:");
    let mut out = Vec::new();
    let mut lines = md.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        if !line.contains(&prefix) {
            continue;
        }
        let name = line
            .trim()
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix("-->"))
            .map(str::trim)
            .filter(|name| {
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            })
            .ok_or_else(|| format!("PROTOCOL.md:{}: malformed marker {line:?}", n + 1))?;
        let fence = format!("```{lang}");
        match lines.next() {
            Some((_, l)) if l.trim_end() == fence => {}
            _ => {
                return Err(format!(
                    "PROTOCOL.md:{}: marker {name:?} must be followed by a {fence} line",
                    n + 1
                ));
            }
        }
        let mut body = String::new();
        loop {
            match lines.next() {
                Some((_, l)) if l.trim_end() == "```" => break,
                Some((_, l)) => {
                    body.push_str(l);
                    body.push('\n');
                }
                None => return Err(format!("PROTOCOL.md:{}: unterminated block", n + 1)),
            }
        }
        out.push((name.to_string(), body));
    }
    Ok(out)
}

/// The first line where two texts differ, for a readable failure.
fn first_difference(file: &str, expected: &str) -> String {
    let (mut a, mut b) = (file.lines(), expected.lines());
    for n in 1.. {
        match (a.next(), b.next()) {
            (None, None) => break,
            (x, y) if x == y => {}
            (x, y) => {
                return format!(
                    "\n  line {n} of the file: {}\n  expected:          {}",
                    x.unwrap_or("<end of file>"),
                    y.unwrap_or("<end of file>")
                );
            }
        }
    }
    " (whitespace at the end)".into()
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn vectors_dir() -> PathBuf {
    Path::new(MANIFEST_DIR).join("tests").join("vectors")
}

fn blessing() -> bool {
    std::env::var("TICKWIRE_BLESS").is_ok_and(|v| v == "1")
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

/// (a) and (d): bytes equal PROTOCOL.md and the `.hex` files; no unknown or missing vectors.
/// Also (b): every vector decodes back to the message it was built from.
#[test]
fn vectors_match_protocol_md_and_files() -> TestResult {
    let vectors = vectors()?;
    let known: BTreeSet<&str> = vectors.iter().map(|v| v.name).collect();
    if known.len() != vectors.len() {
        return Err("duplicate vector name in the test".into());
    }
    let dir = vectors_dir();
    let bless = blessing();
    let mut failures = Vec::new();

    // The files first, so that a bless run writes them even if PROTOCOL.md is stale.
    for v in &vectors {
        let bytes = encode(&v.msg)?;
        let hex = to_hex(&bytes);
        let json = to_json(v, &bytes);
        let hex_path = dir.join(format!("{}.hex", v.name));
        let json_path = dir.join(format!("{}.json", v.name));
        if bless {
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            std::fs::write(&hex_path, &hex).map_err(|e| e.to_string())?;
            std::fs::write(&json_path, &json).map_err(|e| e.to_string())?;
            continue;
        }
        match read(&hex_path).and_then(|t| parse_hex(&t)) {
            Ok(file) if file == bytes => {}
            Ok(file) => failures.push(format!(
                "{}: bytes differ from the encoder\n  file:    {}\n  encoder: {}",
                hex_path.display(),
                hex_inline(&file),
                hex_inline(&bytes)
            )),
            Err(e) => failures.push(e),
        }
        match read(&json_path) {
            Ok(text) if text == json => {}
            Ok(text) => failures.push(format!(
                "{}: differs from the decoded meaning{}\n(run with TICKWIRE_BLESS=1 to rewrite)",
                json_path.display(),
                first_difference(&text, &json)
            )),
            Err(e) => failures.push(e),
        }
    }

    // No stray vector files.
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let name = entry.map_err(|e| e.to_string())?.file_name();
        let name = name.to_string_lossy();
        let stem = name
            .strip_suffix(".hex")
            .or_else(|| name.strip_suffix(".json"));
        match stem {
            Some(stem) if known.contains(stem) => {}
            _ => failures.push(format!(
                "tests/vectors/{name} is not a vector this test knows"
            )),
        }
    }

    // PROTOCOL.md: every known vector exactly once, nothing unknown, bytes equal.
    let md = read(Path::new(PROTOCOL_MD))?;
    let blocks = md_blocks(&md, "vector", "hex")?;
    let mut seen = BTreeSet::new();
    for (name, _) in &blocks {
        if !known.contains(name.as_str()) {
            failures.push(format!(
                "PROTOCOL.md has vector {name:?}, which this test does not know"
            ));
            continue;
        }
        if !seen.insert(name.clone()) {
            failures.push(format!("PROTOCOL.md has vector {name:?} twice"));
        }
    }
    for v in &vectors {
        let bytes = encode(&v.msg)?;
        match blocks.iter().find(|(n, _)| n == v.name) {
            None => failures.push(format!(
                "PROTOCOL.md lacks vector {:?}; add:\n<!-- vector: {} -->\n```hex\n{}```",
                v.name,
                v.name,
                to_hex(&bytes)
            )),
            Some((_, text)) => match parse_hex(text) {
                Ok(md_bytes) if md_bytes == bytes => {}
                Ok(_) => failures.push(format!(
                    "PROTOCOL.md vector {:?} differs from the encoder; it should read:\n```hex\n{}```",
                    v.name,
                    to_hex(&bytes)
                )),
                Err(e) => failures.push(format!("PROTOCOL.md vector {:?}: {e}", v.name)),
            },
        }
    }

    // (b) The round trip, from the bytes as written down.
    for v in &vectors {
        let bytes = encode(&v.msg)?;
        let ok = match &v.msg {
            Msg::Client(m) => decode_client(&bytes).map(|d| d == *m),
            Msg::Server(m) => decode_server(&bytes).map(|d| d == *m),
        };
        match ok {
            Ok(true) => {}
            Ok(false) => failures.push(format!("{}: decodes to a different message", v.name)),
            Err(e) => failures.push(format!("{}: does not decode: {e}", v.name)),
        }
    }

    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n\n"))
    }
}

fn snapshot_of(v: &Vector) -> Result<SnapshotMessage, String> {
    let bytes = encode(&v.msg)?;
    match decode_server(&bytes) {
        Ok(ServerMessage::Snapshot(s)) => Ok(s),
        other => Err(format!("{}: not a snapshot: {other:?}", v.name)),
    }
}

fn find<'a>(vectors: &'a [Vector], name: &str) -> Result<&'a Vector, String> {
    vectors
        .iter()
        .find(|v| v.name == name)
        .ok_or_else(|| format!("no vector {name}"))
}

/// (c): the snapshot vectors, fed to a fresh client in order, give the views of the JSON files
/// (which the first test compares as text, so the JSON views are what a receiver produces).
#[test]
fn snapshot_vectors_drive_a_receiver() -> TestResult {
    let vectors = vectors()?;
    let full_v = find(&vectors, "snapshot_full")?;
    let delta_v = find(&vectors, "snapshot_delta")?;
    let full = snapshot_of(full_v)?;
    let delta = snapshot_of(delta_v)?;
    let (Some(full_x), Some(delta_x)) = (&full_v.snapshot, &delta_v.snapshot) else {
        return Err("snapshot vectors lack their views".into());
    };

    let mut client = SnapshotReceiver::with_default_history(quantizer());
    assert_eq!(client.ack_tick(), None);

    // A delta before its baseline is held is rejected and changes nothing.
    assert_eq!(
        client.receive(&delta),
        Err(ReceiveError::MissingBaseline {
            tick: Tick(303),
            baseline: Tick(300)
        })
    );
    assert_eq!(client.ack_tick(), None);

    assert_eq!(
        client.receive(&full),
        Ok(Received::Current {
            tick: Tick(300),
            full: true
        })
    );
    assert_eq!(client.view(), full_x.view.as_slice());
    assert_eq!(client.view(), delta_x.baseline_view.as_slice());
    let full_json = read(&vectors_dir().join("snapshot_full.json"))?;
    let expect_view = format!("\"view\": {}", json_view(client.view()));
    if !full_json.contains(&expect_view) {
        return Err(format!(
            "snapshot_full.json does not hold the receiver's view:\n{expect_view}"
        ));
    }
    assert_eq!(client.ack_tick(), Some(Tick(300)));
    assert_eq!(client.last_input(), InputSeq(249));
    assert_eq!(view_checksum(client.view()), full.checksum);

    // A wrong checksum is rejected and changes nothing.
    let mut forged = delta.clone();
    forged.checksum ^= 1;
    assert!(matches!(
        client.receive(&forged),
        Err(ReceiveError::ChecksumMismatch { .. })
    ));
    assert_eq!(client.ack_tick(), Some(Tick(300)));
    assert_eq!(client.view(), full_x.view.as_slice());

    assert_eq!(
        client.receive(&delta),
        Ok(Received::Current {
            tick: Tick(303),
            full: false
        })
    );
    assert_eq!(client.view(), delta_x.view.as_slice());
    assert_eq!(client.ack_tick(), Some(Tick(303)));
    // And directly against the JSON files a client in another language reads.
    let delta_json = read(&vectors_dir().join("snapshot_delta.json"))?;
    let expect_view = format!("\"view\": {}", json_view(client.view()));
    let expect_base = format!("\"baseline_view\": {}", json_view(&full_x.view));
    if !delta_json.contains(&expect_view) || !delta_json.contains(&expect_base) {
        return Err(format!(
            "snapshot_delta.json does not hold the receiver's views:\n{expect_base}\n{expect_view}"
        ));
    }
    assert_eq!(client.last_input(), InputSeq(251));
    assert_eq!(view_checksum(client.view()), delta.checksum);

    // Receiving the same snapshot again is harmless.
    assert_eq!(
        client.receive(&full),
        Ok(Received::Duplicate { tick: Tick(300) })
    );
    assert_eq!(client.view(), delta_x.view.as_slice());

    // The partial snapshot: 3 and 20 refreshed (20 unchanged), 7 held back, still in view.
    let partial_v = find(&vectors, "snapshot_partial")?;
    let Some(partial_x) = &partial_v.snapshot else {
        return Err("snapshot_partial lacks its views".into());
    };
    assert_eq!(
        client.receive(&snapshot_of(partial_v)?),
        Ok(Received::Current {
            tick: Tick(306),
            full: false
        })
    );
    assert_eq!(client.view(), partial_x.view.as_slice());
    assert_eq!(client.as_of(), partial_x.as_of.as_slice());
    assert_eq!(client.staleness(), 3);
    Ok(())
}

/// The walk-throughs (`<!-- bits: NAME -->` blocks): the second column of every line whose first
/// column is a bit offset, concatenated, must be the snapshot body's bit stream, padding
/// included, and the offsets must add up.
#[test]
fn bit_walkthroughs_match_bodies() -> TestResult {
    let vectors = vectors()?;
    let md = read(Path::new(PROTOCOL_MD))?;
    let blocks = md_blocks(&md, "bits", "text")?;
    let mut failures = Vec::new();
    for name in ["snapshot_full", "snapshot_delta", "snapshot_partial"] {
        let body = snapshot_of(find(&vectors, name)?)?.body;
        let stream: String = (0..body.len() * 8)
            .map(|i| {
                if body[i / 8] >> (i % 8) & 1 == 1 {
                    '1'
                } else {
                    '0'
                }
            })
            .collect();
        let Some((_, text)) = blocks.iter().find(|(n, _)| n == name) else {
            failures.push(format!(
                "PROTOCOL.md lacks the walk-through <!-- bits: {name} -->"
            ));
            continue;
        };
        let mut got = String::new();
        for (i, line) in text.lines().enumerate() {
            let mut cols = line.split_whitespace();
            let Some(Ok(offset)) = cols.next().map(str::parse::<usize>) else {
                continue; // a heading or blank line
            };
            let bits = cols.next().unwrap_or("");
            if bits.is_empty() || !bits.chars().all(|c| c == '0' || c == '1') {
                failures.push(format!("{name} line {}: no bit column in {line:?}", i + 1));
                continue;
            }
            if offset != got.len() {
                failures.push(format!(
                    "{name} line {}: offset {offset}, but {} bits precede it",
                    i + 1,
                    got.len()
                ));
            }
            got.push_str(bits);
        }
        if got != stream {
            let common = got
                .chars()
                .zip(stream.chars())
                .take_while(|(a, b)| a == b)
                .count();
            failures.push(format!(
                "{name}: walk-through bits differ from the body from bit {common}\n  \
                 walk-through: {got}\n  body:         {stream}"
            ));
        }
    }
    if blocks.iter().any(|(n, _)| {
        !["snapshot_full", "snapshot_delta", "snapshot_partial"].contains(&n.as_str())
    }) {
        failures.push("PROTOCOL.md has a bits block for an unknown snapshot".into());
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

/// The constants PROTOCOL.md quotes, as `| `NAME` | value |` table rows.
#[test]
fn protocol_md_quotes_the_constants() -> TestResult {
    let md = read(Path::new(PROTOCOL_MD))?;
    let q = quantizer();
    let rows = [
        ("PROTOCOL_VERSION", PROTOCOL_VERSION.to_string()),
        (
            "MAX_CLIENT_MESSAGE_BYTES",
            MAX_CLIENT_MESSAGE_BYTES.to_string(),
        ),
        (
            "MAX_SERVER_MESSAGE_BYTES",
            MAX_SERVER_MESSAGE_BYTES.to_string(),
        ),
        ("MAX_INPUT_FRAMES", MAX_INPUT_FRAMES.to_string()),
        ("MAX_NAME_BYTES", MAX_NAME_BYTES.to_string()),
        ("MAX_SEAT_BYTES", MAX_SEAT_BYTES.to_string()),
        ("MAX_REASON_BYTES", MAX_REASON_BYTES.to_string()),
        ("MAX_VIEW_ENTITIES", MAX_VIEW_ENTITIES.to_string()),
        ("DEFAULT_RING", DEFAULT_RING.to_string()),
        ("POS_SCALE", POS_SCALE.to_string()),
        ("VEL_SCALE", VEL_SCALE.to_string()),
        ("YAW_BITS", YAW_BITS.to_string()),
    ];
    let mut missing = Vec::new();
    for (name, value) in rows {
        let row = format!("| `{name}` | {value} |");
        if !md.contains(&row) {
            missing.push(row);
        }
    }
    // The example world's derived numbers, as the walk-throughs state them.
    assert_eq!(q.max_q(), [128_000, 128_000, 0]);
    assert_eq!(q.pos_bits(), [17, 17, 0]);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "PROTOCOL.md lacks the rows:\n{}",
            missing.join("\n")
        ))
    }
}
