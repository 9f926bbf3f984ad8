//! `attack`: what one attack does to the players already in the room. It starts the release
//! server as a child process on a free loopback port, runs `--bystanders` bots (the
//! `tickwire_bot_client` load bots, from 127.0.0.1) for a baseline phase of `--duration`
//! seconds, then again for an attack phase of the same length with the attack running from
//! `--attacker-ip` (127.0.0.2 by default, so that a per-source-address cap in the server
//! can tell attackers from players), and prints the two phases side by side.
//!
//! In each phase the attack (and the probes) start once the bystanders are in, and stop at
//! the phase's end. Both phases also run the same probes, so each attack figure has its
//! baseline: `--fresh` players (14) spaced over the phase, each connecting and waiting up to
//! `--join-timeout` (5 s) for its Welcome (the target is every one in 2 s), and `/healthz`
//! once a second (2 s timeout). Once a second a sampler reads the server's VmRSS, the
//! kernel's TCP memory (the `mem` pages of the `TCP:` line of /proc/net/sockstat, every
//! socket on the machine) and the server's `/metrics` gauges (players in rooms, room
//! sessions); it keeps sampling through `--settle` seconds after the attack phase, with no
//! client left. Server CPU comes from /proc/PID/stat (utime + stime) over each phase, and
//! the server's disconnect counters by reason from `/metrics` before and after each phase.
//!
//! The modes (with their default `--attackers`):
//! - `slowloris` (1,100): sockets that open a TCP connection to the game port and trickle
//!   an upgrade head (`GET /ws HTTP/1.1`, `Host`, `Upgrade: websocket`, ... then `X-a: b`
//!   lines for ever, never the blank line) one byte every `--trickle` seconds (3), opened
//!   spread over the first second and reopened `--reopen` seconds (0.1) after the server
//!   closes them. Figures: sockets opened, closed by the server, peak open, how long the
//!   server held one; the fresh players and `/healthz` rows are the point. The issue's
//!   sizes are 1,100 and 10,000 (`--attackers 10000`).
//! - `pingflood` (50): WebSockets writing 125-byte ping frames back to back (512 to a
//!   write), after a Hello or not (`--flood-hello all|none|half`, default half), reading
//!   whatever comes back; a flooder with Hello also acknowledges the newest snapshot at the
//!   tick rate, as a player does, so that the ack timeout does not close it for the flood.
//!   A closed flooder reopens after `--reopen`. Figures: pings per second, and every close:
//!   when, after how long, with which close code (or none).
//! - `blindack` (50): clients that say Hello, read up to their first snapshot to learn a
//!   tick, then never read again while sending an `Input` at the tick rate that
//!   acknowledges the tick the clock says the server is at (first tick + elapsed × tick
//!   rate, two snapshots behind). Figures: how long until the server dropped each (a write
//!   that fails or stalls for a second) and what a read then found; the TCP memory and RSS
//!   rows are the point.
//! - `storm`: `--rate` (300) times a second, a new connection from the attacker address:
//!   WebSocket, Hello, Welcome, then the TCP connection dropped with no close frame.
//!   Figures: attempts, Welcomes, connect-to-Welcome times; the RSS series (each second of
//!   the attack and the settle phase) and the peak of players in rooms.
//! - `close999`: one client sends a close frame with code 999 after its Welcome, another
//!   right after the upgrade; each reads for 3 s. RFC 6455 §7.4 wants a 1002 close back.
//!
//! Every loop is bounded by the phase's end and every handshake by a timeout; the whole run
//! by 2 × (duration + 15 s) + settle + 60 s. All traffic stays on 127.0.0.0/8. The only
//! process it ends is the server it started, by its handle. It raises its own open-file
//! limit (`tickwire_shared::rlimit`) and reports the server's (which raises its own to
//! `--max-clients` + 256; `--max-clients` is passed as max(10,000, bystanders + attackers
//! + 100)).
//!
//! The harness shares the machine with the server: on a 2-core box the bots and the
//! attackers take CPU the server would otherwise have, so a latency change is the attack's
//! effect on the whole box, not on the server alone (the harness CPU row says how much it
//! took). Figures from such a box are noisy; run a mode twice before trusting a few percent.
//!
//! Before the fixes of the item 8 ([3/4]; server at f4de182, 500 bystanders, 30 s
//! phases, a 2-core box that other builds were using; two or three runs each):
//! slowloris 1,100: 1/14 fresh players in, `/healthz` 5-7/28, bystanders unharmed; 10,000:
//! 0-9/14 in, `/healthz` 8-91% answered, delivery 0.78-0.93. pingflood: delivery
//! 0.55-0.80, input p99 ×5-13, kernel TCP memory ~50,000 pages; flooders are closed only by
//! the Hello deadline (1008 at 5 s) or the ack timeout (4000 at 10 s: their acks queue
//! behind their own pings). blindack: none dropped in 120 s while the kernel's TCP memory
//! grew ~50 pages/s. storm 300/s: RSS 22 -> 31 MB (74 MB in a run on a busier box, with
//! Welcomes taking seconds). close999: no close frame, the TCP stream just ends.
//!
//! Build the server and the harness separately (with `--bin attack` in the same command
//! cargo builds that binary only, not the server):
//! `cargo build --release -p tickwire-server && \
//!  cargo build --release -p tickwire-benches --bin attack`, then e.g.
//! `./target/release/attack --attack slowloris --attackers 10000`,
//! `./target/release/attack --attack pingflood --json > pingflood.json`,
//! `./target/release/attack --attack storm --rate 300 --duration 30`, or a smoke run:
//! `./target/release/attack --attack blindack --bystanders 50 --attackers 20 --duration 5`.
//! With `--json` the table goes to stderr and stdout gets one JSON object.

#[path = "common/procfs.rs"]
mod procfs;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use tickwire_bot_client::{FractionError, LoadConfig, Report, parse_verify_fraction, run};
use tickwire_shared::rlimit;
use tokio::time::{Instant, sleep};

use modes::{FloodHello, Spread, Target};
use probes::{Probes, Sample, Sampler};
use proc::{ServerProc, counter_delta, cpu_ticks, nofile_soft, rss_kb, scrape, tcp_mem_pages};

#[path = "attack/modes.rs"]
mod modes;
#[path = "attack/probes.rs"]
mod probes;
#[path = "attack/proc.rs"]
mod proc;
#[path = "attack/raw.rs"]
mod raw;

/// How long the server gets to log its address.
const START_WAIT: Duration = Duration::from_secs(20);

/// The players' source address: bystanders, fresh players and probes.
const PLAYERS_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// Sockets trickling an unfinished upgrade head, one byte every --trickle seconds.
    Slowloris,
    /// WebSockets writing 125-byte pings back to back.
    Pingflood,
    /// Clients that never read but acknowledge the ticks the clock predicts.
    Blindack,
    /// --rate connects a second: Hello, Welcome, then the TCP connection dropped.
    Storm,
    /// One close frame with code 999 (after Hello, and before).
    #[value(name = "close999")]
    Close999,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Slowloris => "slowloris",
            Mode::Pingflood => "pingflood",
            Mode::Blindack => "blindack",
            Mode::Storm => "storm",
            Mode::Close999 => "close999",
        }
    }

    /// `--attackers` unless given (the sizes).
    fn default_attackers(self) -> usize {
        match self {
            Mode::Slowloris => 1100,
            Mode::Pingflood | Mode::Blindack => 50,
            Mode::Storm | Mode::Close999 => 1,
        }
    }
}

fn parse_fraction(text: &str) -> Result<f64, FractionError> {
    parse_verify_fraction(text)
}

/// Measure what an attack does to bystanders: a baseline phase, then the same with the
/// attack, against a freshly started release server.
#[derive(Debug, Parser)]
struct Args {
    /// The attack.
    #[arg(long, value_enum)]
    attack: Mode,
    /// Attacking sockets or connections [default: slowloris 1100, pingflood 50, blindack
    /// 50; unused by storm (see --rate) and close999].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=15_000))]
    attackers: Option<u64>,
    /// Bystander bots, connected before the attack starts.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=5_000))]
    bystanders: u64,
    /// Seconds of each phase (baseline, then attack).
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// storm: connects per second.
    #[arg(long, default_value_t = 300.0)]
    rate: f64,
    /// The server binary (default: tickwire-server beside this executable).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Extra server flags, e.g. --server-arg=--handshake-timeout --server-arg=2.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// The attackers' source address (loopback, IPv4).
    #[arg(long, default_value = "127.0.0.2")]
    attacker_ip: IpAddr,
    /// Print one JSON object on stdout (the table then goes to stderr).
    #[arg(long)]
    json: bool,
    /// Fresh players per phase.
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u64).range(0..=1_000))]
    fresh: u64,
    /// Seconds a fresh player waits for its Welcome.
    #[arg(long, default_value_t = 5.0)]
    join_timeout: f64,
    /// slowloris: seconds between two bytes of one socket.
    #[arg(long, default_value_t = 3.0)]
    trickle: f64,
    /// slowloris, pingflood: seconds before a closed attacker reopens.
    #[arg(long, default_value_t = 0.1)]
    reopen: f64,
    /// pingflood: which flooders say Hello first.
    #[arg(long, value_enum, default_value_t = FloodHello::Half)]
    flood_hello: FloodHello,
    /// Seconds of sampling after the attack phase, with no client connected.
    #[arg(long, default_value_t = 10.0)]
    settle: f64,
    /// Bystanders started per second.
    #[arg(long, default_value_t = 1000.0)]
    ramp: f64,
    /// Server tick rate (bystanders send inputs at this rate too).
    #[arg(long, default_value_t = 30)]
    tick_rate: u32,
    /// NPCs in the server's arena.
    #[arg(long, default_value_t = 200)]
    npcs: u32,
    /// Fraction of the bystanders (0.0-1.0) that decode and verify every snapshot.
    #[arg(long = "verify", value_name = "FRACTION", default_value_t = 1.0,
          value_parser = parse_fraction)]
    verify: f64,
}

impl Args {
    fn attackers(&self) -> usize {
        self.attackers
            .map_or(self.attack.default_attackers(), |n| n as usize)
    }

    fn check(&self) -> anyhow::Result<()> {
        let secs = |name: &str, v: f64, max: f64| {
            if v.is_finite() && v > 0.0 && v <= max {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "--{name} must be above 0 and at most {max}"
                ))
            }
        };
        secs("duration", self.duration, 3600.0)?;
        secs("rate", self.rate, 5000.0)?;
        secs("join-timeout", self.join_timeout, 60.0)?;
        secs("trickle", self.trickle, 600.0)?;
        secs("ramp", self.ramp, 100_000.0)?;
        if !(self.reopen.is_finite() && (0.0..=60.0).contains(&self.reopen)) {
            bail!("--reopen must be 0 to 60 seconds");
        }
        if !(self.settle.is_finite() && (0.0..=600.0).contains(&self.settle)) {
            bail!("--settle must be 0 to 600 seconds");
        }
        match self.attacker_ip {
            IpAddr::V4(ip) if ip.is_loopback() => Ok(()),
            ip => bail!("--attacker-ip {ip} is not an IPv4 loopback address (127.0.0.0/8)"),
        }
    }

    /// The measured part of a phase is shorter than it by the bystanders' ramp.
    fn ramp_time(&self) -> Duration {
        Duration::from_secs_f64(self.bystanders as f64 / self.ramp)
    }
}

/// Whether `args` set `flag` (as `--flag v` or `--flag=v`).
fn sets_flag(args: &[String], flag: &str) -> bool {
    args.iter().any(|a| {
        a == flag
            || a.strip_prefix(flag)
                .is_some_and(|rest| rest.starts_with('='))
    })
}

/// The server's flags: ours, unless `--server-arg` sets the same one, then the user's.
fn server_args(args: &Args) -> Vec<String> {
    let max_clients = (args.bystanders as usize + args.attackers() + 100).max(10_000);
    let ours = [
        ("--listen", "127.0.0.1:0".to_owned()),
        ("--tick-rate", args.tick_rate.to_string()),
        ("--npcs", args.npcs.to_string()),
        ("--max-clients", max_clients.to_string()),
    ];
    let mut out = vec!["--no-quic".to_owned()];
    for (flag, v) in ours {
        if !sets_flag(&args.server_args, flag) {
            out.extend([flag.to_owned(), v]);
        }
    }
    out.extend(args.server_args.iter().cloned());
    out
}

/// `--server-bin`, or tickwire-server beside this executable; it must exist.
fn find_server_bin(args: &Args) -> anyhow::Result<PathBuf> {
    let bin = match args.server_bin.clone() {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("no exe dir")?
            .join("tickwire-server"),
    };
    if !bin.exists() {
        bail!(
            "{} not found: build it first with cargo build --release -p tickwire-server",
            bin.display()
        );
    }
    Ok(bin)
}

/// What the bystanders saw in one phase.
#[derive(Debug, Clone, serde::Serialize)]
struct Bystanders {
    connected: u64,
    connect_failures: u64,
    delivery: f64,
    input_p99_ms: f64,
    rtt_p99_ms: f64,
    bytes_per_client_s: f64,
    desyncs: u64,
    decode_errors: u64,
    /// Bystanders the server closed before the phase ended, by close code.
    disconnects: BTreeMap<u16, u64>,
}

impl From<&Report> for Bystanders {
    fn from(r: &Report) -> Self {
        Bystanders {
            connected: r.connected,
            connect_failures: r.connect_failures,
            delivery: r.delivery_ratio,
            input_p99_ms: r.input_latency_ms_p99,
            rtt_p99_ms: r.rtt_ms_p99,
            bytes_per_client_s: r.bytes_in_per_bot_s,
            desyncs: r.desyncs,
            decode_errors: r.decode_errors,
            disconnects: r.disconnects.clone(),
        }
    }
}

/// One phase's figures.
#[derive(Debug, Clone, serde::Serialize)]
struct Phase {
    phase: &'static str,
    wall_s: f64,
    /// Seconds the attack (and the probes) ran: the phase less the bystanders' ramp.
    measured_s: f64,
    bystanders: Bystanders,
    probes: Probes,
    server_cpu_s: f64,
    /// Server CPU seconds per second of the phase.
    server_cores: f64,
    server_rss_peak_mb: f64,
    server_rss_end_mb: f64,
    tcp_mem_pages_peak: u64,
    /// Peaks of the `/metrics` gauges over the phase's samples.
    peak_connected_clients: Option<u64>,
    peak_room_sessions: Option<u64>,
    /// Samples whose `/metrics` scrape got no answer within a second.
    metrics_unanswered: usize,
    samples: usize,
    /// The server's `tickwire_disconnects_total` over the phase, by reason.
    server_disconnects: BTreeMap<String, u64>,
    server_log_lines: u64,
    server_warn_lines: u64,
    /// CPU seconds of this process (bystanders, attackers, probes).
    harness_cpu_s: f64,
    /// The bystanders' whole report.
    report: Report,
}

/// The attack's own figures.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Figures {
    Slowloris(modes::Slowloris),
    Pingflood(modes::Pingflood),
    Blindack(modes::Blindack),
    Storm(modes::Storm),
    Close999(modes::Close999),
}

async fn run_attack(mode: Mode, t: &Target, start: Instant, end: Instant) -> Figures {
    match mode {
        Mode::Slowloris => Figures::Slowloris(modes::slowloris(t, start, end).await),
        Mode::Pingflood => Figures::Pingflood(modes::pingflood(t, start, end).await),
        Mode::Blindack => Figures::Blindack(modes::blindack(t, start, end).await),
        Mode::Storm => Figures::Storm(modes::storm(t, start, end).await),
        Mode::Close999 => Figures::Close999(modes::close999(t).await),
    }
}

/// Everything a phase needs.
struct Ctx<'a> {
    args: &'a Args,
    target: Target,
    /// The attackers' own runtime (see `main`).
    attackers: tokio::runtime::Handle,
    url: String,
    server: &'a ServerProc,
    sampler: &'a Sampler,
}

/// Runs one phase: the bystanders for `--duration`, and once they are in, the probes and
/// (in the attack phase) the attack until the phase ends.
async fn phase(ctx: &Ctx<'_>, attack: Option<Mode>) -> anyhow::Result<(Phase, Option<Figures>)> {
    let args = ctx.args;
    let label = if attack.is_some() {
        "attack"
    } else {
        "baseline"
    };
    let addr = ctx.target.server;
    let pid = ctx.server.pid;
    let counters_before = scrape(addr, Duration::from_secs(3))
        .await
        .map(|m| m.1)
        .unwrap_or_default();
    let (cpu0, me0) = (cpu_ticks(pid)?, cpu_ticks(std::process::id())?);
    let (logs0, warns0) = (
        ctx.server.log_lines.load(Relaxed),
        ctx.server.warn_lines.load(Relaxed),
    );
    ctx.sampler.phase(label);
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(args.duration);
    let cfg = LoadConfig {
        url: ctx.url.clone(),
        bots: args.bystanders as usize,
        duration: Duration::from_secs_f64(args.duration),
        ramp_per_s: args.ramp,
        input_hz: f64::from(args.tick_rate),
        bind_ips: vec![PLAYERS_IP],
        verify_fraction: args.verify,
        ..LoadConfig::default()
    };
    let ready = Arc::new(AtomicBool::new(args.bystanders == 0));
    let ready_seen = ready.clone();
    let wanted = args.bystanders;
    let bots = run(cfg, move |r| {
        if r.connected + r.connect_failures >= wanted {
            ready_seen.store(true, Relaxed);
        }
        eprintln!("{label:>8} {}", r.progress_line());
    });
    let side = async {
        // The attack hits players who are already playing: it waits for the bystanders.
        let wait_until = (t0 + args.ramp_time() + Duration::from_secs(10)).min(end);
        while !ready.load(Relaxed) && Instant::now() < wait_until {
            sleep(Duration::from_millis(100)).await;
        }
        let start = Instant::now();
        let probes = probes::run(
            &ctx.url,
            addr,
            PLAYERS_IP,
            args.fresh as usize,
            Duration::from_secs_f64(args.join_timeout),
            start,
            end,
        );
        let attacking = async {
            let mode = attack?;
            let target = ctx.target.clone();
            let run = async move { run_attack(mode, &target, start, end).await };
            ctx.attackers.spawn(run).await.ok()
        };
        let (p, f) = tokio::join!(probes, attacking);
        (start, p, f)
    };
    let (report, (start, probes, figures)) = tokio::join!(bots, side);
    let wall = t0.elapsed().as_secs_f64();
    let server_cpu_s = cpu_ticks(pid)?.saturating_sub(cpu0) as f64 / 100.0;
    let harness_cpu_s = cpu_ticks(std::process::id())?.saturating_sub(me0) as f64 / 100.0;
    let counters_after = settled_counters(addr).await;
    let samples = ctx.sampler.of(label);
    let rss_end = rss_kb(pid).unwrap_or(0) as f64 / 1024.0;
    let peak = |f: fn(&proc::Gauges) -> u64| {
        samples
            .iter()
            .filter_map(|s| s.gauges.as_ref().map(f))
            .max()
    };
    let p = Phase {
        phase: label,
        wall_s: wall,
        measured_s: (end - start).as_secs_f64(),
        bystanders: Bystanders::from(&report),
        probes,
        server_cpu_s,
        server_cores: server_cpu_s / wall.max(1e-3),
        server_rss_peak_mb: samples.iter().map(|s| s.rss_mb).fold(rss_end, f64::max),
        server_rss_end_mb: rss_end,
        tcp_mem_pages_peak: samples.iter().map(|s| s.tcp_mem_pages).max().unwrap_or(0),
        peak_connected_clients: peak(|g| g.connected_clients),
        peak_room_sessions: peak(|g| g.room_sessions),
        metrics_unanswered: samples.iter().filter(|s| s.gauges.is_none()).count(),
        samples: samples.len(),
        server_disconnects: counter_delta(&counters_before, &counters_after),
        server_log_lines: ctx.server.log_lines.load(Relaxed) - logs0,
        server_warn_lines: ctx.server.warn_lines.load(Relaxed) - warns0,
        harness_cpu_s,
        report,
    };
    Ok((p, figures))
}

/// The disconnect counters once the server has seen every client of the phase go (players
/// in rooms back to 0), or after 5 s: the bystanders' goodbyes are still in flight when
/// their run returns.
async fn settled_counters(addr: std::net::SocketAddr) -> BTreeMap<String, u64> {
    let give_up = Instant::now() + Duration::from_secs(5);
    let mut last = BTreeMap::new();
    while Instant::now() < give_up {
        if let Ok((g, counters)) = scrape(addr, Duration::from_secs(2)).await {
            last = counters;
            if g.connected_clients == 0 {
                break;
            }
        }
        sleep(Duration::from_millis(200)).await;
    }
    last
}

/// The run's setup, as the JSON's `setup`.
#[derive(Debug, Clone, serde::Serialize)]
struct Setup {
    bystanders: u64,
    attackers: usize,
    duration_s: f64,
    rate: f64,
    attacker_ip: IpAddr,
    tick_rate: u32,
    npcs: u32,
    verify: f64,
    server_args: Vec<String>,
    server_nofile: u64,
    harness_nofile: u64,
    cores: usize,
}

/// After the attack phase: no clients, the server left to settle.
#[derive(Debug, Clone, serde::Serialize)]
struct Settle {
    seconds: f64,
    rss_mb: f64,
    tcp_mem_pages: u64,
    connected_clients: Option<u64>,
}

#[derive(Debug, serde::Serialize)]
struct AttackJson<'a> {
    attack: &'static str,
    setup: &'a Setup,
    baseline: &'a Phase,
    attack_phase: &'a Phase,
    settle: &'a Settle,
    figures: &'a Option<Figures>,
    samples: &'a [Sample],
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.check()?;
    let attackers = args.attackers();
    let need = args.bystanders + attackers as u64 + args.fresh + 256;
    let lim = rlimit::raise_nofile(need + 4096)?;
    if lim.soft < need {
        bail!("need {need} open files, the hard limit is {}", lim.hard);
    }
    let bin = find_server_bin(&args)?;
    let server_args = server_args(&args);
    let server = ServerProc::spawn(&bin, &server_args)?;
    let addr = server.addr(START_WAIT)?;
    if !addr.ip().is_loopback() {
        bail!("the server listens on {addr}, not on loopback");
    }
    let server_nofile = nofile_soft(server.pid).unwrap_or(0);
    if server_nofile < need {
        eprintln!(
            "warning: the server may open {server_nofile} files, fewer than the {need} sockets this run may hold"
        );
    }
    let setup = Setup {
        bystanders: args.bystanders,
        attackers,
        duration_s: args.duration,
        rate: args.rate,
        attacker_ip: args.attacker_ip,
        tick_rate: args.tick_rate,
        npcs: args.npcs,
        verify: args.verify,
        server_args,
        server_nofile,
        harness_nofile: lim.soft,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
    };
    let target = Target {
        server: addr,
        from: args.attacker_ip,
        attackers,
        rate: args.rate,
        trickle: Duration::from_secs_f64(args.trickle),
        reopen: Duration::from_secs_f64(args.reopen),
        flood_hello: args.flood_hello,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The attackers get a runtime of their own: 10,000 trickling sockets or 300 handshakes
    // a second queued on the probes' and the sampler's runtime would delay the fresh
    // players' Welcomes and the samples themselves, and the harness would measure its own
    // queue. (The bots have theirs already: one runtime per core, in `run`.)
    let attackers = tokio::runtime::Builder::new_multi_thread()
        .thread_name("attackers")
        .enable_all()
        .build()?;
    let overall = Duration::from_secs_f64(2.0 * (args.duration + 15.0) + args.settle + 60.0);
    let (baseline, attack, figures, settle, samples) = rt.block_on(async {
        tokio::time::timeout(overall, async {
            let sampler = Sampler::start(server.pid, addr);
            let ctx = Ctx {
                args: &args,
                target,
                attackers: attackers.handle().clone(),
                url: format!("ws://{addr}/ws"),
                server: &server,
                sampler: &sampler,
            };
            let (baseline, _) = phase(&ctx, None).await?;
            sampler.phase("between");
            let (attack, figures) = phase(&ctx, Some(args.attack)).await?;
            sampler.phase("settle");
            sleep(Duration::from_secs_f64(args.settle)).await;
            let settle = Settle {
                seconds: args.settle,
                rss_mb: rss_kb(server.pid).unwrap_or(0) as f64 / 1024.0,
                tcp_mem_pages: tcp_mem_pages().unwrap_or(0),
                connected_clients: scrape(addr, Duration::from_secs(3))
                    .await
                    .ok()
                    .map(|m| m.0.connected_clients),
            };
            let samples = sampler.finish().await;
            anyhow::Ok((baseline, attack, figures, settle, samples))
        })
        .await
        .context("the run took longer than its bound")?
    })?;
    attackers.shutdown_timeout(Duration::from_secs(1));
    drop(server);
    let table = table(
        &args, &setup, &baseline, &attack, &figures, &settle, &samples,
    );
    let json = AttackJson {
        attack: args.attack.name(),
        setup: &setup,
        baseline: &baseline,
        attack_phase: &attack,
        settle: &settle,
        figures: &figures,
        samples: &samples,
    };
    if args.json {
        eprint!("{table}");
        println!("{}", serde_json::to_string(&json)?);
    } else {
        print!("{table}");
    }
    Ok(())
}

/// `new` against `old` in percent, when both are figures.
fn change(old: f64, new: f64) -> String {
    if old > 0.0 && old.is_finite() && new.is_finite() {
        format!("{:+.0}%", (new - old) / old * 100.0)
    } else {
        String::new()
    }
}

fn counts<K: std::fmt::Display>(m: &BTreeMap<K, u64>) -> String {
    if m.is_empty() {
        return "-".to_owned();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The side-by-side table, the attack's own rows, and the settle line.
fn table(
    args: &Args,
    setup: &Setup,
    b: &Phase,
    a: &Phase,
    figures: &Option<Figures>,
    settle: &Settle,
    samples: &[Sample],
) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "attack {}: {} from {}, {} bystanders, {:.0} s a phase, {} cores (the harness shares them: noisy)",
        args.attack.name(),
        match args.attack {
            Mode::Storm => format!("{} connects/s", args.rate),
            Mode::Close999 => "one client".to_owned(),
            _ => format!("{} attackers", setup.attackers),
        },
        setup.attacker_ip,
        setup.bystanders,
        args.duration,
        setup.cores,
    );
    let _ = writeln!(
        o,
        "server open-file limit {}, harness {}",
        setup.server_nofile, setup.harness_nofile
    );
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    let mut row = |k: &str, b: String, a: String, c: String| rows.push((k.to_owned(), b, a, c));
    let by = |p: &Phase| format!("{}/{}", p.bystanders.connected, setup.bystanders);
    row("bystanders connected", by(b), by(a), String::new());
    let (bb, ab) = (&b.bystanders, &a.bystanders);
    row(
        "delivery",
        format!("{:.4}", bb.delivery),
        format!("{:.4}", ab.delivery),
        change(bb.delivery, ab.delivery),
    );
    row(
        "input p99 ms",
        format!("{:.1}", bb.input_p99_ms),
        format!("{:.1}", ab.input_p99_ms),
        change(bb.input_p99_ms, ab.input_p99_ms),
    );
    row(
        "rtt p99 ms",
        format!("{:.1}", bb.rtt_p99_ms),
        format!("{:.1}", ab.rtt_p99_ms),
        change(bb.rtt_p99_ms, ab.rtt_p99_ms),
    );
    row(
        "bytes / client / s",
        format!("{:.0}", bb.bytes_per_client_s),
        format!("{:.0}", ab.bytes_per_client_s),
        change(bb.bytes_per_client_s, ab.bytes_per_client_s),
    );
    row(
        "desyncs / decode errors",
        format!("{} / {}", bb.desyncs, bb.decode_errors),
        format!("{} / {}", ab.desyncs, ab.decode_errors),
        String::new(),
    );
    row(
        "bystanders closed (code)",
        counts(&bb.disconnects),
        counts(&ab.disconnects),
        String::new(),
    );
    let fresh = |p: &Probes| {
        format!(
            "{}/{} ({} in 2 s)",
            p.fresh_joined, p.fresh_tried, p.fresh_joined_in_2s
        )
    };
    row(
        "fresh players joined",
        fresh(&b.probes),
        fresh(&a.probes),
        String::new(),
    );
    let joins = |p: &Probes| {
        let ms: Vec<f64> = p.fresh.iter().filter_map(|j| j.join_ms).collect();
        let s = modes::spread(ms);
        format!("p50 {:.0} / max {:.0}", s.p50, s.max)
    };
    row(
        "  join ms",
        joins(&b.probes),
        joins(&a.probes),
        String::new(),
    );
    let health = |p: &Probes| format!("{}/{}", p.healthz_answered, p.healthz_tried);
    row(
        "/healthz answered",
        health(&b.probes),
        health(&a.probes),
        String::new(),
    );
    let lat = |s: &Spread| format!("p50 {:.1} / max {:.1}", s.p50, s.max);
    row(
        "  latency ms",
        lat(&b.probes.healthz_ms),
        lat(&a.probes.healthz_ms),
        String::new(),
    );
    row(
        "server CPU (cores)",
        format!("{:.2}", b.server_cores),
        format!("{:.2}", a.server_cores),
        change(b.server_cores, a.server_cores),
    );
    row(
        "server RSS peak / end MB",
        format!("{:.1} / {:.1}", b.server_rss_peak_mb, b.server_rss_end_mb),
        format!("{:.1} / {:.1}", a.server_rss_peak_mb, a.server_rss_end_mb),
        change(b.server_rss_peak_mb, a.server_rss_peak_mb),
    );
    row(
        "TCP mem pages peak",
        b.tcp_mem_pages_peak.to_string(),
        a.tcp_mem_pages_peak.to_string(),
        change(b.tcp_mem_pages_peak as f64, a.tcp_mem_pages_peak as f64),
    );
    row(
        "players in rooms peak",
        opt(b.peak_connected_clients),
        opt(a.peak_connected_clients),
        String::new(),
    );
    let unanswered = |p: &Phase| format!("{}/{}", p.metrics_unanswered, p.samples);
    row(
        "/metrics unanswered",
        unanswered(b),
        unanswered(a),
        String::new(),
    );
    row(
        "server disconnects",
        counts(&b.server_disconnects),
        counts(&a.server_disconnects),
        String::new(),
    );
    row(
        "server log lines (warn)",
        format!("{} ({})", b.server_log_lines, b.server_warn_lines),
        format!("{} ({})", a.server_log_lines, a.server_warn_lines),
        String::new(),
    );
    row(
        "harness CPU s",
        format!("{:.1}", b.harness_cpu_s),
        format!("{:.1}", a.harness_cpu_s),
        String::new(),
    );
    // Columns as wide as their cells up to 24 characters; longer cells (the disconnect
    // tallies, which have no change) overflow their row only.
    let width = |cells: &mut dyn Iterator<Item = usize>| cells.filter(|&n| n <= 24).max();
    let w = width(&mut rows.iter().map(|r| r.1.len()))
        .unwrap_or(8)
        .max(8);
    let w2 = width(&mut rows.iter().map(|r| r.2.len()))
        .unwrap_or(8)
        .max(8);
    let _ = writeln!(
        o,
        "{:<26} {:<w$}  {:<w2$}  change",
        "", "baseline", "attack"
    );
    for (k, b, a, c) in &rows {
        let _ = writeln!(o, "{k:<26} {b:<w$}  {a:<w2$}  {c}");
    }
    if let Some(e) = &a.probes.healthz_error {
        let _ = writeln!(o, "  first /healthz failure under attack: {e}");
    }
    for j in a
        .probes
        .fresh
        .iter()
        .filter(|j| j.join_ms.is_none())
        .take(3)
    {
        let _ = writeln!(
            o,
            "  fresh player at {:.1} s got no Welcome: {}",
            j.at_s,
            j.error.as_deref().unwrap_or("?")
        );
    }
    let _ = writeln!(o, "{}", figure_rows(figures, samples).join("\n"));
    let _ = writeln!(
        o,
        "after {:.0} s of settling: server RSS {:.1} MB, TCP mem {} pages, players in rooms {}",
        settle.seconds,
        settle.rss_mb,
        settle.tcp_mem_pages,
        opt(settle.connected_clients)
    );
    o
}

/// The attack's own lines.
fn figure_rows(figures: &Option<Figures>, samples: &[Sample]) -> Vec<String> {
    let Some(f) = figures else {
        return vec!["(no attack figures)".to_owned()];
    };
    match f {
        Figures::Slowloris(s) => vec![
            format!(
                "slowloris: {} sockets, a byte every {:.1} s: {} opened, {} closed by the server, {} connect errors, peak {} open, {} bytes trickled",
                s.sockets,
                s.trickle_s,
                s.opened,
                s.closed_by_server,
                s.connect_errors,
                s.peak_open,
                s.bytes_sent
            ),
            format!(
                "  held by the server before it closed them, ms: {}",
                s.held_ms
            ),
        ],
        Figures::Pingflood(p) => {
            let mut v = vec![
                format!(
                    "pingflood: {} flooders ({} after Hello): {} connects, {} connect errors, {:.0} pings/s ({:.1} MB/s)",
                    p.flooders,
                    p.with_hello,
                    p.connects,
                    p.connect_errors,
                    p.pings_per_s,
                    p.mb_per_s
                ),
                format!(
                    "  flooders with Hello read {} snapshots and wrote {} acks",
                    p.snapshots_read, p.acks_sent
                ),
                format!(
                    "  closed: {} (first with Hello at {} s, without at {} s): {}",
                    p.closes.len(),
                    opt(p.first_close_s_hello.map(|s| format!("{s:.1}"))),
                    opt(p.first_close_s_no_hello.map(|s| format!("{s:.1}"))),
                    counts(&p.closes_by_how)
                ),
            ];
            for c in p.closes.iter().take(5) {
                v.push(format!(
                    "  flooder {} ({}) closed at {:.1} s after {:.1} s: {}",
                    c.attacker,
                    if c.hello { "Hello" } else { "no Hello" },
                    c.at_s,
                    c.lived_s,
                    c.ending.label()
                ));
            }
            v
        }
        Figures::Blindack(b) => {
            let to_drop = if b.dropped == 0 {
                "-".to_owned()
            } else {
                format!(
                    "p50 {:.1} / max {:.1}",
                    b.dropped_after_s.p50, b.dropped_after_s.max
                )
            };
            let mut v = vec![format!(
                "blindack: {} ackers, {} welcomed, {} dropped by the server before the end; seconds from Welcome to drop: {to_drop}; ending: {}",
                b.ackers,
                b.welcomed,
                b.dropped,
                counts(&b.endings)
            )];
            if let Some(e) = b.each.iter().find_map(|a| a.error.as_ref()) {
                v.push(format!("  an acker that never got in: {e}"));
            }
            v
        }
        Figures::Storm(s) => {
            let series = |phase: &str| {
                samples
                    .iter()
                    .filter(|x| x.phase == phase)
                    .map(|x| format!("{:.1}", x.rss_mb))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let players = |phase: &str| {
                samples
                    .iter()
                    .filter(|x| x.phase == phase)
                    .map(|x| opt(x.gauges.as_ref().map(|g| g.connected_clients)))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            vec![
                format!(
                    "storm: {}/s: {} attempted, {} welcomed, {} failed, {} skipped (in flight); connect to Welcome ms: {}",
                    s.rate, s.attempted, s.welcomed, s.failed, s.skipped, s.welcome_ms
                ),
                format!("  failures: {}", counts(&s.failures)),
                format!("  server RSS MB each second, attack: {}", series("attack")),
                format!("  ... then settling: {}", series("settle")),
                format!(
                    "  players in rooms each second, attack: {}",
                    players("attack")
                ),
                format!("  ... then settling: {}", players("settle")),
            ]
        }
        Figures::Close999(c) => c
            .replies
            .iter()
            .map(|r| {
                format!(
                    "close999 {}: {}",
                    if r.after_hello {
                        "after Hello"
                    } else {
                        "before Hello"
                    },
                    match (&r.ending, &r.error) {
                        (Some(e), _) if e.code.is_some() => format!(
                            "{} {:?} after {:.0} ms{}",
                            e.label(),
                            e.reason,
                            r.after_ms,
                            if e.code == Some(1002) {
                                " (as RFC 6455 §7.4 expects)"
                            } else {
                                " (RFC 6455 §7.4 expects 1002)"
                            }
                        ),
                        (Some(e), _) =>
                            format!("no close frame ({}) after {:.0} ms", e.label(), r.after_ms),
                        (None, Some(err)) => format!("no connection: {err}"),
                        (None, None) => "nothing".to_owned(),
                    }
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_defaults() {
        let a = Args::try_parse_from(["attack", "--attack", "slowloris"]).unwrap();
        assert_eq!((a.attackers(), a.bystanders, a.duration), (1100, 500, 30.0));
        assert_eq!(a.attacker_ip, IpAddr::from([127, 0, 0, 2]));
        a.check().unwrap();
        let a = Args::try_parse_from(["attack", "--attack", "close999", "--json"]).unwrap();
        assert_eq!((a.attack, a.json), (Mode::Close999, true));
        let a = Args::try_parse_from(["attack", "--attack", "pingflood"]).unwrap();
        assert_eq!(a.attackers(), 50);
        let a = Args::try_parse_from(["attack", "--attack", "storm", "--rate", "50"]).unwrap();
        assert_eq!(a.rate, 50.0);
        for bad in [
            ["--attacker-ip", "10.0.0.1"],
            ["--attacker-ip", "::1"],
            ["--duration", "0"],
            ["--rate", "NaN"],
        ] {
            let a = Args::try_parse_from(["attack", "--attack", "storm", bad[0], bad[1]]).unwrap();
            assert!(a.check().is_err(), "{bad:?}");
        }
        assert!(Args::try_parse_from(["attack", "--attack", "storm", "--attackers", "0"]).is_err());
        assert!(Args::try_parse_from(["attack", "--attack", "nope"]).is_err());
    }

    #[test]
    fn the_user_s_server_flags_replace_ours() {
        let a = Args::try_parse_from([
            "attack",
            "--attack",
            "slowloris",
            "--attackers",
            "10000",
            "--server-arg=--max-clients=20000",
        ])
        .unwrap();
        let s = server_args(&a);
        assert!(!s.iter().any(|x| x == "--max-clients"));
        assert!(s.iter().any(|x| x == "--max-clients=20000"));
        let a = Args::try_parse_from(["attack", "--attack", "slowloris", "--attackers", "10000"])
            .unwrap();
        let s = server_args(&a);
        let i = s.iter().position(|x| x == "--max-clients").unwrap();
        assert_eq!(s[i + 1], "10600");
        assert!(s.iter().any(|x| x == "--no-quic"));
    }

    #[test]
    fn changes_are_percent_of_the_baseline() {
        assert_eq!(change(10.0, 11.0), "+10%");
        assert_eq!(change(0.0, 11.0), "");
        assert_eq!(counts(&BTreeMap::<u16, u64>::new()), "-");
        assert_eq!(counts(&BTreeMap::from([(1006u16, 2u64)])), "1006=2");
    }
}
