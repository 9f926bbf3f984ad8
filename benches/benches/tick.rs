//! Criterion: one full server tick (inputs, game step, grid, interest, delta encoding and
//! framing for every client) of the real `Room` running the arena, without sockets.
//! 1,000 clients with 1,000 NPCs (2,000 entities), and 5,000 clients with 1,000 NPCs.
//! Also "crowd": 1,000 clients and no NPCs in an open 1,000 × 1,000 world with a view radius
//! of 2,000, so every client sees all 1,000 players (the Colyseus peer's scenario).
//! Also prints the tick time per client (the per-client replication cost).
//! Also "hitscan": the 1,000-client arena where every player fires the hitscan weapon every
//! 10 ticks (100 beams a tick, aimed at random, each frame seen 100 ms back), with lag
//! compensation on (250 ms) and off (0): what rewinding costs per tick. Separate runs of the
//! two are at the mercy of a noisy machine, so `hitscan_lagcomp_on` also prints both side by
//! side, interleaved in one process, for the whole tick and for `Arena::step` alone.
//!
//! Run: `cargo bench -p tickwire-benches --bench tick` (or `-- crowd` for that one alone,
//! `-- hitscan_lagcomp_on` for the comparison).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tickwire_benches::Rng;
use tickwire_server::room::{InputMsg, Outbound};
use tickwire_server::world::World;
use tickwire_server::{Arena, ArenaRules, Game, Metrics, PlayerInfo, Room, ServerConfig};
use tickwire_shared::message::BUTTON_SECONDARY;
use tickwire_shared::{ClientId, EntityId, InputFrame, InputSeq, Tick};

struct Setup {
    sim: Room<Arena>,
    outs: Vec<Arc<Outbound>>,
    rng: Rng,
    seq: u32,
    dirs: Vec<(i8, i8)>,
    /// Each player presses secondary fire every this many ticks (staggered), if at all.
    fire_every: Option<u32>,
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

fn setup(cfg: &ServerConfig, clients: usize, npcs: usize, shots: Option<Shots>) -> Setup {
    let rules = ArenaRules {
        max_rewind_ms: shots.map_or(ArenaRules::default().max_rewind_ms, |s| s.max_rewind_ms),
        ..ArenaRules::default()
    };
    let arena = Arena::new(cfg.world.clone(), rules, npcs, 7);
    let mut sim = Room::new(arena, cfg.sim.clone(), Arc::new(Metrics::default())).unwrap();
    let outs = tickwire_benches::join_clients(&mut sim, clients);
    let mut s = Setup {
        sim,
        outs,
        rng: Rng::new(3),
        seq: 0,
        dirs: vec![(0, 0); clients],
        fire_every: shots.map(|s| s.every),
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
    for i in 0..s.dirs.len() {
        let frame = player_frame(&mut s.rng, &mut s.dirs[i], i, s.seq, s.fire_every, ack);
        s.sim.input(InputMsg {
            client: ClientId(i as u32 + 1),
            ack,
            frames: vec![frame],
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

/// Player `i`'s frame `seq`: a random walk that turns now and then, and with `fire_every`
/// secondary fire every that many ticks (staggered, so that every tick has the same number of
/// beams) at a random aim, seen at `view` 100 ms back.
fn player_frame(
    rng: &mut Rng,
    dir: &mut (i8, i8),
    i: usize,
    seq: u32,
    fire_every: Option<u32>,
    view: Tick,
) -> InputFrame {
    if rng.unit() < 0.05 {
        *dir = (
            (rng.range(-1.0, 1.0) * 127.0) as i8,
            (rng.range(-1.0, 1.0) * 127.0) as i8,
        );
    }
    let fires = fire_every.is_some_and(|n| (seq + i as u32).is_multiple_of(n));
    let (buttons, aim_yaw) = if fires {
        (BUTTON_SECONDARY, (rng.unit() * 65536.0) as u16)
    } else {
        (0, 0)
    };
    InputFrame {
        seq: InputSeq(seq),
        move_x: dir.0,
        move_y: dir.1,
        aim_yaw,
        buttons,
        // What a client interpolating 100 ms behind its newest snapshot says.
        view_tick: view,
        interp_ms: 100,
    }
}

/// The game alone (no room, no replication): the arena with the bench's players and NPCs,
/// fed the same frames, to see what lag compensation adds to `Arena::step` itself.
struct GameOnly {
    arena: Arena,
    players: Vec<EntityId>,
    rng: Rng,
    seq: u32,
    dirs: Vec<(i8, i8)>,
    fire_every: Option<u32>,
}

impl GameOnly {
    fn new(clients: usize, npcs: usize, shots: Shots) -> Self {
        let rules = ArenaRules {
            max_rewind_ms: shots.max_rewind_ms,
            ..ArenaRules::default()
        };
        let mut arena = Arena::new(arena().world, rules, npcs, 7);
        let players = (0..clients)
            .map(|i| arena.spawn_player(PlayerInfo::anonymous(ClientId(i as u32 + 1))))
            .collect();
        let mut g = Self {
            arena,
            players,
            rng: Rng::new(3),
            seq: 0,
            dirs: vec![(0, 0); clients],
            fire_every: Some(shots.every),
        };
        for _ in 0..30 {
            g.step();
        }
        g
    }

    fn step(&mut self) {
        self.seq += 1;
        // The room's tick before this step is seq - 1; its newest snapshot one older.
        let view = Tick(self.seq.saturating_sub(2));
        for (i, &e) in self.players.iter().enumerate() {
            let f = player_frame(
                &mut self.rng,
                &mut self.dirs[i],
                i,
                self.seq,
                self.fire_every,
                view,
            );
            self.arena.apply_input(e, &f);
        }
        self.arena.step(1.0 / 30.0);
    }
}

/// Lag compensation on against off, interleaved in one process so that the shared VM's load
/// drifts over both alike: 21 rounds of 30 ticks of each (which goes first alternates), the
/// median per tick of each. Then the same for the game step alone.
fn print_lagcomp_ab(on: &mut Setup, clients: usize, npcs: usize, shots: Shots) {
    let mut off = setup(
        &arena(),
        clients,
        npcs,
        Some(Shots {
            max_rewind_ms: 0,
            ..shots
        }),
    );
    for _ in 0..30 {
        step(&mut off);
    }
    let (tick_on, tick_off) = interleaved(|| step(on), || step(&mut off));
    drop(off);
    let mut game_on = GameOnly::new(clients, npcs, shots);
    let mut game_off = GameOnly::new(
        clients,
        npcs,
        Shots {
            max_rewind_ms: 0,
            ..shots
        },
    );
    let (step_on, step_off) = interleaved(|| game_on.step(), || game_off.step());
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "lag compensation ({} ms, {} beams a tick), medians of 21 interleaved rounds of 30 ticks: \
         tick {:.3} ms on, {:.3} ms off (on/off {:.3}); Arena::step alone {:.3} ms on, {:.3} ms \
         off: +{:.3} ms, {:.1}% of the tick off",
        shots.max_rewind_ms,
        clients as u32 / shots.every,
        ms(tick_on),
        ms(tick_off),
        tick_on.as_secs_f64() / tick_off.as_secs_f64(),
        ms(step_on),
        ms(step_off),
        ms(step_on) - ms(step_off),
        (step_on.as_secs_f64() - step_off.as_secs_f64()) / tick_off.as_secs_f64() * 100.0
    );
}

/// Medians per call of `a` and of `b`, run in alternating rounds of 30 calls.
fn interleaved<A, B>(mut a: impl FnMut() -> A, mut b: impl FnMut() -> B) -> (Duration, Duration) {
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for round in 0..21 {
        for first in [round % 2 == 0, round % 2 != 0] {
            let t = Instant::now();
            for _ in 0..30 {
                if first {
                    black_box(a());
                } else {
                    black_box(b());
                }
            }
            if first { &mut ta } else { &mut tb }.push(t.elapsed() / 30);
        }
    }
    ta.sort();
    tb.sort();
    (ta[ta.len() / 2], tb[tb.len() / 2])
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

/// Players firing the hitscan weapon: each every `every` ticks, with this lag compensation.
#[derive(Clone, Copy)]
struct Shots {
    every: u32,
    max_rewind_ms: u32,
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
    /// Players fire the hitscan weapon (the "hitscan" benches).
    shots: Option<Shots>,
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
        shots: None,
    };
    let hitscan = |label, max_rewind_ms| Case {
        shots: Some(Shots {
            every: 10,
            max_rewind_ms,
        }),
        ..case(label, arena, 1000, 1000, None)
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
        // Lag compensation's cost: 100 beams a tick, rewound 250 ms at most, or not at all.
        hitscan("hitscan_lagcomp_on", 250),
        hitscan("hitscan_lagcomp_off", 0),
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
            label if case.shots.is_some() => {
                format!("{label}_{}_clients_{entities}_entities", case.clients)
            }
            label => format!("{label}_{room}{}_clients_{entities}_entities", case.clients),
        };
        // Built on the first call, which criterion makes only if the name passes the filter,
        // so `-- crowd` does not pay for the 5,000-client setup.
        let mut s: Option<Setup> = None;
        g.bench_function(name, |b| {
            let s = s.get_or_insert_with(|| {
                let mut s = setup(&(case.cfg)(), case.clients, case.npcs, case.shots);
                match case.parallel {
                    Some(true) => s.sim.replicator_mut().set_parallel_min_clients(0),
                    Some(false) => s.sim.replicator_mut().set_parallel_min_clients(usize::MAX),
                    None => {}
                }
                print_per_client(case.label, &mut s);
                if let Some(shots) = case.shots.filter(|s| s.max_rewind_ms > 0) {
                    print_lagcomp_ab(&mut s, case.clients, case.npcs, shots);
                }
                s
            });
            b.iter(|| step(s))
        });
    }
    g.finish();
}

criterion_group!(benches, tick);
criterion_main!(benches);
