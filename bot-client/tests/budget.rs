//! The bandwidth budget (`--max-snapshot-bytes`) end to end: a real server whose every client
//! sees 400 moving entities, far more than a 600-byte snapshot holds, and verifying bots over
//! WebSocket and QUIC. Every snapshot must verify, fit the budget (over QUIC: a datagram, never
//! a stream), and every entity in view must be refreshed within a bounded number of ticks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tickwire_bot_client::{LoadConfig, TransportKind, run};
use tickwire_server::{Server, ServerConfig};

const BUDGET: usize = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgeted_snapshots_verify_fit_and_refresh_everyone() {
    let mut cfg = ServerConfig::defaults();
    cfg.npcs = 400;
    // Everyone sees the whole 2,000-unit arena.
    cfg.sim.view_radius = 3000.0;
    cfg.sim.max_snapshot_bytes = Some(BUDGET);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let identity = tickwire_server::TlsIdentity::self_signed().unwrap();
    let quic =
        tickwire_server::QuicListener::bind("127.0.0.1:0".parse().unwrap(), &identity).unwrap();
    let pin = tickwire_bot_client::quic::parse_sha256(quic.cert_sha256()).unwrap();
    let quic_url = format!("quic://{}", quic.local_addr());
    let server = Server::new(cfg);
    let metrics = server.metrics();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run_with_quic(listener, Some(quic), async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });

    let ws = run(
        LoadConfig {
            url: format!("ws://{addr}/ws"),
            bots: 12,
            duration: Duration::from_secs(4),
            ramp_per_s: 100.0,
            ..LoadConfig::default()
        },
        |_| {},
    );
    let quic = run(
        LoadConfig {
            url: quic_url,
            transport: TransportKind::Quic,
            cert_sha256: Some(pin),
            bots: 6,
            duration: Duration::from_secs(4),
            ramp_per_s: 100.0,
            ..LoadConfig::default()
        },
        |_| {},
    );
    let (ws, quic) = tokio::join!(ws, quic);
    for (name, r) in [("ws", &ws), ("quic", &quic)] {
        assert_eq!(r.connected, r.bots_requested as u64, "{name}: {r:?}");
        assert!(
            r.verifying_bots > 0 && r.verified_snapshots > 100,
            "{name}: {r:?}"
        );
        assert_eq!((r.desyncs, r.decode_errors), (0, 0), "{name}: {r:?}");
        assert!(
            r.snapshot_bytes_max as usize <= BUDGET,
            "{name}: a {}-byte snapshot over a {BUDGET}-byte budget",
            r.snapshot_bytes_max
        );
        // A whole view is about 5 KB: the budget held entities back...
        assert!(
            r.refresh_age_ticks_max > 0,
            "{name}: nothing was held back: {r:?}"
        );
        println!(
            "{name}: snapshot bytes p99 {} max {}, refresh age p99 {} max {} ticks, {:.0} B/s per bot",
            r.snapshot_bytes_p99,
            r.snapshot_bytes_max,
            r.refresh_age_ticks_p99,
            r.refresh_age_ticks_max,
            r.bytes_in_per_bot_s
        );
    }
    // ...and refreshed every entity in view within a bounded time: over WebSocket the
    // baseline is the newest snapshot written, so nothing is paid for twice.
    assert!(ws.refresh_age_ticks_max <= 24, "{ws:?}");
    assert_eq!(
        metrics.snapshots_on_stream.load(Relaxed),
        0,
        "every QUIC snapshot fitted a datagram"
    );
    let _ = stop.send(());
    task.await.unwrap();
}
