//! Rooms in one process, through the real front door: matchmaking over HTTP (JSON), seats in
//! Hello and their close codes, rooms kept apart, the room list, locking, disposal of idle
//! rooms, and the per-kind metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;
use tickwire_shared::CloseCode;

use serde_json::{Value, json};
use support::http::{get_json, post_json, request};
use support::{TestServer, WAIT};
use tickwire_bot_client::{Client, ClientError, Event, HelloArgs};

/// Connects with a seat token; `Err` is the close code the server refused with.
async fn connect(url: &str, name: &str, seat: Option<&str>) -> Result<Client, u16> {
    match Client::connect_with(
        url,
        &HelloArgs::new(name).with_seat(seat.map(str::to_owned)),
        None,
        WAIT,
    )
    .await
    {
        Ok(c) => Ok(c),
        Err(ClientError::Closed { code, .. }) => Err(code),
        Err(e) => panic!("connect failed: {e}"),
    }
}

/// The seat answer of a matchmaking call (asserting 200).
async fn seat(s: &TestServer, path: &str, body: Value) -> Value {
    let (status, v) = post_json(s.addr, path, &body).await;
    assert_eq!(status, 200, "{path}: {v}");
    for field in ["room_id", "ws_url", "seat_token", "expires_in_s"] {
        assert!(v.get(field).is_some(), "{field} missing in {v}");
    }
    v
}

/// Reads snapshots until one verifies, and returns the entity ids it shows.
async fn view_of(c: &mut Client) -> BTreeSet<u32> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, c.next_event())
            .await
            .expect("a snapshot in time")
            .unwrap();
        if let Event::Snapshot { outcome, .. } = ev {
            outcome.expect("snapshot verifies");
            c.send_input(0, 0, 0, 0).await.unwrap();
            return c.receiver().view().iter().map(|(id, _)| id.0).collect();
        }
    }
}

#[tokio::test]
async fn matchmaking_fills_rooms_in_order_and_keeps_them_apart() {
    let s = TestServer::start(|c| {
        c.rooms.room_npcs = 0;
        c.rooms.room_size = 2;
        // Everyone in a room sees everyone in it.
        c.sim.view_radius = 100_000.0;
    })
    .await;
    let a = seat(&s, "/matchmake/join_or_create/arena", json!({})).await;
    let b = seat(&s, "/matchmake/join_or_create/arena", json!({})).await;
    let c = seat(&s, "/matchmake/join_or_create/arena", json!({})).await;
    assert_eq!(a["room_id"], b["room_id"], "the first room fills first");
    assert_ne!(a["room_id"], c["room_id"], "a full room is not chosen");
    assert_eq!(a["ws_url"], s.url.as_str());
    let ws = s.url.clone();
    let mut pa = connect(&ws, "a", a["seat_token"].as_str()).await.unwrap();
    let pb = connect(&ws, "b", b["seat_token"].as_str()).await.unwrap();
    let mut pc = connect(&ws, "c", c["seat_token"].as_str()).await.unwrap();
    let (ea, eb, ec) = (
        pa.welcome.entity_id.0,
        pb.welcome.entity_id.0,
        pc.welcome.entity_id.0,
    );
    // Room one shows its two players; room two only its own (no NPCs in either).
    let mut va = view_of(&mut pa).await;
    for _ in 0..30 {
        if va.len() == 2 {
            break;
        }
        va = view_of(&mut pa).await;
    }
    assert_eq!(va.len(), 2, "room one: {va:?}");
    assert!(va.contains(&ea));
    let _ = eb;
    let vc = view_of(&mut pc).await;
    assert_eq!(vc, BTreeSet::from([ec]), "room two sees only its player");

    // The room list, as JSON.
    let (status, rooms) = get_json(s.addr, "/rooms").await;
    assert_eq!(status, 200);
    let rooms = rooms.as_array().unwrap();
    let mine: Vec<&Value> = rooms
        .iter()
        .filter(|r| r["room_id"] == a["room_id"] || r["room_id"] == c["room_id"])
        .collect();
    assert_eq!(mine.len(), 2, "{rooms:?}");
    for r in &mine {
        assert_eq!(r["kind"], "arena");
        assert_eq!(r["max_clients"], 2);
        assert_eq!(r["locked"], false);
        assert!(r["node"].is_string());
    }
    // The default room is listed too, and a seatless Hello joins it.
    assert!(rooms.iter().any(|r| r["room_id"] == "default"), "{rooms:?}");
    let d = connect(&ws, "d", None).await.unwrap();
    assert_ne!(d.welcome.entity_id.0, u32::MAX);

    // Joining a full room by id is a 409 with a JSON error.
    let (status, v) = post_json(
        s.addr,
        &format!("/matchmake/join/{}", a["room_id"].as_str().unwrap()),
        &json!({}),
    )
    .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"], "room_full");

    // Metrics add up across rooms, by kind.
    let (_, text) = request(s.addr, hyper::Method::GET, "/metrics", b"").await;
    let text = String::from_utf8(text.to_vec()).unwrap();
    assert!(text.contains("tickwire_rooms{kind=\"arena\"} 3"), "{text}");
    assert!(text.contains("tickwire_connected_clients 4"), "{text}");
    drop((pb, d));
    s.shutdown().await;
}

#[tokio::test]
async fn bad_seats_get_their_own_close_codes() {
    let s = TestServer::start(|c| {
        c.rooms.room_npcs = 0;
        c.rooms.seat_ttl = Duration::from_millis(600);
    })
    .await;
    let ws = s.url.clone();
    // Garbage and made-up tokens.
    for bad in ["", "garbage", "xxxxxxxxxx.yyyyyyyyyyyyyyyyyyyyyyyyyy"] {
        assert_eq!(
            connect(&ws, "x", Some(bad)).await.err(),
            Some(CloseCode::SeatInvalid.code()),
            "{bad:?}"
        );
    }
    // Single use.
    let v = seat(&s, "/matchmake/create/arena", json!({"max_clients": 4})).await;
    let token = v["seat_token"].as_str().unwrap();
    let first = connect(&ws, "a", Some(token)).await.unwrap();
    assert_eq!(
        connect(&ws, "b", Some(token)).await.err(),
        Some(CloseCode::SeatInvalid.code())
    );
    // Expired.
    let v = seat(&s, "/matchmake/create/arena", json!({})).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        connect(&ws, "c", v["seat_token"].as_str()).await.err(),
        Some(CloseCode::SeatExpired.code())
    );
    drop(first);
    s.shutdown().await;

    // No default room: a seatless Hello is 4003.
    let s = TestServer::start(|c| c.rooms.default_room = false).await;
    assert_eq!(
        connect(&s.url, "d", None).await.err(),
        Some(CloseCode::SeatRequired.code())
    );
    s.shutdown().await;
}

#[tokio::test]
async fn matchmaking_refuses_bad_requests_clearly() {
    let s = TestServer::start(|_| {}).await;
    let cases: [(&str, &[u8], u16, &str); 5] = [
        ("/matchmake/join_or_create/nope", b"{}", 404, "unknown_kind"),
        (
            "/matchmake/create/arena",
            b"{\"max_clients\": 0}",
            400,
            "bad_max_clients",
        ),
        (
            "/matchmake/create/arena",
            b"{\"bogus\": 1}",
            400,
            "bad_body",
        ),
        ("/matchmake/create/arena", b"not json", 400, "bad_body"),
        ("/matchmake/join/nosuchroom", b"", 404, "no_such_room"),
    ];
    for (path, body, status, error) in cases {
        let (st, bytes) = request(s.addr, hyper::Method::POST, path, body).await;
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(st, status, "{path}: {v}");
        assert_eq!(v["error"], error, "{path}: {v}");
    }
    let (st, _) = request(s.addr, hyper::Method::GET, "/matchmake/create/arena", b"").await;
    assert_eq!(st, 405);
    let big = vec![b' '; 64 * 1024];
    let (st, _) = request(s.addr, hyper::Method::POST, "/matchmake/create/arena", &big).await;
    assert_eq!(st, 413);
    s.shutdown().await;
}

#[tokio::test]
async fn idle_rooms_are_disposed_of() {
    let s = TestServer::start(|c| {
        c.rooms.room_npcs = 0;
        c.rooms.idle = Duration::from_millis(300);
        c.rooms.lease = Duration::from_millis(600);
    })
    .await;
    let v = seat(&s, "/matchmake/create/arena", json!({})).await;
    let room = v["room_id"].clone();
    let c = connect(&s.url, "a", v["seat_token"].as_str())
        .await
        .unwrap();
    let listed = |rooms: &Value| {
        rooms
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["room_id"] == room)
    };
    assert!(listed(&get_json(s.addr, "/rooms").await.1));
    c.close().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !listed(&get_json(s.addr, "/rooms").await.1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the empty room was never disposed of"
        );
    }
    let (_, text) = request(s.addr, hyper::Method::GET, "/metrics", b"").await;
    let text = String::from_utf8(text.to_vec()).unwrap();
    assert!(
        text.contains("tickwire_rooms{kind=\"arena\"} 1"),
        "only the default room: {text}"
    );
    s.shutdown().await;
}

/// A game kind that locks its room once it has two players.
struct Duel {
    inner: tickwire_server::Arena,
    players: usize,
}

impl tickwire_server::Game for Duel {
    fn bounds(&self) -> tickwire_shared::WorldBounds {
        self.inner.bounds()
    }
    fn spawn_player(&mut self, p: tickwire_server::PlayerInfo<'_>) -> tickwire_shared::EntityId {
        self.players += 1;
        self.inner.spawn_player(p)
    }
    fn despawn_player(&mut self, e: tickwire_shared::EntityId) {
        self.inner.despawn_player(e)
    }
    fn apply_input(&mut self, e: tickwire_shared::EntityId, f: &tickwire_shared::InputFrame) {
        self.inner.apply_input(e, f)
    }
    fn step(&mut self, dt: f32) {
        self.inner.step(dt)
    }
    fn entities(&self) -> &[tickwire_server::Replicated] {
        self.inner.entities()
    }
    fn locked(&self) -> bool {
        self.players >= 2
    }
}

#[tokio::test]
async fn registered_kinds_make_rooms_that_can_lock() {
    let s = TestServer::start_custom(
        |_| {},
        |server| {
            server.register_game("duel", |spec| {
                Box::new(Duel {
                    inner: tickwire_server::Arena::new(
                        tickwire_server::world::World::arena(),
                        tickwire_server::ArenaRules::default(),
                        0,
                        spec.seed,
                    ),
                    players: 0,
                })
            });
        },
    )
    .await;
    let v = seat(&s, "/matchmake/create/duel", json!({"max_clients": 4})).await;
    let room = v["room_id"].as_str().unwrap().to_owned();
    let a = connect(&s.url, "a", v["seat_token"].as_str())
        .await
        .unwrap();
    let v = seat(&s, &format!("/matchmake/join/{room}"), json!({})).await;
    let b = connect(&s.url, "b", v["seat_token"].as_str())
        .await
        .unwrap();
    // Two players: the game locks, the next heartbeat tells the directory.
    let deadline = tokio::time::Instant::now() + WAIT;
    let r = loop {
        let (_, rooms) = get_json(s.addr, "/rooms").await;
        let r = rooms
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["room_id"] == room.as_str())
            .unwrap()
            .clone();
        if r["locked"] == true {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "never locked: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(r["kind"], "duel");
    assert_eq!(r["clients"], 2);
    let (status, v) = post_json(s.addr, &format!("/matchmake/join/{room}"), &json!({})).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"], "room_locked", "{v}");
    // join_or_create skips a locked room.
    let v = seat(&s, "/matchmake/join_or_create/duel", json!({})).await;
    assert_ne!(v["room_id"], room.as_str());
    drop((a, b));
    s.shutdown().await;
}

#[tokio::test]
async fn a_version_1_hello_gets_4001() {
    use futures_util::SinkExt;
    let s = TestServer::start(|_| {}).await;
    let mut ws = tickwire_bot_client::client::connect_raw(&s.url, None)
        .await
        .unwrap();
    // protocol 1's Hello { version 1, name "ada", resume None }: no seat field.
    ws.send(tungstenite::Message::Binary(
        vec![0, 1, 3, b'a', b'd', b'a', 0].into(),
    ))
    .await
    .unwrap();
    let end = tickwire_bot_client::client::next_message(&mut ws)
        .await
        .unwrap();
    let code = match end {
        Ok((tickwire_shared::ServerMessage::Disconnect { code, .. }, _)) => code,
        Err((code, _)) => code,
        Ok(other) => panic!("{other:?}"),
    };
    assert_eq!(code, CloseCode::BadVersion.code());
    s.shutdown().await;
}
