//! The server under Agones, against the contract fake of the SDK sidecar (built from the
//! recorded REST behaviour of the real one): Ready once listening, Health on an interval, the
//! `rooms` Counter and the `players` List kept current, and Shutdown after draining.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::agones_fake::{AgonesFake, FakeConfig};
use support::http::post_json;
use support::{TestServer, WAIT};
use tickwire_bot_client::{Client, HelloArgs};

#[tokio::test]
async fn ready_health_counter_list_and_shutdown_in_order() {
    let fake = AgonesFake::start_with(
        FakeConfig::recorded()
            .rooms_capacity(100)
            .players_capacity(64),
    )
    .await;
    let port = fake.port();
    let s = TestServer::start(|c| {
        c.rooms.agones_port = Some(port);
        c.rooms.room_npcs = 0;
        c.rooms.lease = Duration::from_millis(600);
    })
    .await;
    fake.wait_for("Ready", WAIT, |c| c.iter().any(|c| c.is("POST", "/ready")))
        .await;
    // Two matchmade rooms with a player each, plus the default room.
    let mut players = Vec::new();
    for _ in 0..2 {
        let (status, v) = post_json(s.addr, "/matchmake/create/arena", &json!({})).await;
        assert_eq!(status, 200, "{v}");
        // Clients are sent to the GameServer's address and host port (the recorded status:
        // 127.0.0.1, port "game" 7777), not to the listen address.
        assert_eq!(v["ws_url"], "ws://127.0.0.1:7777/ws", "{v}");
        let hello = HelloArgs::new("p").with_seat(v["seat_token"].as_str().map(str::to_owned));
        players.push(
            Client::connect_with(&s.url, &hello, None, WAIT)
                .await
                .unwrap(),
        );
    }
    let ids: Vec<String> = players
        .iter()
        .map(|p| p.welcome.client_id.0.to_string())
        .collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let rooms = fake.counter("rooms");
        let list = fake.list("players").map(|(_, v)| v);
        if rooms == Some((3, 100))
            && list
                .as_ref()
                .is_some_and(|l| ids.iter().all(|i| l.contains(i)))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "counter {rooms:?}, list {list:?}, want 3 rooms and players {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fake.wait_for("two Health calls", WAIT, |c| {
        c.iter().filter(|c| c.is("POST", "/health")).count() >= 2
    })
    .await;
    for p in players {
        p.close().await;
    }
    s.shutdown().await;
    let calls = fake
        .wait_for("Shutdown", WAIT, |c| {
            c.iter().any(|c| c.is("POST", "/shutdown"))
        })
        .await;
    let at = |m: &str, p: &str| calls.iter().position(|c| c.is(m, p)).unwrap();
    let ready = at("POST", "/ready");
    let first_health = at("POST", "/health");
    let first_count = calls
        .iter()
        .position(|c| c.method == "PATCH" && c.path.starts_with("/v1beta1/counters/rooms"))
        .unwrap();
    let first_add = calls
        .iter()
        .position(|c| c.path.starts_with("/v1beta1/lists/players:addValue"))
        .unwrap();
    let shutdown = at("POST", "/shutdown");
    assert!(
        ready < first_health && ready < first_count && ready < first_add,
        "Ready first"
    );
    assert_eq!(shutdown, calls.len() - 1, "Shutdown last");
    // Drained: no rooms, no players by the time of Shutdown.
    assert_eq!(fake.counter("rooms"), Some((0, 100)));
    assert_eq!(fake.list("players").map(|(_, v)| v), Some(vec![]));
    assert_eq!(fake.state(), "Shutdown");
}
