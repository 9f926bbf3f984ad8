//! Tickwire server: an authoritative fixed-tick game server over binary WebSocket and QUIC.
//!
//! [`Server::run`] takes an already-bound listener and a shutdown future (the mini-redis
//! shape): tests bind `127.0.0.1:0` and drive a real server; `main` binds `--listen` (and
//! `--quic`, see [`Server::run_with_quic`]) and passes Ctrl-C/SIGTERM.
//!
//! Data flow: socket → connection task ([`ws`] or [`quic`], both driving the shared session
//! logic) → crossbeam channels → simulation thread ([`sim`]) → per-client latest-wins
//! [`sim::Outbound`] slot → connection task → socket.

pub mod agones;
pub mod close;
pub mod config;
pub mod directory;
pub mod game;
pub mod grid;
pub mod http;
pub mod metrics;
pub mod quic;
pub mod replication;
pub mod rng;
pub mod scheduler;
pub(crate) mod session;
#[path = "room.rs"]
pub mod sim;
pub mod web;
pub mod world;
pub mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use quinn::VarInt;
use tickwire_shared::ClientId;
use tickwire_shared::quant::BoundsError;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;
use tracing::{Instrument, debug, info, info_span, warn};

pub use config::{Cli, LogFormat, ServerConfig, SimConfig};
pub use game::{Arena, ArenaRules, Game, Replicated};
pub use metrics::Metrics;
pub use quic::{QuicListener, TlsIdentity};
pub use sim::Simulation;

/// How long shutdown waits for connections to say goodbye before it stops waiting.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// After that, how long the QUIC endpoint gets to send its last CONNECTION_CLOSE frames.
const QUIC_DRAIN: Duration = Duration::from_millis(300);

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The world bounds are unusable.
    #[error("world: {0}")]
    World(BoundsError),
    /// The simulation thread could not start.
    #[error("cannot start the simulation thread: {0}")]
    Thread(std::io::Error),
}

/// State every connection task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    cfg: ServerConfig,
    metrics: Arc<Metrics>,
    sim: sim::SimHandle,
    shutdown: watch::Receiver<bool>,
}

/// A configured server, ready to run.
#[derive(Debug)]
pub struct Server<G: Game> {
    cfg: ServerConfig,
    game: G,
    metrics: Arc<Metrics>,
}

impl Server<Arena> {
    /// A server running the reference arena on the configured world.
    pub fn new(cfg: ServerConfig) -> Self {
        let arena = Arena::new(cfg.world.clone(), ArenaRules::default(), cfg.npcs, cfg.seed);
        Self::with_game(cfg, arena)
    }
}

impl<G: Game> Server<G> {
    /// A server running your own game.
    pub fn with_game(cfg: ServerConfig, game: G) -> Self {
        Self {
            cfg,
            game,
            metrics: Arc::new(Metrics::default()),
        }
    }

    /// The counters `/metrics` shows, live.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Serves WebSocket clients on `listener` until `shutdown` completes, then closes every
    /// client with 1001 and returns within about two seconds.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        self.run_with_quic(listener, None, shutdown).await
    }

    /// As [`Server::run`], and QUIC clients on `quic` too: one simulation, one
    /// `--max-clients` budget, one shutdown (QUIC clients get 1001 within the same two
    /// seconds).
    pub async fn run_with_quic(
        self,
        listener: TcpListener,
        quic: Option<QuicListener>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let Server { cfg, game, metrics } = self;
        let (control_tx, control_rx) = crossbeam_channel::unbounded();
        let (input_tx, input_rx) = crossbeam_channel::bounded(cfg.input_queue);
        let tick = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let simulation = Simulation::new(game, cfg.sim.clone(), metrics.clone())?;
        let sim_thread = sim::spawn(simulation, control_rx, input_rx, tick.clone(), stop.clone())
            .map_err(ServerError::Thread)?;

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        let shared = Arc::new(Shared {
            cfg,
            metrics,
            sim: sim::SimHandle {
                control: control_tx,
                input: input_tx,
                tick,
            },
            shutdown: shutdown_rx,
        });
        let local = listener
            .local_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string());
        info!(
            addr = %local,
            tick_rate = shared.cfg.sim.tick_rate,
            world = %shared.cfg.world.name,
            "listening (WebSocket at /ws, metrics at /metrics)"
        );
        if let Some(q) = &quic {
            info!(
                quic_addr = %q.local_addr(),
                cert_sha256 = %q.cert_sha256(),
                alpn = %"tickwire/1",
                self_signed = q.is_self_signed(),
                "listening for QUIC (pin the certificate by its SHA-256)"
            );
        }
        let endpoint = quic.as_ref().map(|q| q.endpoint().clone());
        let mut quic_open = endpoint.is_some();

        let next_client = AtomicU32::new(1);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let id = ClientId(next_client.fetch_add(1, Relaxed));
                        let span = info_span!("conn", client_id = %id, %peer);
                        let (sh, done) = (shared.clone(), done_tx.clone());
                        tokio::spawn(
                            async move {
                                handle(stream, peer, sh, id).await;
                                drop(done);
                            }
                            .instrument(span),
                        );
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                incoming = next_incoming(endpoint.as_ref()), if quic_open => match incoming {
                    Some(incoming) => {
                        let id = ClientId(next_client.fetch_add(1, Relaxed));
                        let peer = incoming.remote_address();
                        let span = info_span!("quic", client_id = %id, %peer);
                        let (sh, done) = (shared.clone(), done_tx.clone());
                        tokio::spawn(
                            async move {
                                quic::handle(incoming, sh, id).await;
                                drop(done);
                            }
                            .instrument(span),
                        );
                    }
                    None => {
                        warn!("the QUIC endpoint stopped accepting");
                        quic_open = false;
                    }
                },
            }
        }

        info!("shutting down: closing every client with 1001");
        drop(listener);
        if let Some(ep) = &endpoint {
            // New QUIC connection attempts are refused from now on.
            ep.set_server_config(None);
        }
        let _ = shutdown_tx.send(true);
        drop(done_tx);
        if timeout(SHUTDOWN_GRACE, done_rx.recv()).await.is_err() {
            warn!("some connections did not finish closing in time");
        }
        if let Some(ep) = &endpoint {
            // Anything still open (a handshake in progress) goes with 1001 too; then give the
            // CONNECTION_CLOSE frames a moment to leave.
            ep.close(
                VarInt::from_u32(close::GOING_AWAY.into()),
                b"server shutting down",
            );
            let _ = timeout(QUIC_DRAIN, ep.wait_idle()).await;
        }
        stop.store(true, Relaxed);
        let _ = tokio::task::spawn_blocking(move || sim_thread.join()).await;
        info!("stopped");
        Ok(())
    }
}

/// The next QUIC connection attempt; never resolves without an endpoint.
async fn next_incoming(endpoint: Option<&quinn::Endpoint>) -> Option<quinn::Incoming> {
    match endpoint {
        Some(ep) => ep.accept().await,
        None => std::future::pending().await,
    }
}

/// Connections still in their HTTP head or answer (not yet WebSocket sessions) at once; past
/// this a new connection is closed at once, so slow or idle sockets cannot use up every file
/// descriptor before `--max-clients` applies.
const MAX_PENDING_HTTP: u64 = 1024;

/// Counts a connection as pending HTTP until dropped.
struct Pending(Arc<Metrics>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.http_pending.fetch_sub(1, Relaxed);
    }
}

/// Writes an HTTP answer, giving up after `--write-timeout` on a peer that does not read.
async fn reply(
    sh: &Shared,
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) {
    let _ = timeout(
        sh.cfg.write_timeout,
        http::respond(stream, status, content_type, body, head_only),
    )
    .await;
}

async fn handle(mut stream: TcpStream, peer: SocketAddr, sh: Arc<Shared>, id: ClientId) {
    if sh.metrics.http_pending.fetch_add(1, Relaxed) >= MAX_PENDING_HTTP {
        sh.metrics.http_pending.fetch_sub(1, Relaxed);
        debug!("too many connections still in HTTP: closed");
        return;
    }
    let pending = Pending(sh.metrics.clone());
    let _ = stream.set_nodelay(true);
    let (req, leftover) =
        match timeout(sh.cfg.handshake_timeout, http::read_head(&mut stream)).await {
            Ok(Ok(r)) => r,
            Ok(Err(http::HttpError::TooLarge | http::HttpError::Malformed)) => {
                reply(
                    &sh,
                    &mut stream,
                    "400 Bad Request",
                    "text/plain",
                    b"bad request\n",
                    false,
                )
                .await;
                return;
            }
            _ => return,
        };
    let head_only = req.method == "HEAD";
    if req.method != "GET" && !head_only {
        reply(
            &sh,
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n",
            false,
        )
        .await;
        return;
    }
    if req.path == "/ws" {
        return upgrade(stream, req, leftover, sh, id, peer, pending).await;
    }
    let (status, ct, body): (&str, &str, std::borrow::Cow<'static, [u8]>) = match req.path.as_str()
    {
        "/healthz" => ("200 OK", "text/plain", b"ok\n".as_slice().into()),
        "/metrics" => {
            let period = Duration::from_secs_f64(1.0 / f64::from(sh.cfg.sim.tick_rate));
            let text = sh.metrics.render(period);
            (
                "200 OK",
                "text/plain; version=0.0.4",
                text.into_bytes().into(),
            )
        }
        path => match web::lookup(sh.cfg.web_root.as_deref(), path).await {
            Some((ct, body)) => ("200 OK", ct, body),
            None => (
                "404 Not Found",
                "text/plain",
                b"not found\n".as_slice().into(),
            ),
        },
    };
    reply(&sh, &mut stream, status, ct, &body, head_only).await;
}

async fn upgrade(
    mut stream: TcpStream,
    req: http::Request,
    leftover: Vec<u8>,
    sh: Arc<Shared>,
    id: ClientId,
    peer: SocketAddr,
    pending: Pending,
) {
    let head_only = req.method == "HEAD";
    let key = req.header("sec-websocket-key").map(str::to_owned);
    let is_upgrade =
        req.header_has("upgrade", "websocket") && req.header("sec-websocket-version") == Some("13");
    let (true, Some(key)) = (is_upgrade, key) else {
        reply(
            &sh,
            &mut stream,
            "426 Upgrade Required",
            "text/plain",
            b"WebSocket endpoint\n",
            head_only,
        )
        .await;
        return;
    };
    let Some(slot) = session::SessionSlot::acquire(&sh) else {
        debug!("refused: server full");
        reply(
            &sh,
            &mut stream,
            "503 Service Unavailable",
            "text/plain",
            b"server full\n",
            head_only,
        )
        .await;
        return;
    };
    let upgraded = timeout(
        sh.cfg.write_timeout,
        stream.write_all(http::upgrade_response(&key).as_bytes()),
    )
    .await;
    drop(pending);
    if let Ok(Ok(())) = upgraded {
        debug!(%peer, "upgraded");
        ws::serve(stream, leftover, sh, id).await;
    }
    drop(slot);
}
