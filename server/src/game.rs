//! Game rules behind a small trait, and the reference game, the arena.
//!
//! The simulation thread drives any [`Game`]: it hands over each client's input frames in
//! sequence order, steps the game once per tick and replicates [`Game::entities`]. Transports,
//! interest management and delta compression never look inside. To ship your own game,
//! implement [`Game`] and pass it to [`crate::Server`] in place of [`Arena`].

use glam::{Vec2, Vec3};
use tickwire_shared::message::BUTTON_FIRE;
use tickwire_shared::{ClientId, EntityId, EntityState, InputFrame, WorldBounds};

use crate::grid::Grid;
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
    /// Advances the world by `dt` seconds.
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
}

/// Most cells a side of the arena's hit-test grid.
const HIT_GRID_CELLS: f32 = 64.0;

/// The reference game: players run and shoot, NPCs wander, projectiles fly and hit.
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
        let v = Vec2::new(f32::from(frame.move_x), f32::from(frame.move_y)) / 127.0;
        // Normalise anything longer than a unit vector: a bigger vector buys no speed.
        let body = &mut self.bodies[i];
        body.intent = if v.length_squared() > 1.0 {
            v.normalize_or_zero()
        } else {
            v
        };
        body.fire |= frame.buttons & BUTTON_FIRE != 0;
        self.reps[i].state.yaw = f32::from(frame.aim_yaw) / 65536.0 * std::f32::consts::TAU;
    }

    /// Stops the player where it is and takes it out of play; unlike the default neutral
    /// frame, it keeps its aim, so a resumed player is as it was left.
    fn detach_player(&mut self, entity: EntityId) {
        let Some(i) = self.index(entity) else { return };
        let body = &mut self.bodies[i];
        body.intent = Vec2::ZERO;
        body.fire = false;
        body.detached = true;
    }

    fn attach_player(&mut self, entity: EntityId) {
        if let Some(i) = self.index(entity) {
            self.bodies[i].detached = false;
        }
    }

    fn step(&mut self, dt: f32) {
        let rules = self.rules.clone();
        self.spawned.clear();
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
        if in_flight {
            self.grid.rebuild(self.positions.iter().copied());
        }
        let reach = rules.body_radius + 0.2;
        for p in (0..self.reps.len()).filter(|_| in_flight) {
            if self.reps[p].state.kind != KIND_PROJECTILE || self.reps[p].state.health == 0 {
                continue;
            }
            self.hits.clear();
            self.grid
                .query(self.positions[p], reach, &self.positions, &mut self.hits);
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
