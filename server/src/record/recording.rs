//! The room side of recording: a [`Game`] that forwards every call to the real game and
//! records it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tickwire_shared::{EntityId, InputFrame, WorldBounds};
use tracing::warn;

use super::codec::{MAX_LOG_PLAYERS, MAX_TICK_BYTES, TickEncoder, WorldSum};
use super::writer::{LogState, MAX_BEHIND_TICKS, Msg};
use crate::game::{Game, PlayerInfo, Replicated};

/// Where a room's records go: the writer's queue, and its pool of emptied buffers.
#[derive(Debug)]
pub(crate) struct Sink {
    log: u64,
    /// The log's opening, sent with the first tick.
    open: Option<Msg>,
    state: Arc<LogState>,
    tx: Sender<Msg>,
    pool: Receiver<Vec<u8>>,
}

impl Sink {
    pub(crate) fn new(log: u64, open: Msg, tx: Sender<Msg>, pool: Receiver<Vec<u8>>) -> Sink {
        let state = match &open {
            Msg::Open { state, .. } => state.clone(),
            _ => Arc::default(),
        };
        Sink {
            log,
            open: Some(open),
            state,
            tx,
            pool,
        }
    }

    /// Queues one tick record; `Err` says why recording must stop (`None`: quietly, the
    /// server is shutting down).
    fn send(&mut self, buf: Vec<u8>, players: usize) -> Result<(), Option<&'static str>> {
        if self.state.stopped.load(Ordering::Relaxed) {
            // The writer could not write the log; it has said so.
            return Err(None);
        }
        if buf.len() > MAX_TICK_BYTES {
            return Err(Some("a tick record is over the log's limit"));
        }
        if players > MAX_LOG_PLAYERS {
            return Err(Some("more players than a log tracks"));
        }
        let behind =
            self.state.sent.load(Ordering::Relaxed) - self.state.taken.load(Ordering::Acquire);
        if behind >= MAX_BEHIND_TICKS {
            return Err(Some("the writer fell behind"));
        }
        if let Some(open) = self.open.take() {
            match self.tx.try_send(open) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => return Err(Some("the writer's queue is full")),
                Err(TrySendError::Disconnected(_)) => return Err(None),
            }
        }
        // Counted before it is queued, so the writer never takes more than were sent.
        self.state.sent.fetch_add(1, Ordering::Release);
        let sent = self.tx.try_send(Msg::Tick { log: self.log, buf });
        if sent.is_err() {
            self.state.sent.fetch_sub(1, Ordering::Release);
        }
        match sent {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Some("the writer's queue is full")),
            Err(TrySendError::Disconnected(_)) => Err(None),
        }
    }
}

/// A game whose calls are recorded: made by [`super::Recorder::record`]. It behaves exactly
/// as the game it wraps; after each step it also sums the world up ([`WorldSum`]) and
/// queues the tick's record. Recording costs the room's thread the encoding (a few bits per
/// input frame) and the sum, never a wait.
#[derive(Debug)]
pub struct Recording<G> {
    inner: G,
    room: String,
    enc: TickEncoder,
    sink: Option<Sink>,
    tick: u32,
    /// Bytes to allocate for a tick record when the pool is empty.
    last_len: usize,
}

impl<G: Game> Recording<G> {
    pub(crate) fn new(inner: G, room: String, sink: Option<Sink>) -> Self {
        Self {
            inner,
            room,
            enc: TickEncoder::new(),
            sink,
            tick: 0,
            last_len: 256,
        }
    }

    /// The recorded game.
    pub fn game(&self) -> &G {
        &self.inner
    }

    /// Whether its calls are still being recorded.
    pub fn is_recording(&self) -> bool {
        self.sink.is_some()
    }

    fn after_step(&mut self, dt: f32) {
        self.tick = self.tick.wrapping_add(1);
        let Some(sink) = &mut self.sink else { return };
        let sum = WorldSum::of(self.inner.entities());
        // A pooled buffer, or (the writer has not handed one back yet) one new allocation.
        let mut buf = sink
            .pool
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(self.last_len));
        self.enc.step(dt, sum, &mut buf);
        // With room to spare: the next tick is likely about as big.
        self.last_len = buf.len() + buf.len() / 4;
        if let Err(why) = sink.send(buf, self.enc.players()) {
            sink.state.stopped.store(true, Ordering::Release);
            if let Some(why) = why {
                warn!(room = %self.room, tick = self.tick, reason = why, "recording stopped");
            }
            self.sink = None;
            self.enc = TickEncoder::new();
        }
    }
}

impl<G> Drop for Recording<G> {
    fn drop(&mut self) {
        if let Some(s) = &self.sink {
            s.state.ended.store(true, Ordering::Release);
        }
    }
}

/// Every method is forwarded, the provided ones too (a new `Game` method must be added
/// here, or recorded rooms would run its default).
impl<G: Game> Game for Recording<G> {
    fn bounds(&self) -> WorldBounds {
        self.inner.bounds()
    }

    fn spawn_player(&mut self, player: PlayerInfo<'_>) -> EntityId {
        let e = self.inner.spawn_player(player);
        if self.sink.is_some() {
            self.enc.spawn(player.client, player.player_id, e);
        }
        e
    }

    fn despawn_player(&mut self, entity: EntityId) {
        self.inner.despawn_player(entity);
        if self.sink.is_some() {
            self.enc.despawn(entity);
        }
    }

    fn apply_input(&mut self, entity: EntityId, frame: &InputFrame) {
        self.inner.apply_input(entity, frame);
        if self.sink.is_some() {
            self.enc.input(entity, frame);
        }
    }

    fn detach_player(&mut self, entity: EntityId) {
        self.inner.detach_player(entity);
        if self.sink.is_some() {
            self.enc.detach(entity);
        }
    }

    fn attach_player(&mut self, entity: EntityId) {
        self.inner.attach_player(entity);
        if self.sink.is_some() {
            self.enc.attach(entity);
        }
    }

    fn step(&mut self, dt: f32) {
        self.inner.step(dt);
        self.after_step(dt);
    }

    fn entities(&self) -> &[Replicated] {
        self.inner.entities()
    }

    fn locked(&self) -> bool {
        self.inner.locked()
    }

    fn kind_priority(&self, kind: u16) -> u8 {
        self.inner.kind_priority(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::game::Arena;
    use crate::world::World;
    use tickwire_shared::ClientId;

    fn recording(queue: usize) -> (Recording<Arena>, Arc<LogState>, Receiver<Msg>) {
        let (tx, rx) = crossbeam_channel::bounded(queue);
        let (_pool_tx, pool) = crossbeam_channel::bounded(4);
        let state = Arc::new(LogState::default());
        let open = Msg::Open {
            log: 0,
            stem: "t".into(),
            header: Vec::new(),
            state: state.clone(),
        };
        let arena = Arena::new(World::arena(), Default::default(), 3, 1);
        let sink = Sink::new(0, open, tx, pool);
        (Recording::new(arena, "t".into(), Some(sink)), state, rx)
    }

    #[test]
    fn a_writer_that_falls_behind_stops_the_recording_not_the_room() {
        // Room for the opening and 5 ticks; nobody takes them.
        let (mut g, state, rx) = recording(6);
        let e = g.spawn_player(PlayerInfo::anonymous(ClientId(1)));
        for _ in 0..5 {
            g.apply_input(e, &InputFrame::default());
            g.step(1.0 / 30.0);
            assert!(g.is_recording());
        }
        for kind in [crate::game::KIND_PLAYER, crate::game::KIND_NPC] {
            assert_eq!(g.kind_priority(kind), g.game().kind_priority(kind));
        }
        assert_eq!(g.bounds(), g.game().bounds());
        let before = g.entities().to_vec();
        // The queue is full: the next tick stops the recording, and the game goes on.
        g.step(1.0 / 30.0);
        assert!(!g.is_recording());
        assert!(state.stopped.load(Ordering::Acquire));
        assert_eq!(state.sent.load(Ordering::Acquire), 5);
        g.step(1.0 / 30.0);
        assert_eq!(g.entities().len(), before.len());
        assert_eq!(rx.len(), 6, "nothing more was queued");
        drop(g);
        // A stopped log is not marked ended by its room: the writer ends it as stopped.
        assert!(!state.ended.load(Ordering::Acquire));
    }

    #[test]
    fn a_room_that_is_far_ahead_of_its_writer_stops_recording() {
        let (mut g, state, _rx) = recording(MAX_BEHIND_TICKS as usize + 10);
        for _ in 0..MAX_BEHIND_TICKS {
            g.step(1.0 / 30.0);
        }
        assert!(g.is_recording());
        // The writer has taken one; the room is MAX_BEHIND_TICKS - 1 ahead, then as many
        // again.
        state.taken.store(1, Ordering::Release);
        g.step(1.0 / 30.0);
        assert!(g.is_recording());
        g.step(1.0 / 30.0);
        assert!(!g.is_recording());
        drop(g);
        assert!(!state.ended.load(Ordering::Acquire));
    }
}
