//! Lag compensation: where entities were during the last few ticks, so that a game can test a
//! shot against the world as the shooter saw it (PROTOCOL.md 5.3) rather than as it is when the
//! shot reaches the server.
//!
//! A client draws other entities some time in the past: the newest snapshot it has applied
//! (`InputFrame::view_tick`) minus its interpolation delay (`InputFrame::interp_ms`). By the
//! time its shot is applied, the target has moved on. A [`History`] keeps each entity's
//! position for the last `max_rewind_ms` (as naia's `Historian`; the cap is Source's
//! `sv_maxunlag`) and answers "where was entity *e* at fractional tick *t*" and "what was near
//! this point at tick *t*", interpolating between the stored ticks as the client did.
//!
//! Call order, once per tick: the game records the tick's positions with [`History::record`]
//! (after the tick's movement and hits, so that each stored tick is what snapshots showed),
//! and during the next tick resolves its shots with [`History::moment`] and
//! [`History::query`] or [`History::position_at`]. Time is an argument everywhere; the
//! history reads no clock.
//!
//! Cost: recording copies the ids and positions, O(entities) per tick, into buffers that are
//! reused, so a steady state allocates nothing. The first query of a stored tick builds that
//! tick's grid (O(entities + cells), once), so a room where nobody shoots pays only the copy.
//! A query reads the grid around the point, and for each entity found looks up the next stored
//! tick (O(1) when the two ticks hold the same entities, else a binary search).
//! Memory is `capacity` copies of the recorded positions and their grids.

use glam::Vec2;
use tickwire_shared::{EntityId, Tick};

use crate::grid::Grid;

/// What a [`History`] keeps and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryConfig {
    /// How far back a shot may be tested, in milliseconds (the `--max-rewind-ms` cap). The
    /// history keeps `ceil(max_rewind_ms * tick_rate / 1000) + 1` ticks.
    pub max_rewind_ms: u32,
    /// Ticks per second of the room the history records (at least 1).
    pub tick_rate: u32,
    /// Lowest corner of the area recorded positions fall in (its grid; positions outside
    /// land in the edge cells and are still found).
    pub min: Vec2,
    /// Highest corner of that area.
    pub max: Vec2,
    /// Grid cell size, in world units. About the radius of a typical query is right; the
    /// grid is capped at [`MAX_CELLS_PER_SIDE`] a side so that building it stays cheap.
    pub cell: f32,
    /// An entity that moved farther than this between two stored ticks teleported (a
    /// respawn): between those ticks it is where it was at the earlier one, never on the line
    /// between. Set it above the farthest any entity legitimately moves in one tick. Queries
    /// also look this much farther out, so do not make it huge.
    pub teleport_distance: f32,
}

/// Most grid cells a side of each stored tick's grid: building one costs O(cells).
pub const MAX_CELLS_PER_SIDE: f32 = 64.0;

/// One stored tick: the recorded entities sorted by id, their positions, and a grid of them.
#[derive(Debug, Clone)]
struct Frame {
    tick: Tick,
    ids: Vec<EntityId>,
    pos: Vec<Vec2>,
    grid: Grid,
    /// Whether `grid` holds `pos` (built by the first query of this tick).
    grid_built: bool,
}

impl Frame {
    /// Where `id` is in this tick; `hint` is where it probably is (its index in a tick that
    /// held the same entities).
    fn find(&self, id: EntityId, hint: usize) -> Option<Vec2> {
        if self.ids.get(hint) == Some(&id) {
            return self.pos.get(hint).copied();
        }
        self.ids
            .binary_search(&id)
            .ok()
            .and_then(|i| self.pos.get(i).copied())
    }
}

/// Recent positions of a room's entities, for lag compensation (see the module docs).
#[derive(Debug, Clone)]
pub struct History {
    cfg: HistoryConfig,
    /// The cap in ticks (fractional: 250 ms at 30 Hz is 7.5 ticks).
    cap_ticks: f64,
    /// A ring: tick `t` is stored in slot `t % frames.len()`.
    frames: Vec<Frame>,
    /// The oldest and newest tick stored since the last reset (every tick between is).
    span: Option<(Tick, Tick)>,
    /// Recording an unsorted iterator: pairs sorted here, reused.
    scratch: Vec<(EntityId, Vec2)>,
    /// A query's candidates from the grid, reused.
    found: Vec<u32>,
}

impl History {
    /// An empty history. A tick rate of 0 counts as 1.
    pub fn new(cfg: HistoryConfig) -> Self {
        let rate = cfg.tick_rate.max(1);
        let cap_ticks = f64::from(cfg.max_rewind_ms) * f64::from(rate) / 1000.0;
        // At most 1,000 ms at 240 Hz in the server's flags; the cast saturates for others.
        let capacity = (cap_ticks.ceil() as usize).saturating_add(1);
        let extent = (cfg.max - cfg.min).max_element().max(1e-3);
        let cell = cfg.cell.max(extent / MAX_CELLS_PER_SIDE);
        let frame = Frame {
            tick: Tick(0),
            ids: Vec::new(),
            pos: Vec::new(),
            grid: Grid::new(cfg.min, cfg.max, cell),
            grid_built: false,
        };
        Self {
            cfg: HistoryConfig {
                tick_rate: rate,
                ..cfg
            },
            cap_ticks,
            frames: vec![frame; capacity],
            span: None,
            scratch: Vec::new(),
            found: Vec::new(),
        }
    }

    /// What it was made with.
    pub fn config(&self) -> &HistoryConfig {
        &self.cfg
    }

    /// How many ticks it stores: `ceil(max_rewind_ms * tick_rate / 1000) + 1`.
    pub fn capacity(&self) -> usize {
        self.frames.len()
    }

    /// The cap, in (fractional) ticks.
    pub fn max_rewind_ticks(&self) -> f64 {
        self.cap_ticks
    }

    /// The newest tick recorded, the present that rewinds count back from; `None` before the
    /// first [`History::record`].
    pub fn now(&self) -> Option<Tick> {
        self.span.map(|(_, newest)| newest)
    }

    /// Forgets every stored tick (the next [`History::record`] starts afresh).
    pub fn clear(&mut self) {
        self.span = None;
    }

    /// Stores where each entity is at `tick`. `entities` should come sorted by id (as
    /// [`crate::Game::entities`] is); otherwise they are sorted here. Record only what a
    /// shot may hit: an entity not recorded at a tick is not there at that tick.
    ///
    /// Ticks are expected one after the other. A tick at or before the newest one, or one
    /// that skips ticks, first forgets what is stored (a rewind never spans a gap).
    pub fn record(&mut self, tick: Tick, entities: impl IntoIterator<Item = (EntityId, Vec2)>) {
        let len = self.frames.len();
        let span = match self.span {
            Some((oldest, newest)) if newest.next() == Some(tick) => {
                // The ring holds `len` ticks: the oldest falls out when it is full.
                let oldest = if tick.since(oldest).is_some_and(|d| d as usize >= len) {
                    Tick(tick.0 - (len as u32 - 1))
                } else {
                    oldest
                };
                (oldest, tick)
            }
            _ => (tick, tick),
        };
        let frame = &mut self.frames[tick.0 as usize % len];
        frame.tick = tick;
        frame.ids.clear();
        frame.pos.clear();
        let mut sorted = true;
        for (id, p) in entities {
            if frame.ids.last().is_some_and(|&last| last >= id) {
                sorted = false;
            }
            frame.ids.push(id);
            frame.pos.push(p);
        }
        if !sorted {
            self.scratch.clear();
            self.scratch
                .extend(frame.ids.iter().copied().zip(frame.pos.iter().copied()));
            self.scratch.sort_by_key(|&(id, _)| id);
            // A repeated id keeps its first position (a lookup finds one of them anyway).
            self.scratch.dedup_by_key(|&mut (id, _)| id);
            frame.ids.clear();
            frame.pos.clear();
            frame.ids.extend(self.scratch.iter().map(|&(id, _)| id));
            frame.pos.extend(self.scratch.iter().map(|&(_, p)| p));
        }
        frame.grid_built = false;
        self.span = Some(span);
    }

    fn frame(&self, tick: Tick) -> Option<&Frame> {
        let (oldest, newest) = self.span?;
        if tick < oldest || tick > newest {
            return None;
        }
        let f = &self.frames[tick.0 as usize % self.frames.len()];
        (f.tick == tick).then_some(f)
    }

    /// `t` moved into what may be rewound to: `[now - cap, now]`, and not before the oldest
    /// stored tick. `None` when nothing is stored. A NaN counts as the present.
    pub fn clamp(&self, t: f64) -> Option<f64> {
        let (oldest, newest) = self.span?;
        let now = f64::from(newest.0);
        let lowest = (now - self.cap_ticks).max(f64::from(oldest.0));
        Some(if t.is_nan() {
            now
        } else {
            t.clamp(lowest, now)
        })
    }

    /// The moment a player saw, as an input frame states it (PROTOCOL.md 5.3): `view_tick -
    /// interp_ms * tick_rate / 1000` ticks, clamped by [`History::clamp`]. A `view_tick` of 0
    /// (the client had seen nothing) or one after the newest recorded tick counts as the
    /// present. `None` when nothing is stored.
    pub fn moment(&self, view_tick: Tick, interp_ms: u16) -> Option<f64> {
        let now = self.now()?;
        let view = if view_tick.0 == 0 || view_tick > now {
            now
        } else {
            view_tick
        };
        let back = f64::from(interp_ms) * f64::from(self.cfg.tick_rate) / 1000.0;
        self.clamp(f64::from(view.0) - back)
    }

    /// The stored tick at or before `t` (clamped), and how far `t` is past it (0 to 1).
    fn bracket(&self, t: f64) -> Option<(&Frame, Option<&Frame>, f32)> {
        let t = self.clamp(t)?;
        // `t` is within stored ticks (u32), so the floor fits.
        let a = t.floor();
        let frac = (t - a) as f32;
        let fa = self.frame(Tick(a as u32))?;
        let fb = if frac > 0.0 {
            self.frame(Tick((a as u32).saturating_add(1)))
        } else {
            None
        };
        Some((fa, fb, frac))
    }

    /// Where `entity` was at `pa` in one tick and `b` the next, `frac` of the way between.
    fn between(&self, pa: Vec2, b: Option<Vec2>, frac: f32) -> Vec2 {
        match b {
            Some(pb) if pa.distance_squared(pb) <= self.cfg.teleport_distance.powi(2) => {
                pa.lerp(pb, frac)
            }
            // Teleported, or gone by the next tick: where it was.
            _ => pa,
        }
    }

    /// Where `entity` was at fractional tick `t` (clamped by [`History::clamp`]),
    /// interpolated between the two stored ticks around it. `None` if it was not recorded at
    /// the stored tick at or before `t` (it did not exist yet, or is not something a shot
    /// may hit), or nothing is stored.
    pub fn position_at(&self, entity: EntityId, t: f64) -> Option<Vec2> {
        let (fa, fb, frac) = self.bracket(t)?;
        let pa = fa.find(entity, 0)?;
        Some(self.between(pa, fb.and_then(|f| f.find(entity, 0)), frac))
    }

    /// Appends to `out` every entity within `radius` of `center` at fractional tick `t`
    /// (clamped by [`History::clamp`]), with where it was then, in no particular order.
    /// Appends nothing when nothing is stored. Takes `&mut self` only for a reused buffer.
    pub fn query(&mut self, t: f64, center: Vec2, radius: f32, out: &mut Vec<(EntityId, Vec2)>) {
        let mut found = std::mem::take(&mut self.found);
        found.clear();
        // The earlier of the two ticks around `t` is the one searched: build its grid.
        if let Some(slot) = self
            .bracket(t)
            .map(|(fa, _, _)| fa.tick.0 as usize % self.frames.len())
            && let Some(f) = self.frames.get_mut(slot)
            && !f.grid_built
        {
            f.grid.rebuild(&f.pos);
            f.grid_built = true;
        }
        if let Some((fa, fb, frac)) = self.bracket(t) {
            // An entity that did not teleport is within teleport_distance of where it was at
            // the earlier tick, and one that did is there: a search that much wider finds all.
            let wide = radius + self.cfg.teleport_distance.max(0.0);
            fa.grid.query(center, wide, &mut found);
            let r2 = radius * radius;
            for &i in &found {
                let i = i as usize;
                let (Some(&id), Some(&pa)) = (fa.ids.get(i), fa.pos.get(i)) else {
                    continue;
                };
                let p = self.between(pa, fb.and_then(|f| f.find(id, i)), frac);
                if p.distance_squared(center) <= r2 {
                    out.push((id, p));
                }
            }
        }
        self.found = found;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(max_rewind_ms: u32, tick_rate: u32) -> History {
        History::new(HistoryConfig {
            max_rewind_ms,
            tick_rate,
            min: Vec2::splat(-100.0),
            max: Vec2::splat(100.0),
            cell: 8.0,
            teleport_distance: 5.0,
        })
    }

    /// Entity 1 walks +x one unit per tick from x = tick; entity 2 stands at (0, 50).
    fn walk(h: &mut History, ticks: std::ops::RangeInclusive<u32>) {
        for t in ticks {
            h.record(
                Tick(t),
                [
                    (EntityId(1), Vec2::new(t as f32, 0.0)),
                    (EntityId(2), Vec2::new(0.0, 50.0)),
                ],
            );
        }
    }

    #[test]
    fn capacity_covers_the_cap() {
        assert_eq!(history(250, 30).capacity(), 9); // 7.5 ticks back: ticks now-8 ..= now
        assert_eq!(history(250, 30).max_rewind_ticks(), 7.5);
        assert_eq!(history(100, 10).capacity(), 2);
        assert_eq!(history(0, 30).capacity(), 1);
        assert_eq!(history(1000, 240).capacity(), 241);
    }

    #[test]
    fn positions_interpolate_between_ticks() {
        let mut h = history(250, 30);
        assert_eq!(h.position_at(EntityId(1), 1.0), None, "nothing stored");
        walk(&mut h, 1..=20);
        assert_eq!(h.now(), Some(Tick(20)));
        assert_eq!(h.position_at(EntityId(1), 17.0), Some(Vec2::new(17.0, 0.0)));
        assert_eq!(
            h.position_at(EntityId(1), 17.25),
            Some(Vec2::new(17.25, 0.0))
        );
        assert_eq!(h.position_at(EntityId(2), 13.5), Some(Vec2::new(0.0, 50.0)));
        assert_eq!(h.position_at(EntityId(3), 17.0), None, "never recorded");
    }

    #[test]
    fn rewinds_are_clamped_to_the_cap_and_the_present() {
        let mut h = history(250, 30);
        walk(&mut h, 1..=20);
        // 7.5 ticks is the most: 20 - 7.5.
        assert_eq!(h.position_at(EntityId(1), 3.0), Some(Vec2::new(12.5, 0.0)));
        assert_eq!(h.position_at(EntityId(1), 99.0), Some(Vec2::new(20.0, 0.0)));
        assert_eq!(
            h.position_at(EntityId(1), f64::NAN),
            Some(Vec2::new(20.0, 0.0))
        );
        // A young history rewinds no further than its first tick.
        let mut young = history(250, 30);
        walk(&mut young, 1..=3);
        assert_eq!(young.clamp(-5.0), Some(1.0));
        // Off: always the present.
        let mut off = history(0, 30);
        walk(&mut off, 1..=20);
        assert_eq!(
            off.position_at(EntityId(1), 15.0),
            Some(Vec2::new(20.0, 0.0))
        );
    }

    #[test]
    fn the_moment_follows_the_protocol() {
        let mut h = history(250, 30);
        assert_eq!(h.moment(Tick(5), 0), None);
        walk(&mut h, 1..=20);
        // 100 ms at 30 Hz is 3 ticks.
        assert_eq!(h.moment(Tick(18), 100), Some(15.0));
        assert_eq!(h.moment(Tick(20), 50), Some(18.5));
        // Further back than the cap: the cap.
        assert_eq!(h.moment(Tick(10), 100), Some(12.5));
        assert_eq!(h.moment(Tick(20), u16::MAX), Some(12.5));
        // Nothing seen yet, or a future tick: the present, less the interpolation delay.
        assert_eq!(h.moment(Tick(0), 0), Some(20.0));
        assert_eq!(h.moment(Tick(500), 0), Some(20.0));
        assert_eq!(h.moment(Tick(500), 100), Some(17.0));
    }

    #[test]
    fn a_teleport_is_not_interpolated() {
        let mut h = history(250, 30);
        h.record(Tick(1), [(EntityId(1), Vec2::new(0.0, 0.0))]);
        h.record(Tick(2), [(EntityId(1), Vec2::new(90.0, 0.0))]);
        assert_eq!(h.position_at(EntityId(1), 1.5), Some(Vec2::ZERO));
        assert_eq!(h.position_at(EntityId(1), 2.0), Some(Vec2::new(90.0, 0.0)));
        let mut out = Vec::new();
        h.query(1.5, Vec2::new(45.0, 0.0), 10.0, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn gaps_and_going_back_start_afresh() {
        let mut h = history(250, 30);
        walk(&mut h, 1..=10);
        h.record(Tick(12), [(EntityId(1), Vec2::ZERO)]);
        assert_eq!(
            h.clamp(0.0),
            Some(12.0),
            "tick 11 is missing: nothing before 12"
        );
        h.record(Tick(5), [(EntityId(1), Vec2::ONE)]);
        assert_eq!(h.now(), Some(Tick(5)));
        assert_eq!(h.position_at(EntityId(1), 5.0), Some(Vec2::ONE));
        h.clear();
        assert_eq!(h.now(), None);
    }

    #[test]
    fn unsorted_input_is_sorted() {
        let mut h = history(250, 30);
        h.record(
            Tick(1),
            [
                (EntityId(9), Vec2::new(9.0, 0.0)),
                (EntityId(2), Vec2::new(2.0, 0.0)),
                (EntityId(5), Vec2::new(5.0, 0.0)),
            ],
        );
        for id in [2, 5, 9] {
            assert_eq!(
                h.position_at(EntityId(id), 1.0),
                Some(Vec2::new(id as f32, 0.0))
            );
        }
    }

    #[test]
    fn query_matches_brute_force() {
        let mut h = history(250, 30);
        // 400 entities on a lattice, each drifting by its own small velocity; one respawns.
        let pos = |id: u32, t: u32| {
            let base = Vec2::new((id % 20) as f32 * 9.0 - 90.0, (id / 20) as f32 * 9.0 - 90.0);
            let v = Vec2::new((id % 7) as f32 - 3.0, (id % 5) as f32 - 2.0) * 0.3;
            if id == 7 && t >= 18 {
                Vec2::new(60.0, 60.0)
            } else {
                base + v * t as f32
            }
        };
        // Entity 3 is gone from tick 19: the ticks around 18.5 hold different entities.
        for t in 1..=20 {
            let alive = (0..400).filter(|&id| id != 3 || t < 19);
            h.record(Tick(t), alive.map(|id| (EntityId(id), pos(id, t))));
        }
        let mut out = Vec::new();
        for (t, center, r) in [
            (15.4, Vec2::new(3.0, -7.0), 12.0),
            (18.5, Vec2::new(60.0, 60.0), 3.0),
            (18.5, Vec2::new(-55.0, -80.0), 20.0), // entity 3 among them
            (20.0, Vec2::new(-80.0, 80.0), 30.0),
            (2.0, Vec2::ZERO, 20.0),
        ] {
            out.clear();
            h.query(t, center, r, &mut out);
            out.sort_by_key(|&(id, _)| id);
            let want: Vec<(EntityId, Vec2)> = (0..400)
                .filter_map(|id| {
                    let p = h.position_at(EntityId(id), t)?;
                    (p.distance_squared(center) <= r * r).then_some((EntityId(id), p))
                })
                .collect();
            assert!(!want.is_empty());
            assert_eq!(out, want, "t {t} at {center}");
        }
        // Entity 7 respawned at tick 18: at 17.5 it is still where it walked, not half-way.
        assert_eq!(h.position_at(EntityId(7), 17.5), Some(pos(7, 17)));
        out.clear();
        h.query(17.5, Vec2::new(60.0, 60.0), 3.0, &mut out);
        assert!(out.iter().all(|&(id, _)| id != EntityId(7)), "{out:?}");
    }

    #[test]
    fn steady_state_reuses_its_buffers() {
        let mut h = history(250, 30);
        let record = |h: &mut History, t: u32| {
            h.record(
                Tick(t),
                (0..500).map(|id| (EntityId(id), Vec2::new(id as f32 % 100.0, t as f32 % 50.0))),
            );
        };
        for t in 1..=20 {
            record(&mut h, t);
        }
        let buffers = |h: &History| -> Vec<(*const EntityId, *const Vec2)> {
            h.frames
                .iter()
                .map(|f| (f.ids.as_ptr(), f.pos.as_ptr()))
                .collect()
        };
        let mut out = Vec::new();
        let before = buffers(&h);
        for t in 21..=100 {
            record(&mut h, t);
            out.clear();
            h.query(f64::from(t) - 3.5, Vec2::new(50.0, 20.0), 30.0, &mut out);
            assert!(!out.is_empty());
        }
        assert_eq!(buffers(&h), before, "no frame buffer was reallocated");
    }
}
