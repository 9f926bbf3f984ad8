//! Command line and configuration. Every knob an operator can turn is here, documented with
//! its default and what it costs; [`Cli::into_config`] validates and builds the
//! [`ServerConfig`] that is passed down. Nothing below `main` reads the environment or files.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tickwire_shared::token::{PlayerClaims, TokenKey};

use crate::game::ArenaRules;
use crate::origin::{Origin, OriginPolicy};
use crate::quic::{QuicError, TlsIdentity};
use crate::world::{World, WorldError};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Tickwire: an authoritative fixed-tick game server over binary WebSocket and QUIC.
///
/// Log level comes from RUST_LOG (default: info).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "tickwire-server",
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// A tool instead of the server (`token`, `replay`).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address for HTTP and WebSocket (one port; the WebSocket endpoint is /ws).
    /// Port 0 picks a free port; the bound address is logged.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Simulation ticks per second (1–240). Higher means fresher state and more CPU and
    /// bandwidth per client.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=240))]
    pub tick_rate: u32,

    /// Send a snapshot every N ticks (1–240). 2 at 60 Hz gives 30 snapshots/s: half the
    /// bandwidth and replication CPU for a bit more interpolation delay on clients.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=240))]
    pub snapshot_every: u32,

    /// World file (TOML: bounds and obstacles). Default: the arena built into the binary
    /// (assets/worlds/arena.toml).
    #[arg(long)]
    pub world: Option<PathBuf>,

    /// Wandering NPCs to spawn (0–100000); they make load without clients.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub npcs: u32,

    /// Lag compensation of the arena's hitscan weapon (0–1000 ms; 0 turns it off): a shot is
    /// tested against the other entities as they were when its player saw them (the input
    /// frame's view_tick less its interp_ms, PROTOCOL.md 5.3), at most this far back. 250
    /// covers a 100 ms interpolation delay plus about 150 ms of one-way latency. Source allows
    /// 1 s (sv_maxunlag), but the bigger the window, the more often a victim is hit after
    /// reaching cover, and the more a client lying about what it saw gains. Costs a copy of
    /// the players' and NPCs' positions per tick of the window.
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub max_rewind_ms: u32,

    /// Interest radius in world units: each client receives the entities within it.
    /// Bandwidth and CPU per client grow with its square.
    #[arg(long, default_value_t = 150.0)]
    pub view_radius: f32,

    /// Most concurrent sessions, WebSocket and QUIC together; beyond it a WebSocket upgrade is
    /// refused with HTTP 503 and a QUIC connection with CONNECTION_REFUSED.
    /// Each client costs about 40 KiB of baseline ring plus socket buffers.
    #[arg(long, default_value_t = 10_000)]
    pub max_clients: usize,

    /// Disconnect (close code 4000) a client that acknowledges no snapshot for this many
    /// seconds. Bounds what a stalled client costs. Any acknowledgement of a snapshot the
    /// client was sent, newer than its previous one, counts, however old.
    #[arg(long, default_value_t = 10.0)]
    pub ack_timeout: f64,

    /// Disconnect (close code 4012) a client whose acknowledgements stay older than its
    /// --baseline-ring snapshots (~1.07 s at the defaults) for this many seconds. Until then it
    /// gets full snapshots, the dearest kind; 5 s rides out a stall of a few seconds (a
    /// Wi-Fi handover, a paused tab) and is half the default --ack-timeout.
    #[arg(long, default_value_t = 5.0)]
    pub max_behind: f64,

    /// Seconds a dropped player's entity waits for its client to resume with the Welcome's
    /// resume token (0 disables resuming).
    #[arg(long, default_value_t = 10.0)]
    pub resume_grace: f64,

    /// Most dropped players each room keeps waiting for a resume; when a room has this many,
    /// the next drop despawns the one that has waited longest (a new connection is never
    /// refused for it). Waiting players stand still and are sent to no one, but each still
    /// holds its entity. Default: the room's seats (--max-clients for the default room, the
    /// room size for a matchmade one), so that a whole room dropping at once can come back.
    /// 0 despawns every dropped player at once (no resume).
    #[arg(long)]
    pub max_detached: Option<u32>,

    /// Most bytes of each client's snapshot (the whole Snapshot envelope; a QUIC client's is
    /// also capped to its datagram size). Entities then compete for the room by priority:
    /// nearer entities and important kinds weigh more, and an entity's priority grows with
    /// every tick since the client last got it; what does not fit stays as the client has it
    /// and comes in a later snapshot (PROTOCOL.md 7.4, partial snapshots). Off by default:
    /// every snapshot carries every change. 1200 holds a 1,000-entity crowd at 36 kB/s per
    /// client at 30 snapshots a second, each entity refreshed every few ticks.
    #[arg(long, value_parser = clap::value_parser!(u32).range(128..=1_048_576))]
    pub max_snapshot_bytes: Option<u32>,

    /// Seconds a new connection has for its TLS handshake, then for its whole HTTP request
    /// head (a deadline for the head, not per byte; again for each keep-alive request), and
    /// after the upgrade for its Hello.
    #[arg(long, default_value_t = 5.0)]
    pub handshake_timeout: f64,

    /// Most connections in HTTP at once (not yet WebSocket sessions: in the TLS handshake,
    /// sending a request head, being answered, or idle between keep-alive requests). A new
    /// connection is never refused for it: the oldest one that has not sent a whole request
    /// head is closed to make room (slow and idle sockets go first). Each costs a socket and,
    /// once it has sent a head, about 16 KiB of HTTP buffers.
    #[arg(long, default_value_t = crate::pending::DEFAULT_MAX_PENDING)]
    pub max_pending_http: usize,

    /// Most connections in HTTP from one source (an IPv4 address, an IPv6 /64); beyond it a
    /// new connection from there is closed at accept, so one host cannot take the whole
    /// --max-pending-http table. 0: no per-source cap (players behind one big NAT).
    #[arg(long, default_value_t = crate::pending::DEFAULT_MAX_PENDING_PER_SOURCE)]
    pub max_pending_per_ip: usize,

    /// Seconds one write to a client may block before the client is dropped as too slow.
    #[arg(long, default_value_t = 5.0)]
    pub write_timeout: f64,

    /// Kernel send buffer of each TCP connection, in bytes (SO_SNDBUF; 0 leaves the kernel's
    /// autotuning, which grows it up to net.ipv4.tcp_wmem's maximum, 4 MiB by default). A
    /// client that stops reading is dropped once this much is queued for it and a write has
    /// then waited --write-timeout; autotuned, the buffer kept growing, the write never
    /// waited, and 50 such clients pinned ~170 MB of kernel memory for ~10 minutes. Linux
    /// doubles the value for its bookkeeping. 4096 to 67108864.
    #[arg(long, default_value_t = 256 * 1024)]
    pub max_send_buffer: usize,

    /// Seconds a source (an IPv4 address, an IPv6 /64) whose session was closed for flooding
    /// (4013) has its new connections closed at accept; 0 turns it off. Players behind the
    /// same NAT as a flooder wait this long too, so keep it short.
    #[arg(long, default_value_t = 5.0)]
    pub flood_penalty: f64,

    /// Snapshots remembered per client as delta baselines (1–256). More survives longer ack
    /// gaps without a full snapshot, at about 1 KiB per snapshot per client.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub baseline_ring: u32,

    /// Most new input frames applied per client per tick (1-64), as Source's
    /// sv_maxusrcmdprocessticks: of a burst, the newest are applied and the older skipped, so
    /// a client catching up after a stall is at once on its newest intent and one that sends
    /// more frames gains nothing. 2 lets a client send frames at twice the tick rate.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_frames_per_tick: u32,

    /// Threads of the async runtime that reads clients, serves HTTP and does the writes the
    /// replication pass leaves over (0-1024; 0: half the available cores, at least 1). Since
    /// replication writes most snapshots to the sockets itself, the rooms' threads and the
    /// replication pool need cores as much as the runtime does: on 2 vCPUs, 1 thread measured
    /// 2-8% less server CPU per snapshot than 2 (README, "Load testing on one machine").
    /// With --tls-cert the default is one per core: every write is then the runtime's.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub io_threads: u32,

    /// Leave every client message to its connection task. By default, once a plain-TCP
    /// WebSocket client has joined, the room reads its socket itself at each tick and applies
    /// its inputs (any other message still goes to the task): no wake-up of the runtime per
    /// input, 18-27% less server CPU per snapshot in the 2,000-bot arena (README). A `Pong`
    /// then answers at the room's next tick, so a measured round trip includes the wait for
    /// it (up to one tick), as an input's effect does. TLS and QUIC clients are always read
    /// by their tasks.
    #[arg(long)]
    pub no_direct_reads: bool,

    /// Capacity of the queue of input messages into the simulation. When it is full new
    /// inputs are dropped (clients resend their last 8 frames, so a short burst loses nothing).
    #[arg(long, default_value_t = 65_536)]
    pub input_queue: usize,

    /// Serve the browser client from this directory instead of the copy built into the binary
    /// (for client developers: edit and reload).
    #[arg(long)]
    pub web_root: Option<PathBuf>,

    /// Seed for NPC behaviour and spawn points.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// UDP address for QUIC clients (ALPN tickwire/1: snapshots as datagrams). Port 0 picks a
    /// free port; the bound address is logged as quic_addr=.
    #[arg(long, default_value = "127.0.0.1:4433", conflicts_with = "no_quic")]
    pub quic: SocketAddr,

    /// Serve WebSocket only: no QUIC endpoint.
    #[arg(long)]
    pub no_quic: bool,

    /// Certificate chain, PEM (leaf first): the game port serves https:// and wss:// with it
    /// (TLS 1.3 and 1.2), and QUIC serves it too. Without it (and --tls-key) the game port is
    /// plain http:// and ws://, and QUIC gets a self-signed certificate generated at start,
    /// its SHA-256 logged as cert_sha256= for clients to pin.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1), for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Let WebSocket upgrades in only from pages of this origin (`scheme://host[:port]`,
    /// repeatable); any other `Origin` header gets 403. Browsers add the header and pages
    /// cannot forge it, so this stops any web site a player visits from playing as them
    /// (cross-site WebSocket hijacking). List every origin your game's pages are served
    /// from, this server's own too when players use the built-in client at `/`. Default:
    /// any origin.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,

    /// With --allowed-origin, refuse (403) an upgrade that carries no `Origin` header, as
    /// only non-browser clients send none.
    #[arg(long, requires = "allowed_origins")]
    pub require_origin: bool,

    /// Room driver threads: each steps its rooms at their tick deadlines. Default: one per
    /// CPU core.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub room_threads: Option<u32>,

    /// Seats in a room made by matchmaking, when the request does not say.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub room_size: u32,

    /// Most seats a matchmaking request may ask for (`max_clients`).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_room_size: u32,

    /// Wandering NPCs in each arena room made by matchmaking (the default room has --npcs).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub room_npcs: u32,

    /// Seconds a matchmade room may stay empty (no player, no reserved seat) before it is
    /// disposed of.
    #[arg(long, default_value_t = 30.0)]
    pub room_idle: f64,

    /// Seconds a matchmaking seat stays reserved for its client's Hello.
    #[arg(long, default_value_t = 15.0)]
    pub seat_ttl: f64,

    /// No permanent default room: a Hello without a seat is closed with 4003 (fleet nodes
    /// where every player comes through matchmaking).
    #[arg(long)]
    pub no_default_room: bool,

    /// Share a room directory with other nodes in this Redis (`redis://host:port/db`). Without
    /// it the node is a fleet of one.
    #[arg(long)]
    pub redis: Option<String>,

    /// This node's id in the directory. Default: a random one.
    #[arg(long)]
    pub node_id: Option<String>,

    /// The base URL clients reach this node's game port at (`http://host:port`); matchmaking
    /// answers give `ws://host:port/ws` from it. Default: under Agones, the GameServer's
    /// address and the host port named `ws`; otherwise from --listen.
    #[arg(long)]
    pub public_url: Option<String>,

    /// The QUIC URL clients reach this node at (`quic://host:port`). Default: from --quic.
    #[arg(long)]
    pub public_quic_url: Option<String>,

    /// Seconds a node's directory lease lasts; it is renewed every third of that. A node that
    /// dies leaves the directory, with its rooms, within this.
    #[arg(long, default_value_t = 3.0)]
    pub lease: f64,

    /// Report to the Agones SDK sidecar (also on when AGONES_SDK_HTTP_PORT is set).
    #[arg(long)]
    pub agones: bool,

    /// Require a signed player token in every Hello (PROTOCOL.md section 13), checked with
    /// the HMAC-SHA256 secret in this file (at least 32 bytes; trailing whitespace is not
    /// part of it). Closes 4008 without a token, 4009 expired, 4010 invalid, 4011 another
    /// room's. Without it, tokens are not checked and players have no player id.
    #[arg(long)]
    pub auth_secret_file: Option<PathBuf>,

    /// Record every room's match into this directory (created if missing): one log per room,
    /// `ROOM-STARTMS.twrec`, of its game setup, seed and every join, leave and input frame
    /// applied, with a world checksum per tick; `tickwire-server replay FILE` checks it. A
    /// writer thread does the disk I/O; a room it falls behind on stops recording (warned).
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
}

/// Tools the binary also offers.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Print a signed player token (PROTOCOL.md section 13), for operators and tests.
    Token(TokenArgs),
    /// Re-simulate a match log written with `--record` and check the world of every tick:
    /// prints `replay ok ticks=N`, or the first tick that diverges (exit status 1).
    Replay(ReplayArgs),
}

/// `tickwire-server replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// The log (`ROOM-STARTMS.twrec`).
    pub file: PathBuf,
}

/// `tickwire-server token`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// The secret file the server is started with (`--auth-secret-file`).
    #[arg(long)]
    pub secret_file: PathBuf,
    /// The player id to bind (1 to 64 bytes of UTF-8).
    #[arg(long)]
    pub player: String,
    /// Seconds the token is valid from now.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
    /// Bind the token to this room id (`default` is the default room). Default: any room.
    #[arg(long)]
    pub room: Option<String>,
}

impl TokenArgs {
    /// The token text.
    pub fn mint(&self) -> Result<String, ConfigError> {
        let key = read_secret(&self.secret_file)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        key.sign(&PlayerClaims {
            player_id: self.player.clone(),
            expires_at: now.saturating_add(self.ttl),
            room: self.room.clone(),
        })
        .map_err(|e| ConfigError::AuthSecret {
            path: self.secret_file.clone(),
            why: e.to_string(),
        })
    }
}

/// The token key from a secret file.
pub fn read_secret(path: &PathBuf) -> Result<TokenKey, ConfigError> {
    let bad = |why: String| ConfigError::AuthSecret {
        path: path.clone(),
        why,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    TokenKey::from_file_contents(&bytes).map_err(|e| bad(e.to_string()))
}

/// Rooms, matchmaking and the fleet.
#[derive(Debug, Clone)]
pub struct RoomsConfig {
    /// Room driver threads.
    pub threads: usize,
    /// Seats in a matchmade room by default.
    pub room_size: u32,
    /// Most seats a request may ask for.
    pub max_room_size: u32,
    /// NPCs per matchmade arena room.
    pub room_npcs: usize,
    /// How long an empty matchmade room lives.
    pub idle: Duration,
    /// How long a seat stays reserved.
    pub seat_ttl: Duration,
    /// Whether the permanent default room exists.
    pub default_room: bool,
    /// The Redis URL of the shared directory.
    pub redis: Option<String>,
    /// This node's id.
    pub node_id: String,
    /// `ws://…/ws` clients are sent to.
    pub ws_url: String,
    /// `quic://…` clients are sent to, if QUIC is served.
    pub quic_url: Option<String>,
    /// The URLs came from `--public-url`/`--public-quic-url`; otherwise, under Agones, the
    /// server takes them from its GameServer's address and host ports.
    pub public_urls_given: bool,
    /// Directory lease.
    pub lease: Duration,
    /// The Agones SDK sidecar's HTTP port, when reporting to Agones.
    pub agones_port: Option<u16>,
}

/// What the simulation thread needs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Ticks per second.
    pub tick_rate: u32,
    /// Snapshot every N ticks.
    pub snapshot_every: u32,
    /// Interest radius.
    pub view_radius: f32,
    /// Baseline ring size per client.
    pub baseline_ring: usize,
    /// Ticks without a new valid ack before a client is closed with 4000.
    pub ack_timeout_ticks: u32,
    /// Ticks a client's acks may stay behind its baseline ring before it is closed with 4012.
    pub max_behind_ticks: u32,
    /// Ticks a dropped player's entity waits for a resume.
    pub resume_grace_ticks: u32,
    /// Most input messages applied per tick (the rest wait for the next tick).
    pub max_inputs_per_tick: usize,
    /// Most new input frames applied per client per tick.
    pub max_frames_per_tick: u32,
    /// Most dropped players a room keeps waiting for a resume at once (the oldest goes
    /// first). `None`: as many as the room has seats, which the registry fills in when it
    /// makes a room; a [`crate::Room`] made directly with `None` keeps at most
    /// [`crate::room::DEFAULT_MAX_DETACHED`].
    pub max_detached: Option<usize>,
    /// Most bytes of each client's snapshot envelope (`None`: no budget).
    pub max_snapshot_bytes: Option<usize>,
}

/// The validated server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Simulation settings.
    pub sim: SimConfig,
    /// The world.
    pub world: World,
    /// NPC count.
    pub npcs: usize,
    /// The arena's lag compensation cap, milliseconds (0: off); see [`ServerConfig::arena_rules`].
    pub max_rewind_ms: u32,
    /// Session cap.
    pub max_clients: usize,
    /// Handshake timeout.
    pub handshake_timeout: Duration,
    /// Write timeout.
    pub write_timeout: Duration,
    /// SO_SNDBUF of each TCP connection; `None` leaves the kernel's autotuning.
    pub send_buffer: Option<usize>,
    /// How long a flooder's source is refused at accept.
    pub flood_penalty: Duration,
    /// Most connections in HTTP at once.
    pub max_pending_http: usize,
    /// Most connections in HTTP from one source (0: no cap).
    pub max_pending_per_ip: usize,
    /// Input queue capacity.
    pub input_queue: usize,
    /// Async runtime worker threads (`--io-threads`, resolved: at least 1).
    pub io_threads: usize,
    /// The rooms read plain-TCP WebSocket clients' inputs themselves (not
    /// `--no-direct-reads`; see [`crate::wire`]).
    pub direct_reads: bool,
    /// Directory to serve the web client from, instead of the built-in copy.
    pub web_root: Option<PathBuf>,
    /// RNG seed.
    pub seed: u64,
    /// QUIC UDP address; `None` serves WebSocket only.
    pub quic: Option<SocketAddr>,
    /// Certificate and key from `--tls-cert`/`--tls-key`: TLS on the game port and QUIC's
    /// identity. `None`: plain HTTP/WebSocket, and a self-signed QUIC certificate generated at
    /// start.
    pub tls: Option<TlsIdentity>,
    /// Which `Origin` an upgrade may come from.
    pub origins: OriginPolicy,
    /// Rooms, matchmaking and the fleet.
    pub rooms: RoomsConfig,
    /// The key signed player tokens are checked with; `None` checks none.
    pub auth: Option<Arc<TokenKey>>,
    /// Where every room's match is recorded (`--record`); `None` records nothing.
    pub record: Option<PathBuf>,
}

/// A configuration the server cannot run with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A numeric flag is out of range.
    #[error("--{flag}: {why}")]
    Invalid {
        /// Which flag.
        flag: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The world file could not be read.
    #[error("--world {path}: {source}")]
    WorldRead {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The world file is invalid.
    #[error("--world: {0}")]
    World(#[from] WorldError),
    /// A TLS file could not be read.
    #[error("--{flag} {path}: {source}")]
    TlsRead {
        /// Which flag.
        flag: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS files do not hold a usable certificate and key.
    #[error("--tls-cert/--tls-key: {0}")]
    Tls(#[from] QuicError),
    /// The token secret file could not be read or is too short.
    #[error("token secret {path}: {why}")]
    AuthSecret {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The recording directory could not be made.
    #[error("--record {path}: {source}")]
    Record {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn read_tls(flag: &'static str, path: &PathBuf) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::TlsRead {
        flag,
        path: path.clone(),
        source,
    })
}

fn seconds(flag: &'static str, v: f64, min: f64, max: f64) -> Result<Duration, ConfigError> {
    if !(v.is_finite() && v >= min && v <= max) {
        return Err(ConfigError::Invalid {
            flag,
            why: format!("{v} is not between {min} and {max} seconds"),
        });
    }
    Ok(Duration::from_secs_f64(v))
}

impl Cli {
    /// Validates the flags and loads the world file (the one place a file is read).
    pub fn into_config(self) -> Result<ServerConfig, ConfigError> {
        if !(self.view_radius.is_finite() && self.view_radius > 0.0 && self.view_radius <= 1e6) {
            return Err(ConfigError::Invalid {
                flag: "view-radius",
                why: format!("{} is not a positive distance up to 1e6", self.view_radius),
            });
        }
        if self.max_clients == 0 {
            return Err(ConfigError::Invalid {
                flag: "max-clients",
                why: "must be at least 1".into(),
            });
        }
        if self.max_pending_http == 0 {
            return Err(ConfigError::Invalid {
                flag: "max-pending-http",
                why: "must be at least 1".into(),
            });
        }
        if self.input_queue == 0 {
            return Err(ConfigError::Invalid {
                flag: "input-queue",
                why: "must be at least 1".into(),
            });
        }
        let send_buffer = match self.max_send_buffer {
            0 => None,
            n @ 4096..=0x400_0000 => Some(n),
            n => {
                return Err(ConfigError::Invalid {
                    flag: "max-send-buffer",
                    why: format!("{n} is not 0 or between 4096 and 67108864 bytes"),
                });
            }
        };
        let rate = f64::from(self.tick_rate);
        let ack = seconds("ack-timeout", self.ack_timeout, 0.1, 3600.0)?;
        let behind = seconds("max-behind", self.max_behind, 0.1, 3600.0)?;
        let grace = seconds("resume-grace", self.resume_grace, 0.0, 3600.0)?;
        let handshake_timeout = seconds("handshake-timeout", self.handshake_timeout, 0.1, 600.0)?;
        let flood_penalty = seconds("flood-penalty", self.flood_penalty, 0.0, 3600.0)?;
        let write_timeout = seconds("write-timeout", self.write_timeout, 0.1, 600.0)?;
        let world = match &self.world {
            None => World::arena(),
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::WorldRead {
                        path: path.clone(),
                        source,
                    })?;
                World::parse(&text)?
            }
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsIdentity::from_pem(
                &read_tls("tls-cert", cert)?,
                &read_tls("tls-key", key)?,
            )?),
            _ => None,
        };
        let quic = (!self.no_quic).then_some(self.quic);
        let rooms = self.rooms_config(quic)?;
        let allowed = self
            .allowed_origins
            .iter()
            .map(|o| Origin::parse(o))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::Invalid {
                flag: "allowed-origin",
                why: e.to_string(),
            })?;
        let origins = OriginPolicy::new(allowed, self.require_origin);
        if let Some(dir) = &self.record {
            std::fs::create_dir_all(dir).map_err(|source| ConfigError::Record {
                path: dir.clone(),
                source,
            })?;
        }
        let cores = available_cores();
        Ok(ServerConfig {
            rooms,
            listen: self.listen,
            sim: SimConfig {
                tick_rate: self.tick_rate,
                snapshot_every: self.snapshot_every,
                view_radius: self.view_radius,
                baseline_ring: self.baseline_ring as usize,
                ack_timeout_ticks: (ack.as_secs_f64() * rate).ceil() as u32,
                max_behind_ticks: (behind.as_secs_f64() * rate).ceil() as u32,
                resume_grace_ticks: (grace.as_secs_f64() * rate).ceil() as u32,
                max_inputs_per_tick: self.input_queue,
                max_frames_per_tick: self.max_frames_per_tick,
                max_detached: self.max_detached.map(|n| n as usize),
                max_snapshot_bytes: self.max_snapshot_bytes.map(|n| n as usize),
            },
            world,
            npcs: self.npcs as usize,
            max_rewind_ms: self.max_rewind_ms,
            max_clients: self.max_clients,
            handshake_timeout,
            write_timeout,
            send_buffer,
            flood_penalty,
            max_pending_http: self.max_pending_http,
            max_pending_per_ip: self.max_pending_per_ip,
            input_queue: self.input_queue,
            io_threads: match self.io_threads {
                0 => default_io_threads(cores, tls.is_some()),
                n => n as usize,
            },
            direct_reads: !self.no_direct_reads,
            web_root: self.web_root,
            seed: self.seed,
            quic,
            tls,
            auth: match &self.auth_secret_file {
                Some(p) => Some(Arc::new(read_secret(p)?)),
                None => None,
            },
            origins,
            record: self.record,
        })
    }
}

/// A URL's scheme, host and port, checked: `scheme://host[:port]` with nothing after.
fn check_base_url(flag: &'static str, url: &str, schemes: &[&str]) -> Result<String, ConfigError> {
    let bad = |why: &str| ConfigError::Invalid {
        flag,
        why: format!("{url:?}: {why}"),
    };
    let uri: hyper::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    let scheme = uri.scheme_str().ok_or_else(|| bad("no scheme"))?;
    if !schemes.contains(&scheme) {
        return Err(bad(&format!("the scheme must be one of {schemes:?}")));
    }
    let auth = uri.authority().ok_or_else(|| bad("no host"))?;
    if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
        return Err(bad("give only scheme://host:port"));
    }
    Ok(format!("{scheme}://{auth}"))
}

/// A random node id: `node-` and 8 hex digits.
fn random_node_id() -> String {
    use std::hash::{BuildHasher, RandomState};
    let h = RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()));
    format!("node-{:08x}", h as u32)
}

impl Cli {
    fn rooms_config(&self, quic: Option<SocketAddr>) -> Result<RoomsConfig, ConfigError> {
        if self.room_size > self.max_room_size {
            return Err(ConfigError::Invalid {
                flag: "room-size",
                why: format!(
                    "{} is over --max-room-size {}",
                    self.room_size, self.max_room_size
                ),
            });
        }
        let ws_url = match &self.public_url {
            Some(u) => {
                let base = check_base_url("public-url", u, &["http", "https"])?;
                let base = base
                    .replacen("https://", "wss://", 1)
                    .replacen("http://", "ws://", 1);
                format!("{base}/ws")
            }
            None => format!("ws://{}/ws", self.listen),
        };
        let quic_url = match (&self.public_quic_url, quic) {
            (_, None) => None,
            (Some(u), Some(_)) => Some(check_base_url("public-quic-url", u, &["quic"])?),
            (None, Some(a)) => Some(format!("quic://{a}")),
        };
        let node_id = match &self.node_id {
            Some(id) => {
                if id.is_empty()
                    || id.len() > 64
                    || !id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
                {
                    return Err(ConfigError::Invalid {
                        flag: "node-id",
                        why: "1 to 64 characters of A-Z, a-z, 0-9, '-', '_', '.'".into(),
                    });
                }
                id.clone()
            }
            None => random_node_id(),
        };
        if let Some(url) = &self.redis
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(ConfigError::Invalid {
                flag: "redis",
                why: format!("{url:?} is not a redis:// URL"),
            });
        }
        let threads = match self.room_threads {
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        Ok(RoomsConfig {
            threads,
            room_size: self.room_size,
            max_room_size: self.max_room_size,
            room_npcs: self.room_npcs as usize,
            idle: seconds("room-idle", self.room_idle, 0.0, 86_400.0)?,
            seat_ttl: seconds("seat-ttl", self.seat_ttl, 0.5, 3600.0)?,
            default_room: !self.no_default_room,
            redis: self.redis.clone(),
            node_id,
            ws_url,
            quic_url,
            public_urls_given: self.public_url.is_some() || self.public_quic_url.is_some(),
            lease: seconds("lease", self.lease, 0.5, 600.0)?,
            agones_port: self.agones.then_some(crate::agones::DEFAULT_HTTP_PORT),
        })
    }
}

/// The cores this process may run on (1 if unknown).
fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `--io-threads 0`: half the cores, at least 1, since replication writes most snapshots
/// itself; one per core with TLS, where every snapshot is encrypted and written on the runtime.
fn default_io_threads(cores: usize, tls: bool) -> usize {
    if tls {
        cores.max(1)
    } else {
        (cores / 2).max(1)
    }
}

impl ServerConfig {
    /// The rules of the arena rooms this server makes: the defaults, with the configured
    /// lag compensation.
    pub fn arena_rules(&self) -> ArenaRules {
        ArenaRules {
            max_rewind_ms: self.max_rewind_ms,
            ..ArenaRules::default()
        }
    }

    /// How long a dropped player may resume.
    pub fn resume_grace(&self) -> Duration {
        Duration::from_secs_f64(
            f64::from(self.sim.resume_grace_ticks) / f64::from(self.sim.tick_rate.max(1)),
        )
    }

    /// The defaults, as `tickwire-server` with no flags would run (tests start from this).
    pub fn defaults() -> ServerConfig {
        // The default flags are valid by construction; a test covers it.
        #[allow(clippy::expect_used)]
        Cli::parse_from(["tickwire-server"])
            .into_config()
            .expect("default flags are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = ServerConfig::defaults();
        assert_eq!(c.sim.tick_rate, 30);
        assert_eq!(c.sim.ack_timeout_ticks, 300);
        assert_eq!(c.sim.max_behind_ticks, 150);
        assert_eq!(c.sim.max_frames_per_tick, 2);
        assert_eq!(c.arena_rules().max_rewind_ms, 250);
        let cli = Cli::try_parse_from(["s", "--max-rewind-ms", "0"]).unwrap();
        assert_eq!(cli.into_config().unwrap().arena_rules().max_rewind_ms, 0);
        assert!(Cli::try_parse_from(["s", "--max-rewind-ms", "1001"]).is_err());
        // Per room: the registry gives each room its seat count.
        assert_eq!(c.sim.max_detached, None);
        let cli = Cli::try_parse_from(["s", "--max-detached", "0"]).unwrap();
        assert_eq!(cli.into_config().unwrap().sim.max_detached, Some(0));
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.quic.map(|a| a.port()), Some(4433));
        assert!(c.tls.is_none());
        assert_eq!(c.send_buffer, Some(256 * 1024));
        let cli = Cli::try_parse_from(["s", "--max-send-buffer", "0"]).unwrap();
        assert_eq!(cli.into_config().unwrap().send_buffer, None);
        let cli = Cli::try_parse_from(["s", "--max-send-buffer", "100"]).unwrap();
        assert!(cli.into_config().is_err());
    }

    #[test]
    fn io_threads_default_to_half_the_cores() {
        for (cores, plain, tls) in [(1, 1, 1), (2, 1, 2), (3, 1, 3), (16, 8, 16)] {
            assert_eq!(default_io_threads(cores, false), plain, "{cores} cores");
            assert_eq!(default_io_threads(cores, true), tls, "{cores} cores, TLS");
        }
        assert_eq!(
            ServerConfig::defaults().io_threads,
            default_io_threads(available_cores(), false)
        );
        let cli = Cli::try_parse_from(["s", "--io-threads", "3"]).unwrap();
        assert_eq!(cli.into_config().unwrap().io_threads, 3);
        assert!(Cli::try_parse_from(["s", "--io-threads", "1025"]).is_err());
    }

    #[test]
    fn quic_flags() {
        let c = Cli::try_parse_from(["s", "--no-quic"]).unwrap();
        assert!(c.into_config().unwrap().quic.is_none());
        assert!(Cli::try_parse_from(["s", "--no-quic", "--quic", "127.0.0.1:1"]).is_err());
        // Certificate and key go together.
        let e = Cli::try_parse_from(["s", "--tls-cert", "c.pem"]).unwrap_err();
        assert!(e.to_string().contains("--tls-key"), "{e}");
        let cli =
            Cli::try_parse_from(["s", "--tls-cert", "/nonexistent.pem", "--tls-key", "k"]).unwrap();
        let e = cli.into_config().unwrap_err().to_string();
        assert!(e.contains("--tls-cert /nonexistent.pem"), "{e}");
    }

    #[test]
    fn origin_flags() {
        let c = Cli::try_parse_from([
            "s",
            "--allowed-origin",
            "https://game.example.com",
            "--allowed-origin=http://127.0.0.1:8080",
            "--require-origin",
        ])
        .unwrap();
        let p = c.into_config().unwrap().origins;
        assert!(p.allows([b"http://127.0.0.1:8080".as_slice()].into_iter()));
        assert!(!p.allows(std::iter::empty()));
        assert!(Cli::try_parse_from(["s", "--require-origin"]).is_err());
        let c = Cli::try_parse_from(["s", "--allowed-origin", "https://x/path"]).unwrap();
        let e = c.into_config().unwrap_err().to_string();
        assert!(e.contains("--allowed-origin"), "{e}");
    }

    #[test]
    fn out_of_range_flags_are_clear_errors() {
        for bad in ["0", "241", "-3", "abc"] {
            let e =
                Cli::try_parse_from(["s".to_owned(), format!("--tick-rate={bad}")]).unwrap_err();
            assert!(e.to_string().contains("tick-rate"), "{e}");
        }
        let cli = Cli::try_parse_from(["s", "--view-radius=-1"]).unwrap();
        assert!(
            cli.into_config()
                .unwrap_err()
                .to_string()
                .contains("view-radius")
        );
        let cli = Cli::try_parse_from(["s", "--world", "/nonexistent.toml"]).unwrap();
        assert!(
            cli.into_config()
                .unwrap_err()
                .to_string()
                .contains("/nonexistent.toml")
        );
    }
}
