//! Criterion: encode and decode of one delta snapshot with 64 visible entities, half of them
//! moving, plus the envelope around it. Also prints the encoded size.
//!
//! Run: `cargo bench -p tickwire-benches --bench codec`

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use glam::Vec3;
use tickwire_benches::Rng;
use tickwire_shared::codec::{decode_server, encode_server};
use tickwire_shared::snapshot::decode_delta;
use tickwire_shared::{
    BaselineTracker, EntityId, EntityState, InputSeq, Quantizer, ServerMessage, SnapshotReceiver,
    Tick, ViewEntry, WorldBounds, view_checksum,
};

fn views(q: &Quantizer) -> (Vec<ViewEntry>, Vec<ViewEntry>) {
    let mut rng = Rng::new(42);
    let mut states: Vec<EntityState> = (0..64)
        .map(|i| EntityState {
            kind: 1 + (i % 2) as u16,
            pos: Vec3::new(rng.range(-150.0, 150.0), rng.range(-150.0, 150.0), 0.0),
            vel: Vec3::new(rng.range(-6.0, 6.0), rng.range(-6.0, 6.0), 0.0),
            yaw: rng.range(0.0, std::f32::consts::TAU),
            health: 100,
            flags: 0,
        })
        .collect();
    let view = |s: &[EntityState]| -> Vec<ViewEntry> {
        s.iter()
            .enumerate()
            .map(|(i, s)| (EntityId(i as u32 * 7), q.quantize(s)))
            .collect()
    };
    let base = view(&states);
    // Half of them move for two ticks at 30 Hz.
    for s in states.iter_mut().step_by(2) {
        s.pos += s.vel * (2.0 / 30.0);
    }
    (base, view(&states))
}

fn codec(c: &mut Criterion) {
    let q = Quantizer::new(WorldBounds {
        min: Vec3::new(-1000.0, -1000.0, 0.0),
        max: Vec3::new(1000.0, 1000.0, 0.0),
    })
    .expect("valid bounds");
    let (base, cur) = views(&q);

    // A tracker that has sent `base` at tick 1 and seen it acked.
    let primed = || {
        let mut t = BaselineTracker::new(q, 32);
        t.encode(Tick(1), InputSeq(0), &base);
        t.on_ack(Tick(1));
        t
    };
    let full_msg = primed_full(&q, &base);
    let delta_msg = primed().encode(Tick(3), InputSeq(9), &cur).message;
    let mut frame = Vec::new();
    encode_server(&ServerMessage::Snapshot(delta_msg.clone()), &mut frame).expect("encodable");
    println!(
        "codec: 64 entities, 32 moving: delta frame {} bytes (body {} bytes)",
        frame.len(),
        delta_msg.body.len()
    );

    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(64));
    g.bench_function("encode_delta_64", |b| {
        let mut t = primed();
        let mut tick = 2;
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            // Keep tick 1 as the acked baseline; the ring keeps it for 31 more ticks, so
            // restart the tracker's clock before it would expire.
            if tick > 30 {
                t = primed();
                tick = 2;
            }
            tick += 1;
            let enc = t.encode(Tick(tick), InputSeq(9), black_box(&cur));
            out.clear();
            encode_server(&ServerMessage::Snapshot(enc.message), &mut out).expect("encodable");
            black_box(out.len())
        })
    });
    g.bench_function("decode_delta_64", |b| {
        // What a receiver does per snapshot: envelope, delta against the held baseline,
        // checksum. (SnapshotReceiver adds only its bookkeeping; its ring would evict the
        // baseline after 32 iterations, so the bench calls the codec directly.)
        let mut out = Vec::with_capacity(128);
        b.iter(|| {
            let ServerMessage::Snapshot(m) = decode_server(black_box(&frame)).expect("valid")
            else {
                unreachable!("frame is a snapshot")
            };
            decode_delta(&q, &base, &m.body, &mut out).expect("valid delta");
            assert_eq!(view_checksum(&out), m.checksum);
            black_box(out.len())
        })
    });
    // Prove once that the real receiver accepts it.
    let mut rx = SnapshotReceiver::new(q, 32);
    rx.receive(&full_msg).expect("full snapshot verifies");
    rx.receive(&delta_msg).expect("delta verifies");
    assert_eq!(rx.view(), cur.as_slice());
    g.finish();
}

fn primed_full(q: &Quantizer, base: &[ViewEntry]) -> tickwire_shared::SnapshotMessage {
    BaselineTracker::new(*q, 32)
        .encode(Tick(1), InputSeq(0), base)
        .message
}

criterion_group!(benches, codec);
criterion_main!(benches);
