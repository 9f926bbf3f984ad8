//! Game rules behind a small trait, and the reference game, the arena.
//!
//! The simulation thread drives any [`Game`]: it hands over each client's input frames in
//! sequence order, steps the game once per tick and replicates [`Game::entities`]. Transports,
//! interest management and delta compression never look inside. To ship your own game,
//! implement [`Game`] and pass it to [`crate::Server`] in place of [`Arena`].
//!
//! Ticks: the trait passes no tick number. The room steps its game exactly once per tick,
//! from tick 1 on, with `dt = 1 / tick_rate`, so a game that needs the tick (lag
//! compensation: [`crate::lagcomp`]) counts its own steps, and the count is the tick that
//! snapshots and `InputFrame::view_tick` carry; the tick rate is `1 / dt`. The arena does so.

use glam::{Vec2, Vec3};
use tickwire_shared::message::{BUTTON_FIRE, BUTTON_SECONDARY};
use tickwire_shared::{ClientId, EntityId, EntityState, InputFrame, Tick, WorldBounds};

use crate::grid::Grid;
use crate::lagcomp::{History, HistoryConfig};
use crate::rng::Rng;
use crate::world::World;

/// One replicated entity as the game exposes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Replicated {
    /// Its id (never reused).
    pub id: EntityId,
    /// Its full-precision state.
    pub state: EntityState,
}

/// Who a joining player is: what [`Game::spawn_player`] is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayerInfo<'a> {
    /// The connection's id (unique within the server process).
    pub client: ClientId,
    /// The player id of the client's signed token (`--auth-secret-file`, PROTOCOL.md
    /// section 13): who the game's backend says this is. `None` on a server without tokens.
    pub player_id: Option<&'a str>,
}

impl PlayerInfo<'static> {
    /// A player with no token: only its connection id.
    pub const fn anonymous(client: ClientId) -> PlayerInfo<'static> {
        PlayerInfo {
            client,
            player_id: None,
        }
    }
}

/// The rules of a game, as the simulation thread sees them.
pub trait Game: Send + 'static {
    /// The world every position is clamped into.
    fn bounds(&self) -> WorldBounds;
    /// Creates the entity a joining player controls.
    fn spawn_player(&mut self, player: PlayerInfo<'_>) -> EntityId;
    /// Removes a player's entity (the client left or timed out).
    fn despawn_player(&mut self, entity: EntityId);
    /// Applies one input frame. Called at most once per frame, in sequence order, before the
    /// [`Game::step`] of the tick it arrived for, and for at most `max_frames_per_tick` frames
    /// per player per tick (older frames of a burst are skipped, never applied); a game must
    /// still make sure that more frames per tick, or longer move vectors, gain a player
    /// nothing.
    fn apply_input(&mut self, entity: EntityId, frame: &InputFrame);
    /// The client of `entity` dropped without leaving and may resume within the grace period:
    /// until then its player must not act on its last input (walk on, keep firing). Called
    /// once, when the drop is seen; [`Game::apply_input`] resumes it. The default applies a
    /// neutral frame (`InputFrame::default()`: no move, no buttons, aim 0); a game whose
    /// neutral frame is not "stand still, do nothing" overrides it.
    fn detach_player(&mut self, entity: EntityId) {
        self.apply_input(entity, &InputFrame::default());
    }
    /// The client of a detached `entity` resumed: the player is back in play. The room hides
    /// a detached player from every view by itself; a game that also takes it out of play
    /// (the arena: projectiles pass through it) puts it back here. The default does nothing.
    fn attach_player(&mut self, entity: EntityId) {
        let _ = entity;
    }
    /// Advances the world by `dt` seconds. The room calls it once per tick, the first time
    /// for tick 1, always with `dt = 1 / tick_rate` (see the module docs on ticks).
    fn step(&mut self, dt: f32);
    /// Every replicated entity, sorted by id.
    fn entities(&self) -> &[Replicated];
    /// Whether the room takes no new players (a match that has started, say). Read after
    /// every tick; matchmaking skips a locked room and refuses seats in it. Players already
    /// in it, and resumes, are unaffected.
    fn locked(&self) -> bool {
        false
    }
    /// How much an entity of `kind` matters to a client, 1 (the default) to 8, when a
    /// bandwidth budget (`--max-snapshot-bytes`) cannot fit every entity: it multiplies the
    /// entity's priority (with its nearness and the ticks since the client last got it).
    fn kind_priority(&self, kind: u16) -> u8 {
        let _ = kind;
        1
    }
}

/// Rooms of registered kinds hold their game behind a box.
impl Game for Box<dyn Game> {
    fn bounds(&self) -> WorldBounds {
        (**self).bounds()
    }
    fn spawn_player(&mut self, player: PlayerInfo<'_>) -> EntityId {
        (**self).spawn_player(player)
    }
    fn despawn_player(&mut self, entity: EntityId) {
        (**self).despawn_player(entity)
    }
    fn apply_input(&mut self, entity: EntityId, frame: &InputFrame) {
        (**self).apply_input(entity, frame)
    }
    fn detach_player(&mut self, entity: EntityId) {
        (**self).detach_player(entity)
    }
    fn attach_player(&mut self, entity: EntityId) {
        (**self).attach_player(entity)
    }
    fn step(&mut self, dt: f32) {
        (**self).step(dt)
    }
    fn entities(&self) -> &[Replicated] {
        (**self).entities()
    }
    fn locked(&self) -> bool {
        (**self).locked()
    }
    fn kind_priority(&self, kind: u16) -> u8 {
        (**self).kind_priority(kind)
    }
}

/// Entity kind: a player.
pub const KIND_PLAYER: u16 = 1;
/// Entity kind: an NPC.
pub const KIND_NPC: u16 = 2;
/// Entity kind: a projectile.
pub const KIND_PROJECTILE: u16 = 3;

/// Arena tuning. Values are per second where they are rates. Match logs record it whole
/// (bincode's format, through wincode), so a new field is recorded without further ado.
#[derive(Debug, Clone, wincode::SchemaWrite, wincode::SchemaRead)]
pub struct ArenaRules {
    /// Top player speed, units per second (the server clamps every input to this).
    pub player_speed: f32,
    /// NPC walking speed.
    pub npc_speed: f32,
    /// Projectile speed.
    pub projectile_speed: f32,
    /// Projectile lifetime, seconds.
    pub projectile_life: f32,
    /// Seconds between two shots of one player.
    pub fire_cooldown: f32,
    /// Health a hit removes.
    pub damage: u16,
    /// Health at (re)spawn.
    pub max_health: u16,
    /// Body radius of players and NPCs.
    pub body_radius: f32,
    /// Seconds between two shots of one player's hitscan weapon (secondary fire).
    pub hitscan_cooldown: f32,
    /// How far the hitscan beam reaches, units (less than the default view radius of 150,
    /// so that whatever it hits was on the shooter's screen).
    pub hitscan_range: f32,
    /// Health a hitscan hit removes.
    pub hitscan_damage: u16,
    /// Lag compensation for the hitscan weapon (`--max-rewind-ms`): how far back, in
    /// milliseconds, a beam may be tested against where its targets were when the shooter saw
    /// them (PROTOCOL.md 5.3). 0 turns it off: beams hit targets where they are on the
    /// server. Projectiles are never rewound (they are simulated in the present, and visible).
    pub max_rewind_ms: u32,
}

impl Default for ArenaRules {
    fn default() -> Self {
        Self {
            player_speed: 8.0,
            npc_speed: 3.0,
            projectile_speed: 40.0,
            projectile_life: 1.5,
            fire_cooldown: 0.25,
            damage: 20,
            max_health: 100,
            body_radius: 0.5,
            hitscan_cooldown: 0.3,
            hitscan_range: 120.0,
            hitscan_damage: 25,
            max_rewind_ms: 250,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Body {
    /// Players: the newest move intent (length ≤ 1). NPCs: heading unit vector.
    intent: Vec2,
    fire: bool,
    cooldown: f32,
    /// NPCs: seconds to the next turn. Projectiles: seconds to live.
    timer: f32,
    /// Projectiles: who fired.
    owner: Option<EntityId>,
    /// Players: the client dropped and may resume. The room shows the player to no one, so
    /// projectiles pass through it rather than stop at something invisible.
    detached: bool,
    /// Players: secondary fire was pressed since the last step, by a frame that saw this.
    beam: Option<Seen>,
    /// Players: seconds until the hitscan weapon may fire again.
    beam_cooldown: f32,
}

/// A secondary-fire press: where its frame aimed, and what it says its player saw
/// (PROTOCOL.md 5.3).
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    yaw: f32,
    view_tick: Tick,
    interp_ms: u16,
}

/// A hitscan shot of this step, resolved after everyone has moved.
#[derive(Debug, Clone, Copy)]
struct Beam {
    shooter: EntityId,
    origin: Vec2,
    dir: Vec2,
    seen: Seen,
}

/// Most cells a side of the arena's hit-test grid.
const HIT_GRID_CELLS: f32 = 64.0;

/// The reference game: players run and shoot, NPCs wander, projectiles fly and hit.
///
/// Primary fire (`BUTTON_FIRE`) launches a projectile. Secondary fire (`BUTTON_SECONDARY`)
/// fires a hitscan beam from the shooter's position after its move this tick, along the aim
/// of the frame that pressed it, up to [`ArenaRules::hitscan_range`] or the first obstacle;
/// the nearest player or NPC on it is hit. With lag compensation
/// ([`ArenaRules::max_rewind_ms`] > 0) the beam is tested against the players and NPCs as
/// they were at the moment the frame that pressed the button says its player saw, from a
/// [`History`] of the ticks snapshots showed (within the cap, and never later than the newest
/// tick stepped when the frame was applied).
///
/// The arena counts its own steps as the room tick (the room steps it once per tick from
/// tick 1) and takes the tick rate as `1 / dt`; see the module docs.
#[derive(Debug)]
pub struct Arena {
    world: World,
    rules: ArenaRules,
    rng: Rng,
    next_id: u32,
    reps: Vec<Replicated>,
    bodies: Vec<Body>,
    grid: Grid,
    positions: Vec<Vec2>,
    hits: Vec<u32>,
    spawned: Vec<(Replicated, Body)>,
    /// Steps so far: the room tick of the newest step.
    tick: Tick,
    /// Where players and NPCs were in the last ticks; `None` with lag compensation off, and
    /// until the first step tells the tick rate.
    history: Option<History>,
    beams: Vec<Beam>,
    near: Vec<(EntityId, Vec2)>,
    /// Entities a beam killed (and so respawned) this step: later beams of the step miss the
    /// body they tested, rather than hurt the respawned player.
    killed: Vec<EntityId>,
}

impl Arena {
    /// An arena on `world` with `npcs` wandering NPCs.
    pub fn new(world: World, rules: ArenaRules, npcs: usize, seed: u64) -> Self {
        let b = world.bounds;
        let mut arena = Self {
            // Hit tests reach about a body radius; cells of 8 units, but at most 64 a side:
            // the rebuild costs O(cells) per tick, which for a small match in a big world
            // would dwarf its few entities (62,500 cells, 1.5 MB and ~0.1 ms a tick in the
            // 2,000-unit arena).
            grid: Grid::new(
                b.min.truncate(),
                b.max.truncate(),
                ((b.max - b.min).truncate().max_element() / HIT_GRID_CELLS).max(8.0),
            ),
            world,
            rules,
            rng: Rng::new(seed),
            next_id: 0,
            reps: Vec::new(),
            bodies: Vec::new(),
            positions: Vec::new(),
            hits: Vec::new(),
            spawned: Vec::new(),
            tick: Tick(0),
            history: None,
            beams: Vec::new(),
            near: Vec::new(),
            killed: Vec::new(),
        };
        for _ in 0..npcs {
            let state = EntityState {
                kind: KIND_NPC,
                pos: arena.free_spot(),
                health: arena.rules.max_health,
                ..Default::default()
            };
            arena.push(state, Body::default());
        }
        arena
    }

    fn push(&mut self, state: EntityState, body: Body) -> EntityId {
        let id = EntityId(self.next_id);
        // Ids are never reused; a room that spawned 2^32 entities would need a restart.
        self.next_id = self.next_id.saturating_add(1);
        self.reps.push(Replicated { id, state });
        self.bodies.push(body);
        id
    }

    fn index(&self, id: EntityId) -> Option<usize> {
        self.reps.binary_search_by_key(&id, |r| r.id).ok()
    }

    fn blocked(&self, p: Vec2, radius: f32) -> bool {
        self.world
            .obstacles
            .iter()
            .any(|o| o.hits_circle(p, radius))
    }

    fn free_spot(&mut self) -> Vec3 {
        let b = self.world.bounds;
        for _ in 0..64 {
            let p = Vec2::new(
                self.rng.range(b.min.x, b.max.x),
                self.rng.range(b.min.y, b.max.y),
            );
            if !self.blocked(p, self.rules.body_radius) {
                return p.extend(b.min.z);
            }
        }
        b.min
    }

    /// Moves a body by `delta`, axis by axis, stopping at walls and obstacles.
    /// Returns whether anything blocked it.
    fn slide(&self, pos: Vec3, delta: Vec2, radius: f32) -> (Vec3, bool) {
        let b = self.world.bounds;
        let mut p = pos.truncate();
        let mut blocked = false;
        for axis in 0..2 {
            let mut next = p;
            next[axis] += delta[axis];
            let clamped = next[axis].clamp(b.min[axis], b.max[axis]);
            if clamped != next[axis] {
                blocked = true;
                next[axis] = clamped;
            }
            if self.blocked(next, radius) {
                blocked = true;
            } else {
                p = next;
            }
        }
        (p.extend(pos.z), blocked)
    }

    /// Builds the lag-compensation history on the first step, when `dt` tells the tick rate
    /// (again if the rate changes), or drops it with compensation off.
    fn prepare_history(&mut self, dt: f32) {
        if self.rules.max_rewind_ms == 0 {
            self.history = None;
            return;
        }
        if !(dt > 0.0 && dt.is_finite()) {
            return;
        }
        // The room steps with 1 / tick_rate (30 Hz: 1/30 as f32, whose inverse rounds to 30).
        let rate = (1.0 / dt).round().clamp(1.0, 100_000.0) as u32;
        if self
            .history
            .as_ref()
            .is_some_and(|h| h.config().tick_rate == rate)
        {
            return;
        }
        let b = self.world.bounds;
        let fastest = self.rules.player_speed.max(self.rules.npc_speed).max(0.0);
        self.history = Some(History::new(HistoryConfig {
            max_rewind_ms: self.rules.max_rewind_ms,
            tick_rate: rate,
            min: b.min.truncate(),
            max: b.max.truncate(),
            cell: 8.0,
            // Twice the farthest a body walks in a tick: anything farther is a respawn.
            teleport_distance: 2.0 * fastest / rate as f32 + 0.1,
        }));
    }

    /// How far a beam from `origin` along `dir` goes before the first obstacle, at most
    /// `range`.
    fn beam_length(&self, origin: Vec2, dir: Vec2, range: f32) -> f32 {
        self.world
            .obstacles
            .iter()
            .filter_map(|o| o.ray_hit(origin, dir, range))
            .fold(range, f32::min)
    }

    /// Hits this step's beams: each against the players and NPCs as its shooter saw them
    /// (rewound in the history), or where they are with lag compensation off; the nearest
    /// body on the beam is hit.
    fn resolve_beams(&mut self, rules: &ArenaRules) {
        let beams = std::mem::take(&mut self.beams);
        for beam in &beams {
            let len = self.beam_length(beam.origin, beam.dir, rules.hitscan_range);
            // Everything the beam can touch is within this circle.
            let mid = beam.origin + beam.dir * (len * 0.5);
            let reach = len * 0.5 + rules.body_radius;
            self.near.clear();
            let moment = self
                .history
                .as_ref()
                .and_then(|h| h.moment(beam.seen.view_tick, beam.seen.interp_ms));
            match (moment, &mut self.history) {
                (Some(t), Some(h)) => h.query(t, mid, reach, &mut self.near),
                _ => {
                    self.hits.clear();
                    self.grid.query(mid, reach, &mut self.hits);
                    let (reps, positions) = (&self.reps, &self.positions);
                    self.near.extend(self.hits.iter().filter_map(|&h| {
                        let h = h as usize;
                        Some((reps.get(h)?.id, *positions.get(h)?))
                    }));
                }
            }
            let mut nearest: Option<(f32, usize)> = None;
            for &(id, p) in &self.near {
                if id == beam.shooter || self.killed.contains(&id) {
                    continue;
                }
                // Still in play now: not gone, not detached, a body.
                let Some(i) = self.index(id) else { continue };
                let (r, b) = (&self.reps[i], &self.bodies[i]);
                if !matches!(r.state.kind, KIND_PLAYER | KIND_NPC)
                    || r.state.health == 0
                    || b.detached
                {
                    continue;
                }
                if let Some(d) = ray_circle(beam.origin, beam.dir, p, rules.body_radius, len)
                    && nearest.is_none_or(|(best, _)| d < best)
                {
                    nearest = Some((d, i));
                }
            }
            if let Some((_, t)) = nearest {
                let h = &mut self.reps[t].state.health;
                *h = h.saturating_sub(rules.hitscan_damage);
                if *h == 0 {
                    self.killed.push(self.reps[t].id);
                    self.respawn(t);
                }
            }
        }
        self.beams = beams;
    }

    fn respawn(&mut self, i: usize) {
        let pos = self.free_spot();
        let s = &mut self.reps[i].state;
        s.pos = pos;
        s.vel = Vec3::ZERO;
        s.health = self.rules.max_health;
    }
}

impl Game for Arena {
    fn bounds(&self) -> WorldBounds {
        self.world.bounds
    }

    fn spawn_player(&mut self, _player: PlayerInfo<'_>) -> EntityId {
        let state = EntityState {
            kind: KIND_PLAYER,
            pos: self.free_spot(),
            health: self.rules.max_health,
            ..Default::default()
        };
        self.push(state, Body::default())
    }

    fn despawn_player(&mut self, entity: EntityId) {
        if let Some(i) = self.index(entity) {
            self.reps.remove(i);
            self.bodies.remove(i);
        }
    }

    fn apply_input(&mut self, entity: EntityId, frame: &InputFrame) {
        let Some(i) = self.index(entity) else { return };
        // A vector longer than a unit one is cut to 1: a bigger vector buys no speed.
        let body = &mut self.bodies[i];
        body.intent = frame.move_intent();
        body.fire |= frame.buttons & BUTTON_FIRE != 0;
        let yaw = frame.aim_radians();
        if frame.buttons & BUTTON_SECONDARY != 0 {
            // The beam goes where the frame that fired it aimed, at what that frame saw (of
            // several pressing frames in a tick, the newest).
            body.beam = Some(Seen {
                yaw,
                view_tick: frame.view_tick,
                interp_ms: frame.interp_ms,
            });
        }
        self.reps[i].state.yaw = yaw;
    }

    /// Stops the player where it is and takes it out of play; unlike the default neutral
    /// frame, it keeps its aim, so a resumed player is as it was left.
    fn detach_player(&mut self, entity: EntityId) {
        let Some(i) = self.index(entity) else { return };
        let body = &mut self.bodies[i];
        body.intent = Vec2::ZERO;
        body.fire = false;
        body.beam = None;
        body.detached = true;
    }

    fn attach_player(&mut self, entity: EntityId) {
        if let Some(i) = self.index(entity) {
            self.bodies[i].detached = false;
        }
    }

    fn step(&mut self, dt: f32) {
        let rules = self.rules.clone();
        // At u32::MAX the room stops stepping; so does the count.
        self.tick = self.tick.next().unwrap_or(self.tick);
        self.prepare_history(dt);
        self.spawned.clear();
        self.beams.clear();
        self.killed.clear();
        for i in 0..self.reps.len() {
            let Replicated { id, state } = self.reps[i];
            let mut body = self.bodies[i];
            match state.kind {
                KIND_PLAYER => {
                    let vel = body.intent * rules.player_speed;
                    let (pos, _) = self.slide(state.pos, vel * dt, rules.body_radius);
                    body.cooldown = (body.cooldown - dt).max(0.0);
                    if body.fire && body.cooldown <= 0.0 {
                        body.cooldown = rules.fire_cooldown;
                        let dir = Vec2::from_angle(state.yaw);
                        let shot = EntityState {
                            kind: KIND_PROJECTILE,
                            pos: pos + (dir * (rules.body_radius + 0.3)).extend(0.0),
                            vel: (dir * rules.projectile_speed).extend(0.0),
                            yaw: state.yaw,
                            health: 1,
                            flags: 0,
                        };
                        let b = Body {
                            timer: rules.projectile_life,
                            owner: Some(id),
                            ..Body::default()
                        };
                        self.spawned.push((Replicated { id, state: shot }, b));
                    }
                    body.fire = false;
                    body.beam_cooldown = (body.beam_cooldown - dt).max(0.0);
                    if let Some(seen) = body.beam.take()
                        && body.beam_cooldown <= 0.0
                        && !body.detached
                    {
                        body.beam_cooldown = rules.hitscan_cooldown;
                        self.beams.push(Beam {
                            shooter: id,
                            origin: pos.truncate(),
                            dir: Vec2::from_angle(seen.yaw),
                            seen,
                        });
                    }
                    let s = &mut self.reps[i].state;
                    s.pos = pos;
                    s.vel = vel.extend(0.0);
                }
                KIND_NPC => {
                    body.timer -= dt;
                    if body.timer <= 0.0 || body.intent == Vec2::ZERO {
                        body.intent = Vec2::from_angle(self.rng.range(0.0, std::f32::consts::TAU));
                        body.timer = self.rng.range(1.0, 4.0);
                    }
                    let vel = body.intent * rules.npc_speed;
                    let (pos, blocked) = self.slide(state.pos, vel * dt, rules.body_radius);
                    if blocked {
                        body.timer = 0.0;
                    }
                    let s = &mut self.reps[i].state;
                    s.pos = pos;
                    s.vel = vel.extend(0.0);
                    s.yaw = body.intent.to_angle();
                }
                _ => {
                    body.timer -= dt;
                    let (pos, blocked) = self.slide(state.pos, state.vel.truncate() * dt, 0.1);
                    self.reps[i].state.pos = pos;
                    if blocked || body.timer <= 0.0 {
                        self.reps[i].state.health = 0;
                    }
                }
            }
            self.bodies[i] = body;
        }

        // Hits: every live projectile against the bodies near it.
        // Nothing in flight (most ticks of a quiet room): no hit tests, no grid.
        let in_flight = self
            .reps
            .iter()
            .any(|r| r.state.kind == KIND_PROJECTILE && r.state.health > 0);
        self.positions.clear();
        self.positions
            .extend(self.reps.iter().map(|r| r.state.pos.truncate()));
        // Beams without a history to rewind in test the present, through the same grid.
        let present_beams =
            !self.beams.is_empty() && self.history.as_ref().is_none_or(|h| h.now().is_none());
        if in_flight || present_beams {
            self.grid.rebuild(&self.positions);
        }
        self.resolve_beams(&rules);
        let reach = rules.body_radius + 0.2;
        for p in (0..self.reps.len()).filter(|_| in_flight) {
            if self.reps[p].state.kind != KIND_PROJECTILE || self.reps[p].state.health == 0 {
                continue;
            }
            self.hits.clear();
            self.grid.query(self.positions[p], reach, &mut self.hits);
            let owner = self.bodies[p].owner;
            let target = self.hits.iter().map(|&h| h as usize).find(|&h| {
                let r = &self.reps[h];
                r.state.kind != KIND_PROJECTILE
                    && Some(r.id) != owner
                    && r.state.health > 0
                    && !self.bodies[h].detached
            });
            if let Some(t) = target {
                self.reps[p].state.health = 0;
                let h = &mut self.reps[t].state.health;
                *h = h.saturating_sub(rules.damage);
                if *h == 0 {
                    self.respawn(t);
                }
            }
        }

        // Spent projectiles go; new ones come (with fresh, higher ids, so order holds).
        let mut kept = 0;
        for i in 0..self.reps.len() {
            let s = &self.reps[i].state;
            if s.kind != KIND_PROJECTILE || s.health > 0 {
                self.reps.swap(kept, i);
                self.bodies.swap(kept, i);
                kept += 1;
            }
        }
        self.reps.truncate(kept);
        self.bodies.truncate(kept);
        let spawned = std::mem::take(&mut self.spawned);
        for (r, b) in &spawned {
            self.push(r.state, *b);
        }
        self.spawned = spawned;

        // This tick as snapshots will show it: what later beams rewind to.
        if let Some(h) = &mut self.history {
            let shootable = self
                .reps
                .iter()
                .zip(&self.bodies)
                .filter(|(r, b)| matches!(r.state.kind, KIND_PLAYER | KIND_NPC) && !b.detached)
                .map(|(r, _)| (r.id, r.state.pos.truncate()));
            h.record(self.tick, shootable);
        }
    }

    fn entities(&self) -> &[Replicated] {
        &self.reps
    }

    /// Players and projectiles (what can hit you) before NPCs.
    fn kind_priority(&self, kind: u16) -> u8 {
        match kind {
            KIND_PLAYER | KIND_PROJECTILE => 2,
            _ => 1,
        }
    }
}

/// How far along the ray from `origin` (unit `dir`) it first touches the circle at `center`
/// of `radius`, if within `len` (0 when it starts inside).
fn ray_circle(origin: Vec2, dir: Vec2, center: Vec2, radius: f32, len: f32) -> Option<f32> {
    let w = center - origin;
    let along = w.dot(dir);
    let off2 = w.length_squared() - along * along;
    let r2 = radius * radius;
    if off2 > r2 || off2.is_nan() {
        return None;
    }
    let half = (r2 - off2).max(0.0).sqrt();
    let enter = along - half;
    if along + half < 0.0 || enter > len {
        return None;
    }
    Some(enter.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_shared::InputSeq;

    fn arena() -> Arena {
        Arena::new(World::arena(), ArenaRules::default(), 0, 1)
    }

    fn frame(x: i8, y: i8, buttons: u8) -> InputFrame {
        InputFrame {
            seq: InputSeq(1),
            move_x: x,
            move_y: y,
            buttons,
            ..Default::default()
        }
    }

    #[test]
    fn speed_is_clamped_whatever_the_input() {
        let mut a = arena();
        let e = a.spawn_player(PlayerInfo::anonymous(ClientId(1)));
        let i = a.index(e).unwrap();
        a.reps[i].state.pos = Vec3::new(200.0, 200.0, 0.0);
        // A diagonal at full deflection and many frames in one tick.
        for _ in 0..8 {
            a.apply_input(e, &frame(127, 127, 0));
        }
        a.step(1.0 / 30.0);
        let moved = a.reps[a.index(e).unwrap()].state.pos - Vec3::new(200.0, 200.0, 0.0);
        let max = ArenaRules::default().player_speed / 30.0;
        assert!(moved.length() <= max + 1e-4, "moved {moved}");
        assert!(moved.length() >= max * 0.99);
    }

    #[test]
    fn players_stop_at_obstacles_and_walls() {
        let mut a = arena();
        let e = a.spawn_player(PlayerInfo::anonymous(ClientId(1)));
        let i = a.index(e).unwrap();
        a.reps[i].state.pos = Vec3::new(-70.0, 0.0, 0.0); // west of the central block
        a.apply_input(e, &frame(127, 0, 0));
        for _ in 0..120 {
            a.step(1.0 / 30.0);
        }
        assert!(a.reps[a.index(e).unwrap()].state.pos.x <= -60.0 - 0.5 + 1e-3);
        let i = a.index(e).unwrap();
        a.reps[i].state.pos = Vec3::new(999.0, 0.0, 0.0);
        for _ in 0..30 {
            a.step(1.0 / 30.0);
        }
        assert_eq!(a.reps[a.index(e).unwrap()].state.pos.x, 1000.0);
    }

    #[test]
    fn projectiles_travel_hit_and_despawn() {
        let mut a = arena();
        let shooter = a.spawn_player(PlayerInfo::anonymous(ClientId(1)));
        let target = a.spawn_player(PlayerInfo::anonymous(ClientId(2)));
        let (si, ti) = (a.index(shooter).unwrap(), a.index(target).unwrap());
        a.reps[si].state.pos = Vec3::new(200.0, 200.0, 0.0);
        a.reps[ti].state.pos = Vec3::new(210.0, 200.0, 0.0);
        a.apply_input(shooter, &frame(0, 0, BUTTON_FIRE));
        a.step(1.0 / 30.0);
        assert_eq!(a.entities().len(), 3, "a projectile spawned");
        for _ in 0..30 {
            a.step(1.0 / 30.0);
        }
        assert_eq!(a.entities().len(), 2, "the projectile is gone");
        let hp = a.reps[a.index(target).unwrap()].state.health;
        assert_eq!(hp, 100 - ArenaRules::default().damage);
        assert!(a.entities().windows(2).all(|w| w[0].id < w[1].id));
    }

    #[test]
    fn projectiles_pass_through_a_detached_player() {
        let mut a = arena();
        let shooter = a.spawn_player(PlayerInfo::anonymous(ClientId(1)));
        let target = a.spawn_player(PlayerInfo::anonymous(ClientId(2)));
        let (si, ti) = (a.index(shooter).unwrap(), a.index(target).unwrap());
        a.reps[si].state.pos = Vec3::new(200.0, 200.0, 0.0);
        a.reps[ti].state.pos = Vec3::new(210.0, 200.0, 0.0);
        a.detach_player(target);
        a.apply_input(shooter, &frame(0, 0, BUTTON_FIRE));
        for _ in 0..30 {
            a.step(1.0 / 30.0);
        }
        let hp = |a: &Arena| a.reps[a.index(target).unwrap()].state.health;
        assert_eq!(hp(&a), 100, "no hit while detached");
        a.attach_player(target);
        a.apply_input(shooter, &frame(0, 0, BUTTON_FIRE));
        for _ in 0..30 {
            a.step(1.0 / 30.0);
        }
        assert_eq!(hp(&a), 100 - ArenaRules::default().damage, "hit once back");
    }

    const DT: f32 = 1.0 / 30.0;

    fn place(a: &mut Arena, e: EntityId, x: f32, y: f32) {
        let i = a.index(e).unwrap();
        a.reps[i].state.pos = Vec3::new(x, y, 0.0);
    }

    fn pos(a: &Arena, e: EntityId) -> Vec2 {
        a.reps[a.index(e).unwrap()].state.pos.truncate()
    }

    fn health(a: &Arena, e: EntityId) -> u16 {
        a.reps[a.index(e).unwrap()].state.health
    }

    /// A secondary-fire frame aimed from `from` at `at`, seen at `view_tick` `interp_ms` back.
    fn beam(from: Vec2, at: Vec2, view_tick: u32, interp_ms: u16) -> InputFrame {
        let turns = (at - from).to_angle() / std::f32::consts::TAU;
        InputFrame {
            seq: InputSeq(1),
            buttons: BUTTON_SECONDARY,
            aim_yaw: (turns.rem_euclid(1.0) * 65536.0).round() as u32 as u16,
            view_tick: Tick(view_tick),
            interp_ms,
            ..Default::default()
        }
    }

    fn two_players(rules: ArenaRules) -> (Arena, EntityId, EntityId) {
        let mut a = Arena::new(World::arena(), rules, 0, 1);
        let shooter = a.spawn_player(PlayerInfo::anonymous(ClientId(1)));
        let target = a.spawn_player(PlayerInfo::anonymous(ClientId(2)));
        place(&mut a, shooter, 200.0, 200.0);
        place(&mut a, target, 230.0, 200.0);
        (a, shooter, target)
    }

    #[test]
    fn the_arena_counts_room_ticks() {
        let mut a = arena();
        assert_eq!(a.tick, Tick(0));
        for _ in 0..5 {
            a.step(DT);
        }
        assert_eq!(a.tick, Tick(5));
        let h = a.history.as_ref().unwrap();
        assert_eq!((h.config().tick_rate, h.capacity()), (30, 9));
        assert_eq!(h.now(), Some(Tick(5)));
    }

    #[test]
    fn hitscan_hits_the_nearest_body_in_range() {
        let rules = ArenaRules::default();
        let (mut a, shooter, far) = two_players(rules.clone());
        let near = a.spawn_player(PlayerInfo::anonymous(ClientId(3)));
        let beyond = a.spawn_player(PlayerInfo::anonymous(ClientId(4)));
        place(&mut a, near, 215.0, 200.3);
        place(&mut a, beyond, 200.0 + rules.hitscan_range + 1.0, 200.0);
        a.step(DT);
        let s = pos(&a, shooter);
        a.apply_input(shooter, &beam(s, Vec2::new(300.0, 200.0), 1, 0));
        a.step(DT);
        assert_eq!(
            health(&a, near),
            100 - rules.hitscan_damage,
            "the nearest is hit"
        );
        assert_eq!(health(&a, far), 100, "behind it: not hit");
        assert_eq!(health(&a, shooter), 100, "never the shooter");
        assert_eq!(a.entities().len(), 4, "a beam is no entity");
        // Out of range: clear the way and fire again once the cooldown is over.
        place(&mut a, near, 0.0, 300.0);
        place(&mut a, far, 0.0, 320.0);
        for _ in 0..10 {
            a.step(DT);
        }
        a.apply_input(shooter, &beam(s, Vec2::new(300.0, 200.0), 12, 0));
        a.step(DT);
        assert_eq!(health(&a, beyond), 100, "beyond the range");
        assert_eq!(
            health(&a, near),
            100 - rules.hitscan_damage,
            "out of the way"
        );
    }

    #[test]
    fn a_beam_goes_where_its_frame_aimed() {
        let (mut a, shooter, target) = two_players(ArenaRules::default());
        a.step(DT);
        a.apply_input(shooter, &beam(pos(&a, shooter), pos(&a, target), 1, 0));
        // A later frame of the same tick aims elsewhere and does not fire.
        a.apply_input(shooter, &frame(0, 0, 0));
        a.step(DT);
        assert_eq!(health(&a, target), 75);
    }

    #[test]
    fn hitscan_is_stopped_by_obstacles() {
        let (mut a, shooter, target) = two_players(ArenaRules::default());
        // The central block spans -60..60: the shooter west of it, the target east.
        place(&mut a, shooter, -100.0, 0.0);
        place(&mut a, target, 70.0, 0.0);
        a.step(DT);
        a.apply_input(shooter, &beam(pos(&a, shooter), pos(&a, target), 1, 0));
        a.step(DT);
        assert_eq!(health(&a, target), 100, "the wall took it");
        place(&mut a, target, -80.0, 0.0);
        for _ in 0..10 {
            a.step(DT);
        }
        a.apply_input(shooter, &beam(pos(&a, shooter), pos(&a, target), 12, 0));
        a.step(DT);
        assert_eq!(health(&a, target), 75, "this side of the wall");
    }

    #[test]
    fn hitscan_misses_detached_players() {
        let (mut a, shooter, target) = two_players(ArenaRules::default());
        a.step(DT);
        a.detach_player(target);
        a.apply_input(shooter, &beam(pos(&a, shooter), pos(&a, target), 1, 0));
        a.step(DT);
        assert_eq!(health(&a, target), 100);
        // A detached shooter fires nothing either.
        a.attach_player(target);
        for _ in 0..10 {
            a.step(DT);
        }
        a.apply_input(shooter, &beam(pos(&a, shooter), pos(&a, target), 12, 0));
        a.detach_player(shooter);
        a.step(DT);
        assert_eq!(health(&a, target), 100);
    }

    #[test]
    fn hitscan_has_its_own_cooldown() {
        let rules = ArenaRules::default();
        let (mut a, shooter, target) = two_players(rules.clone());
        a.step(DT);
        // Held for a second at 30 Hz, with the projectile's cooldown irrelevant.
        for t in 0..30 {
            a.apply_input(shooter, &beam(pos(&a, shooter), pos(&a, target), t + 1, 0));
            a.step(DT);
        }
        let shots = (100 - health(&a, target)) / rules.hitscan_damage;
        // One at once, then one per 0.3 s (9 or 10 ticks with float rounding): 3 or 4.
        assert!((3..=4).contains(&shots), "{shots} hits in a second");
    }

    #[test]
    fn a_hitscan_kill_respawns() {
        let rules = ArenaRules {
            hitscan_damage: 100,
            ..ArenaRules::default()
        };
        let (mut a, shooter, target) = two_players(rules);
        let npc = a.push(
            EntityState {
                kind: KIND_NPC,
                pos: Vec3::new(200.0, 230.0, 0.0),
                health: 100,
                ..Default::default()
            },
            Body::default(),
        );
        a.step(DT);
        let at = pos(&a, target);
        a.apply_input(shooter, &beam(pos(&a, shooter), at, 1, 0));
        a.step(DT);
        assert_eq!(health(&a, target), 100, "back at full health");
        assert!(pos(&a, target).distance(at) > 1.0, "somewhere else");
        // NPCs are bodies too (the beam reaches it before it has walked out of the way).
        for _ in 0..10 {
            a.step(DT);
        }
        let n = pos(&a, npc);
        a.apply_input(shooter, &beam(pos(&a, shooter), n, 12, 0));
        a.step(DT);
        assert!(pos(&a, npc).distance(n) > 1.0, "the NPC respawned");
    }

    /// A target runs north at full speed for `ticks` ticks; then the shooter fires at where
    /// it was at tick `aim_tick`, claiming to have seen it at `view_tick` with `interp_ms`.
    fn shoot_a_runner(rules: ArenaRules, ticks: u32, aim_tick: u32, view: (u32, u16)) -> u16 {
        let (mut a, shooter, target) = two_players(rules);
        a.apply_input(target, &frame(0, 127, 0));
        let mut seen = vec![Vec2::ZERO];
        for _ in 0..ticks {
            a.step(DT);
            seen.push(pos(&a, target));
        }
        let s = pos(&a, shooter);
        a.apply_input(shooter, &beam(s, seen[aim_tick as usize], view.0, view.1));
        a.step(DT);
        100 - health(&a, target)
    }

    #[test]
    fn hitscan_hits_where_the_shooter_saw_the_target() {
        let rules = ArenaRules::default();
        let damage = rules.hitscan_damage;
        // Seen at tick 17, drawn 100 ms (3 ticks) behind: the target as it was at tick 14,
        // six ticks (1.6 units, three body radii) behind where it is.
        assert_eq!(shoot_a_runner(rules.clone(), 20, 14, (17, 100)), damage);
        // Seen at tick 20 without delay: six ticks off, missed.
        assert_eq!(shoot_a_runner(rules.clone(), 20, 14, (20, 0)), 0);
        // Lag compensation off: the target is tested where it is, and missed.
        let off = ArenaRules {
            max_rewind_ms: 0,
            ..rules.clone()
        };
        assert_eq!(shoot_a_runner(off.clone(), 20, 14, (17, 100)), 0);
        // ... which is where a shot aimed at the present hits.
        assert_eq!(shoot_a_runner(off, 20, 20, (20, 0)), damage);
        // Not further back than the cap (7.5 ticks): tick 10 claimed, 12.5 tested.
        assert_eq!(shoot_a_runner(rules.clone(), 20, 10, (10, 0)), 0);
        assert_eq!(shoot_a_runner(rules.clone(), 20, 13, (10, 0)), damage);
        // A claim from the future is the present: tick 20.
        assert_eq!(shoot_a_runner(rules.clone(), 20, 20, (99, 0)), damage);
        assert_eq!(shoot_a_runner(rules, 20, 17, (99, 0)), 0);
    }

    #[test]
    fn npcs_wander_inside_the_world() {
        let mut a = Arena::new(World::arena(), ArenaRules::default(), 50, 7);
        let before: Vec<Vec3> = a.entities().iter().map(|r| r.state.pos).collect();
        for _ in 0..300 {
            a.step(1.0 / 30.0);
        }
        let b = a.bounds();
        let moved = a
            .entities()
            .iter()
            .zip(&before)
            .filter(|(r, p)| r.state.pos.distance(**p) > 1.0)
            .count();
        assert!(moved > 40);
        assert!(
            a.entities()
                .iter()
                .all(|r| { r.state.pos.cmpge(b.min).all() && r.state.pos.cmple(b.max).all() })
        );
    }
}
