//! Many bots in one process: ramp them up, run each as a real client, aggregate what they
//! saw. A deterministic fraction of them ([`LoadConfig::verify_fraction`], chosen by
//! [`verifies`]) decode and verify every snapshot; the others read and decode every envelope
//! and acknowledge its tick but skip the snapshot body, so that a crowded room's bots do not
//! out-spend the server's CPU.
//!
//! Hot-path accounting is sharded: bot `i` writes relaxed atomics and records latencies into
//! shard `i % SHARDS`, whose histogram lock only its own bots (and the once-a-second progress
//! reader) ever take. There is no lock that every bot contends on.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tickwire_shared::token::TokenKey;
use tickwire_shared::{CloseCode, InputSeq, ReceiveError, Received};
use tokio::time::{MissedTickBehavior, interval_at, sleep_until};

use crate::client::Event;
use crate::tls::TlsTrust;
use crate::transport::{BotError, Connector, TransportKind};

const SHARDS: usize = 32;
/// How often each bot pings (the RTT figures).
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// Input frames whose latency is still being waited for, per bot.
const MAX_PENDING_INPUTS: usize = 256;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Server URL: `ws://host:port/ws`, or `quic://host:port` with [`TransportKind::Quic`].
    pub url: String,
    /// Bots to start.
    pub bots: usize,
    /// How long the test runs, from the first connection attempt.
    pub duration: Duration,
    /// Bots started per second.
    pub ramp_per_s: f64,
    /// Input messages per bot per second.
    pub input_hz: f64,
    /// Local addresses to connect from, round-robin (empty: the OS picks).
    pub bind_ips: Vec<IpAddr>,
    /// Seconds to wait for a Welcome.
    pub connect_timeout: Duration,
    /// Seed for the bots' random walks.
    pub seed: u64,
    /// WebSocket (`url` is `ws://host:port/ws`) or QUIC (`url` is `quic://host:port`).
    pub transport: TransportKind,
    /// QUIC: accept only the server certificate with this SHA-256.
    pub cert_sha256: Option<[u8; 32]>,
    /// QUIC and `wss://`: accept any server certificate (local tests only). Ignored with
    /// `cert_sha256` (QUIC) or `ws_tls` (`wss://`).
    pub insecure: bool,
    /// `wss://`: the certificates to trust (`--ca-cert PEM`). `None`: `insecure` decides,
    /// and without it a `wss://` URL is refused.
    pub ws_tls: Option<TlsTrust>,
    /// Fraction of the bots (0.0–1.0) that decode and verify every snapshot; see
    /// [`verifies`] for which. The others trust snapshot headers
    /// ([`crate::client::Trusted`]).
    pub verify_fraction: f64,
    /// Matchmaking: every bot gets a seat from this matchmaker first and connects where it
    /// says (`url` is then unused). `None`: every bot dials `url` with no seat.
    pub matchmake: Option<MatchmakeConfig>,
    /// The server's token secret (`--auth-secret-file`): every bot signs itself a player
    /// token (player id `bot-INDEX`, any room, valid for the run plus a margin) and sends it
    /// in its `Hello`. `None`: no token (a server with a secret refuses the bots with 4008).
    pub auth: Option<Arc<TokenKey>>,
    /// Nice value (0-19) of the threads that run the bots: above 0, the bots yield the CPU to
    /// a server under test on the same machine, so what is measured is the server rather than
    /// its competition with its own load (see README, "Load testing on one machine"). Only the
    /// bots' threads change; processes started before or beside them keep theirs.
    pub nice: i32,
}

/// Where and how the bots get their seats (`--matchmake URL --kind KIND --room-size N`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchmakeConfig {
    /// The matchmaker, `http://host:port` (a server's HTTP port).
    pub url: String,
    /// The room kind to ask for (`POST /matchmake/join_or_create/{kind}`).
    pub kind: String,
    /// `max_clients` of the rooms the requests create (`None`: the server's default).
    pub room_size: Option<u32>,
}

/// A `--verify` value outside 0.0–1.0.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0:?} is not a fraction of bots from 0.0 to 1.0")]
pub struct FractionError(pub String);

/// Parses and checks a `--verify FRACTION` value.
pub fn parse_verify_fraction(text: &str) -> Result<f64, FractionError> {
    let f: f64 = text
        .trim()
        .parse()
        .map_err(|_| FractionError(text.to_owned()))?;
    check_verify_fraction(f)
}

/// `fraction` if it is within 0.0–1.0 (NaN is not).
pub fn check_verify_fraction(fraction: f64) -> Result<f64, FractionError> {
    if (0.0..=1.0).contains(&fraction) {
        Ok(fraction)
    } else {
        Err(FractionError(fraction.to_string()))
    }
}

/// A nice value asked for bots that cannot take it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("a nice value ({0}) applies to WebSocket bots only: QUIC bots run on the caller's runtime")]
pub struct NiceError(pub i32);

/// `Ok` if bots over `transport` can run at nice value `nice`: WebSocket bots run on threads
/// of their own, which take it; QUIC bots on the caller's runtime, whose priority is not the
/// run's to set.
pub fn check_nice(transport: TransportKind, nice: i32) -> Result<(), NiceError> {
    if nice > 0 && transport == TransportKind::Quic {
        Err(NiceError(nice))
    } else {
        Ok(())
    }
}

/// How many of `bots` verify with `fraction`: `round(bots × fraction)`, but at least one when
/// `fraction > 0` (and `bots > 0`).
pub fn verifying_count(bots: usize, fraction: f64) -> usize {
    if bots == 0 || fraction.is_nan() || fraction <= 0.0 {
        return 0;
    }
    ((bots as f64 * fraction.min(1.0)).round() as usize).clamp(1, bots)
}

/// Whether bot `index` of `bots` verifies: with `k` = [`verifying_count`], bot `i` does iff
/// `(i × k) mod bots < k`, which picks exactly `k` bots spread evenly over the ramp, bot 0
/// first.
pub fn verifies(index: usize, bots: usize, fraction: f64) -> bool {
    let k = verifying_count(bots, fraction) as u128;
    k > 0 && (index as u128 * k) % (bots as u128) < k
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            url: "ws://127.0.0.1:8080/ws".into(),
            bots: 10,
            duration: Duration::from_secs(10),
            ramp_per_s: 500.0,
            input_hz: 30.0,
            bind_ips: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            seed: 1,
            transport: TransportKind::Ws,
            cert_sha256: None,
            insecure: false,
            ws_tls: None,
            verify_fraction: 1.0,
            matchmake: None,
            auth: None,
            nice: 0,
        }
    }
}

#[derive(Debug)]
struct Hists {
    rtt_us: Histogram<u64>,
    input_us: Histogram<u64>,
    /// Bytes of each snapshot envelope received.
    snapshot_bytes: Histogram<u64>,
    /// Verifying bots, per verified snapshot: ticks its least recently refreshed entry is
    /// behind it.
    refresh_age: Histogram<u64>,
}

impl Hists {
    fn new() -> Self {
        // 1 µs .. 60 s at 3 significant figures: constant, valid bounds, so this cannot fail.
        #[allow(clippy::expect_used)]
        let h = || Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
        Self {
            rtt_us: h(),
            input_us: h(),
            snapshot_bytes: h(),
            refresh_age: h(),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    connected: AtomicU64,
    verifying: AtomicU64,
    connect_failures: AtomicU64,
    matchmake_failures: AtomicU64,
    snapshots: AtomicU64,
    verified: AtomicU64,
    expected_snapshots_ms: AtomicU64,
    connected_ms: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    desyncs: AtomicU64,
    decode_errors: AtomicU64,
    missing_baselines: AtomicU64,
    full: AtomicU64,
    delta: AtomicU64,
    stale: AtomicU64,
    inputs: AtomicU64,
}

#[derive(Debug)]
struct Shard {
    c: Counters,
    h: Mutex<Hists>,
}

/// Shared state of one load run.
#[derive(Debug)]
pub struct Load {
    cfg: LoadConfig,
    shards: Vec<Shard>,
    disconnects: Mutex<BTreeMap<u16, u64>>,
    /// The rooms matchmade bots landed in (taken once per bot, on connect).
    rooms: Mutex<BTreeSet<String>>,
    active: AtomicU64,
    started: Instant,
}

/// A point-in-time summary (the live progress line and the final report); serialised, it is
/// the JSON report whose fields README lists.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Report {
    /// Bots asked for.
    pub bots_requested: usize,
    /// Bots that got a Welcome.
    pub connected: u64,
    /// Bots that never got one (including the matchmake failures).
    pub connect_failures: u64,
    /// Of those, bots that never got a seat from the matchmaker, after retries.
    pub matchmake_failures: u64,
    /// Distinct rooms the connected bots landed in (matchmaking only; 0 otherwise).
    pub rooms: u64,
    /// `--verify`: the fraction of bots asked to verify.
    pub verify_fraction: f64,
    /// Connected bots that decode and verify every snapshot; only they can see a desync.
    pub verifying_bots: u64,
    /// Bots connected right now (0 in the final report; not in the JSON).
    #[serde(skip)]
    pub active: u64,
    /// Connections the server closed before the end, in all.
    #[serde(rename = "disconnects")]
    pub disconnects_total: u64,
    /// The same, by close code.
    #[serde(rename = "disconnects_by_code")]
    pub disconnects: BTreeMap<u16, u64>,
    /// Snapshots per bot per second of connection: verified ones on verifying bots, on the
    /// others each newer snapshot received (trusted by its header).
    pub snapshots_per_bot_s: f64,
    /// Snapshots received over snapshots the Welcome's rate promised while connected.
    pub delivery_ratio: f64,
    /// Bytes received per bot per second.
    pub bytes_in_per_bot_s: f64,
    /// Bytes sent per bot per second.
    pub bytes_out_per_bot_s: f64,
    /// Ping round trip, median, ms.
    pub rtt_ms_p50: f64,
    /// Ping round trip, 99th percentile, ms.
    pub rtt_ms_p99: f64,
    /// Input sent → first snapshot that processed it, median, ms.
    pub input_latency_ms_p50: f64,
    /// Same, 99th percentile.
    pub input_latency_ms_p99: f64,
    /// Bytes of a snapshot envelope received, 99th percentile (a bandwidth budget caps it).
    pub snapshot_bytes_p99: u64,
    /// The largest snapshot envelope received, bytes.
    pub snapshot_bytes_max: u64,
    /// Verifying bots: ticks by which the least recently refreshed entity of a verified view
    /// trailed it (0 without a bandwidth budget), 99th percentile over snapshots.
    pub refresh_age_ticks_p99: u64,
    /// The same, at its largest.
    pub refresh_age_ticks_max: u64,
    /// Snapshots the verifying bots decoded and verified as their newest view.
    pub verified_snapshots: u64,
    /// Checksum mismatches (seen by the verifying bots only).
    pub desyncs: u64,
    /// Snapshots or frames that did not decode.
    pub decode_errors: u64,
    /// Snapshots against a baseline the bot no longer held (not a desync).
    pub missing_baselines: u64,
    /// Full snapshots received.
    pub full_snapshots: u64,
    /// Delta snapshots received.
    pub delta_snapshots: u64,
    /// Seconds since the run started.
    pub duration_s: f64,
}

impl Report {
    /// Whether the run saw no correctness failure (desync or decode error).
    pub fn is_clean(&self) -> bool {
        self.desyncs == 0 && self.decode_errors == 0
    }

    /// The report as one JSON object (fields as documented in README; a non-finite figure
    /// is `null`).
    pub fn to_json(&self) -> String {
        // A struct of numbers and a map with integer keys always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The one-line live progress text.
    pub fn progress_line(&self) -> String {
        format!(
            "{:>5.1}s connected {}/{} active {} verifying {} | {:.1} snap/s/bot ({:.3} of expected) | \
             in {:.1} kB/s/bot | rtt p99 {:.1} ms | input p99 {:.1} ms | desyncs {} decode errors {}",
            self.duration_s,
            self.connected,
            self.bots_requested,
            self.active,
            self.verifying_bots,
            self.snapshots_per_bot_s,
            self.delivery_ratio,
            self.bytes_in_per_bot_s / 1000.0,
            self.rtt_ms_p99,
            self.input_latency_ms_p99,
            self.desyncs,
            self.decode_errors
        )
    }

    /// The final human-readable table.
    pub fn table(&self) -> String {
        let rows: Vec<(&str, String)> = vec![
            ("bots requested", self.bots_requested.to_string()),
            ("connected", self.connected.to_string()),
            ("connect failures", self.connect_failures.to_string()),
            ("  of them matchmake", self.matchmake_failures.to_string()),
            ("rooms", self.rooms.to_string()),
            (
                "verifying bots",
                format!(
                    "{} (--verify {})",
                    self.verifying_bots, self.verify_fraction
                ),
            ),
            ("disconnects (by code)", format!("{:?}", self.disconnects)),
            (
                "snapshots / bot / s",
                format!("{:.2}", self.snapshots_per_bot_s),
            ),
            ("delivery ratio", format!("{:.4}", self.delivery_ratio)),
            (
                "bytes in / bot / s",
                format!("{:.0}", self.bytes_in_per_bot_s),
            ),
            (
                "bytes out / bot / s",
                format!("{:.0}", self.bytes_out_per_bot_s),
            ),
            (
                "rtt p50 / p99 ms",
                format!("{:.2} / {:.2}", self.rtt_ms_p50, self.rtt_ms_p99),
            ),
            (
                "input latency p50 / p99 ms",
                format!(
                    "{:.2} / {:.2}",
                    self.input_latency_ms_p50, self.input_latency_ms_p99
                ),
            ),
            (
                "snapshot bytes p99 / max",
                format!("{} / {}", self.snapshot_bytes_p99, self.snapshot_bytes_max),
            ),
            (
                "refresh age p99 / max ticks",
                format!(
                    "{} / {}",
                    self.refresh_age_ticks_p99, self.refresh_age_ticks_max
                ),
            ),
            ("verified snapshots", self.verified_snapshots.to_string()),
            ("desyncs (verifying bots)", self.desyncs.to_string()),
            ("decode errors", self.decode_errors.to_string()),
            ("missing baselines", self.missing_baselines.to_string()),
            (
                "full / delta snapshots",
                format!("{} / {}", self.full_snapshots, self.delta_snapshots),
            ),
            ("duration s", format!("{:.1}", self.duration_s)),
        ];
        rows.iter().map(|(k, v)| format!("{k:<28} {v}\n")).collect()
    }
}

impl Load {
    /// A run about to start.
    pub fn new(cfg: LoadConfig) -> Arc<Load> {
        Arc::new(Load {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    c: Counters::default(),
                    h: Mutex::new(Hists::new()),
                })
                .collect(),
            disconnects: Mutex::new(BTreeMap::new()),
            rooms: Mutex::new(BTreeSet::new()),
            active: AtomicU64::new(0),
            started: Instant::now(),
            cfg,
        })
    }

    /// Sums the shards into a report.
    pub fn report(&self) -> Report {
        let sum = |f: fn(&Counters) -> &AtomicU64| -> u64 {
            self.shards.iter().map(|s| f(&s.c).load(Relaxed)).sum()
        };
        let mut rtt = Hists::new();
        for s in &self.shards {
            let h = s.h.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = rtt.rtt_us.add(&h.rtt_us);
            let _ = rtt.input_us.add(&h.input_us);
            let _ = rtt.snapshot_bytes.add(&h.snapshot_bytes);
            let _ = rtt.refresh_age.add(&h.refresh_age);
        }
        let ms = |h: &Histogram<u64>, q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        let at = |h: &Histogram<u64>, q: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        // Connected time includes bots still running, sampled now.
        let connected_s = sum(|c| &c.connected_ms) as f64 / 1000.0;
        let expected = sum(|c| &c.expected_snapshots_ms) as f64 / 1000.0;
        let snaps = sum(|c| &c.snapshots);
        let per_s = |v: u64| {
            if connected_s > 0.0 {
                v as f64 / connected_s
            } else {
                0.0
            }
        };
        let disconnects = self
            .disconnects
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Report {
            bots_requested: self.cfg.bots,
            connected: sum(|c| &c.connected),
            connect_failures: sum(|c| &c.connect_failures),
            matchmake_failures: sum(|c| &c.matchmake_failures),
            rooms: self
                .rooms
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len() as u64,
            verify_fraction: self.cfg.verify_fraction,
            verifying_bots: sum(|c| &c.verifying),
            active: self.active.load(Relaxed),
            disconnects_total: disconnects.values().sum(),
            disconnects,
            snapshots_per_bot_s: per_s(snaps),
            delivery_ratio: if expected > 0.0 {
                (snaps as f64 / expected).min(1.0)
            } else {
                0.0
            },
            bytes_in_per_bot_s: per_s(sum(|c| &c.bytes_in)),
            bytes_out_per_bot_s: per_s(sum(|c| &c.bytes_out)),
            rtt_ms_p50: ms(&rtt.rtt_us, 0.5),
            rtt_ms_p99: ms(&rtt.rtt_us, 0.99),
            input_latency_ms_p50: ms(&rtt.input_us, 0.5),
            input_latency_ms_p99: ms(&rtt.input_us, 0.99),
            snapshot_bytes_p99: at(&rtt.snapshot_bytes, 0.99),
            snapshot_bytes_max: rtt.snapshot_bytes.max(),
            refresh_age_ticks_p99: at(&rtt.refresh_age, 0.99),
            refresh_age_ticks_max: rtt.refresh_age.max(),
            verified_snapshots: sum(|c| &c.verified),
            desyncs: sum(|c| &c.desyncs),
            decode_errors: sum(|c| &c.decode_errors),
            missing_baselines: sum(|c| &c.missing_baselines),
            full_snapshots: sum(|c| &c.full),
            delta_snapshots: sum(|c| &c.delta),
            duration_s: self.started.elapsed().as_secs_f64(),
        }
    }
}

/// Runs the whole load test: starts the bots on the ramp, calls `progress` about once a
/// second, and returns the final report when every bot has finished. A `verify_fraction`
/// outside 0.0–1.0 starts no bot (all count as connect failures; check it first with
/// [`check_verify_fraction`]).
pub async fn run(cfg: LoadConfig, mut progress: impl FnMut(&Report)) -> Report {
    let load = Load::new(cfg.clone());
    // No bot starts: every one counts as a connect failure.
    let refuse = |load: &Load, progress: &mut dyn FnMut(&Report)| {
        load.shards[0]
            .c
            .connect_failures
            .fetch_add(cfg.bots as u64, Relaxed);
        let report = load.report();
        progress(&report);
        report
    };
    if let Err(e) = check_nice(cfg.transport, cfg.nice) {
        tracing::error!(error = %e, "refusing to start the bots");
        return refuse(&load, &mut progress);
    }
    if let Err(e) = check_verify_fraction(cfg.verify_fraction) {
        tracing::error!(error = %e, "refusing to start the bots");
        return refuse(&load, &mut progress);
    }
    let connector = match Connector::new(&cfg).await {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the bots' connections");
            return refuse(&load, &mut progress);
        }
    };
    let workers = match Workers::start(cfg.nice) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the bots' worker threads");
            return refuse(&load, &mut progress);
        }
    };
    let end = tokio::time::Instant::now() + cfg.duration;
    let mut tasks = tokio::task::JoinSet::new();
    let gap = Duration::from_secs_f64(1.0 / cfg.ramp_per_s.max(0.001));
    let mut next_start = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut started = 0;
    loop {
        tokio::select! {
            _ = sleep_until(next_start), if started < cfg.bots && next_start < end => {
                let bind = (!cfg.bind_ips.is_empty()).then(|| cfg.bind_ips[started % cfg.bind_ips.len()]);
                let fut = bot(load.clone(), connector.clone(), started, bind, end);
                match cfg.transport {
                    TransportKind::Ws => {
                        tasks.spawn_on(fut, workers.pick(started));
                    }
                    // quinn drives its endpoints on the runtime that made them: QUIC bots stay
                    // there (measured: on the per-core runtimes, 1,000 QUIC bots lost 2-8%).
                    TransportKind::Quic => {
                        tasks.spawn(fut);
                    }
                }
                started += 1;
                next_start += gap;
            }
            _ = ticker.tick() => progress(&load.report()),
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = sleep_until(end + Duration::from_secs(5)) => break,
        }
        if tasks.is_empty() && (started >= cfg.bots || next_start >= end) {
            break;
        }
    }
    // Bots stop at `end` by themselves; anything still running 5 s later is abandoned.
    tasks.abort_all();
    drop(workers);
    let report = load.report();
    progress(&report);
    report
}

/// The bots run on one single-threaded runtime per core rather than on a work-stealing pool:
/// a bot's socket, timers and state stay on one thread, with no cross-thread wake-ups.
struct Workers {
    handles: Vec<tokio::runtime::Handle>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Workers {
    /// One runtime thread per core, each at nice value `nice` (see [`LoadConfig::nice`]).
    fn start(nice: i32) -> std::io::Result<Workers> {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut w = Workers {
            handles: Vec::with_capacity(n),
            stops: Vec::with_capacity(n),
        };
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let handle = rt.handle().clone();
            let (niced, is_niced) = std::sync::mpsc::sync_channel(1);
            std::thread::Builder::new()
                .name(format!("bots-{i}"))
                .spawn(move || {
                    let r = tickwire_shared::rlimit::set_thread_nice(nice);
                    let ok = r.is_ok();
                    let _ = niced.send(r);
                    if ok {
                        // Runs until the run drops its `Workers`; leftover tasks are dropped
                        // then.
                        let _ = rt.block_on(stopped);
                    }
                })?;
            // A thread that could not take its nice value ends at once: the run is refused
            // rather than measured at a priority it did not ask for.
            is_niced
                .recv()
                .map_err(|_| std::io::Error::other("a bot thread ended before it started"))??;
            w.handles.push(handle);
            w.stops.push(stop);
        }
        Ok(w)
    }

    fn pick(&self, bot: usize) -> &tokio::runtime::Handle {
        &self.handles[bot % self.handles.len()]
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
    }
}

async fn bot(
    load: Arc<Load>,
    connector: Arc<Connector>,
    index: usize,
    bind: Option<IpAddr>,
    end: tokio::time::Instant,
) {
    let shard = &load.shards[index % SHARDS];
    let cfg = &load.cfg;
    let name = format!("bot{index}");
    let connecting = connector.connect(index, &name, bind, cfg.connect_timeout);
    let mut client = match connecting.await {
        Ok((c, room)) => {
            if let Some(room) = room {
                load.rooms
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(room);
            }
            c
        }
        Err(e) => {
            if matches!(e, BotError::Matchmake(_)) {
                shard.c.matchmake_failures.fetch_add(1, Relaxed);
            }
            tracing::debug!(bot = index, error = %e, "no connection");
            shard.c.connect_failures.fetch_add(1, Relaxed);
            return;
        }
    };
    let verifying = verifies(index, cfg.bots, cfg.verify_fraction);
    client.set_verify(verifying);
    shard.c.connected.fetch_add(1, Relaxed);
    if verifying {
        shard.c.verifying.fetch_add(1, Relaxed);
    }
    load.active.fetch_add(1, Relaxed);
    let welcomed = Instant::now();
    let snapshot_rate =
        f64::from(client.welcome().tick_rate) / f64::from(client.welcome().snapshot_every.max(1));
    let mut rng = cfg.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut dir = (0i8, 0i8);
    let mut pending: VecDeque<(InputSeq, Instant)> = VecDeque::with_capacity(64);
    // A random phase: the Welcome arrives right after a server tick, and inputs locked to
    // that phase would always just miss the next tick's input drain.
    let period = Duration::from_secs_f64(1.0 / cfg.input_hz.max(0.1));
    let phase = period.mul_f64((rng % 1000) as f64 / 1000.0);
    let mut inputs = interval_at(tokio::time::Instant::now() + phase, period);
    inputs.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The session pings once a second; its timer (one, re-armed only when the session's
    // next deadline moves) wakes this loop.
    client.set_ping_interval(Some(PING_INTERVAL));
    let timer = sleep_until(end);
    tokio::pin!(timer);
    let mut armed = None;
    let mut accounted_ms = 0u64;
    let mut bytes_out_seen = client.bytes_out();
    let mut closed_by_server = None;

    // One timer for the end, not one registered per loop turn.
    let finish = sleep_until(end);
    tokio::pin!(finish);
    loop {
        let wake = client.poll_timeout();
        if wake != armed {
            if let Some(at) = wake {
                timer.as_mut().reset(at.into());
            }
            armed = wake;
        }
        tokio::select! {
            _ = &mut finish => break,
            _ = &mut timer, if armed.is_some() => {
                if client.handle_timeout(Instant::now()).await.is_err() {
                    break;
                }
            }
            _ = inputs.tick() => {
                // A random walk: turn now and then, fire rarely.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                if rng.is_multiple_of(20) {
                    dir = ((rng >> 8) as i8, (rng >> 16) as i8);
                }
                let fire = u8::from(rng.is_multiple_of(97));
                let aim = (rng >> 24) as u16;
                match client.send_input(dir.0, dir.1, aim, fire).await {
                    Ok(seq) => {
                        if pending.len() == MAX_PENDING_INPUTS {
                            pending.pop_front();
                        }
                        pending.push_back((seq, Instant::now()));
                        shard.c.inputs.fetch_add(1, Relaxed);
                    }
                    Err(_) => break,
                }
            }
            ev = client.next_event() => match ev {
                Ok(Event::Snapshot { outcome, bytes, message }) => {
                    shard.c.bytes_in.fetch_add(bytes as u64, Relaxed);
                    match outcome {
                        // On a bot that does not verify: a newer tick than before, by its header.
                        Ok(Received::Current { full, .. }) => {
                            shard.c.snapshots.fetch_add(1, Relaxed);
                            if verifying {
                                shard.c.verified.fetch_add(1, Relaxed);
                            }
                            if full {
                                shard.c.full.fetch_add(1, Relaxed);
                            } else {
                                shard.c.delta.fetch_add(1, Relaxed);
                            }
                                                        let now = Instant::now();
                            let age = client.staleness();
                            let mut h = shard.h.lock().unwrap_or_else(PoisonError::into_inner);
                            let _ = h.snapshot_bytes.record(bytes as u64);
                            if let Some(a) = age {
                                let _ = h.refresh_age.record(u64::from(a));
                            }
                            while pending.front().is_some_and(|(s, _)| *s <= message.last_input) {
                                if let Some((_, sent)) = pending.pop_front() {
                                    let _ = h.input_us.record((now - sent).as_micros().max(1) as u64);
                                }
                            }
                        }
                        Ok(Received::Stale { .. } | Received::Duplicate { .. }) => {
                            shard.c.stale.fetch_add(1, Relaxed);
                        }
                        Err(ReceiveError::ChecksumMismatch { .. }) => {
                            shard.c.desyncs.fetch_add(1, Relaxed);
                        }
                        Err(ReceiveError::MissingBaseline { .. }) => {
                            shard.c.missing_baselines.fetch_add(1, Relaxed);
                        }
                        Err(_) => {
                            shard.c.decode_errors.fetch_add(1, Relaxed);
                        }
                    }
                }
                Ok(Event::Pong { rtt, .. }) => {
                    let mut h = shard.h.lock().unwrap_or_else(PoisonError::into_inner);
                    let _ = h.rtt_us.record((rtt.as_micros() as u64).max(1));
                }
                // The connector consumed it.
                Ok(Event::Welcome(_)) => {}
                Ok(Event::Closed { code, .. }) => {
                    closed_by_server = Some(code);
                    break;
                }
                Err(e) if e.is_protocol() => {
                    shard.c.decode_errors.fetch_add(1, Relaxed);
                    closed_by_server = Some(CloseCode::Abnormal.code());
                    break;
                }
                Err(_) => {
                    closed_by_server = Some(CloseCode::Abnormal.code());
                    break;
                }
            },
        }
        // Account connected time and outbound bytes as we go, so live reports are current.
        let ms = welcomed.elapsed().as_millis() as u64;
        if ms >= accounted_ms + 250 {
            let d = ms - accounted_ms;
            shard.c.connected_ms.fetch_add(d, Relaxed);
            shard
                .c
                .expected_snapshots_ms
                .fetch_add((d as f64 * snapshot_rate) as u64, Relaxed);
            accounted_ms = ms;
            shard
                .c
                .bytes_out
                .fetch_add(client.bytes_out() - bytes_out_seen, Relaxed);
            bytes_out_seen = client.bytes_out();
        }
    }
    let ms = welcomed.elapsed().as_millis() as u64;
    let d = ms.saturating_sub(accounted_ms);
    shard.c.connected_ms.fetch_add(d, Relaxed);
    shard
        .c
        .expected_snapshots_ms
        .fetch_add((d as f64 * snapshot_rate) as u64, Relaxed);
    shard
        .c
        .bytes_out
        .fetch_add(client.bytes_out() - bytes_out_seen, Relaxed);
    load.active.fetch_sub(1, Relaxed);
    match closed_by_server {
        Some(code) => {
            *load
                .disconnects
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(code)
                .or_default() += 1;
        }
        None => {
            let _ = client.leave().await;
            client.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifying_bots_are_round_n_f_spread_evenly_and_bot_0_first() {
        for bots in [1usize, 2, 3, 7, 10, 50, 100, 101, 1000] {
            for f in [0.0, 0.001, 0.1, 0.25, 1.0 / 3.0, 0.5, 0.9, 0.999, 1.0] {
                let chosen: Vec<usize> = (0..bots).filter(|&i| verifies(i, bots, f)).collect();
                let want = if f > 0.0 {
                    ((bots as f64 * f).round() as usize).max(1)
                } else {
                    0
                };
                assert_eq!(chosen.len(), want, "bots {bots} f {f}");
                assert_eq!(verifying_count(bots, f), want);
                if f > 0.0 {
                    assert_eq!(chosen[0], 0, "bots {bots} f {f}");
                }
                // Evenly spread: gaps differ by at most one.
                let gaps: Vec<usize> = chosen.windows(2).map(|w| w[1] - w[0]).collect();
                if let (Some(lo), Some(hi)) = (gaps.iter().min(), gaps.iter().max()) {
                    assert!(hi - lo <= 1, "bots {bots} f {f}: {gaps:?}");
                }
            }
        }
        assert_eq!(verifying_count(100, 0.1), 10);
        assert!((0..100).all(|i| verifies(i, 100, 1.0)));
        assert!(!(0..100).any(|i| verifies(i, 100, 0.0)));
        assert_eq!(verifying_count(0, 0.5), 0);
    }

    #[test]
    fn the_json_report_counts_matchmake_failures_and_rooms() {
        let report = Report {
            connect_failures: 3,
            matchmake_failures: 2,
            rooms: 250,
            ..Report::default()
        };
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["connect_failures"], 3);
        assert_eq!(json["matchmake_failures"], 2);
        assert_eq!(json["rooms"], 250);
        assert!(report.table().contains("rooms"));
    }

    /// The JSON's shape is README's table: every field it lists and no other, the close codes
    /// as object keys, and a figure that is not finite as `null`.
    #[test]
    fn the_json_report_has_the_fields_readme_lists() {
        let report = Report {
            bots_requested: 10,
            connected: 9,
            active: 4,
            disconnects_total: 3,
            disconnects: BTreeMap::from([(1006, 2), (4002, 1)]),
            delivery_ratio: 0.98,
            rtt_ms_p99: f64::NAN,
            ..Report::default()
        };
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut readme = vec![
            "bots_requested",
            "connected",
            "connect_failures",
            "matchmake_failures",
            "rooms",
            "verify_fraction",
            "verifying_bots",
            "verified_snapshots",
            "disconnects",
            "disconnects_by_code",
            "snapshots_per_bot_s",
            "delivery_ratio",
            "bytes_in_per_bot_s",
            "bytes_out_per_bot_s",
            "rtt_ms_p50",
            "rtt_ms_p99",
            "input_latency_ms_p50",
            "input_latency_ms_p99",
            "snapshot_bytes_p99",
            "snapshot_bytes_max",
            "refresh_age_ticks_p99",
            "refresh_age_ticks_max",
            "desyncs",
            "decode_errors",
            "missing_baselines",
            "full_snapshots",
            "delta_snapshots",
            "duration_s",
        ];
        readme.sort_unstable();
        assert_eq!(keys, readme);
        assert_eq!(json["bots_requested"], 10);
        assert_eq!(json["connected"], 9);
        assert_eq!(json["disconnects"], 3);
        assert_eq!(
            json["disconnects_by_code"],
            serde_json::json!({"1006": 2, "4002": 1})
        );
        assert_eq!(json["delivery_ratio"], 0.98);
        assert!(json["rtt_ms_p99"].is_null());
    }

    #[test]
    fn a_nice_value_is_for_websocket_bots_only() {
        assert_eq!(check_nice(TransportKind::Ws, 10), Ok(()));
        assert_eq!(check_nice(TransportKind::Quic, 0), Ok(()));
        assert_eq!(check_nice(TransportKind::Quic, 10), Err(NiceError(10)));
    }

    #[test]
    fn verify_fractions_outside_0_to_1_are_refused() {
        assert_eq!(parse_verify_fraction("0.25"), Ok(0.25));
        assert_eq!(parse_verify_fraction("0"), Ok(0.0));
        assert_eq!(parse_verify_fraction("1"), Ok(1.0));
        for bad in ["-0.1", "1.01", "NaN", "inf", "", "half"] {
            let e = parse_verify_fraction(bad).unwrap_err();
            assert!(e.to_string().contains("from 0.0 to 1.0"), "{e}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn bot_threads_run_at_their_nice_value_and_this_thread_keeps_its_own() {
        use tickwire_shared::rlimit::thread_nice;
        let mine = thread_nice().unwrap();
        // Nice values stop at 19.
        let want = (mine + 4).min(19);
        let w = Workers::start(want).unwrap();
        for h in &w.handles {
            let (tx, rx) = std::sync::mpsc::channel();
            h.spawn(async move {
                let _ = tx.send(thread_nice().ok());
            });
            let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(got, Some(want));
        }
        assert_eq!(thread_nice().unwrap(), mine);
        drop(w);
    }
}
