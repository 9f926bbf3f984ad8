//! The five attacks. Each runs from its start instant to its end instant, from the
//! attacker's own loopback address, and returns what it saw as serialisable figures with
//! their table rows. Every task checks the end instant; nothing outlives the attack phase by
//! more than the few seconds a last handshake may take.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tickwire_shared::{InputHistory, ServerMessage, Tick};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, sleep_until, timeout, timeout_at};

use super::raw::{self, Conn, Ending, OP_PING};

/// How long one attacker's handshake (connect, upgrade, Hello, Welcome) may take.
const HANDSHAKE: Duration = Duration::from_secs(5);

/// How long to read for the end of a connection once a write to it failed.
const DRAIN: Duration = Duration::from_secs(1);

/// Ping frames per write of a flooder: 512 × 131 bytes, 67 kB.
const PINGS_PER_WRITE: usize = 512;

/// Most storm connections in flight at once; a storm attempt past it is skipped (counted).
const STORM_IN_FLIGHT: u64 = 4000;

/// Most per-connection durations kept for percentiles.
const MAX_KEPT: usize = 200_000;

/// Where and how to attack.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The server's game port (HTTP and WebSocket).
    pub(crate) server: SocketAddr,
    /// The attackers' source address.
    pub(crate) from: IpAddr,
    /// Sockets or connections (slowloris, pingflood, blindack).
    pub(crate) attackers: usize,
    /// storm: connects per second.
    pub(crate) rate: f64,
    /// slowloris: time between two bytes of one socket.
    pub(crate) trickle: Duration,
    /// slowloris, pingflood: pause before reopening a connection the server closed.
    pub(crate) reopen: Duration,
    /// pingflood: which flooders say Hello first.
    pub(crate) flood_hello: FloodHello,
}

/// Which ping flooders complete a `Hello` before they flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FloodHello {
    /// Every one: they are players in the room.
    All,
    /// None: they flood the handshake (the server's Hello deadline applies).
    None,
    /// Even-numbered ones.
    Half,
}

impl FloodHello {
    fn says_hello(self, i: usize) -> bool {
        match self {
            FloodHello::All => true,
            FloodHello::None => false,
            FloodHello::Half => i.is_multiple_of(2),
        }
    }
}

/// A monotonic counter shared by an attack's tasks.
#[derive(Debug, Default)]
struct Count(AtomicU64);

impl Count {
    fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Durations (ms) kept for percentiles, at most [`MAX_KEPT`].
#[derive(Debug, Default)]
struct Kept(Mutex<Vec<f64>>);

impl Kept {
    fn push(&self, d: Duration) {
        let mut v = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if v.len() < MAX_KEPT {
            v.push(d.as_secs_f64() * 1000.0);
        }
    }
    fn take(&self) -> Vec<f64> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// p50, p99 and max of `v` (0 when empty).
pub(crate) fn spread(mut v: Vec<f64>) -> Spread {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if v.is_empty() {
            0.0
        } else {
            v[((v.len() - 1) as f64 * q).round() as usize]
        }
    };
    Spread {
        n: v.len(),
        p50: at(0.5),
        p99: at(0.99),
        max: at(1.0),
    }
}

/// A distribution in brief.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub(crate) struct Spread {
    pub(crate) n: usize,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.0} / p99 {:.0} / max {:.0} (n={})",
            self.p50, self.p99, self.max, self.n
        )
    }
}

/// Counts of labels, for "closed how" tallies.
fn tally<'a>(labels: impl Iterator<Item = &'a str>) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for l in labels {
        *m.entry(l.to_owned()).or_insert(0) += 1;
    }
    m
}

/// `min(now + d, end)`.
fn soon(d: Duration, end: Instant) -> Instant {
    (Instant::now() + d).min(end)
}

// ---------------------------------------------------------------------------------------
// slowloris

/// What the trickling sockets did.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Slowloris {
    pub(crate) sockets: usize,
    pub(crate) trickle_s: f64,
    /// TCP connections that completed.
    pub(crate) opened: u64,
    /// Of them, closed by the server (each then reopened after `--reopen`).
    pub(crate) closed_by_server: u64,
    /// Connection attempts that failed or hung past the handshake time.
    pub(crate) connect_errors: u64,
    /// Most trickling sockets open at once.
    pub(crate) peak_open: u64,
    /// Head bytes trickled, in all.
    pub(crate) bytes_sent: u64,
    /// How long the server held a trickling socket before it closed it, ms.
    pub(crate) held_ms: Spread,
}

/// N sockets trickling an upgrade head one byte per `trickle`, never finishing it (header
/// lines follow the upgrade lines for ever), reopened `reopen` after the server closes them.
/// The sockets open spread over the first second.
pub(crate) async fn slowloris(t: &Target, start: Instant, end: Instant) -> Slowloris {
    #[derive(Default)]
    struct Shared {
        opened: Count,
        closed: Count,
        errors: Count,
        open_now: AtomicU64,
        peak_open: AtomicU64,
        bytes: Count,
        held: Kept,
    }
    let head: Arc<[u8]> = raw::upgrade_lines(t.server).into_bytes().into();
    let sh = Arc::new(Shared::default());
    let mut tasks = JoinSet::new();
    let n = t.attackers.max(1);
    for i in 0..t.attackers {
        let (t, head, sh) = (t.clone(), head.clone(), sh.clone());
        let at = start + Duration::from_secs(1).mul_f64(i as f64 / n as f64);
        tasks.spawn(async move {
            sleep_until(at).await;
            while Instant::now() < end {
                let stream =
                    match timeout_at(soon(HANDSHAKE, end), raw::tcp_from(t.from, t.server)).await {
                        Ok(Ok(s)) => s,
                        _ => {
                            sh.errors.add(1);
                            sleep_until(soon(t.reopen, end)).await;
                            continue;
                        }
                    };
                sh.opened.add(1);
                let open = sh.open_now.fetch_add(1, Relaxed) + 1;
                sh.peak_open.fetch_max(open, Relaxed);
                let opened = Instant::now();
                let closed = trickle(stream, &head, t.trickle, end, &sh.bytes).await;
                sh.open_now.fetch_sub(1, Relaxed);
                if closed {
                    sh.closed.add(1);
                    sh.held.push(opened.elapsed());
                }
                sleep_until(soon(t.reopen, end)).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Slowloris {
        sockets: t.attackers,
        trickle_s: t.trickle.as_secs_f64(),
        opened: sh.opened.get(),
        closed_by_server: sh.closed.get(),
        connect_errors: sh.errors.get(),
        peak_open: sh.peak_open.load(Relaxed),
        bytes_sent: sh.bytes.get(),
        held_ms: spread(sh.held.take()),
    }
}

/// Trickles `head` (then `X-a: b` lines) into `stream` until `end` (`false`) or until the
/// server closes it (`true`). Whatever the server answers (a 408, say) is read and dropped.
async fn trickle(
    mut stream: tokio::net::TcpStream,
    head: &[u8],
    every: Duration,
    end: Instant,
    bytes: &Count,
) -> bool {
    const PAD: &[u8] = b"X-a: b\r\n";
    let byte = |k: usize| match head.get(k) {
        Some(b) => *b,
        None => PAD[(k - head.len()) % PAD.len()],
    };
    let (mut r, mut w) = stream.split();
    let mut sink = [0u8; 512];
    let mut k = 0;
    let mut next = Instant::now();
    loop {
        tokio::select! {
            _ = sleep_until(end) => return false,
            _ = sleep_until(next) => {
                if w.write_all(&[byte(k)]).await.is_err() {
                    return true;
                }
                bytes.add(1);
                k += 1;
                next += every;
            }
            read = r.read(&mut sink) => match read {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            },
        }
    }
}

// ---------------------------------------------------------------------------------------
// pingflood

/// One connection the server (or the network) ended.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Closed {
    /// Which attacker.
    pub(crate) attacker: usize,
    /// Whether it had said Hello.
    pub(crate) hello: bool,
    /// Seconds from the attack's start to the end of this connection.
    pub(crate) at_s: f64,
    /// Seconds this connection lived.
    pub(crate) lived_s: f64,
    /// How it ended.
    pub(crate) ending: Ending,
}

/// What the ping flood did.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Pingflood {
    pub(crate) flooders: usize,
    pub(crate) with_hello: usize,
    /// Connections opened (a closed flooder reopens after `--reopen`).
    pub(crate) connects: u64,
    pub(crate) connect_errors: u64,
    /// Ping frames written, in all, and per second of the attack.
    pub(crate) pings_sent: u64,
    /// Flooders with Hello: snapshots they read, and `Input` acknowledgements they wrote.
    pub(crate) snapshots_read: u64,
    pub(crate) acks_sent: u64,
    pub(crate) pings_per_s: f64,
    pub(crate) mb_per_s: f64,
    /// Connections that ended before the attack did, in order.
    pub(crate) closes: Vec<Closed>,
    /// Of them, by how they ended.
    pub(crate) closes_by_how: std::collections::BTreeMap<String, u64>,
    /// Seconds into the attack of the first close of a flooder with and without Hello.
    pub(crate) first_close_s_hello: Option<f64>,
    pub(crate) first_close_s_no_hello: Option<f64>,
}

/// `attackers` WebSockets (some after a Hello, see [`FloodHello`]) writing 125-byte ping
/// frames back to back, and reading whatever comes back to see how they are closed.
pub(crate) async fn pingflood(t: &Target, start: Instant, end: Instant) -> Pingflood {
    let mut one = Vec::with_capacity(131);
    raw::put_frame(&mut one, OP_PING, &[0x5a; 125]);
    let burst: Arc<[u8]> = one.repeat(PINGS_PER_WRITE).into();
    let sent = Arc::new(FloodCounts::default());
    let connects = Arc::new(Count::default());
    let errors = Arc::new(Count::default());
    let closes = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = JoinSet::new();
    for i in 0..t.attackers {
        let (t, burst, sent, connects, errors, closes) = (
            t.clone(),
            burst.clone(),
            sent.clone(),
            connects.clone(),
            errors.clone(),
            closes.clone(),
        );
        let hello = t.flood_hello.says_hello(i);
        tasks.spawn(async move {
            while Instant::now() < end {
                let opened = timeout_at(soon(HANDSHAKE, end), async {
                    let mut c = Conn::open(t.from, t.server).await?;
                    if hello {
                        c.hello(&format!("flood{i}")).await?;
                    }
                    anyhow::Ok(c)
                })
                .await;
                let Ok(Ok(conn)) = opened else {
                    errors.add(1);
                    sleep_until(soon(t.reopen, end)).await;
                    continue;
                };
                connects.add(1);
                let since = Instant::now();
                let Some(ending) = flood(conn, hello, &burst, end, &sent).await else {
                    break;
                };
                closes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Closed {
                        attacker: i,
                        hello,
                        at_s: (Instant::now() - start).as_secs_f64(),
                        lived_s: since.elapsed().as_secs_f64(),
                        ending,
                    });
                sleep_until(soon(t.reopen, end)).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let secs = (end - start).as_secs_f64().max(1e-3);
    let mut closes = std::mem::take(&mut *closes.lock().unwrap_or_else(PoisonError::into_inner));
    closes.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let first = |hello: bool| closes.iter().find(|c| c.hello == hello).map(|c| c.at_s);
    let labels: Vec<String> = closes.iter().map(|c| c.ending.label()).collect();
    Pingflood {
        flooders: t.attackers,
        with_hello: (0..t.attackers)
            .filter(|&i| t.flood_hello.says_hello(i))
            .count(),
        connects: connects.get(),
        connect_errors: errors.get(),
        pings_sent: sent.pings.get(),
        snapshots_read: sent.snapshots.get(),
        acks_sent: sent.acks.get(),
        pings_per_s: sent.pings.get() as f64 / secs,
        mb_per_s: sent.pings.get() as f64 * 131.0 / secs / 1e6,
        first_close_s_hello: first(true),
        first_close_s_no_hello: first(false),
        closes_by_how: tally(labels.iter().map(String::as_str)),
        closes,
    }
}

/// What the flooders wrote and read, added up.
#[derive(Debug, Default)]
struct FloodCounts {
    pings: Count,
    acks: Count,
    snapshots: Count,
}

/// Floods `conn` with `burst` until `end` (`None`) or until the connection ends. A flooder
/// that said Hello also acknowledges the newest snapshot it read, at most once a tick (30
/// Hz), as a player would: only the flood, not the ack timeout, should get it closed.
async fn flood(
    conn: Conn,
    player: bool,
    burst: &[u8],
    end: Instant,
    sent: &FloodCounts,
) -> Option<Ending> {
    enum Stop {
        Deadline,
        Ended(Ending),
        WriteFailed,
    }
    let Conn {
        mut reader,
        mut writer,
    } = conn;
    // The newest snapshot tick read, plus one (0: none yet).
    let newest = AtomicU64::new(0);
    let write = async {
        let mut history = InputHistory::new();
        let mut acked_at: Option<Instant> = None;
        loop {
            let due = acked_at.is_none_or(|t| t.elapsed() >= Duration::from_millis(33));
            if player
                && due
                && let Some(tick) = newest.load(Relaxed).checked_sub(1)
                && history
                    .push(tickwire_shared::InputFrame::default())
                    .is_some()
                && let Ok(frame) = raw::message_frame(&history.message(Some(Tick(tick as u32))))
            {
                acked_at = Some(Instant::now());
                if writer.write_all(&frame).await.is_err() {
                    return;
                }
                sent.acks.add(1);
            }
            if writer.write_all(burst).await.is_err() {
                return;
            }
            sent.pings.add(PINGS_PER_WRITE as u64);
        }
    };
    // No byte cap: the pongs alone are as many bytes as the pings; `end` bounds it.
    let read = reader.until_end_seeing(usize::MAX, |m| {
        if let ServerMessage::Snapshot(s) = m {
            newest.store(u64::from(s.tick.0) + 1, Relaxed);
            sent.snapshots.add(1);
        }
    });
    let stop = tokio::select! {
        _ = sleep_until(end) => Stop::Deadline,
        e = read => Stop::Ended(e),
        () = write => Stop::WriteFailed,
    };
    match stop {
        Stop::Deadline => None,
        Stop::Ended(e) => Some(e),
        Stop::WriteFailed => Some(
            timeout(DRAIN, reader.until_end())
                .await
                .unwrap_or_else(|_| Ending::timeout()),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// blindack

/// One blind acker's fate.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Acker {
    pub(crate) acker: usize,
    /// Seconds into the attack of its Welcome (`None`: it never got in).
    pub(crate) welcomed_s: Option<f64>,
    /// Why it never got in.
    pub(crate) error: Option<String>,
    /// Input messages (each one a guessed ack) it wrote.
    pub(crate) inputs: u64,
    /// Seconds from its Welcome until a write to it failed (the server had dropped it);
    /// `None`: still connected when the attack ended.
    pub(crate) dropped_after_s: Option<f64>,
    /// What a read found then (usually a reset: the unread snapshots are thrown away).
    pub(crate) ending: Option<Ending>,
}

/// What the blind ackers did.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Blindack {
    pub(crate) ackers: usize,
    pub(crate) welcomed: usize,
    pub(crate) dropped: usize,
    /// Seconds from Welcome to drop, of those dropped.
    pub(crate) dropped_after_s: Spread,
    pub(crate) endings: std::collections::BTreeMap<String, u64>,
    pub(crate) each: Vec<Acker>,
}

/// `attackers` clients that say Hello, read up to their first snapshot (to learn a tick),
/// then never read again but send an `Input` at the tick rate acknowledging the tick the
/// clock says the server is at (two snapshots behind, so that it has been sent).
pub(crate) async fn blindack(t: &Target, start: Instant, end: Instant) -> Blindack {
    let mut tasks = JoinSet::new();
    for i in 0..t.attackers {
        let t = t.clone();
        tasks.spawn(async move { blind_acker(i, &t, start, end).await });
    }
    let mut each = Vec::with_capacity(t.attackers);
    while let Some(r) = tasks.join_next().await {
        if let Ok(a) = r {
            each.push(a);
        }
    }
    each.sort_by_key(|a| a.acker);
    let dropped: Vec<f64> = each.iter().filter_map(|a| a.dropped_after_s).collect();
    let labels: Vec<String> = each
        .iter()
        .filter_map(|a| a.ending.as_ref().map(Ending::label))
        .collect();
    Blindack {
        ackers: t.attackers,
        welcomed: each.iter().filter(|a| a.welcomed_s.is_some()).count(),
        dropped: dropped.len(),
        dropped_after_s: spread(dropped),
        endings: tally(labels.iter().map(String::as_str)),
        each,
    }
}

async fn blind_acker(i: usize, t: &Target, start: Instant, end: Instant) -> Acker {
    let mut a = Acker {
        acker: i,
        welcomed_s: None,
        error: None,
        inputs: 0,
        dropped_after_s: None,
        ending: None,
    };
    let joined = timeout_at(soon(HANDSHAKE, end), async {
        let mut c = Conn::open(t.from, t.server).await?;
        let w = c.hello(&format!("acker{i}")).await?;
        let welcomed = Instant::now();
        loop {
            match c.reader.message().await? {
                Ok(ServerMessage::Snapshot(s)) => return anyhow::Ok((c, w, welcomed, s.tick)),
                Ok(_) => {}
                Err(e) => anyhow::bail!("closed before a snapshot: {}", e.label()),
            }
        }
    })
    .await;
    let (mut conn, welcome, welcomed, first) = match joined {
        Ok(Ok(j)) => j,
        Ok(Err(e)) => {
            a.error = Some(format!("{e:#}"));
            return a;
        }
        Err(_) => {
            a.error = Some("no Welcome and snapshot in time".to_owned());
            return a;
        }
    };
    a.welcomed_s = Some((welcomed - start).as_secs_f64());
    let rate = f64::from(welcome.tick_rate.max(1));
    let every = u32::from(welcome.snapshot_every.max(1));
    let mut history = InputHistory::new();
    let mut inputs = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    inputs.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let failed = loop {
        tokio::select! {
            _ = sleep_until(end) => break false,
            _ = inputs.tick() => {}
        }
        let ahead = (welcomed.elapsed().as_secs_f64() * rate) as u32;
        let guess = first.0.saturating_add(ahead) / every * every;
        let guess = guess.saturating_sub(2 * every).max(first.0);
        if history
            .push(tickwire_shared::InputFrame::default())
            .is_none()
        {
            break false;
        }
        let Ok(frame) = raw::message_frame(&history.message(Some(Tick(guess)))) else {
            break false;
        };
        match timeout(DRAIN, conn.writer.write_all(&frame)).await {
            Ok(Ok(())) => a.inputs += 1,
            // A write that fails: the server is gone; one that stalls: it stopped reading.
            Ok(Err(_)) | Err(_) => break true,
        }
    };
    if failed {
        a.dropped_after_s = Some(welcomed.elapsed().as_secs_f64());
        a.ending = Some(
            timeout(DRAIN, conn.reader.until_end())
                .await
                .unwrap_or_else(|_| Ending::timeout()),
        );
    }
    a
}

// ---------------------------------------------------------------------------------------
// storm

/// What the reconnect storm did.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Storm {
    pub(crate) rate: f64,
    pub(crate) attempted: u64,
    pub(crate) welcomed: u64,
    pub(crate) failed: u64,
    /// Attempts not made because [`STORM_IN_FLIGHT`] were still in their handshake.
    pub(crate) skipped: u64,
    /// Connect to Welcome, ms.
    pub(crate) welcome_ms: Spread,
    /// Why attempts failed, by message.
    pub(crate) failures: std::collections::BTreeMap<String, u64>,
}

/// `rate` times a second: open a WebSocket, say Hello, read the Welcome, drop the TCP
/// connection with no close frame.
pub(crate) async fn storm(t: &Target, start: Instant, end: Instant) -> Storm {
    let gap = Duration::from_secs_f64(1.0 / t.rate);
    let most = (t.rate * (end - start).as_secs_f64()).ceil() as u64;
    let in_flight = Arc::new(AtomicU64::new(0));
    let welcome_ms = Arc::new(Kept::default());
    let failures = Arc::new(Mutex::new(Vec::new()));
    let (mut attempted, mut skipped) = (0u64, 0u64);
    let mut tasks = JoinSet::new();
    let mut next = start;
    while attempted + skipped < most && next < end {
        sleep_until(next).await;
        next += gap;
        while tasks.try_join_next().is_some() {}
        if in_flight.load(Relaxed) >= STORM_IN_FLIGHT {
            skipped += 1;
            continue;
        }
        let n = attempted;
        attempted += 1;
        in_flight.fetch_add(1, Relaxed);
        let (t, in_flight, welcome_ms, failures) = (
            t.clone(),
            in_flight.clone(),
            welcome_ms.clone(),
            failures.clone(),
        );
        tasks.spawn(async move {
            let t0 = Instant::now();
            let r = timeout(HANDSHAKE, async {
                let mut c = Conn::open(t.from, t.server).await?;
                c.hello(&format!("storm{n}")).await?;
                // Dropped here: no close frame, and the snapshot that may already be in
                // the receive queue makes the kernel send a reset.
                anyhow::Ok(())
            })
            .await;
            match r {
                Ok(Ok(())) => welcome_ms.push(t0.elapsed()),
                Ok(Err(e)) => failures
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(format!("{e:#}")),
                Err(_) => failures
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push("timeout".to_owned()),
            }
            in_flight.fetch_sub(1, Relaxed);
        });
    }
    while tasks.join_next().await.is_some() {}
    let failures = std::mem::take(&mut *failures.lock().unwrap_or_else(PoisonError::into_inner));
    let welcomed = welcome_ms.take();
    Storm {
        rate: t.rate,
        attempted,
        welcomed: welcomed.len() as u64,
        failed: failures.len() as u64,
        skipped,
        welcome_ms: spread(welcomed),
        failures: tally(failures.iter().map(String::as_str)),
    }
}

// ---------------------------------------------------------------------------------------
// close999

/// What came back for one close frame with code 999.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct CloseReply {
    /// Whether the client had said Hello (and got its Welcome) first.
    pub(crate) after_hello: bool,
    /// How the connection ended (`close frame` with its code, or `eof`/`reset`/`timeout`).
    pub(crate) ending: Option<Ending>,
    /// Why there was no connection to close.
    pub(crate) error: Option<String>,
    /// Close frame sent to end of connection, ms.
    pub(crate) after_ms: f64,
}

/// The close999 figures: one client after Hello, one right after the upgrade.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Close999 {
    pub(crate) replies: Vec<CloseReply>,
}

/// Sends a close frame with code 999 (not a valid code: RFC 6455 §7.4.2), once after Hello
/// and once before, and reads what comes back for up to 3 s.
pub(crate) async fn close999(t: &Target) -> Close999 {
    let mut replies = Vec::new();
    for after_hello in [true, false] {
        let mut reply = CloseReply {
            after_hello,
            ending: None,
            error: None,
            after_ms: 0.0,
        };
        let opened = timeout(HANDSHAKE, async {
            let mut c = Conn::open(t.from, t.server).await?;
            if after_hello {
                c.hello("close999").await?;
            }
            c.writer.write_all(&raw::close_frame(999)).await?;
            anyhow::Ok(c)
        })
        .await;
        match opened {
            Ok(Ok(mut c)) => {
                let t0 = Instant::now();
                reply.ending = Some(
                    timeout(Duration::from_secs(3), c.reader.until_end())
                        .await
                        .unwrap_or_else(|_| Ending::timeout()),
                );
                reply.after_ms = t0.elapsed().as_secs_f64() * 1000.0;
            }
            Ok(Err(e)) => reply.error = Some(format!("{e:#}")),
            Err(_) => reply.error = Some("no connection in time".to_owned()),
        }
        replies.push(reply);
    }
    Close999 { replies }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_and_tallies() {
        let s = spread((1..=100).map(f64::from).collect());
        assert_eq!((s.n, s.p50, s.p99, s.max), (100, 51.0, 99.0, 100.0));
        assert_eq!(spread(Vec::new()), Spread::default());
        let t = tally(["a", "b", "a"].into_iter());
        assert_eq!(t["a"], 2);
    }

    #[test]
    fn half_the_flooders_say_hello() {
        let said = (0..50).filter(|&i| FloodHello::Half.says_hello(i)).count();
        assert_eq!(said, 25);
        assert!(!FloodHello::None.says_hello(0));
        assert!(FloodHello::All.says_hello(1));
    }
}
