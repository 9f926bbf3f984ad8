//! The bandwidth scenario: 1,000 moving players (each a client) and 1,000 wandering NPCs in a
//! 2,000 × 2,000 world, view radius 150, 30 Hz, 300 ticks, every client acknowledging two ticks
//! behind. Prints bytes per client per tick for a naive full-state message, a quantized full
//! snapshot and our delta snapshot, and delta bytes per moving entity.
//!
//! Run: `cargo bench -p tickwire-benches --bench bandwidth`

#![allow(clippy::expect_used, clippy::unwrap_used)]

use tickwire_benches::{Scenario, ScenarioConfig, naive_bytes};
use tickwire_shared::bits::BitWriter;
use tickwire_shared::codec::encode_server;
use tickwire_shared::snapshot::encode_delta;
use tickwire_shared::{
    BaselineTracker, InputSeq, ServerMessage, SnapshotMessage, Tick, ViewEntry, view_checksum,
};

const TICKS: u32 = 300;
const ACK_LAG: u32 = 2;

fn main() {
    let mut world = Scenario::new(ScenarioConfig::default());
    let q = world.quantizer();
    let clients = world.clients();
    let mut trackers: Vec<BaselineTracker> =
        (0..clients).map(|_| BaselineTracker::new(q, 32)).collect();
    let mut prev_views: Vec<Vec<ViewEntry>> = vec![Vec::new(); clients];
    let mut view = Vec::new();
    let mut frame = Vec::new();
    let (mut naive, mut full, mut delta) = (0u64, 0u64, 0u64);
    let (mut samples, mut visible, mut moving) = (0u64, 0u64, 0u64);
    let mut full_snapshots = 0u64;

    for t in 1..=TICKS {
        world.step();
        let tick = Tick(t);
        for c in 0..clients {
            world.view(c, &mut view);
            if t > ACK_LAG {
                trackers[c].on_ack(Tick(t - ACK_LAG));
            }
            naive += naive_bytes(t, &view, |id| *world.state(id)) as u64;

            let mut w = BitWriter::new();
            encode_delta(&q, &[], &view, &mut w);
            let full_msg = ServerMessage::Snapshot(SnapshotMessage {
                tick,
                baseline_age: 0,
                last_input: InputSeq(t),
                checksum: view_checksum(&view),
                partial: false,
                body: w.finish(),
            });
            frame.clear();
            encode_server(&full_msg, &mut frame).expect("encodable");
            full += frame.len() as u64;

            let enc = trackers[c].encode(tick, InputSeq(t), &view);
            full_snapshots += u64::from(enc.full);
            frame.clear();
            encode_server(&ServerMessage::Snapshot(enc.message), &mut frame).expect("encodable");
            delta += frame.len() as u64;

            samples += 1;
            visible += view.len() as u64;
            let prev = &prev_views[c];
            moving += view
                .iter()
                .filter(|(id, s)| {
                    prev.binary_search_by_key(id, |e| e.0)
                        .map(|i| prev[i].1.pos != s.pos)
                        .unwrap_or(true)
                })
                .count() as u64;
            prev_views[c].clone_from(&view);
        }
    }

    let per = |b: u64| b as f64 / samples as f64;
    println!(
        "scenario: {} clients, {} entities, {} ticks at 30 Hz, acks {} ticks behind; \
         {:.1} visible and {:.1} moving entities per client per tick; {} full snapshots",
        clients,
        clients + ScenarioConfig::default().npcs,
        TICKS,
        ACK_LAG,
        visible as f64 / samples as f64,
        moving as f64 / samples as f64,
        full_snapshots
    );
    println!(
        "ratios: delta/naive = {:.3}, delta/full = {:.3}, full/naive = {:.3}; \
         delta at 30 Hz = {:.0} B/s per client",
        delta as f64 / naive as f64,
        delta as f64 / full as f64,
        full as f64 / naive as f64,
        per(delta) * 30.0
    );
    println!(
        "bandwidth naive_b={:.1} full_b={:.1} delta_b={:.1} per_moving_entity_b={:.2}",
        per(naive),
        per(full),
        per(delta),
        delta as f64 / moving.max(1) as f64
    );
}
