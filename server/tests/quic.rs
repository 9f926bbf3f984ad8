//! QUIC integration tests: a real server on 127.0.0.1 (TCP and UDP port 0) and the bot
//! client's QUIC client, directly and through a lossy, reordering UDP relay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tickwire_bot_client::quic::QuicConnector;
use tickwire_bot_client::{
    Client, Event, LoadConfig, QuicClient, QuicError, ServerCert, TransportKind, run,
};
use tickwire_server::metrics::DisconnectReason;
use tickwire_shared::codec::encode_client;
use tickwire_shared::{ClientMessage, PROTOCOL_VERSION, Received, Tick};
use tokio::net::UdpSocket;
use tokio::sync::Mutex;
use tokio::time::{Instant, sleep, timeout, timeout_at};

mod support;
use support::{TestServer, WAIT};

/// Reads events until a verified current snapshot arrives; panics on a desync or a close.
/// Returns whether it was full.
async fn next_current(c: &mut QuicClient) -> bool {
    let deadline = Instant::now() + WAIT;
    loop {
        match timeout_at(deadline, c.next_event())
            .await
            .expect("snapshot in time")
            .unwrap()
        {
            Event::Snapshot { outcome, .. } => match outcome {
                Ok(Received::Current { full, .. }) => return full,
                // Datagrams may come late or twice: not a desync.
                Ok(_) => {}
                Err(e) => panic!("snapshot failed: {e}"),
            },
            Event::Pong { .. } | Event::Welcome(_) => {}
            Event::Closed { code, reason } => panic!("closed: {code} {reason}"),
        }
    }
}

/// Reads until the connection closes; returns the close code.
async fn closed_with(c: &mut QuicClient) -> u16 {
    let deadline = Instant::now() + WAIT;
    loop {
        match timeout_at(deadline, c.next_event())
            .await
            .expect("close in time")
        {
            Ok(Event::Closed { code, .. }) => return code,
            Ok(_) => {}
            Err(e) => panic!("error instead of close: {e}"),
        }
    }
}

fn encode(msg: &ClientMessage) -> Vec<u8> {
    let mut b = Vec::new();
    encode_client(msg, &mut b).unwrap();
    b
}

fn hello() -> Vec<u8> {
    encode(&ClientMessage::Hello {
        protocol_version: PROTOCOL_VERSION,
        name: "raw".into(),
        resume_token: None,
        seat: None,
        auth: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_bots_verify_every_snapshot() {
    let srv = TestServer::start_with_quic(|_| {}).await;
    let ServerCert::Pinned(pin) = srv.quic_pin() else {
        unreachable!()
    };
    let report = run(
        LoadConfig {
            url: srv.quic_url(),
            transport: TransportKind::Quic,
            cert_sha256: Some(pin),
            bots: 30,
            duration: Duration::from_secs(4),
            ramp_per_s: 200.0,
            ..LoadConfig::default()
        },
        |_| {},
    )
    .await;
    assert_eq!(report.connected, 30, "{report:?}");
    assert_eq!(report.desyncs, 0);
    assert_eq!(report.decode_errors, 0);
    assert!(report.disconnects.is_empty(), "{:?}", report.disconnects);
    assert!(report.delivery_ratio > 0.95, "{report:?}");
    assert!(report.input_latency_ms_p99 > 0.0 && report.rtt_ms_p50 > 0.0);
    assert!(srv.metrics.snapshots_sent.load(Relaxed) > 30 * 60);
    // The bots said Leave at the end.
    assert_eq!(srv.metrics.disconnects(DisconnectReason::Normal), 30);

    // A wrong pin fails the TLS handshake; so does a WebSocket URL with QUIC.
    let wrong = QuicClient::connect(&srv.quic_url(), "x", ServerCert::Pinned([7; 32]), WAIT)
        .await
        .unwrap_err();
    assert!(matches!(wrong, QuicError::Connection(_)), "{wrong}");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_snapshots_go_on_streams_and_verify() {
    // Every entity in view: the full snapshots outgrow a datagram.
    let srv = TestServer::start_with_quic(|c| {
        c.npcs = 300;
        c.sim.view_radius = 5000.0;
    })
    .await;
    let mut c = srv.quic_client("big").await;
    let mut full = 0;
    for _ in 0..30 {
        full += usize::from(next_current(&mut c).await);
        c.send_input(0, 0, 0, 0).await.unwrap();
    }
    assert!(full >= 1);
    assert!(srv.metrics.snapshots_on_stream.load(Relaxed) >= 1);
    let max = c.raw_mut().connection().max_datagram_size().unwrap();
    assert!(max >= 1000, "{max}");
    c.leave().await.unwrap();
    assert_eq!(closed_with(&mut c).await, 1000);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_gets_the_documented_close_codes() {
    let srv =
        TestServer::start_with_quic(|c| c.handshake_timeout = Duration::from_millis(500)).await;
    let connector = QuicConnector::new(&srv.quic_url(), srv.quic_pin(), 1, &[])
        .await
        .unwrap();
    let close_code = |frames: Vec<Vec<u8>>, datagram: Option<Vec<u8>>| {
        let connector = &connector;
        async move {
            let mut raw = connector.open(0).await.unwrap();
            if let Some(d) = datagram {
                raw.connection().send_datagram(d.into()).unwrap();
            }
            for f in frames {
                if raw.send_control(&f).await.is_err() {
                    break;
                }
            }
            let deadline = Instant::now() + WAIT;
            loop {
                match timeout_at(deadline, raw.next_message())
                    .await
                    .expect("close in time")
                {
                    Ok(Ok(_)) => {}
                    Ok(Err((code, _))) => return code,
                    Err(e) => panic!("{e}"),
                }
            }
        }
    };
    // Undecodable, oversized (by the length prefix alone), out of order, wrong version.
    assert_eq!(
        close_code(vec![vec![0xde, 0xad, 0xbe, 0xef]], None).await,
        1002
    );
    assert_eq!(close_code(vec![vec![0; 600]], None).await, 1009);
    let input = encode(&ClientMessage::Input {
        ack_tick: Tick(0),
        frames: vec![],
    });
    assert_eq!(close_code(vec![input.clone()], None).await, 1002);
    assert_eq!(close_code(vec![hello(), hello()], None).await, 1002);
    let old = encode(&ClientMessage::Hello {
        protocol_version: 99,
        name: "old".into(),
        resume_token: None,
        seat: None,
        auth: None,
    });
    assert_eq!(close_code(vec![old], None).await, 4001);
    // Only Input may travel as a datagram.
    assert_eq!(close_code(vec![], Some(hello())).await, 1002);
    // No Hello within the handshake timeout.
    assert_eq!(close_code(vec![], None).await, 1008);

    // An Input datagram that overtakes the Hello is dropped, not an error.
    let mut raw = connector.open(0).await.unwrap();
    raw.connection().send_datagram(input.into()).unwrap();
    sleep(Duration::from_millis(50)).await;
    raw.send_control(&hello()).await.unwrap();
    let first = timeout(WAIT, raw.next_control_message()).await.unwrap();
    assert!(
        matches!(
            first,
            Ok(Ok((tickwire_shared::ServerMessage::Welcome(_), _)))
        ),
        "{first:?}"
    );
    drop(raw);

    // Leave closes with 1000 after a Disconnect.
    let mut c = srv.quic_client("leaver").await;
    next_current(&mut c).await;
    c.leave().await.unwrap();
    assert_eq!(closed_with(&mut c).await, 1000);
    assert_eq!(srv.metrics.disconnects(DisconnectReason::TooBig), 1);
    assert_eq!(srv.metrics.disconnects(DisconnectReason::BadVersion), 1);
    assert_eq!(
        srv.metrics.disconnects(DisconnectReason::HandshakeTimeout),
        1
    );
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_clients_counts_both_transports_and_resume_works_over_quic() {
    let srv = TestServer::start_with_quic(|c| {
        c.max_clients = 1;
        c.sim.view_radius = 5000.0;
    })
    .await;
    // A QUIC session holds the only slot: the WebSocket upgrade gets 503...
    let mut q = srv.quic_client("q").await;
    next_current(&mut q).await;
    let e = Client::connect(&srv.url, "ws", None, WAIT)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("503"), "{e}");
    // ...and a second QUIC connection is refused.
    let e = QuicClient::connect(&srv.quic_url(), "q2", srv.quic_pin(), WAIT)
        .await
        .unwrap_err();
    assert!(matches!(e, QuicError::Connection(_)), "{e}");
    assert_eq!(srv.metrics.refused_full.load(Relaxed), 2);

    // A dropped QUIC client leaves its player for a resume.
    let (entity, token) = (q.welcome.entity_id, q.welcome.resume_token);
    drop(q);
    let deadline = Instant::now() + WAIT;
    let r = loop {
        // The slot frees once the server has seen the drop.
        match QuicClient::connect_resuming(&srv.quic_url(), "q", Some(token), srv.quic_pin(), WAIT)
            .await
        {
            Ok(r) => break r,
            Err(_) if Instant::now() < deadline => sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(r.welcome.entity_id, entity);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_quic_and_websocket_clients_with_1001_quickly() {
    let srv = TestServer::start_with_quic(|_| {}).await;
    let mut quic = Vec::new();
    for i in 0..3 {
        let mut c = srv.quic_client(&format!("q{i}")).await;
        next_current(&mut c).await;
        quic.push(c);
    }
    let mut ws = Client::connect(&srv.url, "ws", None, WAIT).await.unwrap();
    let started = Instant::now();
    let stop = tokio::spawn(srv.shutdown());
    for c in &mut quic {
        assert_eq!(closed_with(c).await, 1001);
    }
    let code = loop {
        if let Event::Closed { code, .. } = timeout(WAIT, ws.next_event()).await.unwrap().unwrap() {
            break code;
        }
    };
    assert_eq!(code, 1001);
    stop.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// A UDP relay between QUIC clients and the server that drops and reorders datagrams in both
/// directions, and can black out the client-to-server direction. Each client gets its own
/// upstream socket, so the server sees distinct peers. Every task stops at `until`.
struct Relay {
    addr: SocketAddr,
    blackout_until: Arc<Mutex<Option<Instant>>>,
}

/// Drops a share of packets and holds back a share to send after the next one.
struct Conditioner {
    rng: u64,
    loss: f64,
    reorder: f64,
    held: Option<(Vec<u8>, SocketAddr)>,
}

impl Conditioner {
    fn roll(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    /// What to send now for one packet, in order.
    fn on_packet(&mut self, p: Vec<u8>, to: SocketAddr) -> Vec<(Vec<u8>, SocketAddr)> {
        if self.roll() < self.loss {
            return vec![];
        }
        if self.held.is_none() && self.roll() < self.reorder {
            self.held = Some((p, to));
            return vec![];
        }
        let mut out = vec![(p, to)];
        out.extend(self.held.take());
        out
    }
}

impl Relay {
    async fn start(server: SocketAddr, loss: f64, reorder: f64, until: Instant) -> Relay {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = front.local_addr().unwrap();
        let blackout_until: Arc<Mutex<Option<Instant>>> = Arc::default();
        let blackout = blackout_until.clone();
        tokio::spawn(async move {
            let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            let mut cond = Conditioner {
                rng: 0x2545_f491_4f6c_dd1d,
                loss,
                reorder,
                held: None,
            };
            let mut buf = vec![0u8; 65536];
            let mut seed = 1u64;
            while Instant::now() < until {
                // A held packet leaves after 20 ms at the latest.
                let got = match timeout(Duration::from_millis(20), front.recv_from(&mut buf)).await
                {
                    Ok(Ok(got)) => Some(got),
                    Ok(Err(_)) => break,
                    Err(_) => None,
                };
                let Some((n, client)) = got else {
                    if let Some((p, to)) = cond.held.take() {
                        let up = &upstreams[&to];
                        let _ = up.send(&p).await;
                    }
                    continue;
                };
                if blackout.lock().await.is_some_and(|t| Instant::now() < t) {
                    continue;
                }
                if let std::collections::hash_map::Entry::Vacant(e) = upstreams.entry(client) {
                    let up = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                    up.connect(server).await.unwrap();
                    e.insert(up.clone());
                    seed += 1;
                    tokio::spawn(downstream(
                        up,
                        front.clone(),
                        client,
                        Conditioner {
                            rng: 0x9e37_79b9_7f4a_7c15 ^ seed,
                            loss,
                            reorder,
                            held: None,
                        },
                        until,
                    ));
                }
                // Keyed by client: the conditioner's held packet remembers where it goes.
                for (p, to) in cond.on_packet(buf[..n].to_vec(), client) {
                    let _ = upstreams[&to].send(&p).await;
                }
            }
        });
        Relay {
            addr,
            blackout_until,
        }
    }

    /// Drops everything from clients to the server for `d`.
    async fn blackout(&self, d: Duration) {
        *self.blackout_until.lock().await = Some(Instant::now() + d);
    }
}

/// Server to one client, through a conditioner, until `until`.
async fn downstream(
    up: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    mut cond: Conditioner,
    until: Instant,
) {
    let mut buf = vec![0u8; 65536];
    while Instant::now() < until {
        match timeout(Duration::from_millis(20), up.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                for (p, to) in cond.on_packet(buf[..n].to_vec(), client) {
                    let _ = front.send_to(&p, to).await;
                }
            }
            Ok(Err(_)) => break,
            Err(_) => {
                if let Some((p, to)) = cond.held.take() {
                    let _ = front.send_to(&p, to).await;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_stay_in_sync_through_a_lossy_reordering_link() {
    let srv = TestServer::start_with_quic(|_| {}).await;
    let relay = Relay::start(
        srv.quic_addr.unwrap(),
        0.05,
        0.05,
        Instant::now() + Duration::from_secs(15),
    )
    .await;
    let report = run(
        LoadConfig {
            url: format!("quic://{}", relay.addr),
            transport: TransportKind::Quic,
            insecure: true,
            bots: 10,
            duration: Duration::from_secs(5),
            ramp_per_s: 100.0,
            ..LoadConfig::default()
        },
        |_| {},
    )
    .await;
    assert_eq!(report.connected, 10, "{report:?}");
    assert_eq!(report.desyncs, 0, "{report:?}");
    assert_eq!(report.decode_errors, 0, "{report:?}");
    assert!(report.delivery_ratio >= 0.9, "{report:?}");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_acks_bring_a_full_snapshot_and_the_client_stays_in_sync() {
    // A short baseline ring: 0.5 s without acks outlives every baseline the server holds.
    let srv = TestServer::start_with_quic(|c| c.sim.baseline_ring = 8).await;
    let relay = Relay::start(
        srv.quic_addr.unwrap(),
        0.0,
        0.0,
        Instant::now() + Duration::from_secs(15),
    )
    .await;
    let mut c = QuicClient::connect(
        &format!("quic://{}", relay.addr),
        "stall",
        srv.quic_pin(),
        WAIT,
    )
    .await
    .unwrap();
    // Play normally for a second: one input (and so one ack) per verified snapshot.
    for _ in 0..30 {
        next_current(&mut c).await;
        c.send_input(1, 0, 0, 0).await.unwrap();
    }
    let full_before = srv.metrics.full_snapshots.load(Relaxed);
    let stalled_at = c.receiver().ack_tick().unwrap();
    relay.blackout(Duration::from_millis(500)).await;
    // Keep playing: inputs and acks vanish for 0.5 s, snapshots still arrive. Every snapshot
    // must verify; afterwards a full one must have come, and deltas again after it.
    let mut full_after_stall = None;
    let mut deltas_after_full = 0;
    let deadline = Instant::now() + Duration::from_secs(4);
    while deltas_after_full < 30 {
        assert!(
            Instant::now() < deadline,
            "no recovery: {full_after_stall:?}"
        );
        let full = next_current(&mut c).await;
        let tick = c.receiver().ack_tick().unwrap();
        if full && tick > stalled_at && full_after_stall.is_none() {
            full_after_stall = Some(tick);
        } else if !full && full_after_stall.is_some() {
            deltas_after_full += 1;
        }
        c.send_input(1, 0, 0, 0).await.unwrap();
    }
    assert!(srv.metrics.full_snapshots.load(Relaxed) > full_before);
    c.leave().await.unwrap();
    assert_eq!(closed_with(&mut c).await, 1000);
    srv.shutdown().await;
}
