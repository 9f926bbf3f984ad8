//! Tickwire server: an authoritative fixed-tick game server over binary WebSocket and QUIC,
//! hosting many rooms (matches) per process, and a fleet of processes through a shared
//! directory.
//!
//! [`Server::run`] takes an already-bound listener and a shutdown future (the mini-redis
//! shape): tests bind `127.0.0.1:0` and drive a real server; `main` binds `--listen` (and
//! `--quic`, see [`Server::run_with_quic`]) and passes Ctrl-C/SIGTERM.
//!
//! Data flow: socket → front door ([`http`]: matchmaking, the WebSocket upgrade; or [`quic`])
//! → session ([`session`]: the seat, then its room) → crossbeam channels → the room's driver
//! thread ([`driver`], stepping [`room`]s) → per-client latest-wins [`room::Outbound`] slot
//! → connection task → socket. Off to the side, [`fleet`] keeps the directory ([`directory`])
//! and Agones current; nothing there touches a room's thread.

pub mod agones;
pub mod config;
pub mod directory;
pub mod driver;
pub(crate) mod fleet;
pub mod game;
pub mod grid;
pub(crate) mod head;
pub mod http;
pub mod lagcomp;
pub mod launch;
pub(crate) mod matchmaking;
pub mod metrics;
pub mod origin;
pub mod pending;
pub mod quic;
pub mod record;
pub mod registry;
pub mod replay;
pub mod replication;
pub mod rng;
pub mod room;
pub mod scheduler;
pub(crate) mod session;
pub mod tls;
pub mod web;
pub mod wire;
pub mod world;
pub mod ws;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tickwire_shared::CloseCode;

use quinn::VarInt;
use tickwire_shared::quant::BoundsError;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;
use tracing::{Instrument, debug_span, info, warn};

pub use config::{
    Cli, Command, LogFormat, ReplayArgs, RoomsConfig, ServerConfig, SimConfig, TokenArgs,
};
pub use game::{Arena, ArenaRules, Game, PlayerInfo, Replicated};
pub use metrics::Metrics;
pub use quic::{QuicListener, TlsIdentity};
pub use registry::{GameFactory, RoomSpec};
pub use room::Room;

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
    /// The room driver threads could not start.
    #[error("cannot start the room driver threads: {0}")]
    Thread(std::io::Error),
    /// The Redis directory URL is unusable.
    #[error("--redis: {0}")]
    Directory(directory::MatchError),
    /// The default room could not be made.
    #[error("default room: {0}")]
    DefaultRoom(registry::RoomError),
    /// rustls refused the certificate or key for the game port.
    #[error("--tls-cert/--tls-key: {0}")]
    Tls(rustls::Error),
    /// The match recorder's writer thread could not start.
    #[error("--record: cannot start the writer thread: {0}")]
    Record(std::io::Error),
}

/// State every connection task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    cfg: ServerConfig,
    metrics: Arc<Metrics>,
    registry: Arc<registry::Registry>,
    directory: directory::Directory,
    /// Claims take it shared; a heartbeat takes it exclusively while it reads the rooms'
    /// session counts and sends them, so a report and a claim never interleave (see
    /// [`fleet`]).
    claim_gate: tokio::sync::RwLock<()>,
    /// The room a `Hello` without a seat joins, if this node has one.
    default_room: Option<String>,
    client_ids: http::AtomicClientIds,
    /// Connections still in HTTP.
    pending: Arc<pending::PendingTable>,
    /// TLS on the game port, with `--tls-cert`.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Claims made so far: each claim takes the next number (see [`fleet`]).
    claims: std::sync::atomic::AtomicU64,
    shutdown: watch::Receiver<bool>,
}

/// The default room's game, when it is not the built-in arena.
type DefaultGame = Box<dyn Game>;

/// A configured server, ready to run.
pub struct Server {
    cfg: ServerConfig,
    kinds: BTreeMap<String, GameFactory>,
    /// Each kind's setup bytes, recorded in its rooms' match logs.
    setups: BTreeMap<String, Vec<u8>>,
    default_game: Option<DefaultGame>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("kinds", &self.kinds.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server with the built-in `arena` kind; its default room is an arena on the
    /// configured world with `--npcs` NPCs.
    pub fn new(cfg: ServerConfig) -> Self {
        let arena = record::ArenaSetup {
            world: cfg.world.clone(),
            rules: cfg.arena_rules(),
            npcs: cfg.rooms.room_npcs,
        };
        let mut s = Self {
            cfg,
            kinds: BTreeMap::new(),
            setups: BTreeMap::new(),
            default_game: None,
            metrics: Arc::new(Metrics::default()),
        };
        let setup = arena.encode().unwrap_or_else(|e| {
            warn!(error = %e, "the arena's setup does not encode: its match logs will not replay");
            Vec::new()
        });
        s.register_game_with_setup("arena", setup, move |spec: &RoomSpec| {
            Box::new(arena.build(spec.seed)) as Box<dyn Game>
        });
        s
    }

    /// As [`Server::new`], with your own game in the default room. With `--record`, the
    /// room's log names no kind and no setup: replay it with [`replay::replay_file`] and a
    /// factory that builds this same game (the header's seed is `--seed`).
    pub fn with_game<G: Game>(cfg: ServerConfig, game: G) -> Self {
        let mut s = Self::new(cfg);
        s.default_game = Some(Box::new(game));
        s
    }

    /// Registers a game kind: matchmaking makes rooms of it by this name
    /// (`POST /matchmake/create/{name}`), each with a game from `factory`.
    pub fn register_game(
        &mut self,
        name: &str,
        factory: impl Fn(&RoomSpec) -> Box<dyn Game> + Send + Sync + 'static,
    ) -> &mut Self {
        self.register_game_with_setup(name, Vec::new(), factory)
    }

    /// As [`Server::register_game`], with the bytes that, besides the [`RoomSpec`], decide
    /// what `factory` builds: with `--record`, every match log of the kind carries them, so
    /// that a replay ([`replay::replay_file`]) can build the same game.
    pub fn register_game_with_setup(
        &mut self,
        name: &str,
        setup: Vec<u8>,
        factory: impl Fn(&RoomSpec) -> Box<dyn Game> + Send + Sync + 'static,
    ) -> &mut Self {
        self.kinds.insert(name.to_owned(), Arc::new(factory));
        self.setups.insert(name.to_owned(), setup);
        self
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

    /// As [`Server::run`], and QUIC clients on `quic` too: one set of rooms, one
    /// `--max-clients` budget, one shutdown (QUIC clients get 1001 within the same two
    /// seconds).
    pub async fn run_with_quic(
        self,
        listener: TcpListener,
        quic: Option<QuicListener>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let Server {
            mut cfg,
            kinds,
            setups,
            default_game,
            metrics,
        } = self;
        // Bound to port 0: the URLs matchmaking hands out name the real ports.
        if let Ok(local) = listener.local_addr() {
            cfg.rooms.ws_url = cfg
                .rooms
                .ws_url
                .replace(&cfg.listen.to_string(), &local.to_string());
            if let (Some(q), Some(url)) = (cfg.quic, &mut cfg.rooms.quic_url)
                && let Some(ql) = &quic
            {
                *url = url.replace(&q.to_string(), &ql.local_addr().to_string());
            }
        }
        let tls = match &cfg.tls {
            Some(id) => Some(tls::server_config(id).map_err(ServerError::Tls)?),
            None => None,
        };
        if tls.is_some() && !cfg.rooms.public_urls_given {
            // Matchmaking sends clients to this port: over TLS, as wss://.
            cfg.rooms.ws_url = cfg.rooms.ws_url.replacen("ws://", "wss://", 1);
        }
        let recorder = match &cfg.record {
            Some(dir) => Some(Arc::new(
                record::Recorder::start(dir.clone(), setups).map_err(ServerError::Record)?,
            )),
            None => None,
        };
        let driver = driver::Driver::start(cfg.rooms.threads, cfg.sim.tick_rate, metrics.clone())
            .map_err(ServerError::Thread)?;
        let registry = Arc::new(
            registry::Registry::new(
                kinds,
                driver,
                cfg.sim.clone(),
                cfg.input_queue,
                cfg.seed,
                metrics.clone(),
            )
            .with_recorder(recorder.clone()),
        );
        let default_room = cfg
            .rooms
            .default_room
            .then(|| registry::default_room_id(&cfg.rooms.node_id, cfg.rooms.redis.is_some()));
        if let Some(id) = &default_room {
            let max = u32::try_from(cfg.max_clients).unwrap_or(u32::MAX);
            // Its log names kind "arena" for the built-in arena, none for a given instance.
            let spec = |kind: &str| RoomSpec {
                room_id: id.clone(),
                kind: kind.to_owned(),
                max_clients: max,
                seed: cfg.seed,
            };
            let made = match default_game {
                Some(game) => registry.insert_recorded(&spec(""), "arena", game, false, &[]),
                None => {
                    let arena = record::ArenaSetup {
                        world: cfg.world.clone(),
                        rules: cfg.arena_rules(),
                        npcs: cfg.npcs,
                    };
                    let setup = if recorder.is_some() {
                        arena.encode().unwrap_or_default()
                    } else {
                        Vec::new()
                    };
                    let game = arena.build(cfg.seed);
                    registry.insert_recorded(&spec("arena"), "arena", game, false, &setup)
                }
            };
            made.map_err(ServerError::DefaultRoom)?;
        }
        if let Some(port) = cfg.rooms.agones_port
            && !cfg.rooms.public_urls_given
        {
            // Before the reporter starts: Ready is the first thing the sidecar hears of us
            // but this read.
            match public_urls_from_agones(&agones::AgonesClient::new(port)).await {
                Some((ws, q)) => {
                    info!(ws_url = %ws, "Agones: clients reach this GameServer at its address and host port");
                    cfg.rooms.ws_url = if tls.is_some() {
                        ws.replacen("ws://", "wss://", 1)
                    } else {
                        ws
                    };
                    if cfg.rooms.quic_url.is_some() {
                        cfg.rooms.quic_url = q;
                    }
                }
                None => {
                    warn!("Agones: no GameServer address yet; matchmaking answers name --listen")
                }
            }
        }
        if [
            "ws://0.0.0.0:",
            "ws://[::]:",
            "wss://0.0.0.0:",
            "wss://[::]:",
        ]
        .iter()
        .any(|p| cfg.rooms.ws_url.starts_with(p))
        {
            warn!(
                ws_url = %cfg.rooms.ws_url,
                "matchmaking answers name an unspecified address: set --public-url"
            );
        }
        let node = directory::NodeInfo {
            node_id: cfg.rooms.node_id.clone(),
            ws_url: cfg.rooms.ws_url.clone(),
            quic_url: cfg.rooms.quic_url.clone(),
        };
        let directory = match &cfg.rooms.redis {
            None => directory::Directory::local(node, cfg.rooms.seat_ttl),
            Some(url) => {
                match directory::Directory::redis(url, node, cfg.rooms.lease, cfg.rooms.seat_ttl)
                    .await
                {
                    Ok(d) => d,
                    Err(e) => {
                        registry.stop();
                        return Err(ServerError::Directory(e));
                    }
                }
            }
        };

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        let pending = Arc::new(pending::PendingTable::new(
            cfg.max_pending_http,
            cfg.max_pending_per_ip,
            metrics.clone(),
        ));
        let shared = Arc::new(Shared {
            cfg,
            metrics,
            registry: registry.clone(),
            directory,
            claim_gate: tokio::sync::RwLock::new(()),
            default_room,
            client_ids: http::AtomicClientIds::default(),
            pending,
            tls,
            claims: std::sync::atomic::AtomicU64::new(0),
            shutdown: shutdown_rx,
        });
        let local = listener
            .local_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string());
        info!(
            addr = %local,
            tick_rate = shared.cfg.sim.tick_rate,
            world = %shared.cfg.world.name,
            node_id = %shared.cfg.rooms.node_id,
            ws_url = %shared.cfg.rooms.ws_url,
            room_threads = shared.cfg.rooms.threads,
            io_threads = shared.cfg.io_threads,
            directory = if shared.cfg.rooms.redis.is_some() { "redis" } else { "local" },
            tls = shared.tls.is_some(),
            "listening (WebSocket at /ws, matchmaking at /matchmake, metrics at /metrics)"
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
        let agones = match shared.cfg.rooms.agones_port {
            None => None,
            Some(port) => {
                let a = agones::AgonesHandle::start(port, agones::DEFAULT_HEALTH_EVERY);
                // The listeners are bound: this node can take players.
                match a.ready().await {
                    Ok(()) => info!("Agones: Ready"),
                    Err(e) => warn!(error = %e, "Agones: Ready failed"),
                }
                Some(Arc::new(a))
            }
        };
        let fleet = tokio::spawn(fleet::run(shared.clone(), agones.clone()));

        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => http::accept(&shared, stream, peer, &done_tx).await,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                incoming = next_incoming(endpoint.as_ref()), if quic_open => match incoming {
                    Some(incoming) => {
                        let id = shared.client_ids.next();
                        let peer = incoming.remote_address();
                        let span = debug_span!("quic", client_id = %id, %peer);
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
                VarInt::from_u32(CloseCode::GoingAway.into()),
                b"server shutting down",
            );
            let _ = timeout(QUIC_DRAIN, ep.wait_idle()).await;
        }
        // The fleet task deregisters; then Agones hears that this node has drained.
        let _ = timeout(Duration::from_secs(3), fleet).await;
        if let Some(a) = agones.and_then(|a| Arc::try_unwrap(a).ok()) {
            a.report(0, Default::default());
            match a.shutdown().await {
                Ok(()) => info!("Agones: Shutdown"),
                Err(e) => warn!(error = %e, "Agones: Shutdown failed"),
            }
        }
        let _ = tokio::task::spawn_blocking(move || {
            registry.stop();
            // After the rooms: each log then ends with its room's last tick.
            if let Some(r) = recorder {
                r.shutdown();
            }
        })
        .await;
        info!("stopped");
        Ok(())
    }
}

/// The GameServer's public URLs, asking the sidecar for up to 5 s while it has none yet.
async fn public_urls_from_agones(
    client: &agones::AgonesClient,
) -> Option<(String, Option<String>)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(gs) = client.get_gameserver().await
            && let Some(urls) = gs.public_urls()
        {
            return Some(urls);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The next QUIC connection attempt; never resolves without an endpoint.
async fn next_incoming(endpoint: Option<&quinn::Endpoint>) -> Option<quinn::Incoming> {
    match endpoint {
        Some(ep) => ep.accept().await,
        None => std::future::pending().await,
    }
}
