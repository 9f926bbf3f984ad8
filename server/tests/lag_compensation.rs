//! Lag compensation end to end: a real server process and two real WebSocket clients. A
//! target runs at constant speed across the shooter's line of fire; the shooter fires the
//! hitscan weapon (secondary fire) at where a snapshot 100 ms old showed the target, and says
//! so in the frame (`view_tick` = its newest snapshot, `interp_ms` = 100). With the default
//! `--max-rewind-ms` the server tests the beam against the target as it was then, and hits;
//! with `--max-rewind-ms 0` it tests the target where it is by then, at least four ticks
//! (about two body radii) further on, and misses. Each run ends with a control shot at the
//! target standing still, which must hit, so that a miss means "not compensated", not "no
//! beam".
//!
//! Nothing here waits on a clock: every step waits for snapshots, under bounded timeouts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::VecDeque;
use std::time::Duration;

use glam::Vec2;
use support::process::ServerProcess;
use tickwire_bot_client::{Client, Event};
use tickwire_server::world::World;
use tickwire_server::{Arena, ArenaRules, Game, PlayerInfo};
use tickwire_shared::message::BUTTON_SECONDARY;
use tickwire_shared::{ClientId, EntityId, InputFrame, Tick};
use tokio::sync::watch;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);
/// The server's default tick rate, which the test runs at.
const TICK_RATE: u32 = 30;
/// How old the snapshot the shooter aims by is: 3 ticks, 100 ms at 30 Hz.
const BEHIND: u32 = 3;
/// Most frames pressing secondary fire in one run (2 s at one per snapshot: six beams at the
/// 0.3 s cooldown).
const MOST_SHOTS: u32 = 60;

/// Where the default room (the crowd world, no NPCs, `seed`) puts its first two players,
/// found with the same arena the server builds, so the test picks a seed without guessing.
fn spawns(seed: u64) -> (Vec2, Vec2) {
    let mut a = Arena::new(World::crowd(), ArenaRules::default(), 0, seed);
    let target = a.spawn_player(PlayerInfo::anonymous(ClientId(1)));
    let shooter = a.spawn_player(PlayerInfo::anonymous(ClientId(2)));
    let at = |id: EntityId| {
        let r = a.entities().iter().find(|r| r.id == id).unwrap();
        r.state.pos.truncate()
    };
    (at(target), at(shooter))
}

/// A seed whose two spawns are 30 to 90 units apart (well within the beam's 120), with 60
/// units of open ground across the shooter's line of fire for the target to run on, and the
/// direction to run.
fn pick_seed() -> (u64, Vec2) {
    let b = World::crowd().bounds;
    let (lo, hi) = (b.min.truncate() + 5.0, b.max.truncate() - 5.0);
    for seed in 1..10_000 {
        let (t, s) = spawns(seed);
        if !(30.0..=90.0).contains(&t.distance(s)) {
            continue;
        }
        let across = (t - s).perp().normalize();
        for dir in [across, -across] {
            let end = t + dir * 60.0;
            if end.cmpgt(lo).all() && end.cmplt(hi).all() {
                return (seed, dir);
            }
        }
    }
    panic!("no seed below 10,000 spawns two players close together");
}

fn start(seed: u64, extra: &[&str]) -> (ServerProcess, String) {
    let world = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/worlds/crowd.toml");
    let seed = seed.to_string();
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--no-quic",
        "--npcs",
        "0",
        "--world",
        world,
        "--seed",
        &seed,
        "--tick-rate",
        "30",
    ];
    args.extend_from_slice(extra);
    let proc = ServerProcess::start(&args);
    let [addr] = proc.wait_for_fields(["addr"]);
    (proc, format!("ws://{addr}/ws"))
}

/// One verified snapshot as the shooter saw it.
#[derive(Debug, Clone, Copy)]
struct View {
    tick: Tick,
    target: Vec2,
    shooter: Vec2,
    health: u16,
}

/// The next verified snapshot that shows both players.
async fn next_view(c: &mut Client, target: EntityId, shooter: EntityId) -> View {
    for _ in 0..300 {
        let ev = timeout(WAIT, c.next_event())
            .await
            .expect("a snapshot within 5 s")
            .unwrap();
        match ev {
            Event::Snapshot {
                outcome, message, ..
            } => {
                outcome.expect("a verified snapshot");
                let r = c.receiver();
                let q = r.quantizer();
                if let (Some(t), Some(s)) = (r.entity(target), r.entity(shooter)) {
                    return View {
                        tick: message.tick,
                        target: q.dequantize_pos(t.pos).truncate(),
                        shooter: q.dequantize_pos(s.pos).truncate(),
                        health: t.health,
                    };
                }
            }
            Event::Closed { code, reason } => panic!("closed {code}: {reason}"),
            _ => {}
        }
    }
    panic!("300 events without a snapshot showing both players");
}

/// The target: on every snapshot, acknowledges it and moves as `moves` says, until the
/// sender is dropped (or 30 s of snapshots).
async fn run_target(mut c: Client, mut moves: watch::Receiver<(i8, i8)>) {
    for _ in 0..900 {
        tokio::select! {
            changed = moves.changed() => if changed.is_err() { return },
            ev = timeout(WAIT, c.next_event()) => match ev.expect("a snapshot within 5 s").unwrap() {
                Event::Snapshot { outcome, .. } => {
                    outcome.expect("a verified snapshot");
                    let (x, y) = *moves.borrow();
                    c.send_input(x, y, 0, 0).await.unwrap();
                }
                Event::Closed { code, reason } => panic!("target closed {code}: {reason}"),
                _ => {}
            },
        }
    }
}

fn aim(from: Vec2, at: Vec2) -> u16 {
    let turns = (at - from).to_angle() / std::f32::consts::TAU;
    (turns.rem_euclid(1.0) * 65536.0).round() as u32 as u16
}

/// What one server did with the shots.
#[derive(Debug)]
struct Outcome {
    /// Beams fired at the running target (frames pressing secondary fire).
    shots: u32,
    /// Health the running target lost.
    lost_running: u16,
    /// Health it lost to the control shot, standing still.
    lost_standing: u16,
}

/// Runs the scenario against a server started with `extra` flags. With `stop_at_hit`, the
/// shooting ends at the first hit.
async fn scenario(extra: &[&str], stop_at_hit: bool) -> Outcome {
    let (seed, dir) = pick_seed();
    let (want_target, want_shooter) = spawns(seed);
    let (_server, url) = start(seed, extra);
    let target = Client::connect(&url, "target", None, WAIT).await.unwrap();
    let mut shooter = Client::connect(&url, "shooter", None, WAIT).await.unwrap();
    let (tid, sid) = (target.welcome.entity_id, shooter.welcome.entity_id);
    let (moves, moves_rx) = watch::channel((0i8, 0i8));
    let target_task = tokio::spawn(run_target(target, moves_rx));

    let first = next_view(&mut shooter, tid, sid).await;
    assert!(
        first.target.distance(want_target) < 0.1 && first.shooter.distance(want_shooter) < 0.1,
        "the server spawned the players at {} and {}, not where the arena of seed {seed} \
         does ({want_target}, {want_shooter})",
        first.target,
        first.shooter
    );
    assert_eq!(first.health, 100);
    let run = (dir * 127.0).round();
    moves.send((run.x as i8, run.y as i8)).unwrap();

    // Shoot at where the snapshot BEHIND ticks older than the newest showed the target, once
    // the target has been running steadily for the whole of that window.
    let step = ArenaRules::default().player_speed / TICK_RATE as f32;
    let mut seen: VecDeque<View> = VecDeque::new();
    let mut shots = 0;
    let mut lost_running = 0;
    for _ in 0..600 {
        let v = next_view(&mut shooter, tid, sid).await;
        lost_running = 100 - v.health;
        if shots >= MOST_SHOTS || (stop_at_hit && lost_running > 0) {
            break;
        }
        seen.push_back(v);
        if seen.len() > 16 {
            seen.pop_front();
        }
        let at = |t: u32| seen.iter().find(|s| s.tick.0 == t).copied();
        let old = v.tick.0.checked_sub(BEHIND).and_then(at);
        let older = v.tick.0.checked_sub(BEHIND + 1).and_then(at);
        let steady = match (older, old) {
            (Some(o2), Some(o))
                if (o.target.distance(o2.target) - step).abs() < 0.05
                    && (v.target.distance(o.target) - BEHIND as f32 * step).abs() < 0.1 =>
            {
                Some(o)
            }
            _ => None,
        };
        let Some(old) = steady else {
            shooter.send_input(0, 0, 0, 0).await.unwrap();
            continue;
        };
        // Where it is now is far off the line to where it was.
        let off_line = (v.target - v.shooter).perp_dot((old.target - v.shooter).normalize());
        assert!(off_line.abs() > 0.7, "{off_line}");
        shooter
            .send_input_viewing(InputFrame {
                buttons: BUTTON_SECONDARY,
                aim_yaw: aim(v.shooter, old.target),
                view_tick: v.tick,
                interp_ms: (BEHIND * 1000 / TICK_RATE) as u16,
                ..InputFrame::default()
            })
            .await
            .unwrap();
        shots += 1;
    }
    // Any beam in flight is resolved within a few ticks.
    for _ in 0..6 {
        let v = next_view(&mut shooter, tid, sid).await;
        lost_running = 100 - v.health;
        shooter.send_input(0, 0, 0, 0).await.unwrap();
    }

    // Control: the target stops; once three snapshots agree on where it is, a shot at it.
    moves.send((0, 0)).unwrap();
    let mut still = 0;
    let mut last = Vec2::NAN;
    let mut before = None;
    for _ in 0..120 {
        let v = next_view(&mut shooter, tid, sid).await;
        if let Some(h) = before
            && v.health < h
        {
            break;
        }
        still = if v.target == last { still + 1 } else { 0 };
        last = v.target;
        if still >= 3 && before.is_none() {
            before = Some(v.health);
        }
        let buttons = if before.is_some() {
            BUTTON_SECONDARY
        } else {
            0
        };
        shooter
            .send_input_viewing(InputFrame {
                buttons,
                aim_yaw: aim(v.shooter, v.target),
                view_tick: v.tick,
                ..InputFrame::default()
            })
            .await
            .unwrap();
    }
    let after = next_view(&mut shooter, tid, sid).await.health;
    let lost_standing = before
        .expect("the target stood still")
        .saturating_sub(after);
    drop(moves);
    timeout(WAIT, target_task).await.unwrap().unwrap();
    Outcome {
        shots,
        lost_running,
        lost_standing,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compensated_beam_hits_where_the_shooter_saw_the_target() {
    let out = scenario(&[], true).await;
    let damage = ArenaRules::default().hitscan_damage;
    assert_eq!(out.lost_running, damage, "{out:?}");
    assert_eq!(out.lost_standing, damage, "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_compensation_the_same_beam_misses() {
    let out = scenario(&["--max-rewind-ms", "0"], false).await;
    assert_eq!(out.shots, MOST_SHOTS, "{out:?}");
    assert_eq!(out.lost_running, 0, "{out:?}");
    assert_eq!(
        out.lost_standing,
        ArenaRules::default().hitscan_damage,
        "the beam works, standing still: {out:?}"
    );
}
