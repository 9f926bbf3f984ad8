//! The node's rooms: the registered game kinds, and a map from room id to [`RoomHandle`].
//!
//! Connection tasks and the matchmaking handlers use it; the driver threads never do. A
//! session holds a [`Place`] in its room for as long as it lives, taken and given back under
//! the registry's lock, so a room is only ever disposed of when no session is in it or on its
//! way in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tickwire_shared::ClientId;
use tickwire_shared::quant::BoundsError;

use crate::config::SimConfig;
use crate::driver::{Driver, RoomHandle};
use crate::game::Game;
use crate::metrics::{KindCount, Metrics};
use crate::record::Recorder;
use crate::room::Room;

/// What a game factory is told about the room it makes a game for.
#[derive(Debug, Clone)]
pub struct RoomSpec {
    /// The room id.
    pub room_id: String,
    /// The registered kind.
    pub kind: String,
    /// Most players at once.
    pub max_clients: u32,
    /// A seed of its own, for spawn points and NPCs.
    pub seed: u64,
}

/// Makes the game of a new room of one kind.
pub type GameFactory = Arc<dyn Fn(&RoomSpec) -> Box<dyn Game> + Send + Sync>;

/// Why a room could not be made or entered.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    /// No game of that kind is registered.
    #[error("no game kind {0:?} is registered")]
    UnknownKind(String),
    /// The game's world bounds are unusable.
    #[error("world: {0}")]
    World(BoundsError),
    /// The room is gone (disposed of) or was never here.
    #[error("no such room")]
    Gone,
    /// The room has max_clients sessions already.
    #[error("room full")]
    Full,
}

/// The id of the permanent room that a `Hello` without a seat joins, on a node without a
/// shared directory. In a fleet every node has one, so there it is [`default_room_id`].
pub const DEFAULT_ROOM: &str = "default";

/// The default room's id: [`DEFAULT_ROOM`] alone, or `default-NODE` in a fleet (room ids are
/// fleet-wide; `.` in a node id becomes `-`).
pub fn default_room_id(node_id: &str, fleet: bool) -> String {
    if fleet {
        let node: String = node_id
            .chars()
            .map(|c| if c == '.' { '-' } else { c })
            .collect();
        format!("{DEFAULT_ROOM}-{node}")
    } else {
        DEFAULT_ROOM.to_owned()
    }
}

/// A session's place in a room; given back when dropped.
#[derive(Debug)]
pub(crate) struct Place {
    pub(crate) room: Arc<RoomHandle>,
    client: ClientId,
    registry: Arc<Registry>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut rooms = self.registry.lock();
        self.room.sessions.fetch_sub(1, Relaxed);
        rooms.players.remove(&self.client.0);
    }
}

/// Where a resume token leads: the room the player was in, for as long as it may resume.
#[derive(Debug)]
struct ResumeRoute {
    room: String,
    /// `None` while the session is still open.
    expires: Option<Instant>,
}

/// The rooms, and the players in them (for Agones' player list).
#[derive(Debug, Default)]
struct Rooms {
    by_id: HashMap<String, Arc<RoomHandle>>,
    players: BTreeSet<u32>,
}

impl std::ops::Deref for Rooms {
    type Target = HashMap<String, Arc<RoomHandle>>;
    fn deref(&self) -> &Self::Target {
        &self.by_id
    }
}

impl std::ops::DerefMut for Rooms {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.by_id
    }
}

/// The node's rooms and game kinds.
pub struct Registry {
    kinds: BTreeMap<String, GameFactory>,
    rooms: Mutex<Rooms>,
    resume: Mutex<HashMap<u64, ResumeRoute>>,
    driver: Driver,
    sim: SimConfig,
    input_queue: usize,
    seed: u64,
    made: AtomicU64,
    metrics: Arc<Metrics>,
    /// With `--record`: every room's game is recorded.
    recorder: Option<Arc<Recorder>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.kinds.keys().collect::<Vec<_>>())
            .field("rooms", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A registry stepping its rooms on `driver`.
    pub(crate) fn new(
        kinds: BTreeMap<String, GameFactory>,
        driver: Driver,
        sim: SimConfig,
        input_queue: usize,
        seed: u64,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            kinds,
            rooms: Mutex::new(Rooms::default()),
            resume: Mutex::new(HashMap::new()),
            driver,
            sim,
            input_queue,
            seed,
            made: AtomicU64::new(0),
            metrics,
            recorder: None,
        }
    }

    /// Records every room's game with `recorder` (`--record`).
    pub(crate) fn with_recorder(mut self, recorder: Option<Arc<Recorder>>) -> Self {
        self.recorder = recorder;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Rooms> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a kind is registered.
    pub fn has_kind(&self, kind: &str) -> bool {
        self.kinds.contains_key(kind)
    }

    /// The registered kinds.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// The room with this id, if it is on this node.
    pub fn get(&self, id: &str) -> Option<Arc<RoomHandle>> {
        self.lock().get(id).cloned()
    }

    /// Every room on this node.
    pub fn rooms(&self) -> Vec<Arc<RoomHandle>> {
        self.lock().values().cloned().collect()
    }

    /// The room `id`: the one here already, or a new one of `kind`.
    pub fn get_or_create(
        &self,
        id: &str,
        kind: &str,
        max_clients: u32,
        matchmaking: bool,
    ) -> Result<Arc<RoomHandle>, RoomError> {
        if let Some(h) = self.get(id) {
            return Ok(h);
        }
        let factory = self
            .kinds
            .get(kind)
            .ok_or_else(|| RoomError::UnknownKind(kind.to_owned()))?;
        let n = self.made.fetch_add(1, Relaxed);
        let spec = RoomSpec {
            room_id: id.to_owned(),
            kind: kind.to_owned(),
            max_clients,
            seed: self
                .seed
                .wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        };
        // The game is built outside the lock; two racing first joiners may both build one, and
        // the loser's is dropped unused.
        let game = factory(&spec);
        let setup = self.recorder.as_ref().map_or(&[][..], |r| r.setup_of(kind));
        self.insert_recorded(&spec, kind, game, matchmaking, setup)
    }

    /// As [`Registry::insert`] for room `spec.room_id` with `spec.max_clients` seats; with
    /// `--record` its game is recorded, its log naming `spec` and `setup` (what replay needs
    /// to build the game again).
    pub fn insert_recorded<G: Game>(
        &self,
        spec: &RoomSpec,
        kind: &str,
        game: G,
        matchmaking: bool,
        setup: &[u8],
    ) -> Result<Arc<RoomHandle>, RoomError> {
        let (id, max) = (&spec.room_id, spec.max_clients);
        match &self.recorder {
            Some(r) => {
                let game = r.record(game, spec, self.sim.tick_rate, setup);
                self.insert(id, kind, game, max, matchmaking)
            }
            None => self.insert(id, kind, game, max, matchmaking),
        }
    }

    /// Adds a room running `game` (the default room, or a kind's new room).
    pub fn insert<G: Game>(
        &self,
        id: &str,
        kind: &str,
        game: G,
        max_clients: u32,
        matchmaking: bool,
    ) -> Result<Arc<RoomHandle>, RoomError> {
        let mut sim = self.sim.clone();
        // --max-detached defaults to the room's seats: a whole room may drop and come back.
        sim.max_detached.get_or_insert(max_clients as usize);
        let room = Room::new(game, sim, self.metrics.clone()).map_err(|e| match e {
            crate::ServerError::World(b) => RoomError::World(b),
            _ => RoomError::Gone,
        })?;
        let mut rooms = self.lock();
        if let Some(h) = rooms.get(id) {
            return Ok(h.clone());
        }
        // Each room's input queue: room for every player's messages over a couple of ticks.
        let queue = self
            .input_queue
            .min((max_clients as usize).saturating_mul(64).max(256));
        let h = self.driver.add(
            room,
            id.to_owned(),
            kind.to_owned(),
            max_clients,
            matchmaking,
            queue,
        );
        rooms.insert(id.to_owned(), h.clone());
        Ok(h)
    }

    /// Takes a place in room `id` for a session.
    pub(crate) fn enter(self: &Arc<Self>, id: &str, client: ClientId) -> Result<Place, RoomError> {
        let mut rooms = self.lock();
        let room = rooms.get(id).ok_or(RoomError::Gone)?.clone();
        if room.sessions.load(Relaxed) >= room.max_clients {
            return Err(RoomError::Full);
        }
        room.sessions.fetch_add(1, Relaxed);
        rooms.players.insert(client.0);
        Ok(Place {
            room,
            client,
            registry: self.clone(),
        })
    }

    /// The players in this node's rooms, by client id.
    pub fn players(&self) -> BTreeSet<String> {
        self.lock().players.iter().map(u32::to_string).collect()
    }

    /// Disposes of room `id` if no session is in it; returns whether it went.
    pub fn dispose(&self, id: &str) -> bool {
        let mut rooms = self.lock();
        let Some(room) = rooms.get(id) else {
            return false;
        };
        if room.sessions.load(Relaxed) > 0 {
            return false;
        }
        room.closed.store(true, Relaxed);
        rooms.remove(id);
        drop(rooms);
        self.resume_lock().retain(|_, r| r.room != id);
        true
    }

    /// Rooms and sessions by kind, for the metrics.
    pub fn kind_counts(&self) -> Vec<KindCount> {
        let mut by: BTreeMap<&str, KindCount> = self
            .kinds
            .keys()
            .map(|k| {
                (
                    k.as_str(),
                    KindCount {
                        kind: k.clone(),
                        ..Default::default()
                    },
                )
            })
            .collect();
        let rooms = self.rooms();
        for r in &rooms {
            if let Some(k) = by.get_mut(r.kind.as_str()) {
                k.rooms += 1;
                k.sessions += u64::from(r.sessions());
            }
        }
        by.into_values().collect()
    }

    fn resume_lock(&self) -> MutexGuard<'_, HashMap<u64, ResumeRoute>> {
        self.resume.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers that `token` resumes a player in `room` (called when its Welcome is sent).
    pub(crate) fn route_resume(&self, token: u64, room: &str) {
        self.resume_lock().insert(
            token,
            ResumeRoute {
                room: room.to_owned(),
                expires: None,
            },
        );
    }

    /// The session behind `token` ended: a dropped one may resume for `grace`, a graceful one
    /// not at all.
    pub(crate) fn end_resume(&self, token: u64, grace: Option<Duration>) {
        let mut routes = self.resume_lock();
        match grace {
            Some(g) => {
                if let Some(r) = routes.get_mut(&token) {
                    r.expires = Some(Instant::now() + g);
                }
            }
            None => {
                routes.remove(&token);
            }
        }
    }

    /// The room a resume token leads to, if it is still live.
    pub(crate) fn resume_room(&self, token: u64) -> Option<String> {
        let routes = self.resume_lock();
        let r = routes.get(&token)?;
        r.expires
            .is_none_or(|e| e > Instant::now())
            .then(|| r.room.clone())
    }

    /// Forgets resume routes whose grace has passed.
    pub(crate) fn sweep_resume(&self) {
        let now = Instant::now();
        self.resume_lock()
            .retain(|_, r| r.expires.is_none_or(|e| e > now));
    }

    /// Stops the driver threads (after every session has ended).
    pub(crate) fn stop(&self) {
        self.driver.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_room_ids_are_unique_in_a_fleet() {
        assert_eq!(default_room_id("node-a", false), "default");
        assert_eq!(default_room_id("node-a", true), "default-node-a");
        let id = default_room_id("eu1.game.7", true);
        assert_eq!(id, "default-eu1-game-7");
        assert!(crate::directory::valid_room_id(&id));
    }
}
