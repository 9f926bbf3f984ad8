//! The deterministic in-memory tier: the real `Room` running the arena, stepped tick by
//! tick with no sockets and no clock, and 40 clients whose links lose, delay and reorder
//! snapshots and inputs (seeded, so every run is the same). Every snapshot a client accepts must
//! verify, every client must keep converging on the server's view of it, and the baseline
//! machinery must recover from long ack gaps with full snapshots.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use tickwire_server::rng::Rng;
use tickwire_server::room::{Control, InputMsg, Outbound};
use tickwire_server::{Arena, ArenaRules, Metrics, Room, ServerConfig};
use tickwire_shared::codec::decode_server;
use tickwire_shared::{
    ClientId, InputHistory, Quantizer, ReceiveError, Received, ServerMessage, SnapshotMessage,
    SnapshotReceiver, Tick, WorldBounds,
};

struct Peer {
    out: Arc<Outbound>,
    rx: SnapshotReceiver,
    inputs: InputHistory,
    /// Snapshots in flight: (deliver at tick, message).
    inbox: Vec<(u32, SnapshotMessage)>,
    /// Input messages in flight: (deliver at tick, message).
    outbox: Vec<(u32, InputMsg)>,
    dir: (i8, i8),
    /// Ticks during which this client's uplink is cut (acks stall).
    cut: std::ops::Range<u32>,
}

#[test]
fn lossy_links_never_desync_and_recover() {
    const CLIENTS: usize = 40;
    const TICKS: u32 = 600;
    let mut cfg = ServerConfig::defaults();
    cfg.sim.view_radius = 200.0;
    cfg.sim.baseline_ring = 16;
    cfg.sim.ack_timeout_ticks = 10_000;
    let metrics = Arc::new(Metrics::default());
    let arena = Arena::new(cfg.world.clone(), ArenaRules::default(), 300, 11);
    let mut sim = Room::new(arena, cfg.sim.clone(), metrics.clone()).unwrap();
    let q = Quantizer::new(WorldBounds {
        min: cfg.world.bounds.min,
        max: cfg.world.bounds.max,
    })
    .unwrap();
    let mut rng = Rng::new(2024);
    let mut peers: Vec<Peer> = (0..CLIENTS)
        .map(|i| {
            let out = Arc::new(Outbound::default());
            sim.control(Control::Join {
                client: ClientId(i as u32 + 1),
                resume: None,
                player_id: None,
                out: out.clone(),
            });
            // A quarter of the clients lose their uplink for 1.5 s mid-run.
            let cut = if i % 4 == 0 { 200..245 } else { 0..0 };
            Peer {
                out,
                rx: SnapshotReceiver::new(q, 32),
                inputs: InputHistory::new(),
                inbox: Vec::new(),
                outbox: Vec::new(),
                dir: (0, 0),
                cut,
            }
        })
        .collect();

    let (mut verified, mut lost, mut missing) = (0u64, 0u64, 0u64);
    for t in 1..=TICKS {
        // Uplink: inputs due now reach the simulation (10% lost, up to 3 ticks late).
        for (i, p) in peers.iter_mut().enumerate() {
            if rng.unit() < 0.1 {
                p.dir = (
                    (rng.range(-1.0, 1.0) * 127.0) as i8,
                    (rng.range(-1.0, 1.0) * 127.0) as i8,
                );
            }
            p.inputs
                .push(tickwire_shared::InputFrame {
                    move_x: p.dir.0,
                    move_y: p.dir.1,
                    ..Default::default()
                })
                .unwrap();
            let tickwire_shared::ClientMessage::Input { ack_tick, frames } =
                p.inputs.message(p.rx.ack_tick())
            else {
                unreachable!()
            };
            if !p.cut.contains(&t) && rng.unit() >= 0.1 {
                let delay = (rng.unit() * 4.0) as u32;
                p.outbox.push((
                    t + delay,
                    InputMsg {
                        client: ClientId(i as u32 + 1),
                        ack: ack_tick,
                        frames,
                    },
                ));
            }
            let (due, later): (Vec<_>, Vec<_>) = p.outbox.drain(..).partition(|(d, _)| *d <= t);
            p.outbox = later;
            for (_, m) in due {
                sim.input(m);
            }
        }
        sim.tick();
        // Downlink: each snapshot is lost (10%), delayed up to 3 ticks (so reordered) or
        // duplicated (5%).
        for p in &mut peers {
            let Some(frame) = p.out.take().snapshot else {
                continue;
            };
            let Ok(ServerMessage::Snapshot(m)) = decode_server(&frame.to_vec()) else {
                panic!("the server sent something that is not a snapshot");
            };
            if rng.unit() < 0.1 {
                lost += 1;
            } else {
                let delay = (rng.unit() * 4.0) as u32;
                if rng.unit() < 0.05 {
                    p.inbox.push((t + delay + 1, m.clone()));
                }
                p.inbox.push((t + delay, m));
            }
            p.inbox.sort_by_key(|(d, _)| *d);
            while p.inbox.first().is_some_and(|(d, _)| *d <= t) {
                let (_, m) = p.inbox.remove(0);
                match p.rx.receive(&m) {
                    Ok(Received::Current { .. } | Received::Stale { .. }) => verified += 1,
                    Ok(Received::Duplicate { .. }) => {}
                    Err(ReceiveError::MissingBaseline { .. }) => missing += 1,
                    Err(e) => panic!("tick {t}: {e}"),
                }
            }
        }
    }
    // Everyone converged: each client's newest verified tick is recent.
    for (i, p) in peers.iter().enumerate() {
        let newest = p.rx.ack_tick().unwrap_or(Tick(0));
        assert!(newest.0 + 10 >= TICKS, "client {i} stuck at {newest}");
        assert!(!p.rx.view().is_empty());
    }
    let full = metrics
        .full_snapshots
        .load(std::sync::atomic::Ordering::Relaxed);
    // Joins give one full snapshot each; the 1.5 s uplink cut outlasts the 16-snapshot ring,
    // so the cut clients must have been sent full snapshots to recover.
    assert!(full > CLIENTS as u64 + 100, "full snapshots: {full}");
    assert!(
        verified > (CLIENTS as u64 * TICKS as u64) * 3 / 4,
        "verified {verified}"
    );
    assert!(
        lost > 0 && missing < verified / 10,
        "lost {lost} missing {missing}"
    );
}
