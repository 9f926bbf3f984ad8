//! Criterion: one full server tick (inputs, game step, grid, interest, delta encoding and
//! framing for every client) of the real `Room` running the arena, without sockets.
//! 1,000 clients with 1,000 NPCs (2,000 entities), and 5,000 clients with 1,000 NPCs.
//! Also "crowd": 1,000 clients and no NPCs in an open 1,000 × 1,000 world with a view radius
//! of 2,000, so every client sees all 1,000 players (the Colyseus peer's scenario).
//! Also prints the tick time per client (the per-client replication cost).
//!
//! Run: `cargo bench -p tickwire-benches --bench tick` (or `-- crowd` for that one alone).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tickwire_benches::Rng;
use tickwire_server::room::{Control, InputMsg, Outbound};
use tickwire_server::world::World;
use tickwire_server::{Arena, ArenaRules, Game, Metrics, Room, ServerConfig};
use tickwire_shared::{ClientId, InputFrame, InputSeq, Tick};

struct Setup {
    sim: Room<Arena>,
    outs: Vec<Arc<Outbound>>,
    rng: Rng,
    seq: u32,
    dirs: Vec<(i8, i8)>,
}

/// The default arena (`ServerConfig::defaults()`).
fn arena() -> ServerConfig {
    ServerConfig::defaults()
}

/// The crowded room: a 1,000 × 1,000 world without obstacles (as `assets/worlds/crowd.toml`
/// would declare it) and a view radius of 2,000, so that everyone sees everyone.
fn crowd() -> ServerConfig {
    let mut cfg = ServerConfig::defaults();
    cfg.world = World::crowd();
    cfg.sim.view_radius = 2000.0;
    cfg
}

/// The crowded room with a 1,200-byte snapshot budget (`--max-snapshot-bytes 1200`).
fn crowd_budget() -> ServerConfig {
    let mut cfg = crowd();
    cfg.sim.max_snapshot_bytes = Some(1200);
    cfg
}

fn setup(cfg: &ServerConfig, clients: usize, npcs: usize) -> Setup {
    let arena = Arena::new(cfg.world.clone(), ArenaRules::default(), npcs, 7);
    let mut sim = Room::new(arena, cfg.sim.clone(), Arc::new(Metrics::default())).unwrap();
    let outs: Vec<Arc<Outbound>> = (0..clients)
        .map(|i| {
            let out = Arc::new(Outbound::default());
            sim.control(Control::Join {
                client: ClientId(i as u32 + 1),
                resume: None,
                player_id: None,
                out: out.clone(),
            });
            out
        })
        .collect();
    let mut s = Setup {
        sim,
        outs,
        rng: Rng::new(3),
        seq: 0,
        dirs: vec![(0, 0); clients],
    };
    // Warm up past the full snapshots so the ring holds acked baselines.
    for _ in 0..10 {
        step(&mut s);
    }
    s
}

/// One tick as the server runs it: every client's input (a random walk that turns now and
/// then, acking two ticks back), the tick, and the connection side taking each snapshot.
fn step(s: &mut Setup) -> u64 {
    s.seq += 1;
    let ack = Tick(s.sim.current_tick().0.saturating_sub(1));
    for (i, d) in s.dirs.iter_mut().enumerate() {
        if s.rng.unit() < 0.05 {
            *d = (
                (s.rng.range(-1.0, 1.0) * 127.0) as i8,
                (s.rng.range(-1.0, 1.0) * 127.0) as i8,
            );
        }
        s.sim.input(InputMsg {
            client: ClientId(i as u32 + 1),
            ack,
            frames: vec![InputFrame {
                seq: InputSeq(s.seq),
                move_x: d.0,
                move_y: d.1,
                ..Default::default()
            }],
        });
    }
    let bytes = s.sim.tick();
    for o in &s.outs {
        // As a WebSocket connection does: the snapshot written is delivered.
        if let Some(snap) = black_box(o.take()).snapshot {
            o.set_delivered(snap.tick());
        }
    }
    bytes
}

/// A plain timing pass for the per-client figure printed next to criterion's: warm up, then
/// the median of 7 batches of 30 ticks (this machine is noisy).
fn print_per_client(label: &str, s: &mut Setup) {
    let clients = s.outs.len();
    for _ in 0..30 {
        step(s);
    }
    let mut batches = Vec::new();
    let mut bytes = 0;
    for _ in 0..7 {
        let t = Instant::now();
        for _ in 0..30 {
            bytes += step(s);
        }
        batches.push(t.elapsed() / 30);
    }
    batches.sort();
    let per_tick = batches[batches.len() / 2];
    println!(
        "{label}: {clients} clients, {} entities: median {:.2} ms/tick, {:.2} µs per client, \
         {:.0} snapshot bytes per client per tick",
        s.sim.game().entities().len(),
        per_tick.as_secs_f64() * 1e3,
        per_tick.as_secs_f64() * 1e6 / clients as f64,
        bytes as f64 / (7.0 * 30.0 * clients as f64)
    );
}

/// One bench: what it is called, the room it runs and how many join it.
struct Case {
    /// Printed before the per-client figure, and (unless "tick") before criterion's name.
    label: &'static str,
    cfg: fn() -> ServerConfig,
    clients: usize,
    npcs: usize,
    /// Replication as the server runs it (`None`: rayon above its threshold), or forced onto
    /// rayon's pool (`Some(true)`) or the simulation thread (`Some(false)`): the pairs show
    /// which wins at each size.
    parallel: Option<bool>,
}

fn tick(c: &mut Criterion) {
    let mut g = c.benchmark_group("tick");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    let case = |label, cfg, clients, npcs, parallel| Case {
        label,
        cfg,
        clients,
        npcs,
        parallel,
    };
    let cases = [
        case("tick", arena, 1000, 1000, None),
        case("tick", arena, 5000, 1000, None),
        case("crowd", crowd, 1000, 0, None),
        case("budget", crowd_budget, 1000, 0, None),
        // Rayon against one thread at the sizes above, and for a small room.
        case("par", arena, 1000, 1000, Some(true)),
        case("single", arena, 1000, 1000, Some(false)),
        case("par", arena, 5000, 1000, Some(true)),
        case("single", arena, 5000, 1000, Some(false)),
        case("par", crowd, 1000, 0, Some(true)),
        case("single", crowd, 1000, 0, Some(false)),
        case("par", arena, 200, 200, Some(true)),
        case("single", arena, 200, 200, Some(false)),
    ];
    for case in cases {
        let entities = case.clients + case.npcs;
        let room = if case.npcs == 0 { "crowd_" } else { "" };
        let name = match case.label {
            "tick" => format!("{}_clients_{entities}_entities", case.clients),
            "crowd" => format!("crowd_{}_clients_{entities}_entities", case.clients),
            "budget" => format!(
                "crowd_1200_bytes_{}_clients_{entities}_entities",
                case.clients
            ),
            label => format!("{label}_{room}{}_clients_{entities}_entities", case.clients),
        };
        // Built on the first call, which criterion makes only if the name passes the filter,
        // so `-- crowd` does not pay for the 5,000-client setup.
        let mut s: Option<Setup> = None;
        g.bench_function(name, |b| {
            let s = s.get_or_insert_with(|| {
                let mut s = setup(&(case.cfg)(), case.clients, case.npcs);
                match case.parallel {
                    Some(true) => s.sim.replicator_mut().set_parallel_min_clients(0),
                    Some(false) => s.sim.replicator_mut().set_parallel_min_clients(usize::MAX),
                    None => {}
                }
                print_per_client(case.label, &mut s);
                s
            });
            b.iter(|| step(s))
        });
    }
    g.finish();
}

criterion_group!(benches, tick);
criterion_main!(benches);
