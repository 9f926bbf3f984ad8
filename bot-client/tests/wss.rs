//! The bot over `wss://`: TLS (tokio-rustls, ring) under the WebSocket. The server's own TLS
//! front door is not in this tree yet, so the tests put a TLS-terminating proxy with an rcgen
//! certificate in front of a plain in-process server: the bot's side is the real one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tickwire_bot_client::client::connect_raw_tls;
use tickwire_bot_client::{
    Client, ClientError, Event, HelloArgs, LoadConfig, TlsTrust, TransportKind, run,
};
use tickwire_server::{Server, ServerConfig};
use tickwire_shared::Received;
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(10);

/// A plain server and, in front of it, a TLS proxy on 127.0.0.1 with a fresh self-signed
/// certificate for `localhost` and `127.0.0.1`: the `wss://` URL, the certificate, and the
/// way to stop the server.
async fn tls_server() -> (
    String,
    CertificateDer<'static>,
    tokio::sync::oneshot::Sender<()>,
) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut cfg = ServerConfig::defaults();
    cfg.npcs = 5;
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = plain.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(Server::new(cfg).run(plain, async {
        let _ = stopped.await;
    }));

    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("wss://{}/ws", front.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = front.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    (url, cert, stop)
}

/// Reads until a verified, current snapshot.
async fn verified_snapshot(c: &mut Client) {
    loop {
        match tokio::time::timeout(WAIT, c.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Snapshot { outcome, .. } => {
                if let Received::Current { .. } = outcome.unwrap() {
                    return;
                }
            }
            Event::Closed { code, reason } => panic!("closed: {code} {reason}"),
            Event::Pong { .. } | Event::Welcome(_) => {}
        }
    }
}

#[tokio::test]
async fn a_bot_connects_over_wss_trusting_the_certificate_or_insecurely() {
    let (url, cert, stop) = tls_server().await;
    let hello = HelloArgs::new("tls");
    for trust in [TlsTrust::Roots(vec![cert.clone()]), TlsTrust::Insecure] {
        let config = trust.client_config().unwrap();
        let mut c = Client::connect_with_tls(&url, &hello, Some(&config), None, WAIT)
            .await
            .unwrap();
        assert!(c.welcome.tick_rate > 0);
        verified_snapshot(&mut c).await;
        c.send_input(1, 0, 0, 0).await.unwrap();
        verified_snapshot(&mut c).await;
        c.close().await;
    }
    // localhost names the same certificate.
    let by_name = url.replace("127.0.0.1", "localhost");
    let config = TlsTrust::Roots(vec![cert]).client_config().unwrap();
    let mut c = Client::connect_with_tls(&by_name, &hello, Some(&config), None, WAIT)
        .await
        .unwrap();
    verified_snapshot(&mut c).await;
    let _ = stop.send(());
}

#[tokio::test]
async fn wss_without_a_trust_or_with_another_certificate_is_refused() {
    let (url, _cert, stop) = tls_server().await;
    assert!(matches!(
        Client::connect_with(&url, &HelloArgs::new("x"), None, WAIT).await,
        Err(ClientError::NoTls(_))
    ));
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let config = TlsTrust::Roots(vec![other.cert.der().clone()])
        .client_config()
        .unwrap();
    let refused = connect_raw_tls(&url, None, Some(&config)).await;
    assert!(matches!(refused, Err(ClientError::Io(_))), "{refused:?}");
    // A PEM without a certificate.
    assert!(TlsTrust::from_pem(b"not a pem").is_err());
    let pem = other.cert.pem();
    assert_eq!(
        TlsTrust::from_pem(pem.as_bytes()).unwrap(),
        TlsTrust::Roots(vec![other.cert.der().clone()])
    );
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_bots_run_over_wss() {
    let (url, cert, stop) = tls_server().await;
    let report = run(
        LoadConfig {
            url: url.clone(),
            transport: TransportKind::Ws,
            bots: 4,
            duration: Duration::from_secs(2),
            ramp_per_s: 100.0,
            ws_tls: Some(TlsTrust::Roots(vec![cert])),
            ..LoadConfig::default()
        },
        |_| {},
    )
    .await;
    assert_eq!(report.connected, 4, "{report:?}");
    assert!(
        report.is_clean() && report.delivery_ratio > 0.8,
        "{report:?}"
    );
    // No certificate check at all: nobody starts.
    let report = run(
        LoadConfig {
            url,
            bots: 2,
            duration: Duration::from_secs(1),
            ..LoadConfig::default()
        },
        |_| {},
    )
    .await;
    assert_eq!((report.connected, report.connect_failures), (0, 2));
    let _ = stop.send(());
}
