//! The real `tickwire-server` binary as an operator runs it: flags, the log lines with the
//! bound addresses and the certificate fingerprint, and SIGTERM closing every client
//! (WebSocket and QUIC) with 1001 and exiting within 2 s.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::process::ServerProcess;
use tickwire_bot_client::quic::parse_sha256;
use tickwire_bot_client::{Client, Event, QuicClient, ServerCert};
use tokio::time::timeout;

/// Starts the binary on port 0 (TCP and QUIC) and returns it with the WebSocket address it
/// logged, then the QUIC address and certificate fingerprint.
fn start(args: &[&str]) -> (ServerProcess, String, String, String) {
    let mut all = vec!["--listen", "127.0.0.1:0", "--quic", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let proc = ServerProcess::start(&all);
    let [addr, quic, cert] = proc.wait_for_fields(["addr", "quic_addr", "cert_sha256"]);
    (proc, addr, quic, cert)
}

#[test]
fn bad_flags_fail_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_tickwire-server"))
        .args(["--tick-rate", "500"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tick-rate"), "{err}");
    let help = Command::new(env!("CARGO_BIN_EXE_tickwire-server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--listen",
        "--tick-rate",
        "--snapshot-every",
        "--world",
        "--npcs",
        "--view-radius",
        "--max-clients",
        "--log-format",
        "--quic",
        "--no-quic",
        "--tls-cert",
        "--tls-key",
        "[default: 30]",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_client_with_1001_within_two_seconds() {
    let (mut proc, addr, quic, cert) = start(&["--npcs", "10", "--tick-rate", "60"]);
    let url = format!("ws://{addr}/ws");
    let pin = ServerCert::Pinned(parse_sha256(&cert).unwrap());
    let mut quic_client =
        QuicClient::connect(&format!("quic://{quic}"), "q", pin, Duration::from_secs(5))
            .await
            .unwrap();
    assert_eq!(quic_client.welcome.tick_rate, 60);
    let mut clients = Vec::new();
    for i in 0..4 {
        let mut c = Client::connect(&url, &format!("p{i}"), None, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(c.welcome.tick_rate, 60);
        // One verified snapshot each before the signal.
        loop {
            if let Event::Snapshot { outcome, .. } = c.next_event().await.unwrap() {
                outcome.unwrap();
                break;
            }
        }
        clients.push(c);
    }

    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &proc.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for c in &mut clients {
        let code = loop {
            match timeout(Duration::from_secs(2), c.next_event())
                .await
                .unwrap()
            {
                Ok(Event::Closed { code, .. }) => break code,
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(code, 1001);
    }
    let code = loop {
        match timeout(Duration::from_secs(2), quic_client.next_event())
            .await
            .unwrap()
        {
            Ok(Event::Closed { code, .. }) => break code,
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(code, 1001, "QUIC clients get 1001 too");
    let exit = loop {
        if let Some(s) = proc.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "still running after 2 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
}
