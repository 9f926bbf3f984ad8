//! The bot library against a real server on 127.0.0.1:0: 50 bots for a few seconds, and 20
//! bots of which half verify, over each transport.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tickwire_bot_client::{LoadConfig, TransportKind, run};
use tickwire_server::{Server, ServerConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_bots_connect_verify_and_report() {
    let mut cfg = ServerConfig::defaults();
    cfg.npcs = 50;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(Server::new(cfg).run(listener, async {
        let _ = stopped.await;
    }));

    let mut progress_calls = 0;
    let report = run(
        LoadConfig {
            url: format!("ws://{addr}/ws"),
            bots: 50,
            duration: Duration::from_secs(4),
            ramp_per_s: 200.0,
            input_hz: 30.0,
            ..LoadConfig::default()
        },
        |_| progress_calls += 1,
    )
    .await;

    assert_eq!(report.bots_requested, 50);
    assert_eq!(report.connected, 50, "{report:?}");
    assert_eq!(report.connect_failures, 0);
    assert!(report.disconnects.is_empty(), "{:?}", report.disconnects);
    assert_eq!(report.desyncs, 0);
    assert_eq!(report.decode_errors, 0);
    assert!(
        report.delivery_ratio > 0.9,
        "delivery {}",
        report.delivery_ratio
    );
    assert!(
        report.snapshots_per_bot_s > 25.0,
        "{}",
        report.snapshots_per_bot_s
    );
    assert!(report.full_snapshots >= 50 && report.delta_snapshots > 50 * 60);
    assert!(report.rtt_ms_p50 > 0.0 && report.input_latency_ms_p99 > 0.0);
    assert!(report.bytes_in_per_bot_s > 0.0 && report.bytes_out_per_bot_s > 0.0);
    assert!(report.is_clean());
    assert!(progress_calls >= 4);

    let json = report.to_json();
    for field in [
        "bots_requested",
        "connected",
        "connect_failures",
        "disconnects",
        "snapshots_per_bot_s",
        "delivery_ratio",
        "bytes_in_per_bot_s",
        "bytes_out_per_bot_s",
        "rtt_ms_p50",
        "rtt_ms_p99",
        "input_latency_ms_p50",
        "input_latency_ms_p99",
        "desyncs",
        "decode_errors",
        "full_snapshots",
        "delta_snapshots",
        "duration_s",
    ] {
        assert!(
            json.contains(&format!("\"{field}\":")),
            "JSON lacks {field}: {json}"
        );
    }
    assert!(json.starts_with('{') && json.ends_with('}'));

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// A server on 127.0.0.1 port 0 with WebSocket, and QUIC when `quic`: its WebSocket URL, its
/// QUIC URL and certificate pin, its metrics, and the way to stop it.
async fn start_server(
    quic: bool,
) -> (
    String,
    Option<(String, [u8; 32])>,
    std::sync::Arc<tickwire_server::Metrics>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let mut cfg = ServerConfig::defaults();
    cfg.npcs = 20;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let quic = quic.then(|| {
        let identity = tickwire_server::TlsIdentity::self_signed().unwrap();
        tickwire_server::QuicListener::bind("127.0.0.1:0".parse().unwrap(), &identity).unwrap()
    });
    let quic_url = quic.as_ref().map(|q| {
        let pin = tickwire_bot_client::quic::parse_sha256(q.cert_sha256()).unwrap();
        (format!("quic://{}", q.local_addr()), pin)
    });
    let server = Server::new(cfg);
    let metrics = server.metrics();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run_with_quic(listener, quic, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (format!("ws://{addr}/ws"), quic_url, metrics, stop, task)
}

/// Half the bots verify; the other half only decode envelopes and acknowledge. Both halves
/// are delivered every snapshot, and the server keeps sending deltas to all of them (a bot
/// that did not acknowledge would get only full snapshots).
async fn half_the_bots_verify(transport: TransportKind) {
    const BOTS: usize = 20;
    let (ws_url, quic, metrics, stop, task) = start_server(transport == TransportKind::Quic).await;
    let (url, cert_sha256) = match (transport, quic) {
        (TransportKind::Quic, Some((url, pin))) => (url, Some(pin)),
        _ => (ws_url, None),
    };
    let report = run(
        LoadConfig {
            url,
            transport,
            cert_sha256,
            bots: BOTS,
            duration: Duration::from_secs(3),
            ramp_per_s: 200.0,
            input_hz: 30.0,
            verify_fraction: 0.5,
            ..LoadConfig::default()
        },
        |_| {},
    )
    .await;

    assert_eq!(report.connected, BOTS as u64, "{report:?}");
    assert_eq!(report.verifying_bots, 10, "{report:?}");
    assert_eq!(report.verify_fraction, 0.5);
    assert!(report.disconnects.is_empty(), "{:?}", report.disconnects);
    assert_eq!(report.desyncs, 0);
    assert_eq!(report.decode_errors, 0);
    assert!(report.is_clean());
    // Every bot, verifying or not, counts toward delivery.
    assert!(report.delivery_ratio > 0.9, "{report:?}");
    let snapshots = report.full_snapshots + report.delta_snapshots;
    let trusted = snapshots - report.verified_snapshots;
    assert!(
        report.verified_snapshots > 10 * 40 && trusted > 10 * 40,
        "verified {} of {snapshots}",
        report.verified_snapshots
    );
    assert!(
        trusted as f64 > 0.4 * snapshots as f64,
        "the non-verifying half received only {trusted} of {snapshots}"
    );
    // The non-verifying bots acknowledge: after the first full snapshots, deltas. Every
    // snapshot is full until a bot's first ack lands, which on a loaded machine (QUIC
    // handshakes, other tests) takes a few ticks: a few per bot, against about 90 deltas.
    let full_sent = metrics.full_snapshots.load(Relaxed);
    assert!(
        full_sent * 20 <= snapshots && report.full_snapshots * 20 <= snapshots,
        "server sent {full_sent} full snapshots, bots saw {} of {snapshots}",
        report.full_snapshots
    );
    // Input latency needs only the snapshot header.
    assert!(report.input_latency_ms_p50 > 0.0 && report.input_latency_ms_p99 > 0.0);
    let json = report.to_json();
    for field in ["\"verify_fraction\":0.5", "\"verifying_bots\":10,"] {
        assert!(json.contains(field), "JSON lacks {field}: {json}");
    }
    assert!(json.contains("\"verified_snapshots\":"), "{json}");

    let _ = stop.send(());
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_the_websocket_bots_verify() {
    half_the_bots_verify(TransportKind::Ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_the_quic_bots_verify() {
    half_the_bots_verify(TransportKind::Quic).await;
}

#[tokio::test]
async fn a_verify_fraction_outside_0_to_1_starts_no_bot() {
    let report = run(
        LoadConfig {
            url: "ws://127.0.0.1:9/ws".into(),
            bots: 3,
            verify_fraction: 1.5,
            ..LoadConfig::default()
        },
        |_| {},
    )
    .await;
    assert_eq!((report.connected, report.connect_failures), (0, 3));
}

/// Against a server that requires signed player tokens (`--auth-secret-file`), bots given its
/// secret sign themselves tokens and get in; bots without it are refused with 4008.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_with_the_servers_secret_sign_tokens_and_get_in() {
    use std::sync::Arc;
    use tickwire_shared::CloseCode;
    use tickwire_shared::token::TokenKey;

    const SECRET: &[u8] = b"a-load-test-secret-of-32-bytes-or-more";
    let mut cfg = ServerConfig::defaults();
    cfg.npcs = 5;
    cfg.auth = Some(Arc::new(TokenKey::new(SECRET).unwrap()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(Server::new(cfg).run(listener, async {
        let _ = stopped.await;
    }));
    let load = |auth: Option<Arc<TokenKey>>| LoadConfig {
        url: format!("ws://{addr}/ws"),
        bots: 5,
        duration: Duration::from_secs(2),
        ramp_per_s: 100.0,
        connect_timeout: Duration::from_secs(5),
        auth,
        ..LoadConfig::default()
    };

    let key = TokenKey::from_file_contents(&[SECRET, b"\n"].concat()).unwrap();
    let report = run(load(Some(Arc::new(key))), |_| {}).await;
    assert_eq!(report.connected, 5, "{report:?}");
    assert_eq!(report.connect_failures, 0);
    assert!(
        report.is_clean() && report.delivery_ratio > 0.8,
        "{report:?}"
    );

    let report = run(load(None), |_| {}).await;
    assert_eq!((report.connected, report.connect_failures), (0, 5));

    // The refusal is the token one.
    let refused = tickwire_bot_client::Client::connect(
        &format!("ws://{addr}/ws"),
        "no-token",
        None,
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    match refused {
        tickwire_bot_client::ClientError::Closed { code, .. } => {
            assert_eq!(CloseCode::from_code(code), Some(CloseCode::TokenRequired));
        }
        other => panic!("{other}"),
    }

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
