//! The end-to-end load harness: starts the release server as a child process on a free
//! loopback port, runs the bots in this process against it, samples the server's CPU time and
//! RSS from /proc, and prints one summary line plus the JSON report.
//!
//! `--transport quic` runs the bots over QUIC (the server gets `--quic 127.0.0.1:0`, and the
//! bots pin the certificate fingerprint it logs); the default is WebSocket (`--no-quic`).
//!
//! Build the server and the harness separately (one `--bin` flag would skip the server):
//! `cargo build --release -p tickwire-server && \
//!  cargo build --release -p tickwire-benches --bin loadtest && \
//!  ./target/release/loadtest --bots 2000 --tick-rate 30 --duration 30 --transport quic`

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use tickwire_bot_client::quic::parse_sha256;
use tickwire_bot_client::{LoadConfig, TransportKind, run};
use tickwire_shared::rlimit;

/// Load-test a freshly started release server with verifying bots.
#[derive(Debug, Parser)]
struct Args {
    /// Bots.
    #[arg(long, default_value_t = 2000)]
    bots: usize,
    /// Server tick rate.
    #[arg(long, default_value_t = 30)]
    tick_rate: u32,
    /// Seconds of load (bots ramp up inside this window).
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Bots started per second.
    #[arg(long, default_value_t = 1000.0)]
    ramp: f64,
    /// Inputs per bot per second (default: the tick rate).
    #[arg(long)]
    input_hz: Option<f64>,
    /// NPCs on the server.
    #[arg(long, default_value_t = 200)]
    npcs: u32,
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
}

struct ServerProc(Child);

impl Drop for ServerProc {
    fn drop(&mut self) {
        // Our own child only, by its handle.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// utime + stime of a process, in clock ticks, from /proc/PID/stat.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("odd /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).context("no utime")?.parse()?;
    let stime: u64 = f.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("no VmRSS value")?
        .parse()?)
}

/// The value of `key=value` in a log line (a whole word: `addr` does not match `quic_addr=`).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn transport_name(t: TransportKind) -> &'static str {
    match t {
        TransportKind::Ws => "ws",
        TransportKind::Quic => "quic",
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let want = args.bots as u64 + 256;
    let lim = rlimit::raise_nofile(want)?;
    if lim.soft < want {
        bail!("need {want} open files, hard limit is {}", lim.hard);
    }
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
    let quic_args: &[&str] = match args.transport {
        TransportKind::Ws => &["--no-quic"],
        TransportKind::Quic => &["--quic", "127.0.0.1:0"],
    };
    let mut child = Command::new(&server_bin)
        .args(["--listen", "127.0.0.1:0"])
        .args(quic_args)
        .args(["--tick-rate", &args.tick_rate.to_string()])
        .args(["--npcs", &args.npcs.to_string()])
        .args(["--max-clients", &(args.bots + 100).to_string()])
        .args(&args.server_args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", server_bin.display()))?;
    let pid = child.id();
    let stderr = child.stderr.take().context("no stderr")?;
    let server = ServerProc(child);

    // Read the server's log: its addresses first, then the 10-second status lines.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let tick_p99_us: Arc<Mutex<Vec<u64>>> = Arc::default();
    let overruns: Arc<Mutex<u64>> = Arc::default();
    {
        let (tick_p99_us, overruns) = (tick_p99_us.clone(), overruns.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                for key in ["addr", "quic_addr", "cert_sha256"] {
                    if let Some(v) = field(&line, key) {
                        let _ = addr_tx.send((key, v.to_owned()));
                    }
                }
                if line.contains("status") && !line.contains("clients=0 ") {
                    if let Some(v) = field(&line, "tick_p99_us").and_then(|v| v.parse().ok()) {
                        tick_p99_us
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(v);
                    }
                    if let Some(v) = field(&line, "overruns").and_then(|v| v.parse::<u64>().ok()) {
                        *overruns.lock().unwrap_or_else(PoisonError::into_inner) += v;
                    }
                }
            }
        });
    }
    let mut logged = std::collections::HashMap::new();
    let wanted: &[&str] = match args.transport {
        TransportKind::Ws => &["addr"],
        TransportKind::Quic => &["addr", "quic_addr", "cert_sha256"],
    };
    while !wanted.iter().all(|k| logged.contains_key(k)) {
        let (k, v) = addr_rx
            .recv_timeout(Duration::from_secs(20))
            .context("the server did not log its addresses")?;
        logged.insert(k, v);
    }
    let (url, cert_sha256) = match args.transport {
        TransportKind::Ws => (format!("ws://{}/ws", logged["addr"]), None),
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
        input_hz: args.input_hz.unwrap_or(f64::from(args.tick_rate)),
        bind_ips: args.bind_ip.clone(),
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
    drop(server);

    // /proc reports CPU time in USER_HZ, which Linux fixes at 100 on every architecture.
    let server_cpu_s = (cpu1 - cpu0) as f64 / 100.0;
    // Client-snapshots the bots verified (what the CPU bought).
    let snapshots = (report.full_snapshots + report.delta_snapshots) as f64;
    let cpu_us_per_snap = server_cpu_s * 1e6 / snapshots.max(1.0);
    let p99s = tick_p99_us
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let tick_p99_ms = p99s.iter().copied().max().unwrap_or(0) as f64 / 1000.0;
    let overruns = *overruns.lock().unwrap_or_else(PoisonError::into_inner);

    println!(
        "loadtest transport={} bots={} tick_rate={} delivery={:.4} desyncs={} server_cpu_us_per_client_snapshot={:.2} \
         server_rss_mb={:.1} bytes_per_client_s={:.0} input_latency_p99_ms={:.2} tick_p99_ms={:.2}",
        transport_name(args.transport),
        args.bots,
        args.tick_rate,
        report.delivery_ratio,
        report.desyncs,
        cpu_us_per_snap,
        peak_rss as f64 / 1024.0,
        report.bytes_in_per_bot_s,
        report.input_latency_ms_p99,
        tick_p99_ms
    );
    let json = format!(
        "{{\"loadtest\":{{\"transport\":\"{}\",\"bots\":{},\"tick_rate\":{},\"server_cpu_s\":{:.3},\"wall_s\":{:.3},\
         \"bots_cpu_s\":{:.3},\"server_cpu_us_per_client_snapshot\":{:.3},\"server_rss_mb\":{:.1},\"tick_p99_ms\":{:.3},\
         \"tick_overruns\":{}}},\"report\":{}}}",
        transport_name(args.transport),
        args.bots,
        args.tick_rate,
        server_cpu_s,
        wall.as_secs_f64(),
        bots_cpu_s,
        cpu_us_per_snap,
        peak_rss as f64 / 1024.0,
        tick_p99_ms,
        overruns,
        report.to_json()
    );
    println!("{json}");
    if let Some(p) = &args.json {
        std::fs::write(p, json + "\n")?;
    }
    if !report.is_clean() {
        bail!("desyncs or decode errors");
    }
    Ok(())
}
