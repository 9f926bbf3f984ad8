//! The front door under a slowloris attack: sockets from 127.0.0.2 that trickle a request head
//! a byte at a time and reconnect as soon as they are closed. Players and health checks from
//! 127.0.0.1 must still get in, because a full pending table makes room by closing its oldest
//! waiting connection instead of refusing the newcomer, and one source can hold only its share.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

mod support;
use support::raw::exchange;
use support::{TestServer, WAIT};

const ATTACKER: &str = "127.0.0.2";

/// One trickling socket at a time from 127.0.0.2, reopened as soon as the server closes it;
/// counts the closes.
fn trickler(
    addr: SocketAddr,
    mut stop: watch::Receiver<bool>,
    closed: Arc<AtomicU64>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while !*stop.borrow() {
            let socket = TcpSocket::new_v4().unwrap();
            socket
                .bind(format!("{ATTACKER}:0").parse().unwrap())
                .unwrap();
            let Ok(mut s) = socket.connect(addr).await else {
                sleep(Duration::from_millis(10)).await;
                continue;
            };
            if s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .is_err()
            {
                closed.fetch_add(1, Relaxed);
                continue;
            }
            let mut buf = [0u8; 256];
            loop {
                tokio::select! {
                    _ = s.read(&mut buf) => {
                        closed.fetch_add(1, Relaxed);
                        break;
                    }
                    _ = sleep(Duration::from_millis(300)) => {
                        if s.write_all(b"a").await.is_err() {
                            closed.fetch_add(1, Relaxed);
                            break;
                        }
                    }
                    _ = stop.changed() => return,
                }
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_and_health_checks_get_in_past_300_trickling_sockets() {
    let srv = TestServer::start(|c| {
        c.max_pending_http = 64;
        // No per-source cap and a head deadline longer than the test: only eviction can make
        // room for the players.
        c.max_pending_per_ip = 0;
        c.handshake_timeout = Duration::from_secs(60);
    })
    .await;
    let (stop, stopped) = watch::channel(false);
    let closed = Arc::new(AtomicU64::new(0));
    let attackers: Vec<_> = (0..300)
        .map(|_| trickler(srv.addr, stopped.clone(), closed.clone()))
        .collect();
    // The table is full and turning over: attackers are being closed.
    let deadline = Instant::now() + WAIT;
    while closed.load(Relaxed) < 300 {
        assert!(
            Instant::now() < deadline,
            "the attack never filled the table"
        );
        sleep(Duration::from_millis(20)).await;
    }
    assert!(srv.metrics.http_pending.load(Relaxed) <= 64);

    for n in 0..5 {
        let c = srv.ws_client(&format!("player {n}")).await;
        assert_ne!(c.welcome.client_id.0, 0);
        let health = timeout(
            WAIT,
            exchange(srv.addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
        )
        .await
        .expect("healthz in time");
        assert_eq!(health.status, 200);
    }
    assert!(srv.metrics.http_evicted.load(Relaxed) >= 300);
    assert!(srv.metrics.http_pending.load(Relaxed) <= 64);

    let _ = stop.send(true);
    for a in attackers {
        timeout(WAIT, a).await.unwrap().unwrap();
    }
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_holds_at_most_its_share_of_the_table() {
    let srv = TestServer::start(|c| {
        c.max_pending_per_ip = 8;
        c.handshake_timeout = Duration::from_secs(60);
    })
    .await;
    let mut socks = Vec::new();
    for _ in 0..20 {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(format!("{ATTACKER}:0").parse().unwrap())
            .unwrap();
        socks.push(socket.connect(srv.addr).await.unwrap());
    }
    // The first 8 stay open (idle, within the head deadline); the other 12 are closed at accept.
    let mut open = 0;
    for s in &mut socks {
        let mut b = [0u8; 1];
        // Still open: the read waits out the 300 ms.
        if timeout(Duration::from_millis(300), s.read(&mut b))
            .await
            .is_err()
        {
            open += 1;
        }
    }
    assert_eq!(open, 8);
    assert_eq!(srv.metrics.http_refused_source.load(Relaxed), 12);
    // Another source is untouched.
    srv.ws_client("player").await;
    srv.shutdown().await;
}
