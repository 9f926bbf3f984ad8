//! The crowded room's steady-state tick allocates nothing per client: a counting global
//! allocator (all threads, so rayon's workers count too) around `Room::tick` with 100 and
//! with 1,000 clients who all see each other and all acknowledge the newest snapshot. What a
//! tick allocates is per room (the shared body of each group of clients), so both counts stay
//! at a handful however many clients there are.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tickwire_server::record::Recorder;
use tickwire_server::room::{Control, InputMsg, Outbound};
use tickwire_server::world::World;
use tickwire_server::{Arena, ArenaRules, Game, Metrics, Room, RoomSpec, ServerConfig};
use tickwire_shared::{ClientId, InputFrame, InputSeq};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// The count is process-wide: one test at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The crowded room of `assets/worlds/crowd.toml`: 1,000 × 1,000, no obstacles, no NPCs, a
/// view radius that covers the whole world.
fn crowd() -> ServerConfig {
    let mut cfg = ServerConfig::defaults();
    cfg.world = World::crowd();
    cfg.sim.view_radius = 2000.0;
    cfg
}

/// Allocations per tick, the most over 40 measured ticks after a warm-up.
fn allocs_per_tick(clients: u32) -> u64 {
    let cfg = crowd();
    let arena = Arena::new(cfg.world.clone(), ArenaRules::default(), 0, 7);
    let sim = Room::new(arena, cfg.sim.clone(), Arc::new(Metrics::default())).unwrap();
    allocs_in(sim, clients)
}

/// The same with the room's game recorded (`--record`) to a temporary directory.
fn recorded_allocs_per_tick(clients: u32) -> u64 {
    let cfg = crowd();
    let dir = std::env::temp_dir().join(format!("tickwire-alloc-{}-{clients}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let recorder = Recorder::start(dir.clone(), Default::default()).unwrap();
    let spec = RoomSpec {
        room_id: "r".into(),
        kind: String::new(),
        max_clients: clients,
        seed: 7,
    };
    let arena = Arena::new(cfg.world.clone(), ArenaRules::default(), 0, 7);
    let game = recorder.record(arena, &spec, cfg.sim.tick_rate, &[]);
    let sim = Room::new(game, cfg.sim.clone(), Arc::new(Metrics::default())).unwrap();
    let most = allocs_in(sim, clients);
    recorder.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
    most
}

fn allocs_in<G: Game>(mut sim: Room<G>, clients: u32) -> u64 {
    let outs: Vec<Arc<Outbound>> = (1..=clients)
        .map(|i| {
            let out = Arc::new(Outbound::default());
            sim.control(Control::Join {
                client: ClientId(i),
                resume: None,
                player_id: None,
                out: out.clone(),
            });
            out
        })
        .collect();
    let mut most = 0;
    // Warm up past the history ring (33 frames at the default ring of 32), which grows to its
    // size in the first ticks.
    for t in 0..80u32 {
        // Everyone walks (each tick a new input) and acknowledges the newest snapshot.
        let ack = sim.current_tick();
        for i in 1..=clients {
            let frame = InputFrame {
                seq: InputSeq(t + 1),
                move_x: if (i + t / 10) % 2 == 0 { 100 } else { -100 },
                move_y: if (i / 2 + t / 7) % 2 == 0 { 100 } else { -100 },
                ..Default::default()
            };
            sim.input(InputMsg {
                client: ClientId(i),
                ack,
                frames: vec![frame],
            });
        }
        let before = ALLOCS.load(Relaxed);
        let bytes = sim.tick();
        let after = ALLOCS.load(Relaxed);
        assert!(bytes > 0);
        for o in &outs {
            assert!(o.take().snapshot.is_some(), "every client got a snapshot");
        }
        if t >= 40 {
            most = most.max(after - before);
        }
    }
    most
}

#[test]
fn crowded_tick_allocates_nothing_per_client() {
    let _one = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let small = allocs_per_tick(100);
    let large = allocs_per_tick(1000);
    eprintln!("allocations per tick: {small} with 100 clients, {large} with 1,000");
    // The shared body of the one group (everyone has the same baseline and view) and the odd
    // buffer growth: a handful per tick, however many clients. One allocation per client would
    // be 100 and 1,000.
    assert!(small <= 4, "{small} allocations per tick with 100 clients");
    assert!(
        large <= 4,
        "{large} allocations per tick with 1,000 clients"
    );
}

#[test]
fn a_recorded_tick_allocates_nothing_per_client() {
    let _one = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let small = recorded_allocs_per_tick(100);
    let large = recorded_allocs_per_tick(1000);
    eprintln!("recorded: allocations per tick: {small} with 100 clients, {large} with 1,000");
    // As above, and at most one more: a tick record's buffer, should the writer not have
    // handed the last one back yet.
    assert!(small <= 5, "{small} allocations per tick with 100 clients");
    assert!(
        large <= 5,
        "{large} allocations per tick with 1,000 clients"
    );
}
