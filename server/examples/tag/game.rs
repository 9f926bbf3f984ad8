//! Tag, as a Tickwire game: one player is "it"; touching another passes it on, and the one
//! who passed it is safe from a tag-back for a moment. A player scores one point per whole
//! second it spends in a game (two or more players in play) without being it. NPC runners
//! play too, so a single browser player has someone to chase.
//!
//! On the wire every participant is one entity, with nothing beyond the fixed fields:
//!
//! | field  | tag's meaning |
//! |--------|---------------|
//! | kind   | [`KIND_PLAYER`] for a client's player, [`KIND_NPC`] for a runner |
//! | pos, vel, yaw | where it is, how it moves, where it faces (a player's aim) |
//! | health | the score: whole seconds not being it, saturating at 65,535 |
//! | flags  | [`FLAG_IT`], [`FLAG_SAFE`], and [`FLAG_SCORE`] on every entity |
//!
//! This file is the whole game; `main.rs` runs it, `server/tests/tag.rs` tests it.

use glam::{Vec2, Vec3};
use tickwire_server::game::{KIND_NPC, KIND_PLAYER};
use tickwire_server::rng::Rng;
use tickwire_server::world::World;
use tickwire_server::{Game, PlayerInfo, Replicated, RoomSpec, Server, ServerConfig};
use tickwire_shared::{EntityId, EntityState, InputFrame, WorldBounds};

/// Flag bit: this entity is it. The browser client draws bit 0x1 as a ring.
pub(crate) const FLAG_IT: u16 = 0x1;
/// Flag bit: this entity just passed it on and cannot be tagged back yet. The browser client
/// draws bit 0x2 faded.
pub(crate) const FLAG_SAFE: u16 = 0x2;
/// Flag bit: `health` is a score, not hit points. The browser client draws an entity with bit
/// 0x4 with its `health` as a number instead of a health bar.
pub(crate) const FLAG_SCORE: u16 = 0x4;

/// Tag's tuning. Speeds are units per second, times are seconds.
#[derive(Debug, Clone)]
pub(crate) struct TagRules {
    /// A player's top speed. 8, the arena's, because the browser client predicts your own
    /// movement with the arena's speed: another value would make it correct you every frame.
    pub(crate) player_speed: f32,
    /// A runner's speed when it flees or wanders: slower than a player, so you can catch one.
    pub(crate) npc_speed: f32,
    /// A runner's speed when it is it: still slower than a player, so you can get away.
    pub(crate) npc_chase_speed: f32,
    /// Centre-to-centre distance at which "it" touches someone: two 0.5 bodies and a reach,
    /// generous because each player sees the others about 100 ms in the past.
    pub(crate) reach: f32,
    /// How long the player who passed it on is safe from being tagged.
    pub(crate) no_tag_back: f32,
    /// A runner flees when it is this close to "it".
    pub(crate) flee_radius: f32,
    /// Body radius, against obstacles.
    pub(crate) body_radius: f32,
    /// NPC runners in the game from the start.
    pub(crate) runners: usize,
}

impl Default for TagRules {
    fn default() -> Self {
        Self {
            player_speed: 8.0,
            npc_speed: 6.0,
            npc_chase_speed: 7.0,
            reach: 1.5,
            no_tag_back: 2.0,
            flee_radius: 10.0,
            body_radius: 0.5,
            runners: 3,
        }
    }
}

/// Tag's court: an open square `2 * half` units a side with no obstacles (the browser client
/// knows only the arena's obstacles, so an open court draws and predicts exactly).
pub(crate) fn court(half: f32) -> World {
    World {
        name: "tag court".to_owned(),
        bounds: WorldBounds {
            min: Vec3::new(-half, -half, 0.0),
            max: Vec3::new(half, half, 0.0),
        },
        obstacles: Vec::new(),
    }
}

/// A server whose default room (the one a client without a seat joins: the browser page)
/// plays tag on `world` by `default_room`'s rules, with "tag" registered as a kind that
/// matchmaking makes rooms of (`POST /matchmake/create/tag`), each by `rooms`' rules and
/// seeded by the registry.
pub(crate) fn tag_server(
    cfg: ServerConfig,
    world: World,
    default_room: TagRules,
    rooms: TagRules,
) -> Server {
    let game = Tag::new(world.clone(), default_room, cfg.seed);
    let mut server = Server::with_game(cfg, game);
    server.register_game("tag", move |spec: &RoomSpec| {
        Box::new(Tag::new(world.clone(), rooms.clone(), spec.seed)) as Box<dyn Game>
    });
    server
}

/// What tag keeps per entity beside its replicated state.
#[derive(Debug, Clone, Copy, Default)]
struct Body {
    /// A runner, not a client's player.
    npc: bool,
    /// The newest move intent, length ≤ 1.
    intent: Vec2,
    /// The client dropped and may resume: out of play (it can be neither it nor tagged, and
    /// scores nothing) until it does.
    detached: bool,
    /// Seconds of no-tag-back left.
    safe: f32,
    /// Seconds in a game without being it; the score is its whole part.
    not_it: f64,
    /// Runners: seconds until a wandering runner picks a new heading.
    timer: f32,
}

impl Body {
    fn in_play(&self) -> bool {
        !self.detached
    }
}

/// The game of tag.
#[derive(Debug)]
pub(crate) struct Tag {
    world: World,
    rules: TagRules,
    rng: Rng,
    next_id: u32,
    /// Sorted by id: ids only grow, and removal keeps the order.
    reps: Vec<Replicated>,
    bodies: Vec<Body>,
    it: Option<EntityId>,
}

impl Tag {
    /// A game on `world` with `rules.runners` runners, reproducible from `seed`.
    pub(crate) fn new(world: World, rules: TagRules, seed: u64) -> Self {
        let mut tag = Self {
            world,
            rules,
            rng: Rng::new(seed),
            next_id: 0,
            reps: Vec::new(),
            bodies: Vec::new(),
            it: None,
        };
        for _ in 0..tag.rules.runners {
            let body = Body {
                npc: true,
                ..Body::default()
            };
            tag.push(KIND_NPC, body);
        }
        tag
    }

    fn push(&mut self, kind: u16, body: Body) -> EntityId {
        let id = EntityId(self.next_id);
        // Ids are never reused; a room that spawned 2^32 entities would need a restart.
        self.next_id = self.next_id.saturating_add(1);
        let state = EntityState {
            kind,
            pos: self.spawn_spot(),
            flags: FLAG_SCORE,
            ..Default::default()
        };
        self.reps.push(Replicated { id, state });
        self.bodies.push(body);
        id
    }

    fn index(&self, id: EntityId) -> Option<usize> {
        self.reps.binary_search_by_key(&id, |r| r.id).ok()
    }

    fn pos(&self, i: usize) -> Vec2 {
        self.reps[i].state.pos.truncate()
    }

    fn blocked(&self, p: Vec2) -> bool {
        let r = self.rules.body_radius;
        self.world.obstacles.iter().any(|o| o.hits_circle(p, r))
    }

    /// A random free spot, away from everyone else if a few tries find one (a new player
    /// should not appear in the arms of "it").
    fn spawn_spot(&mut self) -> Vec3 {
        let b = self.world.bounds;
        let clearance = 4.0 * self.rules.reach;
        let mut spot = b.min;
        for _ in 0..16 {
            let p = Vec2::new(
                self.rng.range(b.min.x, b.max.x),
                self.rng.range(b.min.y, b.max.y),
            );
            if self.blocked(p) {
                continue;
            }
            spot = p.extend(b.min.z);
            if (0..self.reps.len()).all(|i| self.pos(i).distance(p) > clearance) {
                break;
            }
        }
        spot
    }

    /// Moves by `delta`, axis by axis, stopping at the court's edges and at obstacles.
    fn slide(&self, pos: Vec2, delta: Vec2) -> Vec2 {
        let b = self.world.bounds;
        let mut p = pos;
        for axis in 0..2 {
            let mut next = p;
            next[axis] = (next[axis] + delta[axis]).clamp(b.min[axis], b.max[axis]);
            if !self.blocked(next) {
                p = next;
            }
        }
        p
    }

    /// The nearest entity `from` may tag: in play, not it, not safe.
    fn nearest_target(&self, from: usize) -> Option<(usize, f32)> {
        let p = self.pos(from);
        (0..self.reps.len())
            .filter(|&j| j != from && self.bodies[j].in_play() && self.bodies[j].safe <= 0.0)
            .map(|j| (j, self.pos(j).distance(p)))
            // Ties go to the lower id (the earlier index): `min_by` keeps the first minimum.
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// A runner's move intent for this tick.
    fn runner_intent(&mut self, i: usize, it: Option<usize>, dt: f32) -> Vec2 {
        let p = self.pos(i);
        if it == Some(i) {
            return match self.nearest_target(i) {
                Some((j, _)) => (self.pos(j) - p).normalize_or_zero(),
                None => Vec2::ZERO,
            };
        }
        if let Some(it) = it {
            let away = p - self.pos(it);
            if away.length() < self.rules.flee_radius {
                return self.along_walls(p, away.normalize_or(Vec2::X)).0;
            }
        }
        // Wander: a new heading every few seconds, or at once when an edge stops it.
        self.bodies[i].timer -= dt;
        let (heading, pressed) = self.along_walls(p, self.bodies[i].intent);
        if self.bodies[i].timer <= 0.0 || pressed || heading == Vec2::ZERO {
            self.bodies[i].timer = self.rng.range(1.0, 3.0);
            return Vec2::from_angle(self.rng.range(0.0, std::f32::consts::TAU));
        }
        heading
    }

    /// `dir` with what pushes into an edge of the court taken out, so a runner at an edge runs
    /// along it instead of standing pressed against it; and whether anything was taken out.
    fn along_walls(&self, p: Vec2, dir: Vec2) -> (Vec2, bool) {
        let b = self.world.bounds;
        let margin = self.rules.body_radius;
        let mut d = dir;
        let mut pressed = false;
        for axis in 0..2 {
            if (d[axis] < 0.0 && p[axis] <= b.min[axis] + margin)
                || (d[axis] > 0.0 && p[axis] >= b.max[axis] - margin)
            {
                d[axis] = 0.0;
                pressed = true;
            }
        }
        if pressed {
            d = d.normalize_or_zero();
        }
        (d, pressed)
    }

    /// Makes sure someone is it while two or more are in play, and no one otherwise.
    fn choose_it(&mut self) {
        let in_play = self.bodies.iter().filter(|b| b.in_play()).count();
        if in_play < 2 {
            self.it = None;
            return;
        }
        if self
            .it
            .and_then(|id| self.index(id))
            .is_some_and(|i| self.bodies[i].in_play())
        {
            return;
        }
        // A new it, at random among those in play: preferably not one who is safe.
        let fresh = self
            .bodies
            .iter()
            .filter(|b| b.in_play() && b.safe <= 0.0)
            .count();
        let pool = |b: &Body| b.in_play() && (fresh == 0 || b.safe <= 0.0);
        let n = if fresh == 0 { in_play } else { fresh };
        let pick = (self.rng.next_u64() % n as u64) as usize;
        if let Some(i) = (0..self.reps.len())
            .filter(|&i| pool(&self.bodies[i]))
            .nth(pick)
        {
            self.it = Some(self.reps[i].id);
        }
    }
}

impl Game for Tag {
    fn bounds(&self) -> WorldBounds {
        self.world.bounds
    }

    fn spawn_player(&mut self, _player: PlayerInfo<'_>) -> EntityId {
        self.push(KIND_PLAYER, Body::default())
    }

    fn despawn_player(&mut self, entity: EntityId) {
        if let Some(i) = self.index(entity) {
            self.reps.remove(i);
            self.bodies.remove(i);
        }
        // If it was it, the next step picks a new one.
    }

    fn apply_input(&mut self, entity: EntityId, frame: &InputFrame) {
        let Some(i) = self.index(entity) else { return };
        // The newest frame wins and a vector longer than 1 is cut to 1: more frames per tick
        // or a longer vector buy no speed. Buttons mean nothing in tag.
        self.bodies[i].intent = frame.move_intent();
        self.reps[i].state.yaw = frame.aim_radians();
    }

    /// Stops the player and takes it out of play: the room hides it from every view, so no one
    /// could see it to chase it, and if it was it, the next step passes it on.
    fn detach_player(&mut self, entity: EntityId) {
        if let Some(i) = self.index(entity) {
            self.bodies[i].intent = Vec2::ZERO;
            self.bodies[i].detached = true;
        }
    }

    fn attach_player(&mut self, entity: EntityId) {
        if let Some(i) = self.index(entity) {
            self.bodies[i].detached = false;
        }
    }

    fn step(&mut self, dt: f32) {
        // 1. Everyone moves: players by their input, runners by their own minds.
        let it = self.it.and_then(|id| self.index(id));
        for i in 0..self.reps.len() {
            let body = self.bodies[i];
            if !body.in_play() {
                self.reps[i].state.vel = Vec3::ZERO;
                continue;
            }
            let (intent, speed) = if body.npc {
                let intent = self.runner_intent(i, it, dt);
                self.bodies[i].intent = intent;
                let speed = if it == Some(i) {
                    self.rules.npc_chase_speed
                } else {
                    self.rules.npc_speed
                };
                (intent, speed)
            } else {
                (body.intent, self.rules.player_speed)
            };
            let vel = intent * speed;
            let pos = self.slide(self.pos(i), vel * dt);
            let s = &mut self.reps[i].state;
            s.pos = pos.extend(s.pos.z);
            s.vel = vel.extend(0.0);
            if body.npc && intent != Vec2::ZERO {
                s.yaw = intent.to_angle();
            }
        }

        // 2. Someone is it whenever there is a game (after a join, a leave or a drop).
        self.choose_it();

        // 3. This tick counts for everyone in the game but it; safe time runs out.
        let playing = self.it.is_some();
        let it = self.it.and_then(|id| self.index(id));
        for (i, body) in self.bodies.iter_mut().enumerate() {
            body.safe = (body.safe - dt).max(0.0);
            if playing && body.in_play() && it != Some(i) {
                body.not_it += f64::from(dt);
            }
        }

        // 4. It touches the nearest one it may tag: that one is it now, and the tagger is safe.
        if let Some(t) = it
            && let Some((j, d)) = self.nearest_target(t)
            && d <= self.rules.reach
        {
            self.bodies[t].safe = self.rules.no_tag_back;
            self.it = Some(self.reps[j].id);
        }

        // 5. What the wire carries: the flags and the score.
        for (r, body) in self.reps.iter_mut().zip(&self.bodies) {
            let mut flags = FLAG_SCORE;
            if Some(r.id) == self.it {
                flags |= FLAG_IT;
            }
            if body.safe > 0.0 {
                flags |= FLAG_SAFE;
            }
            r.state.flags = flags;
            r.state.health = body.not_it.min(f64::from(u16::MAX)) as u16;
        }
    }

    fn entities(&self) -> &[Replicated] {
        &self.reps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwire_shared::{ClientId, InputSeq};

    const DT: f32 = 1.0 / 30.0;

    /// A game on a 40 × 40 court with no runners.
    fn tag() -> Tag {
        let rules = TagRules {
            runners: 0,
            ..TagRules::default()
        };
        Tag::new(court(20.0), rules, 7)
    }

    fn join(t: &mut Tag, client: u32, at: Vec2) -> EntityId {
        let e = t.spawn_player(PlayerInfo::anonymous(ClientId(client)));
        place(t, e, at);
        e
    }

    fn place(t: &mut Tag, e: EntityId, at: Vec2) {
        let i = t.index(e).unwrap();
        t.reps[i].state.pos = at.extend(0.0);
    }

    fn state(t: &Tag, e: EntityId) -> EntityState {
        t.reps[t.index(e).unwrap()].state
    }

    fn is_it(t: &Tag, e: EntityId) -> bool {
        state(t, e).flags & FLAG_IT != 0
    }

    fn frame(x: i8, y: i8) -> InputFrame {
        InputFrame {
            seq: InputSeq(1),
            move_x: x,
            move_y: y,
            ..Default::default()
        }
    }

    /// `a` at the origin is it, `b` is `gap` units east of it.
    fn pair(gap: f32) -> (Tag, EntityId, EntityId) {
        let mut t = tag();
        let a = join(&mut t, 1, Vec2::ZERO);
        let b = join(&mut t, 2, Vec2::new(gap, 0.0));
        t.it = Some(a);
        (t, a, b)
    }

    #[test]
    fn a_touch_passes_it_on_and_the_tagger_is_safe() {
        let (mut t, a, b) = pair(1.4);
        t.step(DT);
        assert!(is_it(&t, b), "b was touched");
        assert!(!is_it(&t, a));
        assert_eq!(state(&t, a).flags, FLAG_SCORE | FLAG_SAFE);
        assert_eq!(state(&t, b).flags, FLAG_SCORE | FLAG_IT);
        assert_eq!(
            t.entities()
                .iter()
                .filter(|r| r.state.flags & FLAG_IT != 0)
                .count(),
            1
        );
    }

    #[test]
    fn out_of_reach_is_not_a_touch() {
        let (mut t, a, b) = pair(1.6);
        for _ in 0..30 {
            t.step(DT);
        }
        assert!(is_it(&t, a));
        assert!(!is_it(&t, b));
    }

    #[test]
    fn no_tag_back_until_the_cooldown_has_run() {
        let (mut t, a, b) = pair(1.0);
        t.step(DT);
        assert!(is_it(&t, b));
        // They stay touching: b may not tag a back for `no_tag_back` seconds.
        let ticks = (TagRules::default().no_tag_back / DT).round() as usize;
        for n in 1..ticks {
            t.step(DT);
            assert!(is_it(&t, b), "tagged back after {n} ticks");
            assert_ne!(state(&t, a).flags & FLAG_SAFE, 0);
        }
        // Then the tag-back comes at once (within a tick of rounding).
        for _ in 0..2 {
            t.step(DT);
        }
        assert!(is_it(&t, a), "tagged back once a was no longer safe");
        assert_ne!(state(&t, b).flags & FLAG_SAFE, 0);
    }

    #[test]
    fn it_tags_the_nearest_of_two_and_safe_ones_not_at_all() {
        let (mut t, a, b) = pair(1.2);
        let c = join(&mut t, 3, Vec2::new(-0.2, 0.0));
        t.step(DT);
        assert!(is_it(&t, c), "c was nearer");
        assert!(!is_it(&t, b));
        // c, now it, touches a (safe) and b (not): b is the one tagged.
        t.step(DT);
        assert!(is_it(&t, b), "a is safe, so c tagged b");
        assert!(!is_it(&t, a));
    }

    #[test]
    fn the_score_counts_seconds_in_a_game_not_being_it() {
        let mut t = tag();
        let a = join(&mut t, 1, Vec2::new(-15.0, 0.0));
        for _ in 0..90 {
            t.step(DT);
        }
        assert_eq!(
            state(&t, a).health,
            0,
            "alone there is no game and no score"
        );
        assert!(!is_it(&t, a), "alone no one is it");
        let b = join(&mut t, 2, Vec2::new(15.0, 0.0));
        for _ in 0..95 {
            t.step(DT);
        }
        let (it, runner) = if is_it(&t, a) { (a, b) } else { (b, a) };
        assert_eq!(state(&t, it).health, 0, "it scores nothing");
        assert_eq!(
            state(&t, runner).health,
            3,
            "95 ticks at 30 Hz are 3 whole seconds"
        );
        assert_eq!(state(&t, runner).flags & FLAG_SCORE, FLAG_SCORE);
        // The score saturates instead of wrapping.
        let i = t.index(runner).unwrap();
        t.bodies[i].not_it = 1e9;
        t.step(DT);
        assert_eq!(state(&t, runner).health, u16::MAX);
    }

    /// The one entity that is it.
    fn current_it(t: &Tag) -> EntityId {
        let its: Vec<EntityId> = t
            .entities()
            .iter()
            .filter(|r| r.state.flags & FLAG_IT != 0)
            .map(|r| r.id)
            .collect();
        assert_eq!(its.len(), 1, "exactly one it: {its:?}");
        its[0]
    }

    #[test]
    fn it_leaving_or_dropping_passes_it_to_someone_in_play() {
        let (mut t, a, _b) = pair(10.0);
        join(&mut t, 3, Vec2::new(-10.0, 0.0));
        join(&mut t, 4, Vec2::new(0.0, 10.0));
        t.step(DT);
        assert_eq!(current_it(&t), a);
        t.despawn_player(a);
        t.step(DT);
        let dropped = current_it(&t);
        t.detach_player(dropped);
        t.step(DT);
        let it = current_it(&t);
        assert_ne!(it, dropped, "a dropped player is not it");
        // A dropped player cannot be tagged, and scores nothing, even when it is touched.
        let score = state(&t, dropped).health;
        let p = state(&t, it).pos.truncate();
        place(&mut t, dropped, p + Vec2::new(0.5, 0.0));
        for _ in 0..60 {
            t.step(DT);
            assert_eq!(current_it(&t), it);
        }
        assert_eq!(state(&t, dropped).health, score);
        // Once back, it is in play again: touched, so it.
        t.attach_player(dropped);
        t.step(DT);
        assert_eq!(current_it(&t), dropped);
        // With one player left in play there is no game, and no one is it.
        let mut solo = tag();
        let s = join(&mut solo, 1, Vec2::ZERO);
        let o = join(&mut solo, 2, Vec2::new(10.0, 0.0));
        solo.step(DT);
        current_it(&solo);
        solo.despawn_player(o);
        solo.step(DT);
        assert!(!is_it(&solo, s));
    }

    #[test]
    fn more_frames_or_longer_vectors_buy_no_speed() {
        let mut t = tag();
        let e = join(&mut t, 1, Vec2::ZERO);
        for _ in 0..8 {
            t.apply_input(e, &frame(127, 127));
        }
        t.step(DT);
        let moved = state(&t, e).pos.length();
        let max = TagRules::default().player_speed * DT;
        assert!(moved <= max + 1e-4, "moved {moved}");
        assert!(moved >= max * 0.99, "moved {moved}");
        // The court's edge stops it.
        place(&mut t, e, Vec2::new(19.9, 0.0));
        t.apply_input(e, &frame(127, 0));
        for _ in 0..30 {
            t.step(DT);
        }
        assert_eq!(state(&t, e).pos.x, 20.0);
    }

    #[test]
    fn a_runner_that_is_it_catches_a_player_standing_still() {
        let rules = TagRules {
            runners: 1,
            ..TagRules::default()
        };
        let mut t = Tag::new(court(20.0), rules, 3);
        let p = join(&mut t, 1, Vec2::new(15.0, 15.0));
        let npc = t.reps[0].id;
        place(&mut t, npc, Vec2::new(-15.0, -15.0));
        t.it = Some(npc);
        // 42 units apart at 7 units/s: caught within 7 s.
        let mut caught = None;
        for n in 0..30 * 8 {
            t.step(DT);
            if is_it(&t, p) {
                caught = Some(n);
                break;
            }
        }
        let n = caught.expect("the runner caught the player");
        assert!(n > 30 * 5, "it ran at its speed, not faster ({n} ticks)");
        assert_eq!(state(&t, npc).kind, KIND_NPC);
        assert_eq!(state(&t, p).kind, KIND_PLAYER);
    }

    #[test]
    fn runners_flee_from_it_and_stay_on_the_court() {
        let rules = TagRules {
            runners: 8,
            ..TagRules::default()
        };
        let mut t = Tag::new(court(20.0), rules, 11);
        let it = join(&mut t, 1, Vec2::ZERO);
        t.it = Some(it);
        let npc = t.reps[0].id;
        place(&mut t, npc, Vec2::new(3.0, 0.0));
        t.step(DT);
        assert!(state(&t, npc).pos.x > 3.0, "it fled east, away from it");
        // Without the player a runner is it, and the runners play on their own.
        t.despawn_player(it);
        let b = t.bounds();
        let mut tags = 0;
        let mut holder = t.it;
        for _ in 0..30 * 60 {
            t.step(DT);
            current_it(&t);
            if t.it != holder {
                tags += 1;
                holder = t.it;
            }
            assert!(
                t.entities()
                    .iter()
                    .all(|r| { r.state.pos.cmpge(b.min).all() && r.state.pos.cmple(b.max).all() })
            );
        }
        assert!(tags > 0, "runners tag each other");
        assert!(t.entities().windows(2).all(|w| w[0].id < w[1].id));
    }
}
