//! What `--record` costs the room's thread: one full tick of the real `Room` running the
//! arena with 2,000 clients and 200 NPCs (as `loadtest --bots 2000`), without and with its
//! game wrapped in a `Recording` whose writer thread writes to a temporary directory.
//! Every client sends one frame a tick with a new random aim, as the load bots do (the worst
//! case for the log's size). Batches of the two rooms alternate, so a noisy machine slows
//! both alike; the medians, their ratio and the log's bytes per player-minute are printed.
//!
//! Run: `cargo bench -p tickwire-benches --bench record` (`-- --quick` for fewer batches).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tickwire_benches::Rng;
use tickwire_server::record::{ArenaSetup, Recorder};
use tickwire_server::room::{InputMsg, Outbound};
use tickwire_server::{ArenaRules, Game, Metrics, Room, RoomSpec, ServerConfig};
use tickwire_shared::{ClientId, InputFrame, InputSeq, Tick};

const CLIENTS: usize = 2000;
const NPCS: usize = 200;

struct Bots {
    outs: Vec<Arc<Outbound>>,
    rng: Rng,
    seq: u32,
    dirs: Vec<(i8, i8)>,
}

fn join<G: Game>(room: &mut Room<G>) -> Bots {
    let outs = tickwire_benches::join_clients(room, CLIENTS);
    Bots {
        outs,
        rng: Rng::new(3),
        seq: 0,
        dirs: vec![(0, 0); CLIENTS],
    }
}

/// One tick: every client's frame (a random walk, a random aim, the ack as its view), the
/// tick, and the connection side taking each snapshot.
fn step<G: Game>(room: &mut Room<G>, b: &mut Bots) {
    b.seq += 1;
    let ack = Tick(room.current_tick().0.saturating_sub(1));
    for (i, d) in b.dirs.iter_mut().enumerate() {
        if b.rng.unit() < 0.05 {
            *d = (
                (b.rng.range(-1.0, 1.0) * 127.0) as i8,
                (b.rng.range(-1.0, 1.0) * 127.0) as i8,
            );
        }
        room.input(InputMsg {
            client: ClientId(i as u32 + 1),
            ack,
            frames: vec![InputFrame {
                seq: InputSeq(b.seq),
                move_x: d.0,
                move_y: d.1,
                aim_yaw: (b.rng.unit() * 65536.0) as u16,
                buttons: u8::from(b.rng.unit() < 0.01),
                view_tick: ack,
                interp_ms: 100,
            }],
        });
    }
    room.tick();
    for o in &b.outs {
        black_box(o.take());
    }
}

fn batch<G: Game>(room: &mut Room<G>, b: &mut Bots, ticks: u32) -> Duration {
    let t = Instant::now();
    for _ in 0..ticks {
        step(room, b);
    }
    t.elapsed() / ticks
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let cfg = ServerConfig::defaults();
    let setup = ArenaSetup {
        world: cfg.world.clone(),
        rules: ArenaRules::default(),
        npcs: NPCS,
    };
    let dir = std::env::temp_dir().join(format!("tickwire-bench-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let recorder = Recorder::start(dir.clone(), BTreeMap::new()).unwrap();
    let spec = RoomSpec {
        room_id: "bench".into(),
        kind: "arena".into(),
        max_clients: CLIENTS as u32,
        seed: 7,
    };
    let metrics = Arc::new(Metrics::default());
    let mut plain = Room::new(setup.build(7), cfg.sim.clone(), metrics.clone()).unwrap();
    let game = recorder.record(
        setup.build(7),
        &spec,
        cfg.sim.tick_rate,
        &setup.encode().unwrap(),
    );
    let mut recorded = Room::new(game, cfg.sim.clone(), metrics).unwrap();
    let (mut pb, mut rb) = (join(&mut plain), join(&mut recorded));
    // Past the full snapshots; the log's file is open and its buffers pooled.
    batch(&mut plain, &mut pb, 30);
    batch(&mut recorded, &mut rb, 30);
    let (batches, ticks) = if quick { (5, 15) } else { (15, 30) };
    let (mut p, mut r) = (Vec::new(), Vec::new());
    for i in 0..batches {
        // Each goes first in every other pair.
        if i % 2 == 0 {
            p.push(batch(&mut plain, &mut pb, ticks));
            r.push(batch(&mut recorded, &mut rb, ticks));
        } else {
            r.push(batch(&mut recorded, &mut rb, ticks));
            p.push(batch(&mut plain, &mut pb, ticks));
        }
    }
    eprintln!("plain {p:?}\nrecorded {r:?}");
    // The room thread's share alone: encoding the frames, and the world's sum.
    let mut enc = tickwire_server::record::codec::TickEncoder::new();
    let ids: Vec<_> = (0..CLIENTS as u32).map(tickwire_shared::EntityId).collect();
    for (i, &e) in ids.iter().enumerate() {
        enc.spawn(ClientId(i as u32), None, e);
    }
    let mut out = Vec::new();
    let mut rng = Rng::new(5);
    let t = Instant::now();
    let (mut enc_t, mut sum_t) = (Duration::ZERO, Duration::ZERO);
    for s in 1..=100u32 {
        let t0 = Instant::now();
        for &e in &ids {
            enc.input(
                e,
                &InputFrame {
                    seq: InputSeq(s),
                    aim_yaw: (rng.unit() * 65536.0) as u16,
                    view_tick: Tick(s.saturating_sub(2)),
                    ..Default::default()
                },
            );
        }
        let t1 = Instant::now();
        let sum = tickwire_server::record::WorldSum::of(plain.game().entities());
        let t2 = Instant::now();
        out.clear();
        enc.step(1.0 / 30.0, sum, &mut out);
        enc_t += t1 - t0;
        sum_t += t2 - t1;
    }
    eprintln!(
        "encoder alone: {:?} a tick ({:?} encoding, {:?} summing), {} bytes a tick",
        t.elapsed() / 100,
        enc_t / 100,
        sum_t / 100,
        out.len()
    );
    let recording = recorded.game().is_recording();
    let stepped = recorded.current_tick().0;
    drop(recorded);
    recorder.shutdown();
    let (p, r) = (median(p), median(r));
    let bytes: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let _ = std::fs::remove_dir_all(&dir);
    let minutes = f64::from(stepped) / f64::from(cfg.sim.tick_rate) / 60.0;
    println!(
        "record: {CLIENTS} clients, {NPCS} NPCs, {} Hz: median tick {:.3} ms plain, {:.3} ms \
         recorded (x{:.3}, +{:.1} us a tick); still recording at the end: {recording}",
        cfg.sim.tick_rate,
        p.as_secs_f64() * 1e3,
        r.as_secs_f64() * 1e3,
        r.as_secs_f64() / p.as_secs_f64(),
        (r.as_secs_f64() - p.as_secs_f64()) * 1e6,
    );
    println!(
        "record: log {bytes} bytes for {stepped} ticks: {:.0} bytes per player-minute, \
         {:.1} MB per 10 minutes at {CLIENTS} players",
        bytes as f64 / minutes / CLIENTS as f64,
        bytes as f64 / minutes * 10.0 / 1e6,
    );
}
