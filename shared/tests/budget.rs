//! The bandwidth budget (`tickwire_shared::budget`) against the real client: every budgeted
//! snapshot is framed, decoded and verified by a `SnapshotReceiver`, as a client would.
//! Checked: no desync and no missing baseline, every envelope within the budget, entries never
//! go back in time, a crowded view converges to the full view, and, with a budget that can
//! carry it, every entry is refreshed within a bounded number of ticks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use glam::Vec3;
use proptest::prelude::*;
use tickwire_shared::bits::BitWriter;
use tickwire_shared::budget::{BudgetEncoder, BudgetParams, BudgetRing, HeldView, Weights};
use tickwire_shared::codec::{MAX_SNAPSHOT_HEADER_BYTES, decode_server, encode_snapshot_header};
use tickwire_shared::replication::{DeltaCache, FullCache, WorldHistory};
use tickwire_shared::{
    EntityId, EntityState, InputSeq, Quantizer, ServerMessage, SnapshotReceiver, Tick, WorldBounds,
};

const RING: usize = 32;

struct Client {
    ring: BudgetRing,
    rx: SnapshotReceiver,
    /// Ticks verified, waiting to be acknowledged after `lag` ticks.
    acks: Vec<(u32, Tick)>,
    lag: u32,
    budget: usize,
    /// Newest as-of tick seen per entity id (for monotonicity).
    seen: std::collections::HashMap<u32, Tick>,
    max_staleness: u32,
    bytes_max: usize,
    backwards: u32,
    reliable: bool,
    /// Full snapshots (no baseline) sent.
    fulls: u32,
    force_age: u32,
}

struct World {
    q: Quantizer,
    history: WorldHistory,
    full: FullCache,
    deltas: Vec<(Tick, DeltaCache)>,
    ents: Vec<(EntityId, EntityState, Vec3)>,
    enc: BudgetEncoder,
    w: BitWriter,
    rng: u64,
}

impl World {
    fn new(n: u32, seed: u64) -> World {
        let bounds = WorldBounds {
            min: Vec3::new(-500.0, -500.0, 0.0),
            max: Vec3::new(500.0, 500.0, 0.0),
        };
        let mut w = World {
            q: Quantizer::new(bounds).unwrap(),
            history: WorldHistory::new(RING + 1),
            full: FullCache::new(),
            deltas: Vec::new(),
            ents: Vec::new(),
            enc: BudgetEncoder::new(),
            w: BitWriter::new(),
            rng: seed | 1,
        };
        for i in 0..n {
            let x = w.rand() as f32 % 1000.0 - 500.0;
            let y = w.rand() as f32 % 1000.0 - 500.0;
            let vx = (w.rand() % 200) as f32 / 10.0 - 10.0;
            let vy = (w.rand() % 200) as f32 / 10.0 - 10.0;
            w.ents.push((
                EntityId(i),
                EntityState {
                    kind: 1 + (i % 3) as u16,
                    pos: Vec3::new(x, y, 0.0),
                    health: 100,
                    ..Default::default()
                },
                Vec3::new(vx, vy, 0.0),
            ));
        }
        w
    }

    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Moves the entities (if `moving`) and records the frame of `tick`.
    fn step(&mut self, tick: Tick, moving: bool) {
        if moving {
            for (_, s, v) in &mut self.ents {
                s.pos = (s.pos + *v / 30.0)
                    .clamp(Vec3::new(-500.0, -500.0, 0.0), Vec3::new(500.0, 500.0, 0.0));
                s.vel = *v;
            }
        }
        let f = self.history.begin(tick);
        for (id, s, _) in &self.ents {
            f.push(*id, self.q.quantize(s));
        }
        let frame = self.history.latest().unwrap();
        self.full.build(&self.q, frame);
    }

    /// Delta caches for every source tick the clients need this tick.
    fn build_deltas(&mut self, tick: Tick, clients: &[Client]) {
        self.build_deltas_every(tick, clients, 1);
    }

    /// As `build_deltas`, with a snapshot every `every` ticks.
    fn build_deltas_every(&mut self, tick: Tick, clients: &[Client], every: u32) {
        let mask = clients
            .iter()
            .fold(0u64, |m, c| m | c.ring.source_ages_for(tick));
        self.deltas.retain(|_| false);
        let frame = self.history.latest().unwrap();
        for age in 1..64u32 {
            if mask & (1 << age) == 0 || age * every > tick.0 {
                continue;
            }
            let t = Tick(tick.0 - age * every);
            if let Some(b) = self.history.get(t) {
                let mut d = DeltaCache::new();
                d.build(&self.q, b, frame);
                self.deltas.push((t, d));
            }
        }
    }

    /// One budgeted snapshot for `c` of the view `cur`, delivered and verified.
    fn send(&mut self, tick: Tick, c: &mut Client, cur: &[u32], own: Option<EntityId>) {
        let frame = self.history.latest().unwrap();
        let deltas = &self.deltas;
        let kinds = [1u8, 2, 1, 4];
        let center = own
            .and_then(|o| frame.ids().binary_search(&o).ok())
            .map(|i| frame.states()[i].pos);
        let mut out: HeldView = c.ring.take_spare();
        self.w.clear();
        let header_max = MAX_SNAPSHOT_HEADER_BYTES;
        let r = self.enc.encode(
            &self.history,
            frame,
            cur,
            &self.full,
            |t| deltas.iter().find(|(dt, _)| *dt == t).map(|(_, d)| d),
            &c.ring,
            BudgetParams {
                max_body_bytes: c.budget - header_max,
                force_age: c.force_age,
                own,
            },
            Weights {
                center,
                near: 64 * 30,
                kinds: &kinds,
            },
            &mut self.w,
            &mut out,
        );
        c.ring.push(tick, out);
        if c.reliable {
            // Over TCP a snapshot written is a snapshot that arrives.
            c.ring.on_delivered(tick);
        }
        let body = self.w.finish_view().to_vec();
        let age = r.base.map_or(0, |b| tick.0 - b.0);
        c.fulls += u32::from(age == 0);
        let mut frame_bytes = Vec::new();
        encode_snapshot_header(
            tick,
            age,
            InputSeq(0),
            r.checksum,
            r.partial,
            body.len(),
            &mut frame_bytes,
        )
        .unwrap();
        frame_bytes.extend_from_slice(&body);
        assert!(
            frame_bytes.len() <= c.budget,
            "tick {}: {} bytes over a budget of {}",
            tick.0,
            frame_bytes.len(),
            c.budget
        );
        c.bytes_max = c.bytes_max.max(frame_bytes.len());
        let ServerMessage::Snapshot(msg) = decode_server(&frame_bytes).unwrap() else {
            panic!("a snapshot");
        };
        c.rx.receive(&msg)
            .unwrap_or_else(|e| panic!("tick {}: the client refused it: {e}", tick.0));
        // Entries never go back in time, whatever the acknowledgement lag.
        for ((id, _), as_of) in c.rx.view().iter().zip(c.rx.as_of()) {
            let prev = c.seen.insert(id.0, *as_of);
            if let Some(p) = prev
                && *as_of < p
            {
                c.backwards += 1;
            }
        }
        c.acks.push((tick.0 + c.lag, tick));
        while let Some(&(due, t)) = c.acks.first() {
            if due > tick.0 {
                break;
            }
            c.acks.remove(0);
            c.ring.on_ack(t);
        }
    }
}

fn client(budget: usize, lag: u32, q: Quantizer, reliable: bool) -> Client {
    let mut ring = BudgetRing::new(RING);
    if reliable {
        ring.set_delivery_lead(16);
    }
    Client {
        reliable,
        fulls: 0,
        force_age: 24,
        ring,
        rx: SnapshotReceiver::new(q, RING),
        acks: Vec::new(),
        lag,
        budget,
        seen: Default::default(),
        max_staleness: 0,
        bytes_max: 0,
        backwards: 0,
    }
}

#[test]
fn a_crowded_view_converges_under_1200_bytes_and_stays_fresh() {
    // 1,000 moving entities, everyone sees everyone: 1,200-byte snapshots, acks 0-3 ticks late.
    let mut world = World::new(1000, 7);
    let q = world.q;
    let mut clients: Vec<Client> = (0..8).map(|i| client(1200, i % 4, q, i < 4)).collect();
    let all: Vec<u32> = (0..1000).collect();
    let mut converged_at = vec![None; clients.len()];
    for t in 1..=150u32 {
        let tick = Tick(t);
        world.step(tick, true);
        world.build_deltas(tick, &clients);
        for (i, c) in clients.iter_mut().enumerate() {
            world.send(tick, c, &all, Some(EntityId(i as u32)));
            if c.rx.view().len() == 1000 && converged_at[i].is_none() {
                converged_at[i] = Some(t);
            }
            if converged_at[i].is_some_and(|at| t > at + 30) {
                c.max_staleness = c.max_staleness.max(c.rx.staleness());
            }
        }
    }
    for (i, c) in clients.iter().enumerate() {
        println!(
            "client {i} (ack lag {}, reliable {}): whole view at tick {:?}, staleness max {} ticks, bytes max {}, backwards {}",
            c.lag, c.reliable, converged_at[i], c.max_staleness, c.bytes_max, c.backwards
        );
        assert!(c.bytes_max > 1000, "the budget is used: {}", c.bytes_max);
        if c.reliable {
            // A full view is about 12 KB: at least 10 snapshots, and not many more; then
            // every entry is refreshed every few ticks and never goes back in time.
            let at =
                converged_at[i].unwrap_or_else(|| panic!("client {i} never held the whole view"));
            assert!(at <= 30, "client {i} converged only at tick {at}");
            assert!(
                c.max_staleness <= 10,
                "client {i}: an entry went {} ticks unrefreshed",
                c.max_staleness
            );
            assert_eq!(c.backwards, 0, "client {i}");
        }
        // Against the acknowledged baseline (unreliable transports), what is in flight is paid
        // for again each tick until acknowledged: slower, but never wrong (`send` checks).
    }
}

#[test]
fn ages_count_snapshots_at_a_slow_snapshot_rate() {
    // A snapshot every 64 ticks (--snapshot-every 64): 64 ticks is one snapshot of age, so a
    // held-back entry is kept (not removed as too old) and the crowd still converges.
    const EVERY: u32 = 64;
    let mut world = World::new(1000, 11);
    let q = world.q;
    let mut clients: Vec<Client> = (0..2).map(|i| client(1200, i, q, true)).collect();
    for c in &mut clients {
        c.ring.set_snapshot_every(EVERY);
        // The lead is in ticks, as the server sets it: 16 snapshots.
        c.ring.set_delivery_lead(16 * EVERY);
    }
    let all: Vec<u32> = (0..1000).collect();
    let mut converged = [None; 2];
    for t in 1..=80u32 {
        let tick = Tick(t * EVERY);
        world.step(tick, true);
        world.build_deltas_every(tick, &clients, EVERY);
        for (i, c) in clients.iter_mut().enumerate() {
            world.send(tick, c, &all, Some(EntityId(i as u32)));
            if c.rx.view().len() == 1000 && converged[i].is_none() {
                converged[i] = Some(t);
            }
            if converged[i].is_some_and(|at| t > at + 20) {
                c.max_staleness = c.max_staleness.max(c.rx.staleness() / EVERY);
            }
        }
    }
    for (i, c) in clients.iter().enumerate() {
        let at = converged[i].unwrap_or_else(|| panic!("client {i} never held the whole view"));
        assert!(at <= 30, "client {i} converged only at snapshot {at}");
        assert!(
            c.max_staleness <= 10,
            "client {i}: {} snapshots unrefreshed",
            c.max_staleness
        );
        assert_eq!(c.backwards, 0);
    }
}

#[test]
fn an_old_acknowledged_baseline_still_weighs_by_distance() {
    // Over QUIC the baseline is the acknowledged snapshot: with acks 12 ticks late every entry
    // it holds is at least 12 snapshots old, past a forced age of 8. The forced age counts from
    // the baseline, so near entities still come first.
    let mut world = World::new(300, 11);
    let q = world.q;
    let mut c = client(1200, 12, q, false);
    c.force_age = 8;
    let all: Vec<u32> = (0..300).collect();
    let near = 64 * 30u64;
    let (mut near_sum, mut near_n, mut far_sum, mut far_n) = (0u64, 0u64, 0u64, 0u64);
    let mut held = 0usize;
    for t in 1..=200u32 {
        let tick = Tick(t);
        world.step(tick, true);
        world.build_deltas(tick, std::slice::from_ref(&c));
        world.send(tick, &mut c, &all, Some(EntityId(0)));
        if t <= 140 {
            continue;
        }
        let frame = world.history.latest().unwrap();
        let me = frame.states()[0].pos;
        held += c.rx.view().len();
        for ((id, _), as_of) in c.rx.view().iter().zip(c.rx.as_of()) {
            let Ok(i) = frame.ids().binary_search(id) else {
                continue;
            };
            let p = frame.states()[i].pos;
            let d2: u64 = (0..3).map(|a| u64::from(me[a].abs_diff(p[a])).pow(2)).sum();
            let stale = u64::from(tick.0 - as_of.0);
            if id.0 != 0 && d2 < near * near {
                near_sum += stale;
                near_n += 1;
            } else if d2 >= 49 * near * near {
                far_sum += stale;
                far_n += 1;
            }
        }
    }
    assert!(near_n > 0 && far_n > 0, "near {near_n}, far {far_n}");
    // Entries are refreshed before their source frames leave the history (else they are
    // removed and sent again in full, over and over).
    assert!(held >= 60 * 295, "held {} entries a tick of 300", held / 60);
    let (near_avg, far_avg) = (
        near_sum as f64 / near_n as f64,
        far_sum as f64 / far_n as f64,
    );
    assert!(
        near_avg < 0.8 * far_avg,
        "near entities {near_avg:.1} ticks stale, far ones {far_avg:.1}: no weighting"
    );
}

#[test]
fn a_ring_of_one_still_deltas() {
    // --baseline-ring 1: the one remembered snapshot is the baseline; taking a buffer for the
    // next must not evict it.
    let mut world = World::new(300, 5);
    let q = world.q;
    let mut clients = vec![client(600, 0, q, true), client(600, 0, q, false)];
    for c in &mut clients {
        c.ring = BudgetRing::new(1);
        if c.reliable {
            c.ring.set_delivery_lead(16);
        }
    }
    let all: Vec<u32> = (0..300).collect();
    for t in 1..=40u32 {
        let tick = Tick(t);
        world.step(tick, true);
        world.build_deltas(tick, &clients);
        for c in &mut clients {
            world.send(tick, c, &all, None);
        }
    }
    for c in &clients {
        assert_eq!(c.fulls, 1, "only the first snapshot is full");
        assert_eq!(c.rx.view().len(), 300);
    }
}

#[test]
fn with_room_to_spare_snapshots_are_not_partial() {
    let mut world = World::new(20, 3);
    let q = world.q;
    let mut clients = vec![client(4000, 1, q, false)];
    let all: Vec<u32> = (0..20).collect();
    for t in 1..=20u32 {
        let tick = Tick(t);
        world.step(tick, t % 2 == 0);
        world.build_deltas(tick, &clients);
        world.send(tick, &mut clients[0], &all, None);
        assert_eq!(
            clients[0].rx.staleness(),
            0,
            "everything fits: nothing held back"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_views_budgets_and_lags_never_desync(
        n in 1u32..300,
        seed in any::<u64>(),
        budget in 80usize..1500,
        lags in proptest::collection::vec(0u32..5, 1..4),
        ticks in 1u32..60,
        radius_step in 0u32..4,
    ) {
        let mut world = World::new(n, seed);
        let q = world.q;
        let mut clients: Vec<Client> = lags.iter().enumerate().map(|(i, &l)| client(budget, l, q, i % 2 == 0)).collect();
        for t in 1..=ticks {
            let tick = Tick(t);
            // Entities come and go: every tick some are spawned and some despawned.
            if t % 5 == 0 && world.ents.len() > 1 {
                let k = (world.rand() as usize) % world.ents.len();
                world.ents.remove(k);
            }
            if t % 3 == 0 {
                let id = world.ents.last().map_or(0, |e| e.0.0 + 1);
                world.ents.push((EntityId(id), EntityState { kind: 2, ..Default::default() }, Vec3::new(5.0, 0.0, 0.0)));
            }
            world.step(tick, true);
            world.build_deltas(tick, &clients);
            let len = world.history.latest().unwrap().len() as u32;
            for (i, c) in clients.iter_mut().enumerate() {
                // Views shift: a window of the entities that moves with the tick.
                let lo = (t * radius_step + i as u32) % len.max(1);
                let cur: Vec<u32> = (0..len).filter(|k| (k + len - lo) % len < len / 2 + 1).collect();
                world.send(tick, c, &cur, None);
            }
        }
    }
}
