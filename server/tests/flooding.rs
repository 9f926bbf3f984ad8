//! Clients that send far more than their message budget: WebSocket pings count like any
//! message, and a client far over budget for a second is closed with 4013 while everyone
//! else plays on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use tickwire_bot_client::client::{connect_raw, next_message};
use tickwire_bot_client::{Client, Event, HelloArgs};
use tickwire_server::metrics::DisconnectReason;
use tickwire_shared::codec::encode_client;
use tickwire_shared::{CloseCode, ServerMessage};
use tokio::time::timeout;
use tungstenite::Message;

mod support;
use support::{TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads until a verified snapshot arrives.
async fn next_snapshot(c: &mut Client) {
    loop {
        match timeout(WAIT, c.next_event())
            .await
            .expect("a snapshot in time")
            .unwrap()
        {
            Event::Snapshot { outcome, .. } => {
                outcome.expect("every snapshot verifies");
                return;
            }
            Event::Pong { .. } | Event::Welcome(_) => {}
            Event::Closed { code, reason } => panic!("bystander closed: {code} {reason}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_is_closed_with_4013_and_others_keep_playing() {
    let srv = TestServer::start(|_| {}).await;
    let mut bystander = srv.ws_client("bystander").await;
    next_snapshot(&mut bystander).await;

    let mut ws = connect_raw(&srv.url, None).await.unwrap();
    let mut hello = Vec::new();
    encode_client(&HelloArgs::new("pinger").message(), &mut hello).unwrap();
    ws.send(Message::Binary(hello.into())).await.unwrap();
    let (mut sink, mut stream) = ws.split();
    // 125-byte pings (the largest control frame) as fast as the socket takes them.
    let flood = tokio::spawn(async move {
        let ping = vec![0x5a_u8; 125];
        let mut sent = 0u64;
        while sink.feed(Message::Ping(ping.clone().into())).await.is_ok() {
            sent += 1;
            if sent.is_multiple_of(64) && sink.flush().await.is_err() {
                break;
            }
        }
        sent
    });
    let started = Instant::now();
    let code = timeout(WAIT, async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(Message::Binary(b))) => {
                    let msg = tickwire_shared::codec::decode_server(&b).unwrap();
                    if let ServerMessage::Disconnect { code, .. } = msg {
                        assert_eq!(code, CloseCode::Flooding.code());
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("no close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("the flooder is closed in time");
    assert_eq!(code, Some(CloseCode::Flooding.code()));
    eprintln!(
        "flooder closed after {:?}, {} pings sent",
        started.elapsed(),
        flood.await.unwrap()
    );
    assert_eq!(srv.metrics.disconnects(DisconnectReason::Flooding), 1);

    // The bystander never noticed.
    for _ in 0..30 {
        bystander.send_input(0, 127, 0, 0).await.unwrap();
        next_snapshot(&mut bystander).await;
    }

    // For --flood-penalty the flooder's source is closed at accept: no HTTP answer at all.
    let mut again = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let _ = again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = [0u8; 64];
    let n = timeout(WAIT, again.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "a penalized source got {:?}", &buf[..n]);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_flood_is_closed_with_4013() {
    let srv = TestServer::start(|_| {}).await;
    let mut ws = connect_raw(&srv.url, None).await.unwrap();
    let mut b = Vec::new();
    encode_client(&HelloArgs::new("flooder").message(), &mut b).unwrap();
    ws.send(Message::Binary(b.into())).await.unwrap();
    let mut input = Vec::new();
    encode_client(
        &tickwire_shared::ClientMessage::Input {
            ack_tick: tickwire_shared::Tick(0),
            frames: Vec::new(),
        },
        &mut input,
    )
    .unwrap();
    for _ in 0..1000 {
        if ws
            .feed(Message::Binary(input.clone().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = ws.flush().await;
    let code = loop {
        match timeout(WAIT, next_message(&mut ws))
            .await
            .expect("a close in time")
        {
            Ok(Ok(_)) => {}
            Ok(Err((code, _))) => break code,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(code, CloseCode::Flooding.code());
    srv.shutdown().await;
}
