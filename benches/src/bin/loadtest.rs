//! The end-to-end load harness: starts the release server as a child process on a free
//! loopback port, runs the bots in this process against it, samples the server's CPU time and
//! RSS from /proc, and prints one summary line plus the JSON report.
//!
//! `--transport quic` runs the bots over QUIC (the server gets `--quic 127.0.0.1:0`, and the
//! bots pin the certificate fingerprint it logs); the default is WebSocket (`--no-quic`).
//!
//! `--scenario` picks the room (flags given explicitly override its defaults; a server flag
//! passed with `--server-arg` replaces the scenario's own):
//! - `arena` (default): the built-in 2,000 × 2,000 arena with obstacles, 200 NPCs, the
//!   server's default view radius (150), tick 30 Hz, inputs at the tick rate.
//! - `crowd`: the crowded room, `assets/worlds/crowd.toml` (1,000 × 1,000, open), the server
//!   started with `--view-radius 2000` so everyone sees everyone, 0 NPCs, tick 30 Hz, inputs
//!   at 20 Hz.
//! - `rooms`: matchmade arena rooms of `--room-size` (default 8) through the matchmaker, the
//!   server(s) with `--no-default-room`; each room keeps the server's default `--room-npcs`
//!   (16) unless `--room-npcs` is given. `--nodes N` > 1 starts a throwaway redis-server as
//!   the shared directory and N nodes; per-node CPU and RSS are reported.
//! - `churn`: no game bots; create a room, connect one client, close it, at `--rate` per
//!   second against a server with `--room-idle 0.5`; rooms alive and RSS over time.
//!
//! (`rooms` and `churn` live in `loadtest/fleet.rs`.)
//!
//! `--verify FRACTION` (default 1.0) makes only that fraction of the bots decode and verify
//! snapshots; the rest decode envelopes and acknowledge, leaving the server more of the CPU
//! (see `tickwire_bot_client::load`).
//!
//! Build the server and the harness separately (one `--bin` flag would skip the server):
//! `cargo build --release -p tickwire-server && \
//!  cargo build --release -p tickwire-benches --bin loadtest && \
//!  ./target/release/loadtest --bots 2000 --tick-rate 30 --duration 30 --transport quic`
//! or `./target/release/loadtest --scenario crowd --bots 200 --duration 10 --verify 0.1`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
#[path = "common/procfs.rs"]
mod procfs;

use procfs::{cpu_ticks, field, rss_kb};
use tickwire_bot_client::quic::parse_sha256;
use tickwire_bot_client::tls::TlsTrust;
use tickwire_bot_client::{FractionError, LoadConfig, TransportKind, parse_verify_fraction, run};
use tickwire_shared::rlimit;
use tickwire_shared::token::TokenKey;

/// The crowded room's world file, built into the harness so it runs from any directory.
use tickwire_server::world::CROWD_TOML;

/// A named room to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// The built-in arena: 200 NPCs, view radius 150, inputs at the tick rate.
    Arena,
    /// The crowded room: 1,000 x 1,000 open world, view radius 2000 (everyone sees everyone),
    /// 0 NPCs, inputs at 20 Hz.
    Crowd,
    /// Many small arena rooms: the bots come in through the matchmaker
    /// (`join_or_create/arena`, `max_clients` = `--room-size`) on one or `--nodes` servers.
    Rooms,
    /// Room churn: no game bots; create a room, connect one client with its seat, close it,
    /// at `--rate` per second, and watch rooms alive and the server's RSS.
    Churn,
}

/// What a scenario sets unless a flag says otherwise.
#[derive(Debug, Clone, PartialEq)]
struct Defaults {
    tick_rate: u32,
    npcs: u32,
    /// `None`: the tick rate.
    input_hz: Option<f64>,
    /// World file contents (`None`: the server's built-in arena).
    world: Option<&'static str>,
    /// Server `--view-radius` (`None`: the server's default).
    view_radius: Option<f32>,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Arena => "arena",
            Scenario::Crowd => "crowd",
            Scenario::Rooms => "rooms",
            Scenario::Churn => "churn",
        }
    }

    fn defaults(self) -> Defaults {
        match self {
            Scenario::Arena => Defaults {
                tick_rate: 30,
                npcs: 200,
                input_hz: None,
                world: None,
                view_radius: None,
            },
            Scenario::Crowd => Defaults {
                tick_rate: 30,
                npcs: 0,
                input_hz: Some(20.0),
                world: Some(CROWD_TOML),
                view_radius: Some(2000.0),
            },
            // `npcs` here is the default room's `--npcs`, and these scenarios run with
            // `--no-default-room`: the matchmade arena rooms keep the server's own
            // `--room-npcs` (16) unless `--room-npcs` is given.
            Scenario::Rooms | Scenario::Churn => Defaults {
                tick_rate: 30,
                npcs: 0,
                input_hz: None,
                world: None,
                view_radius: None,
            },
        }
    }
}

/// Whether the user's `--server-arg`s already set `flag` (as `--flag V` or `--flag=V`).
fn sets_flag(server_args: &[String], flag: &str) -> bool {
    server_args.iter().any(|a| {
        a == flag
            || a.strip_prefix(flag)
                .is_some_and(|rest| rest.starts_with('='))
    })
}

/// The scenario's server flags that the user's `--server-arg`s do not set themselves.
fn scenario_server_args(d: &Defaults, world: Option<&Path>, user: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(path) = world
        && !sets_flag(user, "--world")
    {
        out.extend(["--world".to_owned(), path.display().to_string()]);
    }
    if let Some(r) = d.view_radius
        && !sets_flag(user, "--view-radius")
    {
        out.extend(["--view-radius".to_owned(), r.to_string()]);
    }
    out
}

/// A file this process wrote, removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn parse_fraction(text: &str) -> Result<f64, FractionError> {
    parse_verify_fraction(text)
}

/// Load-test a freshly started release server with bots (all verifying unless --verify says
/// otherwise), in a named scenario.
#[derive(Debug, Parser)]
struct Args {
    /// The room: `arena` (built-in world, 200 NPCs, view radius 150, inputs at the tick rate)
    /// or `crowd` (assets/worlds/crowd.toml: 1,000 x 1,000 open world, --view-radius 2000 so
    /// everyone sees everyone, 0 NPCs, inputs at 20 Hz), `rooms` (matchmade arena rooms of
    /// --room-size, 16 NPCs each by the server's default, on --nodes servers) or `churn`
    /// (create/connect/close rooms at --rate). Explicit flags override it. Default: `rooms`
    /// with --nodes above 1, else `arena`.
    #[arg(long, value_enum)]
    scenario: Option<Scenario>,
    /// Bots.
    #[arg(long, default_value_t = 2000)]
    bots: usize,
    /// Server tick rate [default: the scenario's, 30].
    #[arg(long)]
    tick_rate: Option<u32>,
    /// Seconds of load (bots ramp up inside this window).
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Bots started per second.
    #[arg(long, default_value_t = 1000.0)]
    ramp: f64,
    /// Inputs per bot per second [default: the scenario's: the tick rate for arena, 20 for
    /// crowd].
    #[arg(long)]
    input_hz: Option<f64>,
    /// NPCs on the server [default: the scenario's: 200 for arena, 0 for crowd].
    #[arg(long)]
    npcs: Option<u32>,
    /// Fraction of the bots (0.0-1.0) that decode and verify every snapshot (round(bots x
    /// FRACTION), at least 1 when FRACTION > 0); the others decode envelopes, trust snapshot
    /// headers and acknowledge.
    #[arg(long = "verify", value_name = "FRACTION", default_value_t = 1.0,
          value_parser = parse_fraction)]
    verify: f64,
    /// Nice value (0-19) of the bots' threads. Above 0 the bots yield the CPU to the server
    /// under test when both share the machine: the figures are then the server's own, not its
    /// competition with its load (README, "Load testing on one machine"). The server and
    /// everything else the harness starts keep their priority.
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(i32).range(0..=19))]
    bots_nice: i32,
    /// Extra server flags, e.g. --server-arg=--view-radius --server-arg=100.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// The server binary (default: tickwire-server beside this executable).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Local source addresses for the bots, comma-separated.
    #[arg(long, value_delimiter = ',')]
    bind_ip: Vec<std::net::IpAddr>,
    /// Also write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Transport of the bots: WebSocket, or QUIC with datagram snapshots (the server's QUIC
    /// port is picked free and its certificate pinned from its log).
    #[arg(long, value_enum, default_value_t = TransportKind::Ws)]
    transport: TransportKind,
    /// rooms: `max_clients` the bots' matchmaking requests ask for.
    #[arg(long, default_value_t = 8)]
    room_size: u32,
    /// rooms/churn: the server's `--room-npcs` [default: the server's own, 16].
    #[arg(long)]
    room_npcs: Option<u32>,
    /// rooms: server nodes; more than 1 shares one throwaway redis-server as the directory
    /// (the bots matchmake through node 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    nodes: u32,
    /// churn: rooms created (and one client connected and closed) per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// A token secret file: the servers start with --auth-secret-file PATH, and every bot
    /// signs itself a player token with it (arena, crowd and rooms).
    #[arg(long, value_name = "PATH")]
    auth_secret_file: Option<PathBuf>,
    /// WebSocket bots over TLS (`wss://`): the server gets a throwaway self-signed
    /// certificate (`--tls-cert/--tls-key`), which the bots trust.
    #[arg(long)]
    tls: bool,
}

impl Args {
    /// The key of `--auth-secret-file`, if given.
    fn auth_key(&self) -> anyhow::Result<Option<Arc<TokenKey>>> {
        let Some(path) = &self.auth_secret_file else {
            return Ok(None);
        };
        let contents =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let key = TokenKey::from_file_contents(&contents)
            .with_context(|| format!("bad token secret in {}", path.display()))?;
        Ok(Some(Arc::new(key)))
    }

    /// The server flags `--auth-secret-file` adds.
    fn auth_server_args(&self) -> Vec<String> {
        self.auth_secret_file
            .iter()
            .flat_map(|p| ["--auth-secret-file".to_owned(), p.display().to_string()])
            .collect()
    }
}

/// A server child process (killed by its handle when dropped) and what its log says: the
/// addresses it bound, then the room driver's status lines (tick p99, overruns).
struct ServerProc {
    child: Child,
    pid: u32,
    /// `(key, value)` of the address fields, as they are logged.
    addrs: std::sync::mpsc::Receiver<(&'static str, String)>,
    tick_p99_us: Arc<Mutex<Vec<u64>>>,
    overruns: Arc<Mutex<u64>>,
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        // Our own child only, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProc {
    /// Starts `bin` with `args` (`RUST_LOG=info`) and a thread reading its log for the whole
    /// run (so it never blocks on a full pipe).
    fn spawn<S: AsRef<std::ffi::OsStr>>(
        bin: &Path,
        args: impl IntoIterator<Item = S>,
    ) -> anyhow::Result<ServerProc> {
        let mut child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let pid = child.id();
        let stderr = child.stderr.take().context("no stderr")?;
        let (addr_tx, addrs) = std::sync::mpsc::channel();
        let tick_p99_us: Arc<Mutex<Vec<u64>>> = Arc::default();
        let overruns: Arc<Mutex<u64>> = Arc::default();
        let (p99s, over) = (tick_p99_us.clone(), overruns.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                for key in ["addr", "quic_addr", "cert_sha256"] {
                    if let Some(v) = field(&line, key) {
                        let _ = addr_tx.send((key, v.to_owned()));
                    }
                }
                if line.contains("status") && !line.contains("clients=0 ") {
                    if let Some(v) = tick_p99_field(&line) {
                        p99s.lock().unwrap_or_else(PoisonError::into_inner).push(v);
                    }
                    if let Some(v) = field(&line, "overruns").and_then(|v| v.parse::<u64>().ok()) {
                        *over.lock().unwrap_or_else(PoisonError::into_inner) += v;
                    }
                }
            }
        });
        Ok(ServerProc {
            child,
            pid,
            addrs,
            tick_p99_us,
            overruns,
        })
    }

    /// The logged values of `wanted` address fields, waiting up to `within`.
    fn logged(
        &self,
        wanted: &[&'static str],
        within: Duration,
    ) -> anyhow::Result<std::collections::HashMap<&'static str, String>> {
        let mut logged = std::collections::HashMap::new();
        while !wanted.iter().all(|k| logged.contains_key(k)) {
            let (k, v) = self
                .addrs
                .recv_timeout(within)
                .context("the server did not log its addresses")?;
            logged.insert(k, v);
        }
        Ok(logged)
    }

    /// The worst tick p99 of its status lines, in ms.
    fn tick_p99_ms(&self) -> f64 {
        let v = self
            .tick_p99_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        v.iter().copied().max().unwrap_or(0) as f64 / 1000.0
    }

    /// Overruns its status lines reported, added up.
    fn overruns(&self) -> u64 {
        *self.overruns.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A status line's tick p99 in µs: `room_tick_p99_us=` (the room driver's status line; one
/// per driver thread) or the older `tick_p99_us=`.
fn tick_p99_field(line: &str) -> Option<u64> {
    field(line, "room_tick_p99_us")
        .or_else(|| field(line, "tick_p99_us"))
        .and_then(|v| v.parse().ok())
}

/// The harness's JSON line: its own figures, then the bots' report.
#[derive(serde::Serialize)]
struct LoadtestJson<'a> {
    loadtest: Summary,
    report: &'a tickwire_bot_client::Report,
}

/// What the harness measured around the bots.
#[derive(serde::Serialize)]
struct Summary {
    scenario: &'static str,
    transport: &'static str,
    bots: usize,
    tick_rate: u32,
    input_hz: f64,
    npcs: u32,
    server_cpu_s: f64,
    wall_s: f64,
    bots_cpu_s: f64,
    /// The bots' nice value (`--bots-nice`).
    bots_nice: i32,
    server_cpu_us_per_client_snapshot: f64,
    server_rss_mb: f64,
    tick_p99_ms: f64,
    tick_overruns: u64,
}

fn transport_name(t: TransportKind) -> &'static str {
    match t {
        TransportKind::Ws => "ws",
        TransportKind::Quic => "quic",
    }
}

/// `--server-bin`, or tickwire-server beside this executable; it must exist.
fn find_server_bin(args: &Args) -> anyhow::Result<PathBuf> {
    let server_bin = match args.server_bin.clone() {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("no exe dir")?
            .join("tickwire-server"),
    };
    if !server_bin.exists() {
        bail!(
            "{} not found: build it first with cargo build --release -p tickwire-server",
            server_bin.display()
        );
    }
    Ok(server_bin)
}

impl Args {
    /// The scenario: as given, or `rooms` for a fleet (`--nodes` above 1), else `arena`.
    fn scenario(&self) -> Scenario {
        self.scenario.unwrap_or(if self.nodes > 1 {
            Scenario::Rooms
        } else {
            Scenario::Arena
        })
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.nodes > 1 && args.scenario() != Scenario::Rooms {
        bail!("--nodes {} needs --scenario rooms", args.nodes);
    }
    tickwire_bot_client::check_nice(args.transport, args.bots_nice).context("--bots-nice")?;
    let scenario = args.scenario().defaults();
    let tick_rate = args.tick_rate.unwrap_or(scenario.tick_rate);
    let npcs = args.npcs.unwrap_or(scenario.npcs);
    let input_hz = args
        .input_hz
        .or(scenario.input_hz)
        .unwrap_or(f64::from(tick_rate));
    if !(args.duration.is_finite() && args.duration > 0.0) {
        bail!("--duration must be a positive number of seconds");
    }
    if !(input_hz.is_finite() && input_hz > 0.0 && args.ramp > 0.0) {
        bail!("--input-hz and --ramp must be positive");
    }
    if args.scenario() == Scenario::Churn && args.auth_secret_file.is_some() {
        bail!("--auth-secret-file is for the arena, crowd and rooms scenarios");
    }
    let auth = args.auth_key()?;
    match args.scenario() {
        Scenario::Rooms => return fleet::rooms(&args, &find_server_bin(&args)?, tick_rate),
        Scenario::Churn => return fleet::churn(&args, &find_server_bin(&args)?),
        Scenario::Arena | Scenario::Crowd => {}
    }
    let want = args.bots as u64 + 256;
    let lim = rlimit::raise_nofile(want)?;
    if lim.soft < want {
        bail!("need {want} open files, hard limit is {}", lim.hard);
    }
    let server_bin = find_server_bin(&args)?;
    // The scenario's world file, written beside the other temporary files for the server to
    // read at start (unless the user gave --server-arg=--world).
    let world_file = match scenario.world {
        Some(text) if !sets_flag(&args.server_args, "--world") => {
            let path = std::env::temp_dir().join(format!(
                "tickwire-loadtest-{}-{}.toml",
                std::process::id(),
                args.scenario().name()
            ));
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Some(TempFile(path))
        }
        _ => None,
    };
    let scenario_args = scenario_server_args(
        &scenario,
        world_file.as_ref().map(|f| f.0.as_path()),
        &args.server_args,
    );
    let quic_args: &[&str] = match args.transport {
        TransportKind::Ws => &["--no-quic"],
        TransportKind::Quic => &["--quic", "127.0.0.1:0"],
    };
    let mut server_args: Vec<String> = ["--listen", "127.0.0.1:0"]
        .iter()
        .chain(quic_args)
        .map(|a| (*a).to_owned())
        .collect();
    server_args.extend(["--tick-rate".to_owned(), tick_rate.to_string()]);
    server_args.extend(["--npcs".to_owned(), npcs.to_string()]);
    server_args.extend(["--max-clients".to_owned(), (args.bots + 100).to_string()]);
    server_args.extend(scenario_args.iter().cloned());
    server_args.extend(args.auth_server_args());
    // --tls: a self-signed certificate for 127.0.0.1, as PEM files beside the world file.
    let mut tls_files = Vec::new();
    let mut ws_tls = None;
    if args.tls {
        if args.transport != TransportKind::Ws {
            bail!("--tls is for WebSocket bots (QUIC always uses TLS)");
        }
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
            .context("cannot make a certificate")?;
        let cert_pem = cert.cert.pem();
        for (name, text) in [
            ("cert", cert_pem.clone()),
            ("key", cert.signing_key.serialize_pem()),
        ] {
            let path = std::env::temp_dir().join(format!(
                "tickwire-loadtest-{}-{name}.pem",
                std::process::id()
            ));
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            server_args.extend([format!("--tls-{name}"), path.display().to_string()]);
            tls_files.push(TempFile(path));
        }
        ws_tls = Some(TlsTrust::from_pem(cert_pem.as_bytes())?);
    }
    server_args.extend(args.server_args.iter().cloned());
    let server = ServerProc::spawn(&server_bin, &server_args)?;
    let pid = server.pid;
    let wanted: &[&str] = match args.transport {
        TransportKind::Ws => &["addr"],
        TransportKind::Quic => &["addr", "quic_addr", "cert_sha256"],
    };
    let logged = server.logged(wanted, Duration::from_secs(20))?;
    let (url, cert_sha256) = match args.transport {
        TransportKind::Ws => {
            let scheme = if args.tls { "wss" } else { "ws" };
            (format!("{scheme}://{}/ws", logged["addr"]), None)
        }
        TransportKind::Quic => (
            format!("quic://{}", logged["quic_addr"]),
            Some(parse_sha256(&logged["cert_sha256"])?),
        ),
    };
    let cfg = LoadConfig {
        url,
        transport: args.transport,
        cert_sha256,
        bots: args.bots,
        duration: Duration::from_secs_f64(args.duration),
        ramp_per_s: args.ramp,
        input_hz,
        bind_ips: args.bind_ip.clone(),
        verify_fraction: args.verify,
        nice: args.bots_nice,
        auth,
        ws_tls,
        ..LoadConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let cpu0 = cpu_ticks(pid)?;
    let bots_cpu0 = cpu_ticks(std::process::id())?;
    let t0 = Instant::now();
    let mut peak_rss = 0;
    let report = rt.block_on(run(cfg, |r| {
        peak_rss = peak_rss.max(rss_kb(pid).unwrap_or(0));
        eprintln!("{}", r.progress_line());
    }));
    let wall = t0.elapsed();
    let cpu1 = cpu_ticks(pid)?;
    let bots_cpu_s = (cpu_ticks(std::process::id())? - bots_cpu0) as f64 / 100.0;
    peak_rss = peak_rss.max(rss_kb(pid).unwrap_or(0));
    drop(world_file);
    drop(tls_files);

    // /proc reports CPU time in USER_HZ, which Linux fixes at 100 on every architecture.
    let server_cpu_s = (cpu1 - cpu0) as f64 / 100.0;
    // Client-snapshots the bots received (what the CPU bought), verified or not.
    let snapshots = (report.full_snapshots + report.delta_snapshots) as f64;
    let cpu_us_per_snap = server_cpu_s * 1e6 / snapshots.max(1.0);
    let tick_p99_ms = server.tick_p99_ms();
    let overruns = server.overruns();

    println!(
        "loadtest scenario={} transport={} bots={} verifying={} tick_rate={} input_hz={} npcs={} delivery={:.4} \
         desyncs={} server_cpu_us_per_client_snapshot={:.2} server_rss_mb={:.1} bytes_per_client_s={:.0} \
         input_latency_p99_ms={:.2} tick_p99_ms={:.2} server_cpu_s={:.1} bots_cpu_s={:.1} bots_nice={}",
        args.scenario().name(),
        transport_name(args.transport),
        args.bots,
        report.verifying_bots,
        tick_rate,
        input_hz,
        npcs,
        report.delivery_ratio,
        report.desyncs,
        cpu_us_per_snap,
        peak_rss as f64 / 1024.0,
        report.bytes_in_per_bot_s,
        report.input_latency_ms_p99,
        tick_p99_ms,
        server_cpu_s,
        bots_cpu_s,
        args.bots_nice
    );
    let json = LoadtestJson {
        loadtest: Summary {
            scenario: args.scenario().name(),
            transport: transport_name(args.transport),
            bots: args.bots,
            tick_rate,
            input_hz,
            npcs,
            server_cpu_s,
            wall_s: wall.as_secs_f64(),
            bots_cpu_s,
            bots_nice: args.bots_nice,
            server_cpu_us_per_client_snapshot: cpu_us_per_snap,
            server_rss_mb: peak_rss as f64 / 1024.0,
            tick_p99_ms,
            tick_overruns: overruns,
        },
        report: &report,
    };
    finish(&json, args.json.as_deref(), &report)
}

/// Prints the run's JSON (and writes it to `--json`), then fails the run if the bots saw a
/// desync or a decode error.
fn finish(
    json: &impl serde::Serialize,
    path: Option<&Path>,
    report: &tickwire_bot_client::Report,
) -> anyhow::Result<()> {
    let json = serde_json::to_string(json)?;
    println!("{json}");
    if let Some(p) = path {
        std::fs::write(p, json + "\n")?;
    }
    if !report.is_clean() {
        bail!("desyncs or decode errors");
    }
    if report.connected == 0 && report.bots_requested > 0 {
        bail!("no bot connected");
    }
    Ok(())
}

#[path = "loadtest/fleet.rs"]
mod fleet;

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_server::world::World;

    #[test]
    fn the_crowd_world_is_an_open_1000_square() {
        let w = World::parse(CROWD_TOML).unwrap();
        assert_eq!(w.name, "crowd");
        let size = w.bounds.max - w.bounds.min;
        assert_eq!((size.x, size.y), (1000.0, 1000.0));
        assert!(w.obstacles.is_empty());
        // Everyone sees everyone: the view radius covers the diagonal.
        let r = Scenario::Crowd.defaults().view_radius.unwrap();
        assert!(r > size.x.hypot(size.y));
    }

    #[test]
    fn user_server_args_replace_the_scenario_s() {
        let d = Scenario::Crowd.defaults();
        let world = Path::new("/tmp/w.toml");
        assert_eq!(
            scenario_server_args(&d, Some(world), &[]),
            ["--world", "/tmp/w.toml", "--view-radius", "2000"]
        );
        let user = ["--view-radius".to_owned(), "300".to_owned()];
        assert_eq!(
            scenario_server_args(&d, Some(world), &user),
            ["--world", "/tmp/w.toml"]
        );
        let user = ["--view-radius=300".to_owned(), "--world=x.toml".to_owned()];
        assert!(scenario_server_args(&d, None, &user).is_empty());
        // --view-radius-ish flags that are not it do not count.
        assert!(!sets_flag(&["--view-radiusx".to_owned()], "--view-radius"));
        assert!(scenario_server_args(&Scenario::Arena.defaults(), None, &[]).is_empty());
    }

    #[test]
    fn reads_the_driver_status_line() {
        let line = "INFO tickwire_server::driver: status rooms=1 clients=3 room_tick_p50_us=179 \
                    room_tick_p99_us=289 budget_us=33333 overruns=0 bytes_out_per_s=0";
        assert_eq!(tick_p99_field(line), Some(289));
        assert_eq!(tick_p99_field("status tick_p99_us=12"), Some(12));
        assert_eq!(tick_p99_field("status clients=0"), None);
    }

    #[test]
    fn rooms_and_churn_flags() {
        let a = Args::try_parse_from(["loadtest", "--scenario", "rooms"]).unwrap();
        assert_eq!(
            (a.scenario(), a.room_size, a.nodes),
            (Scenario::Rooms, 8, 1)
        );
        assert_eq!(a.room_npcs, None);
        let a = Args::try_parse_from(["loadtest", "--scenario", "rooms", "--nodes", "2"]).unwrap();
        assert_eq!(a.nodes, 2);
        // The issue's `loadtest --nodes 2 --room-size 8` is the rooms scenario.
        let a = Args::try_parse_from(["loadtest", "--nodes", "2", "--room-size", "8"]).unwrap();
        assert_eq!(a.scenario(), Scenario::Rooms);
        assert!(Args::try_parse_from(["loadtest", "--nodes", "0"]).is_err());
        let a = Args::try_parse_from(["loadtest", "--scenario", "churn", "--rate", "50"]).unwrap();
        assert_eq!((a.scenario(), a.rate), (Scenario::Churn, 50.0));
    }

    #[test]
    fn explicit_flags_override_the_scenario() {
        let a =
            Args::try_parse_from(["loadtest", "--scenario", "crowd", "--input-hz", "60"]).unwrap();
        assert_eq!(a.scenario(), Scenario::Crowd);
        assert_eq!(a.input_hz, Some(60.0));
        assert_eq!(a.npcs, None);
        assert_eq!(a.verify, 1.0);
        let a = Args::try_parse_from(["loadtest"]).unwrap();
        assert_eq!(a.scenario(), Scenario::Arena);
        assert!(Args::try_parse_from(["loadtest", "--verify", "1.5"]).is_err());
        assert!(Args::try_parse_from(["loadtest", "--verify", "-0.5"]).is_err());
        assert_eq!(
            Args::try_parse_from(["loadtest", "--verify", "0.1"])
                .unwrap()
                .verify,
            0.1
        );
    }
}
