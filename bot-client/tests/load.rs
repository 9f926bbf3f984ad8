//! The bot library against a real server on 127.0.0.1:0: 50 bots for a few seconds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tickwire_bot_client::{LoadConfig, run};
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
