//! The room directory on a real redis-server (started and killed by each test on a free
//! 127.0.0.1 port): several nodes sharing one Redis, reservations and claims, the race for
//! the last seats, node leases, least-loaded placement, a Redis outage and recovery.
//!
//! Skipped (with a message) where no redis-server is installed, unless
//! `TICKWIRE_REQUIRE_REDIS=1`. The throughput measurement is `#[ignore]`d: run it with
//! `cargo test --release -p tickwire-server --test directory -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tickwire_server::directory::{
    ClaimError, Directory, LocalRoom, MatchError, NodeInfo, redis::TIMEOUT,
};
use tokio::task::JoinHandle;

mod support;
use support::redis::RedisServer;

/// Every test finishes within this or fails.
const LIMIT: Duration = Duration::from_secs(40);
const SEAT_TTL: Duration = Duration::from_secs(15);
const LEASE: Duration = Duration::from_secs(3);

/// Claim numbers for the tests' claims (one counter for every directory here: numbers only
/// need to grow).
static CLAIMS: AtomicU64 = AtomicU64::new(100);

fn next_claim() -> u64 {
    CLAIMS.fetch_add(1, Relaxed) + 1
}

/// A report that includes every claim made so far.
fn claims_so_far() -> u64 {
    CLAIMS.load(Relaxed)
}

fn node(id: &str) -> NodeInfo {
    NodeInfo {
        node_id: id.to_owned(),
        ws_url: format!("ws://127.0.0.1:1/{id}/ws"),
        quic_url: Some(format!("quic://127.0.0.1:1/{id}")),
    }
}

fn room(id: &str, clients: u32, max: u32) -> LocalRoom {
    LocalRoom {
        room_id: id.to_owned(),
        kind: "arena".to_owned(),
        max_clients: max,
        clients,
        locked: false,
        matchmaking: true,
    }
}

async fn dir(redis: &RedisServer, id: &str, lease: Duration, seat_ttl: Duration) -> Arc<Directory> {
    Arc::new(
        Directory::redis(&redis.url(), node(id), lease, seat_ttl)
            .await
            .unwrap(),
    )
}

async fn bounded(f: impl Future<Output = ()>) {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test finished in time");
}

/// A node's heartbeat loop (every 200 ms) over a fixed list of its rooms; stops on drop.
struct Beater {
    task: JoinHandle<()>,
}

impl Beater {
    async fn start(d: &Arc<Directory>, rooms: Vec<LocalRoom>) -> Beater {
        d.heartbeat(&rooms, claims_so_far()).await.unwrap();
        let d = d.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = d.heartbeat(&rooms, claims_so_far()).await;
            }
        });
        Beater { task }
    }
}

impl Drop for Beater {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_two_nodes_reserve_claim_foreign_invalid() {
    let Some(redis) = RedisServer::start("directory_two_nodes_reserve_claim_foreign_invalid")
    else {
        return;
    };
    bounded(async {
        let a = dir(&redis, "a", LEASE, SEAT_TTL).await;
        let b = dir(&redis, "b", LEASE, SEAT_TTL).await;
        a.heartbeat(&[], claims_so_far()).await.unwrap();
        b.heartbeat(&[], claims_so_far()).await.unwrap();
        let by_id: HashMap<&str, &Arc<Directory>> = [("a", &a), ("b", &b)].into();

        let r = a.create("arena", 4).await.unwrap();
        assert!(r.seat_token.len() <= 128 && r.seat_token.is_ascii());
        assert_eq!(r.room_id.len(), 10);
        assert!((r.expires_in_s - 15.0).abs() < 1e-9);
        let owner = by_id[r.node.node_id.as_str()];
        assert_eq!(r.node, node(&r.node.node_id), "the owner's NodeInfo");
        let other = if r.node.node_id == "a" { &b } else { &a };

        // Listed with its owner before anyone instantiated it.
        let listed = a.rooms().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].room_id, r.room_id);
        assert_eq!(listed[0].node, r.node.node_id);
        assert_eq!((listed[0].clients, listed[0].max_clients), (1, 4));

        assert_eq!(
            other.claim(&r.seat_token, next_claim()).await,
            Err(ClaimError::Foreign)
        );
        let c = owner.claim(&r.seat_token, next_claim()).await.unwrap();
        assert_eq!(
            (c.room_id.as_str(), c.kind.as_str(), c.max_clients),
            (r.room_id.as_str(), "arena", 4)
        );
        assert_eq!(
            owner.claim(&r.seat_token, next_claim()).await,
            Err(ClaimError::Invalid)
        );
        assert_eq!(
            owner.claim("junk", next_claim()).await,
            Err(ClaimError::Invalid)
        );
        let mut forged = r.seat_token.clone();
        forged.replace_range(forged.len() - 4.., "aaaa");
        assert_eq!(
            owner.claim(&forged, next_claim()).await,
            Err(ClaimError::Invalid)
        );

        // The owner instantiates it and reports it; join_or_create through the other node
        // fills it, then join by id, then it is full.
        // (Two heartbeats: the first may predate the claim, so the claim guard keeps the
        // claimed seat counted until the second.)
        for _ in 0..2 {
            owner
                .heartbeat(&[room(&r.room_id, 1, 4)], claims_so_far())
                .await
                .unwrap();
        }
        let j = other.join_or_create("arena", 4).await.unwrap();
        assert_eq!(j.room_id, r.room_id);
        assert_eq!(j.node, r.node);
        a.join(&r.room_id).await.unwrap();
        b.join(&r.room_id).await.unwrap();
        assert_eq!(a.join(&r.room_id).await.unwrap_err(), MatchError::RoomFull);
        let fresh = b.join_or_create("arena", 4).await.unwrap();
        assert_ne!(fresh.room_id, r.room_id);
        assert_eq!(
            a.join("nosuchroom").await.unwrap_err(),
            MatchError::NoSuchRoom
        );
        assert_eq!(a.join("bad/id").await.unwrap_err(), MatchError::NoSuchRoom);

        // Locked and non-matchmaking rooms.
        let mut locked = room("locked", 0, 4);
        locked.locked = true;
        let mut lobby = room("lobby", 0, 100);
        lobby.matchmaking = false;
        a.heartbeat(&[locked, lobby], claims_so_far())
            .await
            .unwrap();
        assert_eq!(b.join("locked").await.unwrap_err(), MatchError::RoomLocked);
        assert_eq!(b.join("lobby").await.unwrap().node.node_id, "a");
        for _ in 0..5 {
            let j = b.join_or_create("arena", 4).await.unwrap();
            assert!(j.room_id != "lobby" && j.room_id != "locked");
        }
        let rooms = b.rooms().await.unwrap();
        assert!(rooms.iter().any(|r| r.room_id == "lobby" && r.node == "a"));
        assert!(rooms.iter().any(|r| r.room_id == "locked" && r.locked));
        assert_eq!(
            serde_json::to_value(&rooms[0])
                .unwrap()
                .as_object()
                .unwrap()
                .len(),
            6
        );
        a.deregister().await;
        b.deregister().await;
        assert!(a.rooms().await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_seat_expiry_and_remove() {
    let Some(redis) = RedisServer::start("directory_seat_expiry_and_remove") else {
        return;
    };
    bounded(async {
        let a = dir(&redis, "a", LEASE, Duration::from_millis(300)).await;
        a.heartbeat(&[room("r1", 0, 4)], claims_so_far())
            .await
            .unwrap();
        let seat = a.join("r1").await.unwrap();
        assert!(!a.try_remove_room("r1").await.unwrap(), "a seat is pending");
        assert_eq!(a.rooms().await.unwrap()[0].clients, 1);
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(
            a.claim(&seat.seat_token, next_claim()).await,
            Err(ClaimError::Expired)
        );
        assert_eq!(
            a.rooms().await.unwrap()[0].clients,
            0,
            "the seat is free again"
        );
        assert!(a.try_remove_room("r1").await.unwrap());
        assert!(a.rooms().await.unwrap().is_empty());
        assert_eq!(a.join("r1").await.unwrap_err(), MatchError::NoSuchRoom);

        // A claimed seat is no longer pending.
        a.heartbeat(&[room("r2", 0, 4)], claims_so_far())
            .await
            .unwrap();
        let seat = a.join("r2").await.unwrap();
        assert!(!a.try_remove_room("r2").await.unwrap());
        a.claim(&seat.seat_token, next_claim()).await.unwrap();
        assert!(a.try_remove_room("r2").await.unwrap());

        // A pending room nobody claims disappears with its seat (plus slack).
        let seat = a.create("arena", 4).await.unwrap();
        assert_eq!(a.rooms().await.unwrap().len(), 1);
        let deadline = Instant::now() + Duration::from_secs(8);
        while !a.rooms().await.unwrap().is_empty() {
            assert!(
                Instant::now() < deadline,
                "the pending room outlived its seat"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            a.claim(&seat.seat_token, next_claim()).await,
            Err(ClaimError::Expired)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_counts_each_claim_once_even_with_a_late_heartbeat() {
    let Some(redis) =
        RedisServer::start("directory_counts_each_claim_once_even_with_a_late_heartbeat")
    else {
        return;
    };
    bounded(async {
        let a = dir(&redis, "a", LEASE, SEAT_TTL).await;
        let b = dir(&redis, "b", LEASE, SEAT_TTL).await;
        a.heartbeat(&[room("g", 1, 3)], 5).await.unwrap();
        let seat = b.join("g").await.unwrap();
        a.claim(&seat.seat_token, 6).await.unwrap();
        // A report read before claim 6, applied late: the claim still counts.
        a.heartbeat(&[room("g", 1, 3)], 5).await.unwrap();
        let extra = b.join("g").await.unwrap(); // 1 + claim + this seat = 3
        assert_eq!(b.join("g").await.unwrap_err(), MatchError::RoomFull);
        a.claim(&extra.seat_token, 7).await.unwrap();
        // A report that includes both claims counts each once: exactly full.
        a.heartbeat(&[room("g", 3, 3)], 7).await.unwrap();
        assert_eq!(b.join("g").await.unwrap_err(), MatchError::RoomFull);
        // A player left: the next report frees exactly one seat.
        a.heartbeat(&[room("g", 2, 3)], 7).await.unwrap();
        b.join("g").await.unwrap();
        assert_eq!(b.join("g").await.unwrap_err(), MatchError::RoomFull);
        // A new process with the same node id numbers its claims from 1 again: its reports
        // are not mistaken for late ones.
        let a2 = dir(&redis, "a", LEASE, SEAT_TTL).await;
        a2.heartbeat(&[room("g", 0, 3)], 0).await.unwrap();
        // 0 players and the one seat still reserved: two more seats, then full.
        b.join("g").await.unwrap();
        b.join("g").await.unwrap();
        assert_eq!(b.join("g").await.unwrap_err(), MatchError::RoomFull);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_race_for_the_last_seats_never_overfills() {
    let Some(redis) = RedisServer::start("directory_race_for_the_last_seats_never_overfills")
    else {
        return;
    };
    bounded(async {
        let a = dir(&redis, "a", LEASE, SEAT_TTL).await;
        let b = dir(&redis, "b", LEASE, SEAT_TTL).await;
        a.heartbeat(&[room("race", 0, 8)], claims_so_far())
            .await
            .unwrap();
        b.heartbeat(&[], claims_so_far()).await.unwrap();
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let d = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move { d.join("race").await })
            })
            .collect();
        let (mut ok, mut full) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(r) => {
                    assert_eq!(r.node.node_id, "a");
                    ok += 1;
                }
                Err(MatchError::RoomFull) => full += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!((ok, full), (8, 32));

        // The same race through join_or_create: rooms of 8 are never overfilled.
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let d = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move { d.join_or_create("duel", 8).await.unwrap() })
            })
            .collect();
        let mut per_room: HashMap<String, u32> = HashMap::new();
        for t in tasks {
            *per_room.entry(t.await.unwrap().room_id).or_default() += 1;
        }
        assert_eq!(per_room.len(), 5, "{per_room:?}");
        assert!(per_room.values().all(|&n| n == 8), "{per_room:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_dead_node_vanishes_within_its_lease() {
    let Some(redis) = RedisServer::start("directory_dead_node_vanishes_within_its_lease") else {
        return;
    };
    bounded(async {
        let lease = Duration::from_secs(1);
        let a = dir(&redis, "a", lease, SEAT_TTL).await;
        let b = dir(&redis, "b", lease, SEAT_TTL).await;
        let c = dir(&redis, "c", lease, SEAT_TTL).await;
        let _ba = Beater::start(&a, vec![room("ra", 1, 8)]).await;
        let _bb = Beater::start(&b, vec![room("rb", 1, 8)]).await;
        // c heartbeats once and then "is killed".
        c.heartbeat(&[room("rc", 0, 8)], claims_so_far())
            .await
            .unwrap();
        let stopped = Instant::now();
        let nodes = |rooms: &[tickwire_server::directory::RoomInfo]| {
            let mut n: Vec<String> = rooms.iter().map(|r| r.node.clone()).collect();
            n.sort();
            n
        };
        assert_eq!(nodes(&a.rooms().await.unwrap()), ["a", "b", "c"]);
        loop {
            if !nodes(&a.rooms().await.unwrap()).contains(&"c".to_owned()) {
                break;
            }
            assert!(
                stopped.elapsed() < lease + Duration::from_secs(1),
                "c still listed after {:?}",
                stopped.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(a.join("rc").await.unwrap_err(), MatchError::NoSuchRoom);
        for _ in 0..12 {
            let r = a.create("arena", 8).await.unwrap();
            assert_ne!(r.node.node_id, "c");
            let r = b.join_or_create("arena", 8).await.unwrap();
            assert_ne!(r.node.node_id, "c");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_creates_spread_over_the_least_loaded_nodes() {
    let Some(redis) = RedisServer::start("directory_creates_spread_over_the_least_loaded_nodes")
    else {
        return;
    };
    bounded(async {
        let a = dir(&redis, "a", LEASE, SEAT_TTL).await;
        let b = dir(&redis, "b", LEASE, SEAT_TTL).await;
        let c = dir(&redis, "c", LEASE, SEAT_TTL).await;
        let _beaters = [
            Beater::start(&a, vec![]).await,
            Beater::start(&b, vec![]).await,
            Beater::start(&c, vec![]).await,
        ];
        let tasks: Vec<_> = (0..30)
            .map(|_| {
                let a = a.clone();
                tokio::spawn(async move { a.create("arena", 8).await.unwrap() })
            })
            .collect();
        let mut per_node: HashMap<String, u32> = HashMap::new();
        for t in tasks {
            *per_node.entry(t.await.unwrap().node.node_id).or_default() += 1;
        }
        assert_eq!(per_node.len(), 3, "{per_node:?}");
        assert!(per_node.values().all(|&n| n == 10), "{per_node:?}");
        assert_eq!(b.rooms().await.unwrap().len(), 30);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_redis_outage_and_recovery() {
    let Some(mut redis) = RedisServer::start("directory_redis_outage_and_recovery") else {
        return;
    };
    bounded(async {
        let a = dir(&redis, "a", LEASE, SEAT_TTL).await;
        let b = dir(&redis, "b", LEASE, SEAT_TTL).await;
        let a_rooms = [room("ra", 2, 8)];
        a.heartbeat(&a_rooms, claims_so_far()).await.unwrap();
        b.heartbeat(&[room("rb", 0, 8)], claims_so_far())
            .await
            .unwrap();
        assert_eq!(a.rooms().await.unwrap().len(), 2);

        redis.stop();
        let bound = TIMEOUT + Duration::from_millis(300);
        for _ in 0..3 {
            let t = Instant::now();
            assert!(matches!(
                a.join_or_create("arena", 8).await,
                Err(MatchError::Unavailable(_))
            ));
            assert!(t.elapsed() < bound, "join_or_create took {:?}", t.elapsed());
            let t = Instant::now();
            assert!(matches!(
                a.heartbeat(&a_rooms, claims_so_far()).await,
                Err(MatchError::Unavailable(_))
            ));
            assert!(matches!(a.rooms().await, Err(MatchError::Unavailable(_))));
            assert!(matches!(
                b.claim(&format!("ra.1.{}", "a".repeat(26)), next_claim())
                    .await,
                Err(ClaimError::Unavailable(_))
            ));
            assert!(t.elapsed() < bound * 3, "took {:?}", t.elapsed());
        }
        // A directory created while Redis is down still comes up.
        let late = dir(&redis, "late", LEASE, SEAT_TTL).await;
        assert!(matches!(
            late.rooms().await,
            Err(MatchError::Unavailable(_))
        ));

        redis.restart(); // empty
        let deadline = Instant::now() + Duration::from_secs(10);
        for (d, rooms) in [(&a, &a_rooms[..]), (&b, &[room("rb", 0, 8)][..])] {
            while d.heartbeat(rooms, claims_so_far()).await.is_err() {
                assert!(Instant::now() < deadline, "no recovery after the restart");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let rooms = late.rooms().await.unwrap();
        let ids: Vec<(&str, &str, u32)> = rooms
            .iter()
            .map(|r| (r.room_id.as_str(), r.node.as_str(), r.clients))
            .collect();
        assert_eq!(ids, [("ra", "a", 2), ("rb", "b", 0)]);
        let seat = late.join_or_create("arena", 8).await.unwrap();
        assert_eq!(seat.room_id, "ra", "oldest open room first");
        a.claim(&seat.seat_token, next_claim()).await.unwrap();
    })
    .await;
}

/// Reservations per second for concurrent join_or_create calls through one node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand with --ignored --nocapture"]
async fn directory_throughput() {
    let Some(redis) = RedisServer::start("directory_throughput") else {
        return;
    };
    bounded(async {
        let a = dir(&redis, "a", LEASE, SEAT_TTL).await;
        let _beat = Beater::start(&a, vec![]).await;
        for concurrency in [1usize, 16, 64] {
            let window = Duration::from_secs(3);
            let start = Instant::now();
            let tasks: Vec<_> = (0..concurrency)
                .map(|_| {
                    let a = a.clone();
                    tokio::spawn(async move {
                        let mut n = 0u64;
                        while start.elapsed() < window {
                            a.join_or_create("bench", 8).await.unwrap();
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            let rate = total as f64 / start.elapsed().as_secs_f64();
            let rooms = a.rooms().await.unwrap().len();
            println!(
                "concurrency {concurrency:>3}: {total} reservations, {rate:.0}/s ({rooms} rooms listed)"
            );
        }
    })
    .await;
}
