//! A fleet: three real `tickwire-server` processes sharing one real `redis-server`.
//!
//! - 300 bots come in through node A's matchmaker and their rooms spread over all three
//!   nodes; `kill -9` of one node leaves the other two's bots untouched (no disconnect, no
//!   desync), and the dead node's rooms leave `/rooms` within its lease + 1 s.
//! - Redis stopped and restarted under load: no room or bot is lost, matchmaking answers 503
//!   while it is down and recovers by itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::http::{get_json, post_json};
use support::process::ServerProcess;
use support::redis::RedisServer;
use tickwire_bot_client::{Client, Event, HelloArgs};

const LEASE_S: f64 = 2.0;

/// One server node.
struct Node {
    proc: ServerProcess,
    addr: SocketAddr,
}

impl Node {
    fn start(redis_url: &str, id: &str) -> Node {
        let lease = LEASE_S.to_string();
        let proc = ServerProcess::start(&[
            "--listen",
            "127.0.0.1:0",
            "--no-quic",
            "--no-default-room",
            "--redis",
            redis_url,
            "--node-id",
            id,
            "--lease",
            &lease,
            "--room-npcs",
            "0",
            "--room-size",
            "10",
            "--room-threads",
            "1",
        ]);
        let [addr] = proc.wait_for_fields(["addr"]);
        Node {
            addr: addr.parse().unwrap(),
            proc,
        }
    }

    fn kill9(&mut self) {
        self.proc.kill9();
    }
}

/// Counters over every bot.
#[derive(Default)]
struct Tally {
    snapshots: AtomicU64,
    desyncs: AtomicU64,
    disconnects: AtomicU64,
}

/// A bot: matchmade through `via`, then reading snapshots and acking until `stop`.
async fn bot(
    via: SocketAddr,
    i: usize,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) -> (String, String) {
    let mut answer = Value::Null;
    for attempt in 0..20 {
        let (status, v) = post_json(via, "/matchmake/join_or_create/arena", &json!({})).await;
        if status == 200 {
            answer = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
    }
    let url = answer["ws_url"].as_str().expect("a seat").to_owned();
    let room = answer["room_id"].as_str().unwrap().to_owned();
    let seat = answer["seat_token"].as_str().map(str::to_owned);
    let mut c = Client::connect_with(
        &url,
        &HelloArgs::new(&format!("b{i}")).with_seat(seat),
        None,
        support::WAIT,
    )
    .await
    .unwrap();
    tokio::spawn(async move {
        while !stop.load(Relaxed) {
            match tokio::time::timeout(Duration::from_secs(2), c.next_event()).await {
                Ok(Ok(Event::Snapshot { outcome, .. })) => {
                    if outcome.is_err() {
                        tally.desyncs.fetch_add(1, Relaxed);
                    }
                    tally.snapshots.fetch_add(1, Relaxed);
                    if c.send_input(0, 0, 0, 0).await.is_err() {
                        tally.disconnects.fetch_add(1, Relaxed);
                        return;
                    }
                }
                Ok(Ok(Event::Closed { .. })) | Ok(Err(_)) | Err(_) => {
                    tally.disconnects.fetch_add(1, Relaxed);
                    return;
                }
                Ok(Ok(_)) => {}
            }
        }
        c.close().await;
    });
    (url, room)
}

/// Rooms by node, from `GET /rooms` on `via`.
async fn rooms_by_node(via: SocketAddr) -> BTreeMap<String, BTreeSet<String>> {
    let (status, v) = get_json(via, "/rooms").await;
    assert_eq!(status, 200, "{v}");
    let mut by: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in v.as_array().unwrap() {
        by.entry(r["node"].as_str().unwrap().to_owned())
            .or_default()
            .insert(r["room_id"].as_str().unwrap().to_owned());
    }
    by
}

/// Waits until every node has heartbeated once (all three listed as live).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_rooms_and_survive_a_kill_9() {
    let Some(redis) = RedisServer::start(module_path!()) else {
        return;
    };
    let url = redis.url();
    let a = Node::start(&url, "node-a");
    let b = Node::start(&url, "node-b");
    let mut c = Node::start(&url, "node-c");
    settle().await;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut placed: Vec<(String, String)> = Vec::new();
    for i in 0..300 {
        placed.push(bot(a.addr, i, tally.clone(), stop.clone()).await);
    }
    let by_node = rooms_by_node(a.addr).await;
    assert_eq!(
        by_node.keys().cloned().collect::<Vec<_>>(),
        ["node-a", "node-b", "node-c"],
        "rooms spread over all three nodes: {by_node:?}"
    );
    // Rooms of 10 fill in order, exactly.
    let mut per_room: BTreeMap<&String, usize> = BTreeMap::new();
    for (_, r) in &placed {
        *per_room.entry(r).or_default() += 1;
    }
    assert_eq!(per_room.len(), 30, "300 bots in rooms of 10: {per_room:?}");
    assert!(per_room.values().all(|&n| n == 10), "{per_room:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(tally.disconnects.load(Relaxed), 0);
    assert_eq!(tally.desyncs.load(Relaxed), 0);

    // kill -9 node C: its bots drop; everyone else is untouched.
    let c_url = format!("ws://{}/ws", c.addr);
    let on_c = placed.iter().filter(|(u, _)| *u == c_url).count() as u64;
    assert!(on_c > 0);
    let c_rooms = by_node["node-c"].clone();
    let killed = Instant::now();
    c.kill9();
    let gone = loop {
        let by = rooms_by_node(a.addr).await;
        if !by.contains_key("node-c") && by.values().all(|r| r.is_disjoint(&c_rooms)) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs_f64(LEASE_S + 1.0),
            "node C's rooms still listed after the lease + 1 s: {by:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("node C left /rooms {} ms after kill -9", gone.as_millis());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = tally.snapshots.load(Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        tally.snapshots.load(Relaxed) > before,
        "A and B keep sending"
    );
    assert_eq!(
        tally.disconnects.load(Relaxed),
        on_c,
        "only node C's bots were disconnected"
    );
    assert_eq!(tally.desyncs.load(Relaxed), 0);
    // Matchmaking never sends anyone to the dead node.
    for _ in 0..20 {
        let (status, v) = post_json(b.addr, "/matchmake/create/arena", &json!({})).await;
        assert_eq!(status, 200, "{v}");
        assert_ne!(v["ws_url"], c_url.as_str());
    }
    stop.store(true, Relaxed);
    drop((a, b, redis));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_under_load_loses_no_room_or_bot() {
    let Some(mut redis) = RedisServer::start(module_path!()) else {
        return;
    };
    let url = redis.url();
    let a = Node::start(&url, "node-a");
    let b = Node::start(&url, "node-b");
    settle().await;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    for i in 0..60 {
        bot(a.addr, i, tally.clone(), stop.clone()).await;
    }
    let rooms_before = rooms_by_node(a.addr).await;
    let count =
        |m: &BTreeMap<String, BTreeSet<String>>| m.values().map(BTreeSet::len).sum::<usize>();
    assert_eq!(count(&rooms_before), 6, "{rooms_before:?}");

    redis.stop();
    let (status, v) = post_json(a.addr, "/matchmake/join_or_create/arena", &json!({})).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"], "directory_unavailable");
    let before = tally.snapshots.load(Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        tally.snapshots.load(Relaxed) > before + 60,
        "rooms keep running without Redis"
    );

    redis.restart();
    let back = Instant::now();
    loop {
        let (status, _) = get_json(a.addr, "/rooms").await;
        if status == 200 && rooms_by_node(a.addr).await == rooms_before {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "the nodes never re-registered their rooms"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "rooms re-registered {} ms after Redis came back",
        back.elapsed().as_millis()
    );
    let (status, v) = post_json(b.addr, "/matchmake/join_or_create/arena", &json!({})).await;
    assert_eq!(status, 200, "matchmaking recovers: {v}");
    assert_eq!(tally.disconnects.load(Relaxed), 0, "no bot lost");
    assert_eq!(tally.desyncs.load(Relaxed), 0);
    stop.store(true, Relaxed);
    drop((a, b, redis));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_reservations_through_two_nodes_never_overfill_a_room() {
    let Some(redis) = RedisServer::start(module_path!()) else {
        return;
    };
    let url = redis.url();
    let a = Node::start(&url, "node-a");
    let b = Node::start(&url, "node-b");
    settle().await;
    for round in 0..3 {
        let (status, first) = post_json(
            a.addr,
            "/matchmake/create/arena",
            &json!({"max_clients": 8}),
        )
        .await;
        assert_eq!(status, 200, "{first}");
        let room = first["room_id"].as_str().unwrap().to_owned();
        // 40 racers for the 7 seats left, half through each node.
        let racers: Vec<_> = (0..40)
            .map(|i| {
                let via = if i % 2 == 0 { a.addr } else { b.addr };
                let path = format!("/matchmake/join/{room}");
                tokio::spawn(async move { post_json(via, &path, &json!({})).await })
            })
            .collect();
        let mut won = 0;
        for r in racers {
            let (status, v) = r.await.unwrap();
            match status.as_u16() {
                200 => won += 1,
                409 => assert_eq!(v["error"], "room_full", "{v}"),
                other => panic!("round {round}: unexpected {other}: {v}"),
            }
        }
        assert_eq!(won, 7, "round {round}: exactly max_clients seats in all");
    }
    drop((a, b, redis));
}
