//! Criterion: matchmaking throughput. One in-process server node (`ServerConfig::defaults()`,
//! no default room, no QUIC, bound to 127.0.0.1:0) on a throwaway redis-server directory
//! (a free loopback port, no persistence, killed by its handle at the end), and 32
//! concurrent keep-alive HTTP/1.1 connections (hyper) doing
//! `POST /matchmake/join_or_create/arena` back to back. Reported as reservations/s
//! (`Throughput::Elements`, one per request).
//!
//! The seats are never used, so to keep this a reservation bench and not a room-creation
//! bench the node runs with `seat_ttl` = 1 s (the CLI's minimum is 0.5 s) and the requests
//! ask for `max_clients` = 10,000 (`max_room_size` raised to match): a new room is needed
//! only every 10,000 live reservations.
//!
//! Without a runnable `redis-server` it prints why and measures nothing.
//!
//! Run: `cargo bench -p tickwire-benches --bench matchmaking`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use tickwire_benches::RedisProcess;
use tickwire_server::{Server, ServerConfig};

/// Concurrent keep-alive connections.
const CONNECTIONS: usize = 32;
/// `max_clients` of the requests (and the node's `max_room_size`).
const ROOM_SIZE: u32 = 10_000;
const BODY: &str = "{\"max_clients\": 10000}";

fn start_redis() -> Option<RedisProcess> {
    match RedisProcess::start(Duration::from_secs(10)) {
        Ok(r) => Some(r),
        Err(e) => {
            println!("SKIPPED matchmaking bench: cannot run redis-server: {e}");
            None
        }
    }
}

type Sender = SendRequest<Full<Bytes>>;

async fn connect(addr: std::net::SocketAddr) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

/// `n` reservations on one keep-alive connection, one after the other.
async fn reserve(mut sender: Sender, host: String, n: u64) -> Sender {
    for _ in 0..n {
        sender.ready().await.expect("connection ready");
        let req = hyper::Request::builder()
            .method(hyper::Method::POST)
            .uri("/matchmake/join_or_create/arena")
            .header(hyper::header::HOST, &host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from_static(BODY.as_bytes())))
            .unwrap();
        let res = sender.send_request(req).await.expect("matchmake answer");
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert!(
            status.is_success(),
            "matchmake refused: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    sender
}

fn matchmaking(c: &mut Criterion) {
    let Some(redis) = start_redis() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut cfg = ServerConfig::defaults();
    cfg.quic = None;
    cfg.rooms.redis = Some(redis.url());
    cfg.rooms.default_room = false;
    cfg.rooms.seat_ttl = Duration::from_secs(1);
    cfg.rooms.max_room_size = ROOM_SIZE;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let _guard = rt.enter();
        let server = Server::new(cfg);
        rt.spawn(server.run(listener, async {
            let _ = stop_rx.await;
        }))
    };
    let host = addr.to_string();
    let mut senders: Vec<Sender> = rt.block_on(async {
        wait_ready(addr, &host).await;
        connect_all(addr).await
    });

    let mut group = c.benchmark_group("matchmaking");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("join_or_create_arena_32_keepalive", |b| {
        b.iter_custom(|iters| {
            let taken = std::mem::take(&mut senders);
            let t0 = Instant::now();
            senders = rt.block_on(async {
                let per = iters / CONNECTIONS as u64;
                let extra = iters % CONNECTIONS as u64;
                let tasks: Vec<_> = taken
                    .into_iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let n = per + u64::from((i as u64) < extra);
                        tokio::spawn(reserve(s, host.clone(), n))
                    })
                    .collect();
                let mut back = Vec::with_capacity(CONNECTIONS);
                for t in tasks {
                    back.push(t.await.unwrap());
                }
                back
            });
            t0.elapsed()
        });
    });
    group.finish();
    drop(senders);
    let _ = stop_tx.send(());
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), server).await });
    drop(rt);
    drop(redis);
}

/// Until the node's first reservation succeeds (it registers in the directory at start), at
/// most 10 s.
async fn wait_ready(addr: std::net::SocketAddr, host: &str) {
    let t0 = Instant::now();
    loop {
        let mut s = connect(addr).await;
        let req = hyper::Request::builder()
            .method(hyper::Method::POST)
            .uri("/matchmake/join_or_create/arena")
            .header(hyper::header::HOST, host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from_static(BODY.as_bytes())))
            .unwrap();
        if let Ok(res) = s.send_request(req).await
            && res.status().is_success()
        {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the node never matchmade"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect_all(addr: std::net::SocketAddr) -> Vec<Sender> {
    let mut out = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        out.push(connect(addr).await);
    }
    out
}

criterion_group!(benches, matchmaking);
criterion_main!(benches);
