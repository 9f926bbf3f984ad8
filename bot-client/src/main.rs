//! `tickwire-bot`: load-test a Tickwire server with many verifying bots.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use tickwire_bot_client::{LoadConfig, MatchmakeConfig, QuicError, TlsTrust, TransportKind, run};
use tickwire_shared::rlimit;
use tickwire_shared::token::TokenKey;

/// Load-test a Tickwire server: every bot is a real client; the verifying ones (all, by
/// default) decode and verify every snapshot. Exits non-zero on any desync or decode error.
#[derive(Debug, Parser)]
#[command(name = "tickwire-bot", version, about)]
struct Cli {
    /// Transport: binary WebSocket, or QUIC with datagram snapshots.
    #[arg(long, value_enum, default_value_t = TransportKind::Ws)]
    transport: TransportKind,
    /// Server URL: ws://host:port/ws, wss://host:port/ws (with --ca-cert or --insecure)
    /// [default: ws://127.0.0.1:8080/ws, or quic://127.0.0.1:4433 with --transport quic].
    #[arg(long, conflicts_with = "matchmake")]
    url: Option<String>,
    /// Get every bot a seat from this matchmaker first (a server's HTTP origin, e.g.
    /// http://127.0.0.1:8080): POST /matchmake/join_or_create/KIND, then connect to the
    /// answer's ws_url (quic_url with --transport quic) with the seat. Replaces --url.
    #[arg(long, value_name = "URL")]
    matchmake: Option<String>,
    /// With --matchmake: the room kind to ask for.
    #[arg(long, default_value = "arena", requires = "matchmake")]
    kind: String,
    /// With --matchmake: max_clients of the rooms the bots create; join_or_create fills
    /// rooms of this size one after another [default: the server's].
    #[arg(long, value_name = "N", requires = "matchmake",
          value_parser = clap::value_parser!(u32).range(1..))]
    room_size: Option<u32>,
    /// QUIC: the server certificate's SHA-256 in hex (the server logs it as cert_sha256=).
    #[arg(long, value_parser = parse_pin)]
    cert_sha256: Option<[u8; 32]>,
    /// QUIC or wss://: do not authenticate the server at all (local tests only).
    #[arg(long, conflicts_with_all = ["cert_sha256", "ca_cert"])]
    insecure: bool,
    /// wss://: trust the certificates in this PEM file (a CA, or the server's own
    /// self-signed certificate) for the URL's host.
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<PathBuf>,
    /// The server's token secret file (its --auth-secret-file): every bot signs itself a
    /// player token (player id bot-INDEX, any room, valid for the run plus 5 minutes) and
    /// sends it in its Hello.
    #[arg(long, value_name = "PATH")]
    auth_secret_file: Option<PathBuf>,
    /// Number of bots.
    #[arg(long, default_value_t = 100)]
    bots: usize,
    /// Test length in seconds, counted from the first connection attempt.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Bots started per second (a ramp spares the server a connection storm).
    #[arg(long, default_value_t = 500.0)]
    ramp: f64,
    /// Input messages per bot per second (each carries the newest 8 input frames).
    #[arg(long, default_value_t = 30.0)]
    input_hz: f64,
    /// Local source addresses, comma-separated (e.g. 127.0.0.1,127.0.0.2), used round-robin
    /// so one machine can open more sockets than one address's ephemeral ports allow.
    #[arg(long, value_delimiter = ',')]
    bind_ip: Vec<IpAddr>,
    /// Seconds each bot waits for its Welcome.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    /// Write the final report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Seed for the bots' random walks.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fraction of the bots (0.0-1.0) that decode and verify every snapshot: round(bots x
    /// FRACTION), at least 1 when FRACTION > 0, spread evenly from bot 0. The others read and
    /// decode every envelope and acknowledge its tick but skip the snapshot body (cheaper for
    /// the load generator; desyncs are only detected on the verifying bots).
    #[arg(long = "verify", value_name = "FRACTION", default_value_t = 1.0,
          value_parser = parse_fraction)]
    verify: f64,
    /// Nice value (0-19) of the bots' threads: above 0 they yield the CPU to a server on the
    /// same machine, so a load test measures the server rather than its competition with the
    /// bots.
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(i32).range(0..=19))]
    nice: i32,
}

fn parse_fraction(text: &str) -> Result<f64, tickwire_bot_client::FractionError> {
    tickwire_bot_client::parse_verify_fraction(text)
}

fn parse_pin(text: &str) -> Result<[u8; 32], QuicError> {
    tickwire_bot_client::quic::parse_sha256(text)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.transport == TransportKind::Quic && cli.cert_sha256.is_none() && !cli.insecure {
        bail!(
            "--transport quic needs --cert-sha256 HEX (the server logs cert_sha256=) or --insecure"
        );
    }
    // Exactly one rustls crypto provider for the process: ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if !(cli.duration.is_finite() && cli.duration > 0.0) {
        bail!("--duration must be a positive number of seconds");
    }
    if !(cli.ramp > 0.0 && cli.input_hz > 0.0 && cli.connect_timeout > 0.0) {
        bail!("--ramp, --input-hz and --connect-timeout must be positive");
    }
    let want = cli.bots as u64 + 64;
    let lim = rlimit::raise_nofile(want).context("cannot read the open-file limit")?;
    if lim.soft < want {
        bail!(
            "{} bots need about {want} open files but the hard limit is {} (raise it: ulimit -Hn)",
            cli.bots,
            lim.hard
        );
    }
    let auth = match &cli.auth_secret_file {
        Some(path) => {
            let contents =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let key = TokenKey::from_file_contents(&contents)
                .with_context(|| format!("bad token secret in {}", path.display()))?;
            Some(Arc::new(key))
        }
        None => None,
    };
    let ws_tls = match &cli.ca_cert {
        Some(path) => {
            let pem =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let trust = TlsTrust::from_pem(&pem)
                .with_context(|| format!("bad certificate file {}", path.display()))?;
            Some(trust)
        }
        None => None,
    };
    let url = cli.url.unwrap_or_else(|| {
        match cli.transport {
            TransportKind::Ws => "ws://127.0.0.1:8080/ws",
            TransportKind::Quic => "quic://127.0.0.1:4433",
        }
        .to_owned()
    });
    let cfg = LoadConfig {
        url,
        transport: cli.transport,
        cert_sha256: cli.cert_sha256,
        insecure: cli.insecure,
        ws_tls,
        bots: cli.bots,
        duration: Duration::from_secs_f64(cli.duration),
        ramp_per_s: cli.ramp,
        input_hz: cli.input_hz,
        bind_ips: cli.bind_ip,
        connect_timeout: Duration::from_secs_f64(cli.connect_timeout),
        seed: cli.seed,
        verify_fraction: cli.verify,
        nice: cli.nice,
        matchmake: cli.matchmake.map(|url| MatchmakeConfig {
            url,
            kind: cli.kind,
            room_size: cli.room_size,
        }),
        auth,
    };
    tickwire_bot_client::check_nice(cfg.transport, cfg.nice).context("--nice")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(cfg.duration.as_secs());
        b.set_style(
            ProgressStyle::with_template("[{bar:20}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    let report = runtime.block_on(run(cfg, |r| match &bar {
        Some(b) => {
            b.set_position(r.duration_s as u64);
            b.set_message(r.progress_line());
        }
        None => eprintln!("{}", r.progress_line()),
    }));
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    print!("{}", report.table());
    if let Some(path) = &cli.json {
        std::fs::write(path, report.to_json() + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if !report.is_clean() {
        bail!(
            "{} desyncs and {} decode errors",
            report.desyncs,
            report.decode_errors
        );
    }
    if report.connected == 0 && report.bots_requested > 0 {
        bail!("no bot connected (the log says why)");
    }
    Ok(())
}
