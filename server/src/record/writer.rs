//! The writer thread: it owns every log file, so the rooms' threads never touch a disk.
//!
//! Rooms send it whole tick records over one bounded channel and it sends the emptied
//! buffers back over a pool channel, so a steady room allocates nothing per tick. A log is
//! finished (end record, flush, close) once its room has gone and every record the room
//! queued has been written, or at shutdown.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tracing::{info, warn};

use super::codec::{
    END_BYTES, EndReason, FRAMING_BYTES, LogHeader, LogWriter, PROLOGUE_BYTES, WorldSum,
};
use super::recording::{Recording, Sink};
use crate::game::Game;
use crate::registry::RoomSpec;

/// Tick records one room may have waiting for the writer; one more and that room stops
/// recording (warned) rather than block its tick or queue without bound. 256 ticks is 8.5 s
/// at 30 Hz: only a disk that stalls for seconds gets there.
pub const MAX_BEHIND_TICKS: u64 = 256;
/// Tick records the writer's queue holds over all rooms (250 rooms at 30 Hz fill it in about
/// 2 s); a room whose record does not fit stops recording.
pub const QUEUE_TICKS: usize = 16_384;
/// Emptied buffers kept for reuse.
const POOL: usize = 1024;
/// How often a log's buffered bytes are flushed to its file.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often the writer looks for finished rooms and due flushes when idle.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// Each log's write buffer.
const FILE_BUFFER: usize = 64 * 1024;

/// What a room and the writer share about one log.
#[derive(Debug, Default)]
pub(crate) struct LogState {
    /// Tick records the room queued.
    pub(crate) sent: AtomicU64,
    /// Tick records the writer took off the queue.
    pub(crate) taken: AtomicU64,
    /// The room is gone: no more records will come.
    pub(crate) ended: AtomicBool,
    /// Recording stopped early (by the room, or by the writer on a disk error).
    pub(crate) stopped: AtomicBool,
}

pub(crate) enum Msg {
    Open {
        log: u64,
        stem: String,
        header: Vec<u8>,
        state: Arc<LogState>,
    },
    Tick {
        log: u64,
        buf: Vec<u8>,
    },
    Shutdown,
}

/// The writer thread and what rooms need to reach it. Made by [`crate::Server`] when
/// `--record DIR` is given; [`Recorder::shutdown`] (or dropping it) finishes every log.
#[derive(Debug)]
pub struct Recorder {
    tx: Sender<Msg>,
    pool: Receiver<Vec<u8>>,
    setups: BTreeMap<String, Arc<[u8]>>,
    next_log: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Open { log, .. } => write!(f, "Open({log})"),
            Msg::Tick { log, buf } => write!(f, "Tick({log}, {} bytes)", buf.len()),
            Msg::Shutdown => f.write_str("Shutdown"),
        }
    }
}

impl Recorder {
    /// Starts the writer thread, writing logs into `dir` (which must exist). `setups` are
    /// the setup bytes of each registered kind, recorded in its rooms' headers.
    pub fn start(dir: PathBuf, setups: BTreeMap<String, Vec<u8>>) -> io::Result<Recorder> {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE_TICKS);
        let (pool_tx, pool) = crossbeam_channel::bounded(POOL);
        let thread = std::thread::Builder::new()
            .name("tickwire-record".into())
            .spawn(move || run(&dir, &rx, &pool_tx))?;
        Ok(Recorder {
            tx,
            pool,
            setups: setups.into_iter().map(|(k, v)| (k, Arc::from(v))).collect(),
            next_log: AtomicU64::new(0),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The setup bytes `kind` was registered with (empty if none).
    pub fn setup_of(&self, kind: &str) -> &[u8] {
        self.setups.get(kind).map_or(&[], |s| s)
    }

    /// Wraps `game`, the game of room `spec` built from `setup`, so that its calls are
    /// recorded. The log file is opened at its first step (a room that never steps, such as
    /// the loser of two racing creations, leaves none).
    pub fn record<G: Game>(
        &self,
        game: G,
        spec: &RoomSpec,
        tick_rate: u32,
        setup: &[u8],
    ) -> Recording<G> {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let header = LogHeader {
            server_version: env!("CARGO_PKG_VERSION").to_owned(),
            room_id: spec.room_id.clone(),
            kind: spec.kind.clone(),
            max_clients: spec.max_clients,
            seed: spec.seed,
            tick_rate,
            started_unix_ms: started,
            setup: setup.to_vec(),
            initial: WorldSum::of(game.entities()),
        };
        let log = self.next_log.fetch_add(1, Ordering::Relaxed);
        let sink = match header.encode() {
            Ok(header) => Some(Sink::new(
                log,
                Msg::Open {
                    log,
                    stem: format!("{}-{started}", file_safe(&spec.room_id)),
                    header,
                    state: Arc::default(),
                },
                self.tx.clone(),
                self.pool.clone(),
            )),
            Err(e) => {
                warn!(room = %spec.room_id, error = %e, "cannot record the room: its header does not encode");
                None
            }
        };
        Recording::new(game, spec.room_id.clone(), sink)
    }

    /// Finishes every log (writes its end record, flushes, closes) and stops the writer
    /// thread. Later calls return at once; rooms still running stop recording.
    pub fn shutdown(&self) {
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            // Not a room's thread: waiting for room in the queue is fine here.
            let _ = self.tx.send(Msg::Shutdown);
            let _ = t.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A room id as a file name: anything but `A-Z a-z 0-9 - _` becomes `_`.
fn file_safe(room: &str) -> String {
    room.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

struct OpenLog {
    path: PathBuf,
    /// `None` after a write error (the room was told to stop).
    w: Option<LogWriter<BufWriter<File>>>,
    state: Arc<LogState>,
    taken: u64,
    bytes: u64,
    last_flush: Instant,
}

impl OpenLog {
    fn failed(&mut self, e: &io::Error) {
        warn!(path = %self.path.display(), error = %e, "recording stopped: cannot write the log");
        self.state.stopped.store(true, Ordering::Relaxed);
        self.w = None;
    }

    /// Whether the room is done with it and everything it queued is written.
    fn done(&self) -> bool {
        let over =
            self.state.ended.load(Ordering::Acquire) || self.state.stopped.load(Ordering::Acquire);
        over && self.state.sent.load(Ordering::Acquire) == self.taken
    }

    fn finish(mut self) {
        let reason = if self.state.stopped.load(Ordering::Acquire) {
            EndReason::Stopped
        } else {
            EndReason::RoomEnded
        };
        let Some(w) = self.w.take() else { return };
        let ticks = w.ticks();
        match w.end(reason) {
            Ok(_) => info!(
                path = %self.path.display(),
                ticks,
                bytes = self.bytes + (END_BYTES + FRAMING_BYTES) as u64,
                complete = reason == EndReason::RoomEnded,
                "match log finished"
            ),
            Err(e) => warn!(path = %self.path.display(), error = %e, "cannot finish the match log"),
        }
    }
}

/// Creates `dir/stem.twrec`, or `stem-N.twrec` if that exists.
fn create(dir: &Path, stem: &str) -> io::Result<(PathBuf, File)> {
    let mut last = None;
    for n in 0..100 {
        let name = if n == 0 {
            format!("{stem}.twrec")
        } else {
            format!("{stem}-{n}.twrec")
        };
        let path = dir.join(name);
        match File::options().write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free file name")))
}

fn open(dir: &Path, stem: &str, header: &[u8], state: Arc<LogState>) -> Option<OpenLog> {
    let opened = create(dir, stem).and_then(|(path, f)| {
        let w = LogWriter::new(BufWriter::with_capacity(FILE_BUFFER, f), header)?;
        Ok((path, w))
    });
    match opened {
        Ok((path, w)) => {
            info!(path = %path.display(), "recording the room");
            Some(OpenLog {
                path,
                w: Some(w),
                state,
                taken: 0,
                bytes: (PROLOGUE_BYTES + FRAMING_BYTES + header.len()) as u64,
                last_flush: Instant::now(),
            })
        }
        Err(e) => {
            warn!(dir = %dir.display(), file = %stem, error = %e, "recording stopped: cannot create the log");
            state.stopped.store(true, Ordering::Relaxed);
            None
        }
    }
}

fn run(dir: &Path, rx: &Receiver<Msg>, pool: &Sender<Vec<u8>>) {
    let mut logs: BTreeMap<u64, OpenLog> = BTreeMap::new();
    let mut last_sweep = Instant::now();
    loop {
        match rx.recv_timeout(SWEEP_EVERY) {
            Ok(Msg::Open {
                log,
                stem,
                header,
                state,
            }) => {
                if let Some(l) = open(dir, &stem, &header, state) {
                    logs.insert(log, l);
                }
            }
            Ok(Msg::Tick { log, mut buf }) => {
                if let Some(l) = logs.get_mut(&log) {
                    l.taken += 1;
                    l.state.taken.store(l.taken, Ordering::Release);
                    if let Some(w) = &mut l.w {
                        match w.tick(&buf) {
                            Ok(()) => l.bytes += (buf.len() + FRAMING_BYTES) as u64,
                            Err(e) => l.failed(&e),
                        }
                    }
                    if l.done()
                        && let Some(l) = logs.remove(&log)
                    {
                        l.finish();
                    }
                }
                buf.clear();
                // A full pool frees the buffer instead.
                let _ = pool.try_send(buf);
            }
            Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = Instant::now();
            sweep(&mut logs);
        }
    }
    for (_, l) in std::mem::take(&mut logs) {
        // A room still running when the writer stops records no more.
        if !l.state.ended.load(Ordering::Acquire) {
            l.state.stopped.store(true, Ordering::Release);
        }
        l.finish();
    }
}

/// Finishes the logs whose rooms are done; flushes the others that are due.
fn sweep(logs: &mut BTreeMap<u64, OpenLog>) {
    let done: Vec<u64> = logs
        .iter()
        .filter(|(_, l)| l.done())
        .map(|(&k, _)| k)
        .collect();
    for k in done {
        if let Some(l) = logs.remove(&k) {
            l.finish();
        }
    }
    for l in logs.values_mut() {
        if l.last_flush.elapsed() >= FLUSH_EVERY {
            l.last_flush = Instant::now();
            if let Some(Err(e)) = l.w.as_mut().map(LogWriter::flush) {
                l.failed(&e);
            }
        }
    }
}
