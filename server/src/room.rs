//! A room: one match. It owns its game, its clients' membership (joins, leaves, resume, ack
//! timeouts) and their replication state, runs the fixed tick when the room driver
//! ([`crate::driver`]) says so, and never blocks on a client.
//!
//! Each tick: drain the control channel (joins, leaves) and the input channel without
//! blocking, apply input frames in sequence order at most once (and at most
//! `max_frames_per_tick` per client), step the game, then hand the entities to the room's
//! [`Replicator`] (encode once, send to many: see [`crate::replication`]), which drops each
//! client's snapshot into its latest-wins [`Outbound`] slot. Players whose clients dropped and
//! may resume stand still and are left out of every view.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tickwire_shared::CloseCode;

use tickwire_shared::baseline::AckOutcome;
use tickwire_shared::message::MAX_INPUT_FRAMES;
use tickwire_shared::{ClientId, EntityId, InputFrame, PROTOCOL_VERSION, Quantizer, Tick, Welcome};
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::config::SimConfig;
use crate::game::{Game, PlayerInfo};
use crate::metrics::Metrics;
use crate::replication::{Replicator, SnapshotFrame, Viewer};
use crate::session::Budget;
use crate::wire::{Direct, DirectInputs, MAX_READ_BUFFER, Wire};

/// What a connection task asks of the simulation; never dropped (unbounded, but bounded in
/// practice by the number of connections).
#[derive(Debug)]
pub enum Control {
    /// A client finished `Hello`.
    Join {
        /// Its id.
        client: ClientId,
        /// Its resume token, if it offered one.
        resume: Option<u64>,
        /// The player id of its signed token, if the server checks tokens.
        player_id: Option<String>,
        /// Where the simulation puts its Welcome and snapshots.
        out: Arc<Outbound>,
    },
    /// The connection ended. `graceful` is false for drops, whose player may resume.
    Leave {
        /// Its id.
        client: ClientId,
        /// Whether the client said `Leave` (or the server closed it).
        graceful: bool,
    },
}

/// One `Input` message (bounded channel: under overload inputs are dropped, which their
/// redundancy absorbs).
#[derive(Debug)]
pub struct InputMsg {
    /// Who sent it.
    pub client: ClientId,
    /// The snapshot it acknowledges.
    pub ack: Tick,
    /// Its frames, oldest first.
    pub frames: Vec<InputFrame>,
}

/// What the simulation has for a connection task to send.
#[derive(Debug, Default)]
pub struct OutboundState {
    /// The handshake answer (once).
    pub welcome: Option<Welcome>,
    /// The newest snapshot not yet taken.
    pub snapshot: Option<SnapshotFrame>,
    /// The simulation wants the connection closed with this code and reason.
    pub close: Option<Closing>,
}

/// A close to send: the code, and the reason text for the close frame and `Disconnect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closing {
    /// The close code.
    pub code: CloseCode,
    /// A short human-readable reason (at most 123 bytes).
    pub reason: &'static str,
}

impl Closing {
    /// A close with `code` and `reason`.
    pub const fn new(code: CloseCode, reason: &'static str) -> Closing {
        Closing { code, reason }
    }
}

/// A connection's latest-wins mailbox from the simulation, plus its wake-up, and (plain TCP
/// WebSockets) the direct write path to its socket ([`crate::wire`]).
#[derive(Debug, Default)]
pub struct Outbound {
    state: Mutex<Slot>,
    /// Signalled whenever `state` gains something.
    pub notify: Notify,
    /// The newest snapshot tick a reliable, ordered transport took in full (0: none): a
    /// bandwidth budget may delta against it before it is acknowledged.
    delivered: AtomicU32,
    /// The largest snapshot envelope one packet carries (0: no limit), from a QUIC
    /// connection's datagram size.
    snapshot_limit: AtomicU32,
}

#[derive(Debug, Default)]
struct Slot {
    st: OutboundState,
    /// The connection task took something to write (on a connection with a direct write
    /// side) and has not come back to its loop since: the simulation's snapshots wait in the
    /// slot meanwhile, so they stay behind it on the wire (a `Welcome` first, snapshots in
    /// tick order).
    busy: bool,
    /// The direct write side, on a plain-TCP WebSocket.
    wire: Wire,
}

impl Slot {
    fn holds_anything(&self) -> bool {
        self.st.welcome.is_some() || self.st.snapshot.is_some() || self.st.close.is_some()
    }
}

impl Outbound {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The transport took the snapshot of `tick` in full, and will deliver it in order (a
    /// reliable, ordered transport only: TCP, not QUIC datagrams). A bandwidth budget then
    /// deltas against it without waiting for its acknowledgement.
    pub fn set_delivered(&self, tick: Tick) {
        self.delivered.fetch_max(tick.0, Relaxed);
    }

    /// The newest snapshot delivered (see [`Outbound::set_delivered`]).
    pub(crate) fn delivered(&self) -> Option<Tick> {
        Some(Tick(self.delivered.load(Relaxed))).filter(|t| t.0 != 0)
    }

    /// The transport's packet limit for a snapshot envelope, if it has one.
    pub(crate) fn set_snapshot_limit(&self, limit: Option<usize>) {
        let v = limit.map_or(0, |l| l.clamp(1, u32::MAX as usize) as u32);
        self.snapshot_limit.store(v, Relaxed);
    }

    /// See [`Outbound::set_snapshot_limit`].
    pub(crate) fn snapshot_limit(&self) -> Option<usize> {
        Some(self.snapshot_limit.load(Relaxed) as usize).filter(|&l| l != 0)
    }

    /// Takes everything pending. The connection then owns the socket's write side until it
    /// calls [`Outbound::idle`].
    pub fn take(&self) -> OutboundState {
        let mut s = self.lock();
        if s.holds_anything() && s.wire.active() {
            s.busy = true;
        }
        std::mem::take(&mut s.st)
    }

    /// The connection task is back in its loop with nothing in hand: the simulation may
    /// write to the socket directly again.
    pub(crate) fn idle(&self) {
        self.lock().busy = false;
    }

    /// Gives the simulation a direct write side on the connection's socket.
    pub(crate) fn install_wire(&self, wire: Wire) {
        self.lock().wire = wire;
    }

    /// The session has ended: no more direct writes (what is queued still goes out).
    pub(crate) fn stop_wire(&self) {
        let mut s = self.lock();
        s.wire.stop();
        s.busy = true;
    }

    /// Bytes queued for the socket and not yet written.
    pub(crate) fn wire_queued(&self) -> usize {
        self.lock().wire.queued()
    }

    /// The client has joined: on a plain-TCP WebSocket the simulation reads its inputs from
    /// now on ([`Wire::start_reads`]). Returns whether it does.
    pub(crate) fn start_reads(&self, tick_rate: u32) -> bool {
        self.lock().wire.start_reads(tick_rate)
    }

    /// Charges one message to the connection's budget ([`Wire::charge`]).
    pub(crate) fn charge(&self, tick_rate: u32, now: tokio::time::Instant) -> Budget {
        self.lock().wire.charge(tick_rate, now)
    }

    /// The simulation's read of this connection for one tick ([`Wire::read_inputs`]).
    pub(crate) fn read_inputs(
        &self,
        now: tokio::time::Instant,
        scratch: &mut [u8],
        msg: &mut Vec<u8>,
        inputs: &mut DirectInputs,
    ) {
        let waker = self.lock().wire.read_inputs(now, scratch, msg, inputs);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Runs one write of the connection task on the direct write side, under the lock. (What
    /// it leaves queued is the task's own to flush: tungstenite flushes after every message
    /// it sends, and again on its next read after a pong or close it wrote while reading.)
    pub(crate) fn with_wire<R>(&self, f: impl FnOnce(&mut Wire) -> R) -> R {
        f(&mut self.lock().wire)
    }

    /// Gives back a snapshot the connection took but has not sent, unless the room has put a
    /// newer one since (which wins); wakes the connection to send it.
    pub(crate) fn put_back_snapshot(&self, snap: SnapshotFrame, metrics: &Metrics) {
        let mut s = self.lock();
        if s.st.snapshot.is_some() {
            metrics.snapshots_superseded.fetch_add(1, Relaxed);
        } else {
            s.st.snapshot = Some(snap);
        }
        drop(s);
        self.notify.notify_one();
    }

    fn put(&self, f: impl FnOnce(&mut OutboundState)) {
        f(&mut self.lock().st);
        self.notify.notify_one();
    }

    /// Whether a snapshot waits for the connection: in the slot, or partly written. (One the
    /// connection has taken and is writing does not count: counting it deferred budgeted
    /// clients whose tasks were merely slow to come back to their loop, and delivery fell
    /// from 0.99 to 0.82-0.93 in a budgeted crowd of 1,000.)
    pub(crate) fn snapshot_pending(&self) -> bool {
        let s = self.lock();
        s.st.snapshot.is_some() || s.wire.queued() != 0
    }

    /// Sends `snap`: straight to the socket when the connection has a direct write side
    /// and nothing in hand or queued (counted as sent here; the connection task counts the
    /// rest when it writes them), else into the slot, replacing any unsent snapshot (latest
    /// wins: deltas are against acknowledged baselines, so a skipped snapshot costs nothing
    /// but its tick). Returns whether it went straight to the socket.
    pub(crate) fn put_snapshot(&self, snap: SnapshotFrame, metrics: &Metrics) -> bool {
        let mut s = self.lock();
        if !s.busy && !s.holds_anything() {
            let (n, partial) = match s.wire.send(&snap) {
                Direct::Sent(n) => (n, false),
                Direct::Partial(n) => (n, true),
                Direct::No => (0, false),
            };
            if n != 0 {
                drop(s);
                self.set_delivered(snap.tick());
                metrics.bytes_sent.fetch_add(n, Relaxed);
                metrics.snapshots_sent.fetch_add(1, Relaxed);
                metrics.snapshots_direct.fetch_add(1, Relaxed);
                if partial {
                    metrics.snapshots_direct_partial.fetch_add(1, Relaxed);
                    self.notify.notify_one();
                }
                return true;
            }
        }
        let replaced = s.st.snapshot.replace(snap).is_some();
        drop(s);
        if replaced {
            // The connection was woken for the one it has not taken yet; it takes this.
            metrics.snapshots_superseded.fetch_add(1, Relaxed);
        } else {
            self.notify.notify_one();
        }
        false
    }
}

struct Client {
    id: ClientId,
    token: u64,
    /// The tick it joined at: every snapshot tick after it was sent to it.
    joined_at: u32,
    /// The newest valid ack (0: none yet).
    last_ack: Tick,
    /// Tick of the newest valid ack (or of the join): the ack timeout counts from it.
    acked_at: u32,
    /// Since when its newest valid ack has been older than its baseline ring (it gets full
    /// snapshots meanwhile); `None` while it acknowledges ticks the ring holds.
    behind_since: Option<u32>,
    /// Input frames applied since tick `frames_tick` (the budget of the tick to come).
    frames_applied: u32,
    frames_tick: u32,
    /// New frames that arrived once this tick's budget was spent (the newest message's, at
    /// most [`MAX_INPUT_FRAMES`]). The client's next `Input` repeats and supersedes them; if
    /// none comes before the next tick, they are applied then, within its budget, so a client
    /// that stops sending after a burst still gets its newest intent applied.
    deferred: [InputFrame; MAX_INPUT_FRAMES],
    deferred_len: u8,
    /// The player id of its signed token (`None` without tokens).
    player_id: Option<String>,
    /// Replication state, and the entity, slot and last input it needs.
    v: Viewer,
}

impl AsMut<Viewer> for Client {
    fn as_mut(&mut self) -> &mut Viewer {
        &mut self.v
    }
}

struct Detached {
    token: u64,
    entity: EntityId,
    expires: u32,
    /// The player id of its token: only the same player may resume it.
    player_id: Option<String>,
}

/// Most dropped players a [`Room`] made with [`SimConfig::max_detached`] `None` keeps waiting
/// for a resume (the registry gives every room its seat count instead).
pub const DEFAULT_MAX_DETACHED: usize = 1024;

/// The simulation state, apart from the thread that drives it (tests and benches drive it
/// directly with [`Room::tick`]).
pub struct Room<G: Game> {
    game: G,
    cfg: SimConfig,
    quantizer: Quantizer,
    metrics: Arc<Metrics>,
    clients: Vec<Client>,
    index: HashMap<ClientId, usize>,
    /// Dropped players waiting for a resume, oldest (first to expire) first; at most
    /// `max_detached`.
    detached: VecDeque<Detached>,
    max_detached: usize,
    /// Their entities, sorted: replication leaves them out of every view.
    hidden: Vec<EntityId>,
    replicator: Replicator,
    hasher: RandomState,
    tick: u32,
    /// Scratch of the direct reads ([`Room::read_inputs`]): the socket read, one unmasked
    /// message, and the inputs of one client.
    read: (Vec<u8>, Vec<u8>, DirectInputs),
}

impl<G: Game> std::fmt::Debug for Room<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room")
            .field("tick", &self.tick)
            .field("clients", &self.clients.len())
            .finish_non_exhaustive()
    }
}

impl<G: Game> Room<G> {
    /// A simulation of `game`.
    pub fn new(game: G, cfg: SimConfig, metrics: Arc<Metrics>) -> Result<Self, crate::ServerError> {
        let bounds = game.bounds();
        let quantizer = Quantizer::new(bounds).map_err(crate::ServerError::World)?;
        let mut replicator = Replicator::new(quantizer, cfg.view_radius, cfg.baseline_ring);
        if let Some(max) = cfg.max_snapshot_bytes {
            let kinds = (0..=255u16).map(|k| game.kind_priority(k)).collect();
            replicator.set_budget(max, kinds, cfg.snapshot_every);
        }
        let max_detached = cfg.max_detached.unwrap_or(DEFAULT_MAX_DETACHED);
        Ok(Self {
            game,
            cfg,
            quantizer,
            metrics,
            clients: Vec::new(),
            index: HashMap::new(),
            detached: VecDeque::new(),
            max_detached,
            hidden: Vec::new(),
            replicator,
            hasher: RandomState::new(),
            tick: 0,
            read: (Vec::new(), Vec::new(), Vec::new()),
        })
    }

    /// The room's settings.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// The game.
    pub fn game(&self) -> &G {
        &self.game
    }

    /// The newest tick stepped (0 before the first).
    pub fn current_tick(&self) -> Tick {
        Tick(self.tick)
    }

    /// The room's replication (see [`Replicator::set_parallel_min_clients`]).
    pub fn replicator_mut(&mut self) -> &mut Replicator {
        &mut self.replicator
    }

    /// Clients in the simulation.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Dropped players waiting for a resume.
    pub fn detached_count(&self) -> usize {
        self.detached.len()
    }

    fn new_token(&self, client: ClientId) -> u64 {
        // RandomState is seeded from the OS per process: tokens are unguessable across runs.
        self.hasher.hash_one((client.0, self.tick, Instant::now()))
    }

    /// Handles one control event.
    pub fn control(&mut self, c: Control) {
        match c {
            Control::Join {
                client,
                resume,
                player_id,
                out,
            } => {
                let resumed = resume.and_then(|t| self.take_over(t, player_id.as_deref()));
                let entity = resumed.unwrap_or_else(|| {
                    self.game.spawn_player(PlayerInfo {
                        client,
                        player_id: player_id.as_deref(),
                    })
                });
                let token = self.new_token(client);
                debug!(%client, %entity, resumed = resumed.is_some(), "joined");
                self.index.insert(client, self.clients.len());
                self.metrics.connected_clients.fetch_add(1, Relaxed);
                // Welcome last: whoever reads it then sees the client counted.
                let b = self.quantizer.bounds();
                out.put(|s| {
                    s.welcome = Some(Welcome {
                        protocol_version: PROTOCOL_VERSION,
                        client_id: client,
                        entity_id: entity,
                        tick_rate: self.cfg.tick_rate as u16,
                        snapshot_every: self.cfg.snapshot_every as u16,
                        world_min: b.min.to_array(),
                        world_max: b.max.to_array(),
                        resume_token: token,
                    })
                });
                self.clients.push(Client {
                    id: client,
                    token,
                    joined_at: self.tick,
                    last_ack: Tick(0),
                    acked_at: self.tick,
                    behind_since: None,
                    frames_applied: 0,
                    frames_tick: self.tick,
                    deferred: [InputFrame::default(); MAX_INPUT_FRAMES],
                    deferred_len: 0,
                    player_id,
                    v: self.replicator.viewer(entity, out, self.cfg.baseline_ring),
                });
            }
            Control::Leave { client, graceful } => {
                let Some(c) = self.remove_client(client) else {
                    return;
                };
                if graceful || self.cfg.resume_grace_ticks == 0 || self.max_detached == 0 {
                    self.game.despawn_player(c.v.entity);
                } else {
                    // Bounded: a reconnect storm must not pile up ghost players. The one that
                    // has waited longest goes first; the new connection is never refused.
                    if self.detached.len() >= self.max_detached
                        && let Some(oldest) = self.detached.pop_front()
                    {
                        unhide(&mut self.hidden, oldest.entity);
                        self.game.despawn_player(oldest.entity);
                        debug!(entity = %oldest.entity, "evicted the longest-detached player");
                    }
                    // Until it resumes it stands still (not walking on, or firing, on its last
                    // input) and is in no one's view.
                    self.game.detach_player(c.v.entity);
                    if let Err(i) = self.hidden.binary_search(&c.v.entity) {
                        self.hidden.insert(i, c.v.entity);
                    }
                    self.detached.push_back(Detached {
                        token: c.token,
                        entity: c.v.entity,
                        expires: self.tick.saturating_add(self.cfg.resume_grace_ticks),
                        player_id: c.player_id,
                    });
                }
            }
        }
    }

    /// The entity behind a resume token: a dropped player waiting in the grace period, or a
    /// connected one whose old connection has not noticed it is dead yet (that connection is
    /// closed with [`CloseCode::Replaced`]).
    /// With signed player tokens, only the same player id takes an entity back: a leaked
    /// resume token is worth nothing with another player's token.
    fn take_over(&mut self, token: u64, player_id: Option<&str>) -> Option<EntityId> {
        if let Some(i) = self
            .detached
            .iter()
            .position(|d| d.token == token && d.player_id.as_deref() == player_id)
        {
            let entity = self.detached.remove(i)?.entity;
            unhide(&mut self.hidden, entity);
            self.game.attach_player(entity);
            return Some(entity);
        }
        let old = self
            .clients
            .iter()
            .find(|c| c.token == token && c.player_id.as_deref() == player_id)?
            .id;
        let c = self.remove_client(old)?;
        c.v.out.put(|s| {
            s.close = Some(Closing::new(
                CloseCode::Replaced,
                "session resumed elsewhere",
            ))
        });
        Some(c.v.entity)
    }

    fn remove_client(&mut self, client: ClientId) -> Option<Client> {
        let i = self.index.remove(&client)?;
        let c = self.clients.swap_remove(i);
        if let Some(moved) = self.clients.get(i) {
            self.index.insert(moved.id, i);
        }
        self.metrics.connected_clients.fetch_sub(1, Relaxed);
        Some(c)
    }

    /// Handles one input message: the ack, then the frames newer than the last applied, at
    /// most `max_frames_per_tick` of them per client per tick.
    ///
    /// An ack is valid when it names a snapshot tick this client was sent (after its join,
    /// on the snapshot grid, no newer than the newest sent) newer than its previous valid ack.
    /// Every valid ack is a sign of life (it resets the ack timeout), whether or not the tick
    /// is still in the baseline ring; one older than the ring gives no baseline (full
    /// snapshots follow) and starts the `max_behind` clock, which an ack in the ring stops.
    pub fn input(&mut self, m: InputMsg) {
        let Some(&i) = self.index.get(&m.client) else {
            return;
        };
        self.input_at(i, m.ack, m.frames);
    }

    /// Reads every client whose socket the simulation reads itself (plain-TCP WebSockets
    /// after the join, [`crate::wire`]) and handles the `Input` messages found, as
    /// [`Room::input`] does those of the input channel. Never blocks: a non-blocking `recv`
    /// per client at most.
    pub fn read_inputs(&mut self) {
        let now = tokio::time::Instant::now();
        let (mut scratch, mut msg, mut inputs) = std::mem::take(&mut self.read);
        scratch.resize(MAX_READ_BUFFER, 0);
        for i in 0..self.clients.len() {
            self.clients[i]
                .v
                .out
                .read_inputs(now, &mut scratch, &mut msg, &mut inputs);
            if inputs.is_empty() {
                continue;
            }
            let n = inputs.len() as u64;
            self.metrics.inbound_messages.fetch_add(n, Relaxed);
            self.metrics.inbound_direct.fetch_add(n, Relaxed);
            for (ack, frames) in inputs.drain(..) {
                self.input_at(i, ack, frames);
            }
        }
        self.read = (scratch, msg, inputs);
    }

    fn input_at(&mut self, i: usize, ack: Tick, mut frames: Vec<InputFrame>) {
        let c = &mut self.clients[i];
        if ack.0 != 0 {
            let outcome = c.v.on_ack(ack);
            let sent = match outcome {
                AckOutcome::Accepted => true,
                // Older than the ring: a snapshot tick since the join (sent, or superseded or
                // deferred under load: a sign of life either way, not a forged tick).
                AckOutcome::Expired => {
                    ack.0 > c.joined_at && ack.0.is_multiple_of(self.cfg.snapshot_every)
                }
                AckOutcome::Old | AckOutcome::NeverSent => false,
            };
            if sent && ack > c.last_ack {
                c.last_ack = ack;
                c.acked_at = self.tick;
                if outcome == AckOutcome::Accepted {
                    c.behind_since = None;
                } else {
                    c.behind_since.get_or_insert(self.tick);
                }
            }
        }
        // Frames: the newest that fit this tick's budget, in order. Older new ones are
        // skipped for good (`last_input` passes them), so a burst after a stall converges at
        // once and extra frames buy nothing; past the budget, new frames wait unapplied for the
        // client's resend (every Input repeats its newest 8). A gap in `seq` is a skip too.
        if c.frames_tick != self.tick {
            c.frames_tick = self.tick;
            c.frames_applied = 0;
        }
        frames.sort_unstable_by_key(|f| f.seq);
        frames.dedup_by_key(|f| f.seq);
        let new = &frames[frames.partition_point(|f| f.seq <= c.v.last_input)..];
        // What waited is superseded by a message whose newest frame is at least as new (a
        // reordered or repeated datagram with older frames supersedes nothing).
        let newest_waiting = c.deferred[..usize::from(c.deferred_len)]
            .last()
            .map(|f| f.seq);
        let supersedes = new
            .last()
            .is_some_and(|f| newest_waiting.is_none_or(|w| f.seq >= w));
        if c.frames_applied >= self.cfg.max_frames_per_tick {
            // Over budget: keep the newest for the next tick (a later message repeats them).
            if supersedes {
                let n = new.len().min(MAX_INPUT_FRAMES);
                c.deferred[..n].copy_from_slice(&new[new.len() - n..]);
                c.deferred_len = n as u8;
            }
            return;
        }
        if supersedes {
            c.deferred_len = 0;
        }
        Self::apply_frames(&mut self.game, c, self.cfg.max_frames_per_tick, new);
    }

    /// Applies the newest of `new` (new frames, in `seq` order) that fit `c`'s budget for the
    /// tick; older ones are skipped for good.
    fn apply_frames(game: &mut G, c: &mut Client, max: u32, new: &[InputFrame]) {
        let left = max.saturating_sub(c.frames_applied) as usize;
        let apply = &new[new.len().saturating_sub(left)..];
        for f in apply {
            game.apply_input(c.v.entity, f);
        }
        if let Some(f) = apply.last() {
            c.v.last_input = f.seq;
            c.frames_applied += apply.len() as u32;
        }
    }

    /// Before a step: frames that waited for the budget of an earlier tick, from clients that
    /// sent nothing since, go into this tick's.
    fn apply_deferred(&mut self) {
        let max = self.cfg.max_frames_per_tick;
        for c in &mut self.clients {
            if c.deferred_len == 0 || c.frames_tick == self.tick {
                continue;
            }
            c.frames_tick = self.tick;
            c.frames_applied = 0;
            let deferred = c.deferred;
            let pending = &deferred[..usize::from(c.deferred_len)];
            c.deferred_len = 0;
            let new = &pending[pending.partition_point(|f| f.seq <= c.v.last_input)..];
            Self::apply_frames(&mut self.game, c, max, new);
        }
    }

    /// Runs one tick: inputs must have been fed already; steps and (on snapshot ticks)
    /// replicates. Returns bytes of snapshots produced.
    pub fn tick(&mut self) -> u64 {
        let Some(next) = self.tick.checked_add(1) else {
            // The tick space is exhausted (over 200 days at 240 Hz): the room stops stepping
            // rather than reuse tick numbers clients hold baselines for.
            return 0;
        };
        self.apply_deferred();
        self.tick = next;
        let dt = 1.0 / self.cfg.tick_rate as f32;
        self.game.step(dt);
        self.expire();
        if self.tick.is_multiple_of(self.cfg.snapshot_every) {
            self.replicate()
        } else {
            0
        }
    }

    fn expire(&mut self) {
        let now = self.tick;
        // Detached players are pushed in expiry order, so the expired ones lead.
        let expired = self.detached.partition_point(|d| d.expires <= now);
        for d in self.detached.drain(..expired) {
            unhide(&mut self.hidden, d.entity);
            self.game.despawn_player(d.entity);
        }
        let (mut timed_out, mut behind) = (0u32, 0u32);
        let timeout = self.cfg.ack_timeout_ticks;
        let max_behind = self.cfg.max_behind_ticks;
        let mut i = 0;
        while i < self.clients.len() {
            let c = &self.clients[i];
            let closing = if now.saturating_sub(c.acked_at) > timeout {
                timed_out += 1;
                Closing::new(CloseCode::AckTimeout, "no acknowledgement in time")
            } else if c
                .behind_since
                .is_some_and(|t| now.saturating_sub(t) > max_behind)
            {
                behind += 1;
                Closing::new(
                    CloseCode::TooFarBehind,
                    "acknowledgements stayed older than the snapshot history",
                )
            } else {
                i += 1;
                continue;
            };
            let id = c.id;
            c.v.out.put(|s| s.close = Some(closing));
            if let Some(c) = self.remove_client(id) {
                self.game.despawn_player(c.v.entity);
            }
            debug!(client = %id, code = closing.code.code(), "closed by the room");
        }
        // One line per tick, not one per client: the tick must not block on logging.
        if timed_out > 0 {
            warn!(
                clients = timed_out,
                "closed clients that stopped acknowledging (4000)"
            );
        }
        if behind > 0 {
            warn!(
                clients = behind,
                "closed clients whose acknowledgements stayed behind the snapshot history (4012)"
            );
        }
    }

    fn replicate(&mut self) -> u64 {
        let tick = Tick(self.tick);
        self.replicator.replicate_hiding(
            tick,
            self.game.entities(),
            &self.hidden,
            self.cfg.view_radius,
            &mut self.clients,
            &self.metrics,
        )
    }
}

/// Takes `entity` out of the sorted `hidden` list.
fn unhide(hidden: &mut Vec<EntityId>, entity: EntityId) {
    if let Ok(i) = hidden.binary_search(&entity) {
        hidden.remove(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::game::Replicated;
    use glam::Vec3;
    use tickwire_shared::{EntityState, InputSeq, ServerMessage, WorldBounds};

    /// A game that records the inputs it is given.
    #[derive(Default)]
    struct Recorder {
        applied: Vec<u32>,
        reps: Vec<Replicated>,
        next_id: u32,
    }

    impl Game for Recorder {
        fn bounds(&self) -> WorldBounds {
            WorldBounds {
                min: Vec3::ZERO,
                max: Vec3::new(100.0, 100.0, 0.0),
            }
        }
        fn spawn_player(&mut self, _player: PlayerInfo<'_>) -> EntityId {
            let id = EntityId(self.next_id);
            self.next_id += 1;
            self.reps.push(Replicated {
                id,
                state: EntityState::default(),
            });
            id
        }
        fn despawn_player(&mut self, entity: EntityId) {
            self.reps.retain(|r| r.id != entity);
        }
        fn apply_input(&mut self, _entity: EntityId, frame: &InputFrame) {
            self.applied.push(frame.seq.0);
        }
        fn step(&mut self, _dt: f32) {}
        fn entities(&self) -> &[Replicated] {
            &self.reps
        }
    }

    fn sim() -> Room<Recorder> {
        let cfg = SimConfig {
            tick_rate: 30,
            snapshot_every: 1,
            view_radius: 50.0,
            baseline_ring: 8,
            ack_timeout_ticks: 30,
            max_behind_ticks: 60,
            resume_grace_ticks: 0,
            max_inputs_per_tick: 100,
            max_frames_per_tick: 2,
            max_detached: Some(16),
            max_snapshot_bytes: None,
        };
        Room::new(Recorder::default(), cfg, Arc::new(Metrics::default())).unwrap()
    }

    /// A simulation with client 1 joined, and that client's outbound slot.
    fn sim_with_client() -> (Room<Recorder>, Arc<Outbound>) {
        let mut s = sim();
        let out = Arc::new(Outbound::default());
        s.control(Control::Join {
            client: ClientId(1),
            resume: None,
            player_id: None,
            out: out.clone(),
        });
        (s, out)
    }

    fn snapshot(frame: &SnapshotFrame) -> tickwire_shared::SnapshotMessage {
        let frame = frame.to_vec();
        let Ok(ServerMessage::Snapshot(m)) = tickwire_shared::codec::decode_server(&frame) else {
            panic!("not a snapshot");
        };
        m
    }

    fn frames(seqs: &[u32]) -> Vec<InputFrame> {
        seqs.iter()
            .map(|&s| InputFrame {
                seq: InputSeq(s),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn input_frames_apply_once_in_order() {
        let (mut s, out) = sim_with_client();
        s.cfg.max_frames_per_tick = 8;
        let input = |s: &mut Room<Recorder>, seqs: &[u32]| {
            s.input(InputMsg {
                client: ClientId(1),
                ack: Tick(0),
                frames: frames(seqs),
            })
        };
        input(&mut s, &[1, 2, 3]);
        input(&mut s, &[2, 3, 4, 5]); // redundant resend: only 4 and 5 are new
        input(&mut s, &[5, 4]); // duplicates, out of order
        input(&mut s, &[8, 6, 7]); // out of order within a message
        s.tick();
        assert_eq!(s.game().applied, [1, 2, 3, 4, 5, 6, 7, 8]);
        // The snapshot reports the newest applied input.
        let frame = out.take().snapshot.expect("a snapshot was produced");
        let m = snapshot(&frame);
        assert_eq!(m.last_input, InputSeq(8));
        assert_eq!(m.tick, Tick(1));
        // Inputs from an unknown client are ignored.
        s.input(InputMsg {
            client: ClientId(9),
            ack: Tick(0),
            frames: frames(&[9]),
        });
        assert_eq!(s.game().applied.len(), 8);
    }

    /// A room running the arena with no NPCs, snapshots every tick, and resumes on.
    fn arena_room() -> Room<crate::game::Arena> {
        let mut cfg = crate::ServerConfig::defaults().sim;
        cfg.resume_grace_ticks = 300;
        let arena = crate::game::Arena::new(
            crate::world::World::arena(),
            crate::game::ArenaRules::default(),
            0,
            1,
        );
        Room::new(arena, cfg, Arc::new(Metrics::default())).unwrap()
    }

    fn join(s: &mut Room<impl Game>, client: u32, resume: Option<u64>) -> Arc<Outbound> {
        let out = Arc::new(Outbound::default());
        s.control(Control::Join {
            client: ClientId(client),
            resume,
            player_id: None,
            out: out.clone(),
        });
        out
    }

    fn position(s: &Room<impl Game>, e: EntityId) -> Vec3 {
        let r = s.game().entities().iter().find(|r| r.id == e);
        r.expect("the entity exists").state.pos
    }

    #[test]
    fn a_dropped_player_stands_still_until_it_resumes() {
        let mut s = arena_room();
        let out = join(&mut s, 1, None);
        let w = out.take().welcome.unwrap();
        let e = w.entity_id;
        s.input(InputMsg {
            client: ClientId(1),
            ack: Tick(0),
            frames: vec![InputFrame {
                seq: InputSeq(1),
                move_x: 127,
                move_y: 40,
                aim_yaw: 9000,
                buttons: tickwire_shared::message::BUTTON_FIRE,
                ..Default::default()
            }],
        });
        s.tick();
        let moving = position(&s, e);
        s.tick();
        assert_ne!(position(&s, e), moving, "the input moves the player");
        s.control(Control::Leave {
            client: ClientId(1),
            graceful: false,
        });
        let dropped = position(&s, e);
        let yaw = s
            .game()
            .entities()
            .iter()
            .find(|r| r.id == e)
            .unwrap()
            .state
            .yaw;
        for _ in 0..60 {
            s.tick();
        }
        assert_eq!(
            position(&s, e),
            dropped,
            "a detached player does not walk on"
        );
        assert_eq!(
            s.game().entities().len(),
            1,
            "and fires no more projectiles"
        );
        // Resumed, it is where and as it was left, and takes input again.
        let out = join(&mut s, 2, Some(w.resume_token));
        assert_eq!(out.take().welcome.unwrap().entity_id, e);
        let r = s
            .game()
            .entities()
            .iter()
            .find(|r| r.id == e)
            .unwrap()
            .state;
        assert_eq!((r.pos, r.yaw), (dropped, yaw));
        s.input(InputMsg {
            client: ClientId(2),
            ack: Tick(0),
            frames: frames(&[1])
                .into_iter()
                .map(|f| InputFrame { move_y: 127, ..f })
                .collect(),
        });
        s.tick();
        assert_ne!(position(&s, e), dropped);
    }

    /// A Recorder room with resumes on and at most `max_detached` waiting.
    fn resuming_sim(max_detached: usize) -> Room<Recorder> {
        let mut s = sim();
        s.cfg.resume_grace_ticks = 300;
        s.max_detached = max_detached;
        s
    }

    /// Takes the client's snapshot, applies it to `rx`, acknowledges it, and returns the ids
    /// in its view.
    fn observe(
        s: &mut Room<Recorder>,
        client: u32,
        out: &Outbound,
        rx: &mut tickwire_shared::SnapshotReceiver,
    ) -> Vec<u32> {
        let frame = out.take().snapshot.expect("a snapshot");
        rx.receive(&snapshot(&frame)).expect("it verifies");
        s.input(InputMsg {
            client: ClientId(client),
            ack: rx.ack_tick().unwrap_or(Tick(0)),
            frames: vec![],
        });
        rx.view().iter().map(|(id, _)| id.0).collect()
    }

    fn drop_client(s: &mut Room<impl Game>, client: u32) {
        s.control(Control::Leave {
            client: ClientId(client),
            graceful: false,
        });
    }

    #[test]
    fn only_the_same_player_resumes_with_a_resume_token() {
        let mut s = resuming_sim(16);
        let join_as = |s: &mut Room<Recorder>, client: u32, resume, player: &str| {
            let out = Arc::new(Outbound::default());
            s.control(Control::Join {
                client: ClientId(client),
                resume,
                player_id: Some(player.to_owned()),
                out: out.clone(),
            });
            out.take().welcome.unwrap()
        };
        let w = join_as(&mut s, 1, None, "alice");
        drop_client(&mut s, 1);
        // Another player's token with alice's resume token: a new player.
        let other = join_as(&mut s, 2, Some(w.resume_token), "mallory");
        assert_ne!(other.entity_id, w.entity_id);
        assert_eq!(s.detached_count(), 1);
        // Alice herself gets her entity back.
        let back = join_as(&mut s, 3, Some(w.resume_token), "alice");
        assert_eq!(back.entity_id, w.entity_id);
        assert_eq!(s.detached_count(), 0);
    }

    #[test]
    fn dropped_players_are_in_no_view_until_they_resume() {
        let mut s = resuming_sim(16);
        let mut rx = tickwire_shared::SnapshotReceiver::new(s.quantizer, 32);
        let observer = join(&mut s, 1, None);
        let tokens: Vec<u64> = (2..=6)
            .map(|c| join(&mut s, c, None).take().welcome.unwrap().resume_token)
            .collect();
        s.tick();
        assert_eq!(observe(&mut s, 1, &observer, &mut rx), [0, 1, 2, 3, 4, 5]);
        for c in 2..=6 {
            drop_client(&mut s, c);
        }
        assert_eq!(s.detached_count(), 5);
        for _ in 0..3 {
            s.tick();
            // Waiting for a resume, they are still in the game, but no one sees them.
            assert_eq!(observe(&mut s, 1, &observer, &mut rx), [0]);
        }
        assert_eq!(s.game().entities().len(), 6);
        // One comes back: the same entity, seen again.
        let back = join(&mut s, 7, Some(tokens[2]));
        assert_eq!(back.take().welcome.unwrap().entity_id, EntityId(3));
        s.tick();
        assert_eq!(observe(&mut s, 1, &observer, &mut rx), [0, 3]);
        assert_eq!(s.detached_count(), 4);
    }

    #[test]
    fn detached_players_are_capped_and_the_oldest_goes_first() {
        let mut s = resuming_sim(3);
        let tokens: Vec<u64> = (1..=5)
            .map(|c| join(&mut s, c, None).take().welcome.unwrap().resume_token)
            .collect();
        s.tick();
        for c in 1..=5 {
            drop_client(&mut s, c);
            assert!(s.detached_count() <= 3);
        }
        assert_eq!(s.detached_count(), 3);
        let ids: Vec<u32> = s.game().entities().iter().map(|r| r.id.0).collect();
        assert_eq!(ids, [2, 3, 4], "the two that dropped first were despawned");
        // An evicted player's token no longer resumes it: a new player, never a refusal.
        let late = join(&mut s, 6, Some(tokens[0]));
        assert_eq!(late.take().welcome.unwrap().entity_id, EntityId(5));
        let kept = join(&mut s, 7, Some(tokens[4]));
        assert_eq!(kept.take().welcome.unwrap().entity_id, EntityId(4));
        assert_eq!(s.detached_count(), 2);
        // 0 keeps no one.
        let mut s = resuming_sim(0);
        join(&mut s, 1, None);
        drop_client(&mut s, 1);
        assert_eq!((s.detached_count(), s.game().entities().len()), (0, 0));
    }

    /// Runs up to `ticks` ticks, client 1 acknowledging what `ack(now)` says before each
    /// (0: nothing); returns the close and the tick it came at, if one came, and checks every
    /// snapshot with `check(now, message)`.
    fn run_acks(
        s: &mut Room<Recorder>,
        out: &Outbound,
        ticks: u32,
        ack: impl Fn(u32) -> u32,
        check: impl Fn(u32, &tickwire_shared::SnapshotMessage),
    ) -> Option<(CloseCode, u32)> {
        for _ in 0..ticks {
            let now = s.current_tick().0;
            s.input(InputMsg {
                client: ClientId(1),
                ack: Tick(ack(now)),
                frames: vec![],
            });
            s.tick();
            let st = out.take();
            if let Some(c) = st.close {
                return Some((c.code, s.current_tick().0));
            }
            check(
                s.current_tick().0,
                &snapshot(&st.snapshot.expect("a snapshot")),
            );
        }
        None
    }

    #[test]
    fn a_client_acking_behind_the_ring_lives_on_full_snapshots_then_gets_4012() {
        // Ring of 8, ack timeout 30 ticks, max behind 60.
        let (mut s, out) = sim_with_client();
        out.take();
        // It acknowledges every snapshot, but 10 ticks late: always older than the ring.
        let lag = 10;
        let closed = run_acks(
            &mut s,
            &out,
            200,
            |now| now.saturating_sub(lag),
            |_, m| assert_eq!(m.baseline_age, 0, "no baseline: full snapshots"),
        );
        // Alive well past the ack timeout (every ack was a sign of life), then closed with
        // its own code once it had been behind for longer than 60 ticks: its first ack (of
        // tick 1) came before tick 12.
        assert_eq!(closed, Some((CloseCode::TooFarBehind, 11 + 60 + 1)));
        assert_eq!(s.client_count(), 0);
        assert!(s.game().entities().is_empty(), "the player was removed");
    }

    #[test]
    fn a_lag_spike_behind_the_ring_recovers() {
        let (mut s, out) = sim_with_client();
        out.take();
        // 50 ticks of acks 10 ticks late, then on time again.
        let closed = run_acks(
            &mut s,
            &out,
            200,
            |now| now.saturating_sub(if now < 50 { 10 } else { 0 }),
            |now, m| {
                if now > 52 {
                    assert_eq!(m.baseline_age, 1, "deltas again at tick {now}");
                }
            },
        );
        assert_eq!(closed, None);
    }

    #[test]
    fn acks_of_nothing_sent_are_no_sign_of_life() {
        // The ack timeout is 30 ticks after the join (tick 0) or the last valid ack.
        for (ack, closed_at) in [
            // A tick not sent yet.
            ((|now| now + 3) as fn(u32) -> u32, 31),
            // The same tick over and over: valid once, at tick 1.
            (|_| 1, 32),
            // Far ahead.
            (|now| now.min(5) * 100, 31),
        ] {
            let (mut s, out) = sim_with_client();
            out.take();
            let closed = run_acks(&mut s, &out, 100, ack, |_, _| {});
            assert_eq!(closed, Some((CloseCode::AckTimeout, closed_at)));
        }
        // A tick from before the client joined was never sent to it.
        let mut s = sim();
        for _ in 0..20 {
            s.tick();
        }
        let out = join(&mut s, 1, None);
        out.take();
        let closed = run_acks(&mut s, &out, 100, |_| 5, |_, _| {});
        assert_eq!(closed, Some((CloseCode::AckTimeout, 51)));
    }

    fn send(s: &mut Room<Recorder>, seqs: impl IntoIterator<Item = u32>) {
        s.input(InputMsg {
            client: ClientId(1),
            ack: Tick(0),
            frames: frames(&seqs.into_iter().collect::<Vec<_>>()),
        });
    }

    #[test]
    fn at_most_max_frames_per_tick_apply_and_the_newest_win() {
        let (mut s, out) = sim_with_client();
        let mut seq = 0;
        for t in 0..10 {
            // Five messages a tick, each with 8 new frames: 40 frames a tick on offer.
            for _ in 0..5 {
                send(&mut s, seq + 1..=seq + 8);
                seq += 8;
            }
            s.tick();
            // Two applied: the newest of the tick's first message; the rest were over budget.
            let first = t * 40;
            let want: Vec<u32> = (0..=t).flat_map(|k| [k * 40 + 7, k * 40 + 8]).collect();
            assert_eq!(s.game().applied, want);
            let m = snapshot(&out.take().snapshot.unwrap());
            assert_eq!(m.last_input, InputSeq(first + 8));
        }
    }

    #[test]
    fn a_burst_converges_at_once_and_seq_jumps_skip() {
        let (mut s, out) = sim_with_client();
        send(&mut s, [1]);
        s.tick();
        // After a stall, 8 frames at once: the newest two apply, and the rest are passed.
        send(&mut s, 2..=9);
        s.tick();
        assert_eq!(s.game().applied, [1, 8, 9]);
        // Nothing before the newest applied is ever applied later.
        send(&mut s, 2..=9);
        s.tick();
        assert_eq!(s.game().applied, [1, 8, 9]);
        // A jump in seq is accepted; the gap is skipped, and older frames stay dead.
        send(&mut s, [1000]);
        send(&mut s, [999]);
        s.tick();
        send(&mut s, [1001, 1002]);
        s.tick();
        assert_eq!(s.game().applied, [1, 8, 9, 1000, 1001, 1002]);
        let m = snapshot(&out.take().snapshot.unwrap());
        assert_eq!(m.last_input, InputSeq(1002));
        // Within a tick the budget spans messages: one frame, then one more, then none.
        send(&mut s, [1003]);
        send(&mut s, [1003, 1004, 1005]);
        send(&mut s, [1006]);
        s.tick();
        assert_eq!(s.game().applied[6..], [1003, 1005]);
        send(&mut s, [1004, 1005, 1006]);
        s.tick();
        assert_eq!(s.game().applied[6..], [1003, 1005, 1006]);
    }

    #[test]
    fn a_burst_then_silence_still_applies_the_newest_frames() {
        let (mut s, out) = sim_with_client();
        // Twelve messages in one tick, each with the newest frames so far, then nothing.
        for n in 1..=12u32 {
            send(&mut s, n.saturating_sub(7).max(1)..=n);
        }
        s.tick();
        assert_eq!(s.game().applied, [1, 2]);
        // The next tick applies the newest that waited (within its own budget of 2).
        s.tick();
        assert_eq!(s.game().applied, [1, 2, 11, 12]);
        let m = snapshot(&out.take().snapshot.unwrap());
        assert_eq!(m.last_input, InputSeq(12));
        // A message in the meantime supersedes what waited.
        for n in 13..=20u32 {
            send(&mut s, n - 7..=n);
        }
        s.tick();
        send(&mut s, [19, 20, 21]);
        s.tick();
        assert_eq!(s.game().applied[4..], [13, 14, 20, 21]);
        // A reordered datagram with older frames does not throw away what waited.
        for n in 22..=30u32 {
            send(&mut s, n - 7..=n);
        }
        s.tick();
        assert_eq!(s.game().applied[8..], [22, 23]);
        send(&mut s, [24, 25]);
        s.tick();
        s.tick();
        assert_eq!(s.game().applied[8..], [22, 23, 24, 25, 29, 30]);
    }

    #[test]
    fn acks_select_baselines_and_silence_times_out() {
        let (mut s, out) = sim_with_client();
        assert!(out.take().welcome.is_some());
        s.tick();
        s.input(InputMsg {
            client: ClientId(1),
            ack: Tick(1),
            frames: vec![],
        });
        s.tick();
        let frame = out.take().snapshot.unwrap();
        let m = snapshot(&frame);
        assert_eq!(m.baseline_tick(), Some(Tick(1)));
        for _ in 0..31 {
            s.tick();
        }
        assert_eq!(
            out.take().close.map(|c| c.code),
            Some(CloseCode::AckTimeout)
        );
        assert_eq!(s.client_count(), 0);
        assert!(s.game().entities().is_empty(), "the player was removed");
    }
}
