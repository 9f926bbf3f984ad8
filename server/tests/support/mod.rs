//! The in-process test server every integration test file starts: a real `Server` on
//! 127.0.0.1 port 0 (and, when asked, QUIC on a free UDP port with a fresh self-signed
//! certificate), stopped through its shutdown future.
// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub(crate) mod agones_fake;
pub(crate) mod http;
pub(crate) mod process;
pub(crate) mod raw;
pub(crate) mod redis;
pub(crate) mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tickwire_bot_client::quic::parse_sha256;
use tickwire_bot_client::{Client, QuicClient, ServerCert};
use tickwire_server::{Metrics, QuicListener, Server, ServerConfig, TlsIdentity};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// How long tests wait for anything the server should do promptly.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

pub(crate) struct TestServer {
    /// The HTTP/WebSocket address.
    pub(crate) addr: SocketAddr,
    /// `ws://ADDR/ws`.
    pub(crate) url: String,
    /// The QUIC address, when started with QUIC.
    pub(crate) quic_addr: Option<SocketAddr>,
    /// The pin for the QUIC certificate, when started with QUIC.
    pub(crate) pin: Option<ServerCert>,
    pub(crate) metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TestServer {
    /// WebSocket only; `tweak` adjusts the defaults (20 NPCs).
    pub(crate) async fn start(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        Self::start_inner(tweak, false, |_| {}).await
    }

    /// WebSocket only, with `setup` run on the server before it starts (register game kinds).
    pub(crate) async fn start_custom(
        tweak: impl FnOnce(&mut ServerConfig),
        setup: impl FnOnce(&mut Server),
    ) -> TestServer {
        Self::start_inner(tweak, false, setup).await
    }

    /// WebSocket and QUIC.
    pub(crate) async fn start_with_quic(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        Self::start_inner(tweak, true, |_| {}).await
    }

    async fn start_inner(
        tweak: impl FnOnce(&mut ServerConfig),
        with_quic: bool,
        setup: impl FnOnce(&mut Server),
    ) -> TestServer {
        let mut cfg = ServerConfig::defaults();
        cfg.npcs = 20;
        tweak(&mut cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let quic = with_quic.then(|| {
            let identity = TlsIdentity::self_signed().unwrap();
            QuicListener::bind("127.0.0.1:0".parse().unwrap(), &identity).unwrap()
        });
        let quic_addr = quic.as_ref().map(|q| q.local_addr());
        let pin = quic
            .as_ref()
            .map(|q| ServerCert::Pinned(parse_sha256(q.cert_sha256()).unwrap()));
        let mut server = Server::new(cfg);
        setup(&mut server);
        let metrics = server.metrics();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run_with_quic(listener, quic, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        TestServer {
            addr,
            url: format!("ws://{addr}/ws"),
            quic_addr,
            pin,
            metrics,
            stop: Some(stop),
            task,
        }
    }

    /// A welcomed WebSocket client.
    pub(crate) async fn ws_client(&self, name: &str) -> Client {
        Client::connect(&self.url, name, None, WAIT).await.unwrap()
    }

    /// `quic://QUIC_ADDR` (panics when started without QUIC).
    pub(crate) fn quic_url(&self) -> String {
        format!("quic://{}", self.quic_addr.expect("started with QUIC"))
    }

    /// The certificate pin (panics when started without QUIC).
    pub(crate) fn quic_pin(&self) -> ServerCert {
        self.pin.expect("started with QUIC")
    }

    /// A welcomed QUIC client.
    pub(crate) async fn quic_client(&self, name: &str) -> QuicClient {
        QuicClient::connect(&self.quic_url(), name, self.quic_pin(), WAIT)
            .await
            .unwrap()
    }

    /// Triggers shutdown and waits (at most 3 s) for the server to return.
    pub(crate) async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        timeout(Duration::from_secs(3), self.task)
            .await
            .expect("server stops in time")
            .unwrap();
    }
}
