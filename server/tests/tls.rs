//! TLS on the game port (`--tls-cert`, `--tls-key`): https:// and wss:// end to end, with a
//! client that trusts only a test CA, and plain clients refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::{SinkExt, StreamExt};
use tickwire_bot_client::HelloArgs;
use tickwire_bot_client::client::client_ws_config;
use tickwire_shared::codec::{decode_server, encode_client};
use tickwire_shared::{ServerMessage, Tick};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use tungstenite::Message;

mod support;
use support::process::ServerProcess;
use support::raw::exchange_on;
use support::tls::TestPki;
use support::{TestServer, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_plays_end_to_end_and_https_serves_http() {
    let pki = TestPki::new();
    let identity = pki.identity.clone();
    let srv = TestServer::start(|c| c.tls = Some(identity)).await;

    // https: the health check, and matchmaking hands out a wss:// URL.
    let r = exchange_on(
        pki.connect(srv.addr).await,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    let mut mm = pki.connect(srv.addr).await;
    mm.write_all(
        b"POST /matchmake/join_or_create/arena HTTP/1.1\r\nHost: localhost\r\n\
          Content-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await
    .unwrap();
    let mut answer = String::new();
    let _ = timeout(WAIT, mm.read_to_string(&mut answer)).await.unwrap();
    assert!(
        answer.contains(&format!("\"ws_url\":\"wss://{}/ws\"", srv.addr)),
        "{answer}"
    );

    // wss: Hello, Welcome, snapshots.
    let tls = pki.connect(srv.addr).await;
    let url = format!("wss://localhost:{}/ws", srv.addr.port());
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(url, tls, Some(client_ws_config()))
            .await
            .unwrap();
    let mut hello = Vec::new();
    encode_client(&HelloArgs::new("over tls").message(), &mut hello).unwrap();
    ws.send(Message::Binary(hello.into())).await.unwrap();
    let mut welcomed = false;
    let mut ticks = Vec::new();
    while ticks.len() < 5 {
        let msg = timeout(WAIT, ws.next())
            .await
            .expect("messages in time")
            .expect("open")
            .unwrap();
        let Message::Binary(b) = msg else { continue };
        match decode_server(&b).unwrap() {
            ServerMessage::Welcome(w) => {
                assert!(!welcomed);
                assert_eq!(w.tick_rate, 30);
                welcomed = true;
            }
            ServerMessage::Snapshot(s) => {
                assert!(welcomed, "a snapshot before Welcome");
                ticks.push(s.tick);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(ticks.windows(2).all(|w| w[0] < w[1]), "{ticks:?}");
    assert!(ticks[0] > Tick(0));
    ws.close(None).await.unwrap();

    // A plain HTTP request to the TLS port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = timeout(WAIT, plain.read_to_end(&mut buf)).await.unwrap();
    assert!(!buf.starts_with(b"HTTP/1.1 200"), "{buf:?}");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_https_and_quic_on_the_pem_files_it_is_given() {
    let pki = TestPki::new();
    let dir = std::env::temp_dir().join(format!("tickwire-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &pki.chain_pem).unwrap();
    std::fs::write(&key, &pki.key_pem).unwrap();
    let proc = ServerProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--quic",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let [addr, tls, sha] = proc.wait_for_fields(["addr", "tls", "cert_sha256"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(tls, "true");
    // QUIC serves the same certificate.
    assert_eq!(sha, pki.identity.cert_sha256());
    let addr = addr.parse().unwrap();
    let r = exchange_on(
        pki.connect(addr).await,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    drop(proc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_plays_over_the_servers_own_wss() {
    use tickwire_bot_client::tls::TlsTrust;
    use tickwire_bot_client::{Client, LoadConfig, run};

    let pki = TestPki::new();
    let identity = pki.identity.clone();
    let srv = TestServer::start(|c| c.tls = Some(identity)).await;
    let url = format!("wss://127.0.0.1:{}/ws", srv.addr.port());
    // One client, trusting only the test CA (what --ca-cert does).
    let trust = TlsTrust::from_pem(pki.chain_pem.as_bytes()).unwrap();
    let config = trust.client_config().unwrap();
    let mut c = Client::connect_with_tls(&url, &HelloArgs::new("bot"), Some(&config), None, WAIT)
        .await
        .unwrap();
    for _ in 0..3 {
        loop {
            if let tickwire_bot_client::Event::Snapshot { outcome, .. } =
                timeout(WAIT, c.next_event()).await.unwrap().unwrap()
            {
                outcome.expect("verifies");
                break;
            }
        }
    }
    c.close().await;
    // Load bots over wss, as `tickwire-bot --url wss://… --ca-cert PEM` runs them.
    let report = run(
        LoadConfig {
            url,
            ws_tls: Some(trust),
            bots: 10,
            duration: std::time::Duration::from_secs(2),
            ramp_per_s: 100.0,
            ..LoadConfig::default()
        },
        |_| {},
    )
    .await;
    assert_eq!(report.connected, 10, "{report:?}");
    assert!(report.is_clean(), "{report:?}");
    assert!(report.delivery_ratio > 0.9, "{report:?}");
    srv.shutdown().await;
}
