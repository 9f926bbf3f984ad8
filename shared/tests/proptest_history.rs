//! Random world histories over a random lossy, duplicating, reordering link: the client's view
//! must always equal the server's quantized view for the tick it shows, and no checksum may
//! ever fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use glam::Vec3;
use proptest::prelude::*;
use tickwire_shared::{
    BaselineTracker, EntityId, EntityState, InputSeq, Quantizer, ReceiveError, Received,
    SnapshotMessage, SnapshotReceiver, Tick, ViewEntry, WorldBounds,
};

#[derive(Debug, Clone)]
enum Action {
    Same,
    SmallMove(f32, f32),
    Teleport(f32, f32, f32),
    Toggle,
    Other {
        kind: u16,
        health: u16,
        flags: u16,
        yaw: f32,
        vel: [f32; 3],
    },
}

fn any_coord() -> impl Strategy<Value = f32> {
    prop_oneof![
        -1200.0f32..1200.0,
        Just(-1000.0),
        Just(1000.0),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
        Just(f32::NAN),
        Just(1e30),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => Just(Action::Same),
        6 => (-2.0f32..2.0, -2.0f32..2.0).prop_map(|(x, y)| Action::SmallMove(x, y)),
        1 => (any_coord(), any_coord(), any_coord()).prop_map(|(x, y, z)| Action::Teleport(x, y, z)),
        1 => Just(Action::Toggle),
        1 => (any::<u16>(), any::<u16>(), any::<u16>(), any_coord(), (any_coord(), -600.0f32..600.0, -1.0f32..1.0))
            .prop_map(|(kind, health, flags, yaw, (vx, vy, vz))| Action::Other { kind, health, flags, yaw, vel: [vx, vy, vz] }),
    ]
}

/// Per tick: actions for each entity, then how that tick's snapshot travels (copies and the
/// delay of each) and how the client's ack after it travels.
#[derive(Debug, Clone)]
struct TickPlan {
    actions: Vec<Action>,
    snapshot_delays: Vec<u8>,
    ack_delay: Option<u8>,
}

fn plan(entities: usize) -> impl Strategy<Value = TickPlan> {
    (
        proptest::collection::vec(action(), entities),
        proptest::collection::vec(0u8..4, 0..3),
        proptest::option::weighted(0.7, 0u8..4),
    )
        .prop_map(|(actions, snapshot_delays, ack_delay)| TickPlan {
            actions,
            snapshot_delays,
            ack_delay,
        })
}

fn history() -> impl Strategy<Value = (usize, usize, Vec<TickPlan>)> {
    (1usize..24, 1usize..10).prop_flat_map(|(entities, ring)| {
        (
            Just(entities),
            Just(ring),
            proptest::collection::vec(plan(entities), 1..60),
        )
    })
}

fn quantizer() -> Quantizer {
    Quantizer::new(WorldBounds {
        min: Vec3::new(-1000.0, -1000.0, 0.0),
        max: Vec3::new(1000.0, 1000.0, 50.0),
    })
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn receiver_view_always_matches_server((entities, ring, plans) in history()) {
        let q = quantizer();
        let mut server = BaselineTracker::new(q, ring);
        let mut client = SnapshotReceiver::new(q, ring);
        let mut world: Vec<(bool, EntityState)> = (0..entities)
            .map(|i| (i % 3 != 0, EntityState { kind: 1, pos: Vec3::new(i as f32, 0.0, 0.0), ..Default::default() }))
            .collect();
        let mut truth: Vec<(Tick, Vec<ViewEntry>)> = Vec::new();
        let mut to_client: Vec<(u32, SnapshotMessage)> = Vec::new();
        let mut to_server: Vec<(u32, Tick)> = Vec::new();
        let mut checked = 0;
        let mut ever_held: Vec<Tick> = Vec::new();

        let n = plans.len() as u32;
        // A few perfect ticks at the end so the last view must converge.
        let tail = TickPlan { actions: vec![Action::Same; entities], snapshot_delays: vec![0], ack_delay: Some(0) };
        for t in 1..=n + 3 {
            let p = plans.get(t as usize - 1).unwrap_or(&tail);
            for ((visible, s), a) in world.iter_mut().zip(&p.actions) {
                match *a {
                    Action::Same => {}
                    Action::SmallMove(dx, dy) => s.pos += Vec3::new(dx, dy, 0.0),
                    Action::Teleport(x, y, z) => s.pos = Vec3::new(x, y, z),
                    Action::Toggle => *visible = !*visible,
                    Action::Other { kind, health, flags, yaw, vel } => {
                        s.kind = kind;
                        s.health = health;
                        s.flags = flags;
                        s.yaw = yaw;
                        s.vel = Vec3::from_array(vel);
                    }
                }
            }
            let view: Vec<ViewEntry> = world
                .iter()
                .enumerate()
                .filter(|(_, (v, _))| *v)
                .map(|(i, (_, s))| (EntityId(i as u32 * 3 + 1), q.quantize(s)))
                .collect();
            let tick = Tick(t);
            let snap = server.encode(tick, InputSeq(t), &view).message;
            truth.push((tick, view));
            for d in &p.snapshot_delays {
                to_client.push((t + u32::from(*d), snap.clone()));
            }

            // Deliver what is due, in a shuffled-by-delay order.
            to_client.sort_by_key(|(due, m)| (*due, std::cmp::Reverse(m.tick)));
            while to_client.first().is_some_and(|(due, _)| *due <= t) {
                let (_, msg) = to_client.remove(0);
                match client.receive(&msg) {
                    Ok(Received::Current { tick, .. }) | Ok(Received::Stale { tick }) => {
                        ever_held.push(tick);
                        let expect = &truth.iter().find(|(tt, _)| *tt == tick).unwrap().1;
                        if Some(tick) == client.ack_tick() {
                            prop_assert_eq!(client.view(), expect.as_slice());
                            prop_assert_eq!(client.last_input(), InputSeq(tick.0));
                            checked += 1;
                        }
                    }
                    Ok(Received::Duplicate { .. }) => {}
                    Err(ReceiveError::MissingBaseline { baseline, .. }) => {
                        // Legal only when reordering made the client drop a baseline it once
                        // held: the server must never use a tick the client did not have.
                        prop_assert!(
                            ever_held.contains(&baseline),
                            "server used baseline {baseline}, which the client never held"
                        );
                    }
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
            if let (Some(d), Some(ack)) = (p.ack_delay, client.ack_tick()) {
                to_server.push((t + u32::from(d), ack));
            }
            to_server.sort_by_key(|(due, _)| *due);
            while to_server.first().is_some_and(|(due, _)| *due <= t) {
                let (_, ack) = to_server.remove(0);
                server.on_ack(ack);
            }
        }
        prop_assert_eq!(client.ack_tick(), Some(Tick(n + 3)));
        prop_assert!(checked > 0);
    }
}
