//! Integration tests: a real server on 127.0.0.1:0, real WebSocket clients built on the
//! protocol crate (the bot client's `Client`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tickwire_bot_client::client::{connect_raw, next_message};
use tickwire_bot_client::{Client, Event};
use tickwire_server::metrics::DisconnectReason;
use tickwire_shared::codec::encode_client;
use tickwire_shared::{ClientMessage, InputSeq, Received};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use tungstenite::Message;

mod support;
use support::{TestServer, WAIT};

/// Reads events until a verified snapshot arrives; panics on any snapshot error.
async fn next_snapshot(c: &mut Client) -> InputSeq {
    loop {
        match timeout(WAIT, c.next_event())
            .await
            .expect("snapshot in time")
            .unwrap()
        {
            Event::Snapshot {
                outcome, message, ..
            } => {
                let got = outcome.expect("every snapshot decodes and verifies");
                assert!(matches!(got, Received::Current { .. }), "{got:?}");
                return message.last_input;
            }
            Event::Pong { .. } | Event::Welcome(_) => {}
            Event::Closed { code, reason } => panic!("closed: {code} {reason}"),
        }
    }
}

/// Reads until the connection closes; returns the close code.
async fn closed_with(c: &mut Client) -> u16 {
    loop {
        match timeout(WAIT, c.next_event()).await.expect("close in time") {
            Ok(Event::Closed { code, .. }) => return code,
            Ok(_) => {}
            Err(e) => panic!("error instead of close: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_moves_own_entity_and_every_snapshot_verifies() {
    moves_own_entity(true).await;
}

/// The same with `--no-direct-reads`: the connection task reads every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_moves_own_entity_with_the_tasks_reading_everything() {
    moves_own_entity(false).await;
}

/// Inputs move the player's entity, pings are answered in between, and every snapshot
/// verifies; with `direct`, the room reads the inputs from the socket itself.
async fn moves_own_entity(direct: bool) {
    let srv = TestServer::start(|c| c.direct_reads = direct).await;
    let mut c = srv.ws_client("mover").await;
    assert_eq!(c.welcome.tick_rate, 30);
    let me = c.welcome.entity_id;
    next_snapshot(&mut c).await;
    let q = *c.receiver().quantizer();
    let start = q.dequantize_pos(c.receiver().entity(me).expect("own entity in view").pos);

    // Hold "right" for 30 inputs at the tick rate, reading snapshots in between.
    let mut last = InputSeq(0);
    for _ in 0..30 {
        last = c.send_input(127, 0, 0, 0).await.unwrap();
        next_snapshot(&mut c).await;
    }
    // Then stop, and wait until the server has processed the last input.
    let stop = c.send_input(0, 0, 0, 0).await.unwrap();
    assert!(stop > last);
    let deadline = Instant::now() + WAIT;
    while next_snapshot(&mut c).await < stop {
        assert!(
            Instant::now() < deadline,
            "server never processed the last input"
        );
    }
    let end = q.dequantize_pos(c.receiver().entity(me).unwrap().pos);
    let moved = end - start;
    // 8 units/s for ~30 ticks at 30 Hz = ~8 units (an obstacle could cut it short);
    // never faster than the speed limit allows, never sideways.
    assert!(moved.x > 2.0, "moved {moved}");
    assert!(moved.y.abs() < 0.1, "moved {moved}");
    assert!(
        moved.x <= 8.0 * 32.0 / 30.0 + 0.1,
        "faster than the limit: {moved}"
    );
    // A Ping among the inputs gets its Pong (from the connection task, either way).
    c.ping().await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        c.send_input(0, 0, 0, 0).await.unwrap();
        match timeout(WAIT, c.next_event())
            .await
            .expect("an event")
            .unwrap()
        {
            Event::Pong { .. } => break,
            Event::Closed { code, reason } => panic!("closed: {code} {reason}"),
            _ => assert!(Instant::now() < deadline, "no Pong"),
        }
    }
    let read_directly = srv
        .metrics
        .inbound_direct
        .load(std::sync::atomic::Ordering::Relaxed);
    if direct {
        assert!(
            read_directly >= 30,
            "{read_directly} inputs read by the room"
        );
    } else {
        assert_eq!(read_directly, 0);
    }
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_client_sees_first_and_leave_removes_it() {
    // A view radius larger than the world so the two always see each other.
    let srv = TestServer::start(|c| c.sim.view_radius = 5000.0).await;
    let mut a = srv.ws_client("a").await;
    let mut b = srv.ws_client("b").await;
    let a_entity = a.welcome.entity_id;
    let deadline = Instant::now() + WAIT;
    loop {
        next_snapshot(&mut b).await;
        if b.receiver().entity(a_entity).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "b never saw a");
    }
    a.leave().await.unwrap();
    assert_eq!(closed_with(&mut a).await, 1000);
    let deadline = Instant::now() + WAIT;
    loop {
        next_snapshot(&mut b).await;
        if b.receiver().entity(a_entity).is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "a's entity was never removed");
    }
    srv.shutdown().await;
}

async fn raw_close_code(url: &str, frames: Vec<Message>) -> u16 {
    let mut ws = connect_raw(url, None).await.unwrap();
    for f in frames {
        // The server may close before the last frame is written; that is fine.
        if ws.send(f).await.is_err() {
            break;
        }
    }
    close_code(&mut ws).await
}

/// Reads until the server closes; returns the close code.
async fn close_code(ws: &mut tickwire_bot_client::client::Ws) -> u16 {
    loop {
        match timeout(WAIT, next_message(ws))
            .await
            .expect("close in time")
        {
            Ok(Ok(_)) => {}
            Ok(Err((code, _))) => return code,
            Err(e) => panic!("{e}"),
        }
    }
}

fn hello_frame() -> Message {
    let mut b = Vec::new();
    encode_client(
        &ClientMessage::Hello {
            protocol_version: tickwire_shared::PROTOCOL_VERSION,
            name: "x".into(),
            resume_token: None,
            seat: None,
            auth: None,
        },
        &mut b,
    )
    .unwrap();
    Message::Binary(b.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_documented_close_codes_and_others_keep_playing() {
    let srv = TestServer::start(|_| {}).await;
    let mut bystander = srv.ws_client("bystander").await;
    next_snapshot(&mut bystander).await;

    assert_eq!(
        raw_close_code(&srv.url, vec![Message::Text("hi".into())]).await,
        1003
    );
    assert_eq!(
        raw_close_code(
            &srv.url,
            vec![Message::Binary(vec![0xde, 0xad, 0xbe, 0xef].into())]
        )
        .await,
        1002
    );
    assert_eq!(
        raw_close_code(
            &srv.url,
            vec![hello_frame(), Message::Binary(vec![9; 40].into())]
        )
        .await,
        1002
    );
    assert_eq!(
        raw_close_code(&srv.url, vec![Message::Binary(vec![0u8; 64 * 1024].into())]).await,
        1009
    );
    // Input before Hello, and a second Hello.
    let mut input = Vec::new();
    encode_client(
        &ClientMessage::Input {
            ack_tick: Default::default(),
            frames: vec![],
        },
        &mut input,
    )
    .unwrap();
    assert_eq!(
        raw_close_code(&srv.url, vec![Message::Binary(input.into())]).await,
        1002
    );
    assert_eq!(
        raw_close_code(&srv.url, vec![hello_frame(), hello_frame()]).await,
        1002
    );
    // Wrong protocol version.
    let mut old = Vec::new();
    encode_client(
        &ClientMessage::Hello {
            protocol_version: 99,
            name: "old".into(),
            resume_token: None,
            seat: None,
            auth: None,
        },
        &mut old,
    )
    .unwrap();
    assert_eq!(
        raw_close_code(&srv.url, vec![Message::Binary(old.into())]).await,
        4001
    );

    // The bystander never noticed.
    for _ in 0..10 {
        next_snapshot(&mut bystander).await;
    }
    assert_eq!(srv.metrics.disconnects(DisconnectReason::TooBig), 1);
    assert_eq!(srv.metrics.disconnects(DisconnectReason::TextFrame), 1);
    srv.shutdown().await;
}

/// Joins over a raw WebSocket, waits for a snapshot (so the room reads the socket itself),
/// sends a few inputs, then `bad` (whole messages) or `raw` (bytes straight to the socket);
/// returns the close code.
async fn close_code_after_joining(url: &str, bad: Vec<Message>, raw: &[u8]) -> u16 {
    let mut ws = connect_raw(url, None).await.unwrap();
    ws.send(hello_frame()).await.unwrap();
    loop {
        let (msg, _) = timeout(WAIT, next_message(&mut ws))
            .await
            .expect("a snapshot in time")
            .unwrap()
            .expect("not closed before the snapshot");
        if matches!(msg, tickwire_shared::ServerMessage::Snapshot(_)) {
            break;
        }
    }
    let mut input = Vec::new();
    let msg = ClientMessage::Input {
        ack_tick: Default::default(),
        frames: vec![],
    };
    encode_client(&msg, &mut input).unwrap();
    for _ in 0..3 {
        ws.send(Message::Binary(input.clone().into()))
            .await
            .unwrap();
    }
    // A tick or two, so those are read directly.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for m in bad {
        if ws.send(m).await.is_err() {
            break;
        }
    }
    if !raw.is_empty() {
        let _ = ws.get_mut().write_all(raw).await;
    }
    close_code(&mut ws).await
}

/// Once the room reads a client's socket itself, bad input still gets its documented close
/// code from the session, and `Leave` still leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_after_joining_gets_its_close_code_on_the_direct_path() {
    let srv = TestServer::start(|_| {}).await;
    let url = &srv.url;
    let text = vec![Message::Text("hi".into())];
    assert_eq!(close_code_after_joining(url, text, &[]).await, 1003);
    let garbage = vec![Message::Binary(vec![0xde, 0xad, 0xbe, 0xef].into())];
    assert_eq!(close_code_after_joining(url, garbage, &[]).await, 1002);
    let big = vec![Message::Binary(vec![0u8; 64 * 1024].into())];
    assert_eq!(close_code_after_joining(url, big, &[]).await, 1009);
    // An unmasked client frame, and one with a reserved bit set.
    assert_eq!(
        close_code_after_joining(url, vec![], &[0x82, 0x02, 1, 2]).await,
        1002
    );
    assert_eq!(
        close_code_after_joining(url, vec![], &[0xc2, 0x82, 0, 0, 0, 0, 1, 2]).await,
        1002
    );
    // A data frame inside a fragmented message.
    let fragment = Message::Frame(tungstenite::protocol::frame::Frame::message(
        b"he".to_vec(),
        tungstenite::protocol::frame::coding::OpCode::Data(
            tungstenite::protocol::frame::coding::Data::Text,
        ),
        false,
    ));
    let mut input = Vec::new();
    let msg = ClientMessage::Input {
        ack_tick: Default::default(),
        frames: vec![],
    };
    encode_client(&msg, &mut input).unwrap();
    let input = Message::Binary(input.into());
    assert_eq!(
        close_code_after_joining(url, vec![fragment, input], &[]).await,
        1002
    );
    let mut leave = Vec::new();
    encode_client(&ClientMessage::Leave, &mut leave).unwrap();
    let leave = vec![Message::Binary(leave.into())];
    assert_eq!(close_code_after_joining(url, leave, &[]).await, 1000);
    let direct = srv
        .metrics
        .inbound_direct
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(direct >= 7 * 3, "{direct} inputs read directly");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_everyone_with_1001_quickly() {
    let srv = TestServer::start(|_| {}).await;
    let mut clients = Vec::new();
    for i in 0..5 {
        let mut c = srv.ws_client(&format!("c{i}")).await;
        next_snapshot(&mut c).await;
        clients.push(c);
    }
    let started = Instant::now();
    let stop = tokio::spawn(srv.shutdown());
    for c in &mut clients {
        assert_eq!(closed_with(c).await, 1001);
    }
    stop.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_acks_time_out_with_4000() {
    let srv = TestServer::start(|c| c.sim.ack_timeout_ticks = 15).await;
    let mut c = srv.ws_client("silent").await;
    // Never send an Input, so never acknowledge: the server gives up after 0.5 s.
    let started = Instant::now();
    assert_eq!(closed_with(&mut c).await, 4000);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(srv.metrics.disconnects(DisconnectReason::AckTimeout), 1);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_server_refuses_upgrade_with_503_and_serves_health_and_metrics() {
    let srv = TestServer::start(|c| c.max_clients = 1).await;
    let _only = srv.ws_client("only").await;
    let e = Client::connect(&srv.url, "extra", None, WAIT)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("503"), "{e}");

    let get = |path: &'static str| {
        let addr = srv.addr;
        async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        }
    };
    assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
    let metrics = get("/metrics").await;
    assert!(
        metrics.contains("tickwire_connected_clients 1"),
        "{metrics}"
    );
    assert!(metrics.contains("tickwire_refused_full_total 1"));
    assert!(metrics.contains("tickwire_tick_duration_seconds_bucket"));
    assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_player_resumes_with_token() {
    let srv = TestServer::start(|c| c.sim.view_radius = 5000.0).await;
    let mut a = srv.ws_client("a").await;
    next_snapshot(&mut a).await;
    let (entity, token) = (a.welcome.entity_id, a.welcome.resume_token);
    drop(a); // no close frame: a dropped connection
    let b = Client::connect_resuming(&srv.url, "a again", Some(token), None, WAIT)
        .await
        .unwrap();
    assert_eq!(b.welcome.entity_id, entity);
    assert_ne!(b.welcome.resume_token, token);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_players_leave_every_view_until_they_resume() {
    let srv = TestServer::start(|c| {
        c.sim.view_radius = 5000.0;
        c.npcs = 0;
    })
    .await;
    let mut observer = srv.ws_client("observer").await;
    let mut tokens = Vec::new();
    let mut players = Vec::new();
    for i in 0..3 {
        let mut c = srv.ws_client(&format!("p{i}")).await;
        next_snapshot(&mut c).await;
        tokens.push((c.welcome.entity_id, c.welcome.resume_token));
        players.push(c);
    }
    // The observer sees all of them first (a view of one before they joined proves nothing).
    let deadline = Instant::now() + WAIT;
    while observer.receiver().view().len() != 4 {
        next_snapshot(&mut observer).await;
        assert!(
            Instant::now() < deadline,
            "the players never came into view"
        );
    }
    drop(players); // no close frames: each may resume
    // Once the server has seen the drops, the observer sees only itself.
    let deadline = Instant::now() + WAIT;
    loop {
        next_snapshot(&mut observer).await;
        if observer.receiver().view().len() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "dropped players stayed in view");
    }
    let (entity, token) = tokens[1];
    let back = Client::connect_resuming(&srv.url, "p1", Some(token), None, WAIT)
        .await
        .unwrap();
    assert_eq!(back.welcome.entity_id, entity);
    let deadline = Instant::now() + WAIT;
    while observer.receiver().entity(entity).is_none() {
        next_snapshot(&mut observer).await;
        assert!(
            Instant::now() < deadline,
            "the resumed player stayed hidden"
        );
    }
    assert_eq!(observer.receiver().view().len(), 2);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_flood_is_rate_limited_and_others_keep_playing() {
    let srv = TestServer::start(|_| {}).await;
    let mut bystander = srv.ws_client("bystander").await;
    next_snapshot(&mut bystander).await;

    // A client that sends 5,000 Inputs as fast as it can.
    let mut flooder = srv.ws_client("flooder").await;
    let flood = tokio::spawn(async move {
        for _ in 0..5000 {
            if flooder.send_input(127, 0, 0, 0).await.is_err() {
                break;
            }
        }
        flooder
    });
    // Meanwhile the bystander plays on: its inputs keep being applied.
    let mut last = InputSeq(0);
    for _ in 0..30 {
        last = bystander.send_input(0, 127, 0, 0).await.unwrap();
        next_snapshot(&mut bystander).await;
    }
    let _flooder = flood.await.unwrap();
    let deadline = Instant::now() + WAIT;
    while next_snapshot(&mut bystander).await < last {
        assert!(
            Instant::now() < deadline,
            "the bystander's inputs stopped being applied"
        );
    }
    // Dropped past the budget, then closed with 4013 once far over it for a second.
    assert!(
        srv.metrics
            .inputs_rate_limited
            .load(std::sync::atomic::Ordering::Relaxed)
            > 200,
        "the flood was not rate limited"
    );
    assert_eq!(srv.metrics.disconnects(DisconnectReason::Flooding), 1);
    srv.shutdown().await;
}
