//! The room driver: a small pool of OS threads that step every room at its own deadlines.
//!
//! A room is placed on the thread with the fewest rooms when it is made, and stays there for
//! its life: a thread owns its rooms outright (their game, clients and replication state), so
//! there are no locks on world state. Each room has its own [`TickScheduler`], started on the
//! driver's tick grid: tick *k* of a room is due at `start + k / rate` with `start` the first
//! grid instant after the room was made, so all rooms are due together and a thread wakes once
//! a tick. A late tick is counted as an overrun and the room catches up without drift. A thread steps each due room once per
//! pass, so one room that is behind cannot starve the others on its thread, then sleeps until
//! the earliest deadline (or a new room arrives).
//!
//! Each thread is worker 0 of its own rayon pool (one helper thread per other core), so a big
//! room's parallel replication passes run partly on the room thread itself, which steals while
//! it waits instead of sleeping until another pool's workers are scheduled. Past
//! [`MAX_POOL_HELPERS`] helpers in all, the threads use rayon's global pool.
//!
//! Connection tasks reach a room only through its [`RoomHandle`]: crossbeam channels in
//! (joins, leaves, inputs) and the per-client latest-wins slots out. Nothing here does I/O or
//! waits on a client, the directory or Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tracing::{info, warn};

use crate::game::Game;
use crate::metrics::Metrics;
use crate::room::{Control, InputMsg, Room};
use crate::scheduler::{Poll, TickScheduler};

/// Most threads the room threads' own replication pools may add up to, `room threads ×
/// (cores − 1)` (see [`Driver::start`]): the default of one room thread per core adds 56 on
/// 8 cores; from 9 cores on, the default uses the global pool.
const MAX_POOL_HELPERS: usize = 64;

/// The longest a driver thread sleeps, so it notices shutdown promptly.
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// What the rest of the server holds of one room: its identity, its channels in, and the
/// figures the driver publishes for it. Shared by the registry and every session in the room.
#[derive(Debug)]
pub struct RoomHandle {
    /// The room id (unique in the fleet).
    pub id: String,
    /// The game kind it was made from.
    pub kind: String,
    /// Most players at once.
    pub max_clients: u32,
    /// Whether matchmaking may put players in it (the permanent default room: no).
    pub matchmaking: bool,
    /// Joins and leaves (unbounded; bounded in practice by the room's sessions).
    pub(crate) control: Sender<Control>,
    /// Inputs, at most `input_cap` waiting ([`RoomHandle::send_input`]).
    input: Sender<InputMsg>,
    input_cap: usize,
    /// The room's newest tick stepped.
    pub tick: AtomicU32,
    /// Sessions holding a place in the room (joined or joining). Counted by the sessions
    /// themselves, under the registry's lock, so a room is never disposed under a joiner.
    pub(crate) sessions: AtomicU32,
    /// The game says it takes no new players ([`Game::locked`]), as of its last tick.
    pub locked: AtomicBool,
    /// Disposed: the driver drops the room at its next pass.
    pub(crate) closed: AtomicBool,
}

impl RoomHandle {
    /// Queues one input message for the room's next tick; `false` (dropped) when the queue
    /// holds its capacity already. Under overload inputs are dropped, which their redundancy
    /// (every `Input` repeats the last frames) absorbs. The queue is a linked list of small
    /// blocks, so its memory follows what waits in it, not its capacity: a preallocated one
    /// was 3 MB per room at the default 65,536. The bound is checked before the send, so
    /// concurrent senders may pass it by one message each.
    pub(crate) fn send_input(&self, msg: InputMsg) -> bool {
        self.input.len() < self.input_cap && self.input.send(msg).is_ok()
    }

    /// Sessions in the room now (joined or joining).
    pub fn sessions(&self) -> u32 {
        self.sessions.load(Relaxed)
    }
}

/// A room as its driver thread holds it.
trait Steppable: Send {
    fn control(&mut self, c: Control);
    fn input(&mut self, m: InputMsg);
    fn read_inputs(&mut self);
    fn tick(&mut self) -> u64;
    fn current_tick(&self) -> u32;
    fn locked(&self) -> bool;
    fn clients(&self) -> usize;
    fn max_inputs_per_tick(&self) -> usize;
}

impl<G: Game> Steppable for Room<G> {
    fn control(&mut self, c: Control) {
        Room::control(self, c)
    }
    fn input(&mut self, m: InputMsg) {
        Room::input(self, m)
    }
    fn read_inputs(&mut self) {
        Room::read_inputs(self)
    }
    fn tick(&mut self) -> u64 {
        Room::tick(self)
    }
    fn current_tick(&self) -> u32 {
        Room::current_tick(self).0
    }
    fn locked(&self) -> bool {
        self.game().locked()
    }
    fn clients(&self) -> usize {
        self.client_count()
    }
    fn max_inputs_per_tick(&self) -> usize {
        self.config().max_inputs_per_tick
    }
}

struct Slot {
    room: Box<dyn Steppable>,
    handle: Arc<RoomHandle>,
    control: Receiver<Control>,
    input: Receiver<InputMsg>,
    sched: TickScheduler,
    overruns_seen: u64,
}

/// Per-thread figures, for the status line.
struct Status {
    hist: Option<hdrhistogram::Histogram<u64>>,
    last_log: Instant,
    bytes: u64,
    overruns: u64,
    last_warn: Option<Instant>,
    overruns_warned: u64,
}

/// The pool of driver threads.
#[derive(Debug)]
pub struct Driver {
    senders: Vec<Sender<Slot>>,
    /// Rooms on each thread.
    load: Vec<Arc<AtomicUsize>>,
    threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
    epoch: Instant,
    rate: u32,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("room", &self.handle.id)
            .finish()
    }
}

fn thread_name(i: usize) -> String {
    format!("tickwire-room-{i}")
}

impl Driver {
    /// Starts `threads` driver threads (at least one) stepping rooms at `tick_rate`.
    pub fn start(threads: usize, tick_rate: u32, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let epoch = Instant::now();
        let mut senders = Vec::new();
        let mut load = Vec::new();
        let mut handles = Vec::new();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = threads.max(1);
        // A pool per room thread costs `cores - 1` threads each; past a bound the rooms use
        // rayon's global pool instead, from outside it.
        let own_pools = threads * (cores - 1) <= MAX_POOL_HELPERS;
        for i in 0..threads {
            let (tx, rx) = crossbeam_channel::unbounded::<Slot>();
            let rooms = Arc::new(AtomicUsize::new(0));
            let (stop, metrics, rooms2) = (stop.clone(), metrics.clone(), rooms.clone());
            let h = std::thread::Builder::new()
                .name(thread_name(i))
                .spawn(move || {
                    // This thread's rooms replicate in parallel on a pool that this thread
                    // is worker 0 of: it does its share of each parallel pass and steals
                    // while it waits, instead of sleeping until the global pool's workers
                    // are woken and scheduled (on a busy machine, that wait was the tick's
                    // tail). On one core the passes simply run here.
                    let pool = own_pools.then(|| {
                        rayon::ThreadPoolBuilder::new()
                            .num_threads(cores)
                            .use_current_thread()
                            .thread_name(move |w| format!("tickwire-rep-{i}.{w}"))
                            .build()
                    });
                    if let Some(Err(e)) = &pool {
                        warn!(error = %e, "no replication pool for this room thread: its rooms use the global one");
                    }
                    run_thread(rx, rooms2, stop, epoch, tick_rate, metrics);
                    drop(pool);
                })?;
            senders.push(tx);
            load.push(rooms);
            handles.push(h);
        }
        Ok(Self {
            senders,
            load,
            threads: std::sync::Mutex::new(handles),
            stop,
            epoch,
            rate: tick_rate,
            metrics,
        })
    }

    /// Hands `room` to the thread with the fewest rooms; it starts ticking at once.
    pub(crate) fn add<G: Game>(
        &self,
        room: Room<G>,
        id: String,
        kind: String,
        max_clients: u32,
        matchmaking: bool,
        input_queue: usize,
    ) -> Arc<RoomHandle> {
        let (control_tx, control) = crossbeam_channel::unbounded();
        let (input_tx, input) = crossbeam_channel::unbounded();
        let handle = Arc::new(RoomHandle {
            id,
            kind,
            max_clients,
            matchmaking,
            control: control_tx,
            input: input_tx,
            input_cap: input_queue.max(1),
            tick: AtomicU32::new(0),
            sessions: AtomicU32::new(0),
            locked: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        let slot = Slot {
            room: Box::new(room),
            handle: handle.clone(),
            control,
            input,
            sched: TickScheduler::new(self.rate, self.first_deadline(), u64::from(self.rate)),
            overruns_seen: 0,
        };
        let i = (0..self.load.len())
            .min_by_key(|&i| self.load[i].load(Relaxed))
            .unwrap_or(0);
        self.load[i].fetch_add(1, Relaxed);
        self.metrics.rooms.fetch_add(1, Relaxed);
        if let Some(tx) = self.senders.get(i) {
            // The thread lives until `stop`; a send error means the server is stopping.
            let _ = tx.send(slot);
        }
        handle
    }

    /// A new room's tick 0: the next instant of the driver's tick grid. Every room is due at
    /// the same instants, so a thread wakes once per tick for all its rooms instead of once
    /// per room (250 rooms made at different moments woke each thread ~4,000 times a second,
    /// and the context switches cost more than the ticks).
    fn first_deadline(&self) -> Duration {
        let period = 1_000_000_000u128 / u128::from(self.rate.max(1));
        let now = self.epoch.elapsed().as_nanos();
        let next = now.div_ceil(period) * period;
        Duration::from_nanos(u64::try_from(next).unwrap_or(u64::MAX))
    }

    /// Rooms on the driver now.
    pub fn rooms(&self) -> usize {
        self.load.iter().map(|l| l.load(Relaxed)).sum()
    }

    /// Stops every thread and waits for them (once; later calls return at once).
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
        let threads = std::mem::take(
            &mut *self
                .threads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for h in threads {
            let _ = h.join();
        }
    }
}

fn run_thread(
    new_rooms: Receiver<Slot>,
    load: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    epoch: Instant,
    rate: u32,
    metrics: Arc<Metrics>,
) {
    let budget = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut rooms: Vec<Slot> = Vec::new();
    let mut st = Status {
        hist: hdrhistogram::Histogram::<u64>::new_with_bounds(1, 10_000_000, 2).ok(),
        last_log: Instant::now(),
        bytes: 0,
        overruns: 0,
        last_warn: None,
        overruns_warned: 0,
    };
    while !stop.load(Relaxed) {
        rooms.extend(new_rooms.try_iter());
        let now = epoch.elapsed();
        let mut sleep = MAX_SLEEP;
        let mut ran = false;
        let mut i = 0;
        while i < rooms.len() {
            if rooms[i].handle.closed.load(Relaxed) {
                let gone = rooms.swap_remove(i);
                load.fetch_sub(1, Relaxed);
                metrics.rooms.fetch_sub(1, Relaxed);
                drop(gone);
                continue;
            }
            match rooms[i].sched.poll(now) {
                Poll::Run(_) => {
                    step(&mut rooms[i], &metrics, &mut st);
                    ran = true;
                }
                Poll::Sleep(d) => sleep = sleep.min(d),
            }
            i += 1;
        }
        warn_overruns(&mut st, &metrics, budget);
        if st.last_log.elapsed() >= Duration::from_secs(10) {
            log_status(&mut st, &rooms, budget);
        }
        if !ran {
            match new_rooms.recv_timeout(sleep) {
                Ok(slot) => rooms.push(slot),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(sleep),
            }
        }
    }
    // Dropping the rooms drops their clients' slots; sessions end on shutdown by themselves.
    metrics.rooms.fetch_sub(rooms.len() as u64, Relaxed);
}

/// Runs one tick of one room.
fn step(s: &mut Slot, metrics: &Metrics, st: &mut Status) {
    let started = Instant::now();
    for c in s.control.try_iter() {
        s.room.control(c);
    }
    // The sockets the simulation reads itself, then the connection tasks' inputs. Both are
    // bounded per tick, so an input flood cannot stall the tick.
    s.room.read_inputs();
    for m in s.input.try_iter().take(s.room.max_inputs_per_tick()) {
        s.room.input(m);
    }
    st.bytes += s.room.tick();
    s.handle.tick.store(s.room.current_tick(), Relaxed);
    s.handle.locked.store(s.room.locked(), Relaxed);
    let took = started.elapsed();
    metrics.record_tick(took);
    let overruns = s.sched.overruns();
    if overruns > s.overruns_seen {
        let new = overruns - s.overruns_seen;
        metrics.tick_overruns.fetch_add(new, Relaxed);
        st.overruns += new;
        s.overruns_seen = overruns;
    }
    if let Some(h) = st.hist.as_mut() {
        let _ = h.record(took.as_micros().max(1) as u64);
    }
}

/// Overruns are never absorbed silently; at most one warning a second per thread.
fn warn_overruns(st: &mut Status, metrics: &Metrics, budget: Duration) {
    if st.overruns > st.overruns_warned
        && st
            .last_warn
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
    {
        warn!(
            new_overruns = st.overruns - st.overruns_warned,
            total = metrics.tick_overruns.load(Relaxed),
            budget_us = budget.as_micros() as u64,
            "tick overrun: rooms on this thread are behind their schedule"
        );
        st.overruns_warned = st.overruns;
        st.last_warn = Some(Instant::now());
    }
}

fn log_status(st: &mut Status, rooms: &[Slot], budget: Duration) {
    let secs = st.last_log.elapsed().as_secs_f64();
    let (p50, p99) = st.hist.as_ref().map_or((0, 0), |h| {
        (h.value_at_quantile(0.5), h.value_at_quantile(0.99))
    });
    let clients: usize = rooms.iter().map(|r| r.room.clients()).sum();
    info!(
        rooms = rooms.len(),
        clients,
        room_tick_p50_us = p50,
        room_tick_p99_us = p99,
        budget_us = budget.as_micros() as u64,
        overruns = st.overruns,
        bytes_out_per_s = (st.bytes as f64 / secs) as u64,
        "status"
    );
    if let Some(h) = st.hist.as_mut() {
        h.reset();
    }
    st.bytes = 0;
    st.overruns = 0;
    st.overruns_warned = 0;
    st.last_log = Instant::now();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::room::Outbound;
    use crate::{Arena, ServerConfig};
    use tickwire_shared::ClientId;

    /// Threads of this process whose name starts with `prefix` (Linux truncates names to 15
    /// bytes).
    fn threads_named(prefix: &str) -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with(prefix))
            .count()
    }

    #[test]
    fn a_room_forced_onto_parallel_replication_ticks_on_its_threads_own_pool() {
        let cfg = ServerConfig::defaults();
        let metrics = Arc::new(Metrics::default());
        let arena = Arena::new(cfg.world.clone(), cfg.arena_rules(), 50, 7);
        let mut room = Room::new(arena, cfg.sim.clone(), metrics.clone()).unwrap();
        // Every pass on the pool, however few the clients.
        room.replicator_mut().set_parallel_min_clients(0);
        let outs: Vec<Arc<Outbound>> = (0..64u32)
            .map(|i| {
                let out = Arc::new(Outbound::default());
                room.control(Control::Join {
                    client: ClientId(i + 1),
                    resume: None,
                    player_id: None,
                    out: out.clone(),
                });
                out
            })
            .collect();
        let driver = Driver::start(1, 60, metrics).unwrap();
        let handle = driver.add(room, "r".into(), "arena".into(), 100, false, 64);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = vec![false; outs.len()];
        while !got.iter().all(|&g| g) && Instant::now() < deadline {
            for (g, o) in got.iter_mut().zip(&outs) {
                *g |= o.take().snapshot.is_some();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(got.iter().all(|&g| g), "every client got a snapshot");
        let ticked = handle.tick.load(Relaxed);
        std::thread::sleep(Duration::from_millis(100));
        assert!(handle.tick.load(Relaxed) > ticked, "the room keeps ticking");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // One helper per other core, named after its room thread; none on one core. (The only
        // driver this test binary starts: the server's tests run it in their own processes.)
        assert_eq!(threads_named("tickwire-rep-0."), cores - 1);
        driver.stop();
    }
}
