//! Arbitrary bytes into every decoder: never a panic, and never an allocation larger than the
//! decoder's limit. A counting global allocator records the largest single allocation made
//! while decoding.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use glam::Vec3;
use proptest::prelude::*;
use tickwire_shared::codec::{
    MAX_CLIENT_MESSAGE_BYTES, MAX_SERVER_MESSAGE_BYTES, decode_client, decode_server,
    peek_hello_version,
};
use tickwire_shared::snapshot::{MAX_VIEW_ENTITIES, decode_delta};
use tickwire_shared::{
    BaselineTracker, ClientMessage, EntityId, QuantizedState, Quantizer, SnapshotMessage,
    SnapshotReceiver, Tick, ViewEntry, WorldBounds,
};

struct Counting;
thread_local! {
    // Per thread, so the other tests running in parallel do not count.
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

// SAFETY: forwards to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns the largest single allocation it made on this thread.
fn largest_allocation(f: impl FnOnce()) -> usize {
    LARGEST.with(|l| l.set(0));
    TRACKING.with(|t| t.set(true));
    f();
    TRACKING.with(|t| t.set(false));
    LARGEST.with(|l| l.get())
}

fn quantizer() -> Quantizer {
    Quantizer::new(WorldBounds {
        min: Vec3::new(-1000.0, -1000.0, 0.0),
        max: Vec3::new(1000.0, 1000.0, 0.0),
    })
    .unwrap()
}

fn baseline(n: u32) -> Vec<ViewEntry> {
    (0..n)
        .map(|i| {
            (
                EntityId(i * 2),
                QuantizedState {
                    kind: 1,
                    pos: [i * 100, 64_000, 0],
                    ..Default::default()
                },
            )
        })
        .collect()
}

/// Byte strings that look like our messages often enough to reach deep decoder paths.
fn frames() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        (0u8..5, proptest::collection::vec(any::<u8>(), 0..600)).prop_map(|(tag, mut rest)| {
            rest.insert(0, tag);
            rest
        }),
        // Huge length prefixes right after a tag.
        (0u8..5, proptest::collection::vec(any::<u8>(), 0..16)).prop_map(|(tag, rest)| {
            let mut v = vec![tag, 253, 255, 255, 255, 255, 255, 255, 255, 127];
            v.extend(rest);
            v
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn envelope_decoders_never_panic_or_overallocate(frame in frames()) {
        let big = largest_allocation(|| {
            let _ = decode_client(&frame);
        });
        prop_assert!(big <= MAX_CLIENT_MESSAGE_BYTES * 2, "client decode allocated {big}");
        // The version peek allocates nothing and agrees with a full decode of a Hello.
        let mut peeked = None;
        let big = largest_allocation(|| peeked = peek_hello_version(&frame));
        prop_assert_eq!(big, 0, "version peek allocated");
        match decode_client(&frame) {
            Ok(ClientMessage::Hello { protocol_version, .. }) => {
                prop_assert_eq!(peeked, Some(protocol_version));
            }
            Ok(_) => prop_assert_eq!(peeked, None),
            Err(_) => {}
        }
        let big = largest_allocation(|| {
            let _ = decode_server(&frame);
        });
        prop_assert!(big <= frame.len().max(64) * 64, "server decode allocated {big}");
    }

    #[test]
    fn snapshot_decoder_never_panics_or_overallocates(
        body in proptest::collection::vec(any::<u8>(), 0..400),
        n in 0u32..40,
        age in 0u32..3,
        checksum in any::<u32>(),
    ) {
        let q = quantizer();
        let base = baseline(n);
        let mut out = Vec::new();
        let big = largest_allocation(|| {
            let _ = decode_delta(&q, &base, &body, &mut out);
        });
        // A view can never hold more entities than the baseline plus what the body describes.
        let entry = size_of::<ViewEntry>();
        prop_assert!(big <= (n as usize + body.len() * 8 / 60 + 1) * entry * 2, "allocated {big}");
        prop_assert!(out.len() <= MAX_VIEW_ENTITIES);

        // Hold a real baseline at tick 4, so fuzzed deltas (age 1) are decoded against it.
        let mut rx = SnapshotReceiver::new(q, 4);
        let full = BaselineTracker::new(q, 4).encode(Tick(4), Default::default(), &base);
        rx.receive(&full.message).unwrap();
        let _ = rx.receive(&SnapshotMessage {
            tick: Tick(5),
            baseline_age: age,
            last_input: Default::default(),
            checksum,
            partial: age % 2 == 0,
            body: body.clone(),
        });
    }
}

#[test]
fn oversized_frames_are_refused_before_parsing() {
    let big = vec![0u8; MAX_SERVER_MESSAGE_BYTES + 1];
    assert!(decode_server(&big).is_err());
    let allocated = largest_allocation(|| {
        let _ = decode_client(&big);
    });
    assert!(allocated < 1024);
}
