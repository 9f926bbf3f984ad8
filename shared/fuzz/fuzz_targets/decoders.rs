//! Feeds arbitrary bytes to every decoder a peer can reach: the client envelope (what a
//! server decodes), the server envelope, and the snapshot receiver (what a client decodes),
//! against a small held baseline.
#![no_main]

use glam::Vec3;
use libfuzzer_sys::fuzz_target;
use tickwire_shared::codec::{decode_client, decode_server};
use tickwire_shared::{
    BaselineTracker, EntityId, InputSeq, QuantizedState, Quantizer, ServerMessage,
    SnapshotReceiver, Tick, WorldBounds,
};

fuzz_target!(|data: &[u8]| {
    let _ = decode_client(data);
    let Ok(q) = Quantizer::new(WorldBounds {
        min: Vec3::new(-1000.0, -1000.0, 0.0),
        max: Vec3::new(1000.0, 1000.0, 0.0),
    }) else {
        return;
    };
    let mut rx = SnapshotReceiver::new(q, 4);
    let base: Vec<_> = (0..8)
        .map(|i| (EntityId(i * 3), QuantizedState { kind: 1, pos: [i * 640, 64_000, 0], ..Default::default() }))
        .collect();
    let full = BaselineTracker::new(q, 4).encode(Tick(1), InputSeq(0), &base).message;
    let _ = rx.receive(&full);
    if let Ok(ServerMessage::Snapshot(msg)) = decode_server(data) {
        let _ = rx.receive(&msg);
    }
    // The raw bytes as a snapshot body, against the held baseline and as a full snapshot.
    for age in [0, 1] {
        let _ = rx.receive(&tickwire_shared::SnapshotMessage {
            tick: Tick(2),
            baseline_age: age,
            last_input: InputSeq(0),
            checksum: 0,
            body: data.to_vec(),
        });
    }
});
