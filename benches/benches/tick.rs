//! Criterion: one full server tick (inputs, game step, grid, interest, delta encoding and
//! framing for every client) of the real `Simulation` running the arena, without sockets.
//! 1,000 clients with 1,000 NPCs (2,000 entities), and 5,000 clients with 1,000 NPCs.
//! Also prints the tick time per client (the per-client replication cost).
//!
//! Run: `cargo bench -p tickwire-benches --bench tick`

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tickwire_benches::Rng;
use tickwire_server::sim::{Control, InputMsg, Outbound};
use tickwire_server::{Arena, ArenaRules, Game, Metrics, ServerConfig, Simulation};
use tickwire_shared::{ClientId, InputFrame, InputSeq, Tick};

struct Setup {
    sim: Simulation<Arena>,
    outs: Vec<Arc<Outbound>>,
    rng: Rng,
    seq: u32,
    dirs: Vec<(i8, i8)>,
}

fn setup(clients: usize, npcs: usize) -> Setup {
    let cfg = ServerConfig::defaults();
    let arena = Arena::new(cfg.world.clone(), ArenaRules::default(), npcs, 7);
    let mut sim = Simulation::new(arena, cfg.sim.clone(), Arc::new(Metrics::default())).unwrap();
    let outs: Vec<Arc<Outbound>> = (0..clients)
        .map(|i| {
            let out = Arc::new(Outbound::default());
            sim.control(Control::Join {
                client: ClientId(i as u32 + 1),
                resume: None,
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
                aim_yaw: 0,
                buttons: 0,
            }],
        });
    }
    let bytes = s.sim.tick();
    for o in &s.outs {
        black_box(o.take());
    }
    bytes
}

fn tick(c: &mut Criterion) {
    let mut g = c.benchmark_group("tick");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    for (clients, npcs) in [(1000, 1000), (5000, 1000)] {
        let mut s = setup(clients, npcs);
        // A plain timing pass for the per-client figure printed next to criterion's: warm up,
        // then the median of 7 batches of 30 ticks (this machine is noisy).
        for _ in 0..30 {
            step(&mut s);
        }
        let mut batches = Vec::new();
        let mut bytes = 0;
        for _ in 0..7 {
            let t = Instant::now();
            for _ in 0..30 {
                bytes += step(&mut s);
            }
            batches.push(t.elapsed() / 30);
        }
        batches.sort();
        let per_tick = batches[batches.len() / 2];
        println!(
            "tick: {clients} clients, {} entities: median {:.2} ms/tick, {:.2} µs per client, \
             {:.0} snapshot bytes per client per tick",
            s.sim.game().entities().len(),
            per_tick.as_secs_f64() * 1e3,
            per_tick.as_secs_f64() * 1e6 / clients as f64,
            bytes as f64 / (7.0 * 30.0 * clients as f64)
        );
        g.bench_function(
            format!("{clients}_clients_{}_entities", clients + npcs),
            |b| b.iter(|| step(&mut s)),
        );
    }
    g.finish();
}

criterion_group!(benches, tick);
criterion_main!(benches);
