//! Replication for one room: encode once, send to many.
//!
//! Per snapshot tick: quantize and hash every entity once into the room's
//! [`WorldHistory`]; find each client's view (a grid query, or, when the query's cells lie
//! wholly inside the view radius, a [`CellRect`] that every client covering the same cells
//! shares); encode each entity's change against each baseline tick in use, and each entity's
//! full state, once ([`DeltaCache`], [`FullCache`]); write one body per distinct (baseline
//! tick, baseline set, current set), and for each client only its header. The body goes to the
//! connection as a shared [`Bytes`]; the connection copies it once, into the frame the socket
//! write needs.
//!
//! Work is spread with rayon only when at least [`PARALLEL_MIN_CLIENTS`] clients had views of
//! their own last tick: a shared view costs a client well under a microsecond, and three
//! fork-joins per tick cost more than they save until there is about a millisecond of
//! per-client work (tick bench, 2 cores: 1,000 own views 1.38 ms on rayon against 2.05 ms on
//! one thread, 5,000: 17.5 against 30.4 ms; but 200 own views 0.37 against 0.21 ms, and the
//! 1,000-client crowd 0.55 against 0.37 ms). In the server, "rayon's pool" is the room
//! thread's own, which the room thread itself works in (`crate::driver`).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use glam::Vec2;
use rayon::prelude::*;
use tickwire_shared::baseline::AckOutcome;
use tickwire_shared::bits::BitWriter;
use tickwire_shared::budget::{BudgetEncoder, BudgetParams, BudgetRing, MAX_SOURCE_AGE, Weights};
use tickwire_shared::codec::{MAX_SNAPSHOT_HEADER_BYTES, encode_snapshot_header};
use tickwire_shared::replication::{
    ClientRing, DeltaCache, FullCache, IdSet, SharedEncoder, ViewIds, WorldFrame, WorldHistory,
};
use tickwire_shared::{EntityId, InputSeq, Quantizer, Tick};

use crate::game::Replicated;
use crate::grid::{CellRect, Grid};
use crate::metrics::Metrics;
use crate::room::Outbound;

/// Fewest clients with views of their own (last tick) for which the per-client passes run
/// on rayon's pool.
pub const PARALLEL_MIN_CLIENTS: usize = 512;
/// Fewest clients for which budgeted snapshots are encoded on rayon's pool.
pub const BUDGET_PARALLEL_MIN_CLIENTS: usize = 64;
/// Clients per rayon task: enough work per task that stealing pays for itself.
const CLIENTS_PER_TASK: usize = 64;

/// One snapshot as the connection sends it: this client's header, then a body that clients
/// with the same baseline and view share.
#[derive(Debug, Clone)]
pub struct SnapshotFrame {
    tick: Tick,
    header: [u8; MAX_SNAPSHOT_HEADER_BYTES],
    header_len: u8,
    body: Bytes,
}

impl SnapshotFrame {
    /// The tick it shows.
    pub fn tick(&self) -> Tick {
        self.tick
    }

    fn new(tick: Tick, header: &[u8], body: Bytes) -> SnapshotFrame {
        let mut snap = SnapshotFrame {
            tick,
            header: [0; MAX_SNAPSHOT_HEADER_BYTES],
            header_len: header.len() as u8,
            body,
        };
        snap.header[..header.len()].copy_from_slice(header);
        snap
    }

    /// The envelope up to the body.
    pub fn header(&self) -> &[u8] {
        &self.header[..usize::from(self.header_len)]
    }

    /// The body, shared.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Bytes on the wire.
    pub fn len(&self) -> usize {
        usize::from(self.header_len) + self.body.len()
    }

    /// Whether the frame is empty (never, for a real snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the whole envelope to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.len());
        out.extend_from_slice(self.header());
        out.extend_from_slice(&self.body);
    }

    /// The whole envelope in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

/// Where a client's current view lives this tick, and where its body comes from.
#[derive(Debug, Clone, Copy)]
enum Cur {
    /// Its query's cells lie wholly inside the radius: it will share that rectangle's view
    /// (until [`Tables::share_views`] turns this into `Shared`).
    Covered(CellRect),
    /// Its own set, indices in [`Viewer::near`]; encoded against the delta cache in slot
    /// `delta` of `Tables::deltas` (none: a full snapshot).
    Own {
        /// The delta cache slot of its baseline.
        delta: Option<u32>,
    },
    /// Shared view `view` of `Tables::shared`; the body of group `group` of
    /// `Tables::groups`.
    Shared {
        /// The shared view.
        view: u32,
        /// The group whose body it gets.
        group: u32,
    },
}

/// A client's replication state (the simulation owns it beside membership).
#[derive(Debug)]
pub struct Viewer {
    /// The player entity the view is centred on.
    pub entity: EntityId,
    /// Where snapshots go.
    pub out: std::sync::Arc<Outbound>,
    /// The newest input applied, echoed in each snapshot.
    pub last_input: InputSeq,
    /// Sent ticks with their view sets, and the acknowledged baseline.
    pub ring: ClientRing,
    near: Vec<u32>,
    cur: Cur,
    cur_ids: Option<ViewIds>,
    checksum: u32,
    header: Vec<u8>,
    /// With a bandwidth budget: what each sent snapshot left the client holding (the
    /// `ring` above is then unused).
    budget: Option<Box<BudgetRing>>,
    /// This tick's budgeted snapshot is skipped: the socket has not taken the last one.
    deferred: bool,
    /// Its last snapshot went straight to its socket ([`crate::wire`]): sending to it is a
    /// system call, not a slot update.
    direct: bool,
}

thread_local! {
    /// Scratch for encoding a body of one's own, one per thread (simulation and rayon
    /// workers) rather than one per client: it grows to the largest body, and 2,000 clients'
    /// copies were several MB.
    static SCRATCH: std::cell::RefCell<(SharedEncoder, BitWriter)> =
        std::cell::RefCell::new((SharedEncoder::new(), BitWriter::new()));
}

impl Viewer {
    /// A new client's state, remembering `ring` sent snapshots.
    pub fn new(entity: EntityId, out: std::sync::Arc<Outbound>, ring: usize) -> Self {
        Self {
            entity,
            out,
            last_input: InputSeq(0),
            ring: ClientRing::new(ring),
            near: Vec::new(),
            cur: Cur::Own { delta: None },
            cur_ids: None,
            checksum: 0,
            header: Vec::with_capacity(MAX_SNAPSHOT_HEADER_BYTES),
            budget: None,
            deferred: false,
            direct: false,
        }
    }

    /// The client holds the snapshot of `tick` (a valid-looking ack; see
    /// [`ClientRing::on_ack`]).
    pub fn on_ack(&mut self, tick: Tick) -> AckOutcome {
        match self.budget.as_mut() {
            Some(b) => b.on_ack(tick),
            None => self.ring.on_ack(tick),
        }
    }
}

impl AsMut<Viewer> for Viewer {
    fn as_mut(&mut self) -> &mut Viewer {
        self
    }
}

/// A view that several clients share this tick.
#[derive(Debug, Default)]
struct SharedView {
    rect: CellRect,
    indices: Vec<u32>,
    ids: Option<ViewIds>,
    checksum: u32,
}

/// Clients with one baseline tick, baseline set and shared current set: one body.
#[derive(Debug, Default)]
struct Group {
    base: Option<(Tick, ViewIds)>,
    view: u32,
    delta: u32,
    enc: SharedEncoder,
    writer: BitWriter,
    body: Bytes,
}

/// A room's replication state and per-tick scratch; every buffer is reused across ticks.
#[derive(Debug)]
pub struct Replicator {
    quantizer: Quantizer,
    history: WorldHistory,
    grid: Grid,
    positions: Vec<Vec2>,
    parallel_min: usize,
    /// Clients with views of their own last tick (the per-client work to spread).
    own_views: usize,
    budget: Option<Budget>,
    t: Tables,
}

/// A room's bandwidth budget (`--max-snapshot-bytes`).
#[derive(Debug)]
struct Budget {
    max_bytes: usize,
    /// Priority multiplier by entity kind.
    kinds: Vec<u8>,
    /// How far a delivered snapshot may lead the acknowledgement and still be a baseline.
    lead: u32,
    /// Ticks between snapshots: source ages count snapshots.
    every: u32,
    /// Delta caches of this tick by source age (`u8::MAX`: none): slots of `Tables::deltas`.
    slot_of_age: [u8; 64],
}

/// Nearness for priorities: within this many world units an entity weighs 8, within 3 ×
/// 4, within 7 × 2, else 1.
const NEAR_UNITS: u32 = 32;
/// An entry unrefreshed for this many snapshots goes before all but removals: while the budget
/// holds every entry once in this many snapshots, none waits longer (PROTOCOL.md 8). Well
/// inside the history of `MAX_SOURCE_AGE + 1` frames a budgeted room keeps.
const FORCE_AGE: u32 = 8;

/// This tick's caches, shared views and groups.
#[derive(Debug, Default)]
struct Tables {
    full: FullCache,
    deltas: Vec<DeltaCache>,
    /// Baseline ticks with a cache this tick, by slot in `deltas`.
    delta_ticks: Vec<Tick>,
    shared: Vec<SharedView>,
    shared_used: usize,
    /// Last tick's shared sets by rectangle, to reuse when unchanged (scratch).
    prev_ids: HashMap<CellRect, ViewIds>,
    rect_slot: HashMap<CellRect, u32>,
    scratch_set: IdSet,
    groups: Vec<Group>,
    groups_used: usize,
    group_of: HashMap<(u32, usize, u32), u32>,
}

impl Replicator {
    /// A replicator for a world of `bounds`' quantizer, with a grid of `view_radius` cells and
    /// a history of `ring` snapshots (the clients' ring).
    pub fn new(quantizer: Quantizer, view_radius: f32, ring: usize) -> Self {
        let b = quantizer.bounds();
        Self {
            quantizer,
            // The current frame, plus one for each snapshot a client's ring can name.
            history: WorldHistory::new(ring.max(1) + 1),
            grid: Grid::new(b.min.truncate(), b.max.truncate(), view_radius),
            positions: Vec::new(),
            parallel_min: PARALLEL_MIN_CLIENTS,
            own_views: 0,
            budget: None,
            t: Tables::default(),
        }
    }

    /// Caps every client's snapshot envelope at `max_bytes` (see
    /// [`tickwire_shared::budget`]), weighing entity kinds by `kinds` (index = kind).
    pub fn set_budget(&mut self, max_bytes: usize, kinds: Vec<u8>, snapshot_every: u32) {
        self.budget = Some(Budget {
            max_bytes,
            kinds,
            // About half a second of snapshots (16 at 30 a second).
            lead: 16 * snapshot_every.max(1),
            every: snapshot_every.max(1),
            slot_of_age: [u8::MAX; 64],
        });
        // A budgeted entry may be held as of any of the last MAX_SOURCE_AGE snapshots (it is
        // forced out at FORCE_AGE, later if this client's snapshots were skipped meanwhile):
        // its frame must still be there to delta against, or it is removed and sent again in
        // full, the dearest way, just when the room is short of time.
        self.history.ensure_capacity(MAX_SOURCE_AGE as usize + 1);
    }

    /// A new client's replication state, remembering `ring` sent snapshots.
    pub fn viewer(&self, entity: EntityId, out: std::sync::Arc<Outbound>, ring: usize) -> Viewer {
        let mut v = Viewer::new(entity, out, ring);
        if let Some(b) = &self.budget {
            let mut r = BudgetRing::new(ring);
            r.set_delivery_lead(b.lead);
            r.set_snapshot_every(b.every);
            v.budget = Some(Box::new(r));
        }
        v
    }

    /// Runs the per-client passes on rayon's pool from `clients` clients with views of their
    /// own on (default [`PARALLEL_MIN_CLIENTS`]); 0 always, `usize::MAX` never. For benches
    /// that weigh one against the other.
    pub fn set_parallel_min_clients(&mut self, clients: usize) {
        self.parallel_min = clients;
    }

    /// The grid as of the last snapshot tick.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// Replicates `entities` (sorted by id) as the snapshot of `tick` to every viewer within
    /// `radius` of its entity. Returns the bytes produced.
    pub fn replicate<C: AsMut<Viewer> + Send>(
        &mut self,
        tick: Tick,
        entities: &[Replicated],
        radius: f32,
        viewers: &mut [C],
        metrics: &Metrics,
    ) -> u64 {
        self.replicate_hiding(tick, entities, &[], radius, viewers, metrics)
    }

    /// As [`Replicator::replicate`], leaving out the entities in `hidden` (sorted by id):
    /// they are in no view and no history frame, as if they did not exist (players whose
    /// clients dropped and may resume).
    pub fn replicate_hiding<C: AsMut<Viewer> + Send>(
        &mut self,
        tick: Tick,
        entities: &[Replicated],
        hidden: &[EntityId],
        radius: f32,
        viewers: &mut [C],
        metrics: &Metrics,
    ) -> u64 {
        let parallel = self.parallel_min == 0 || self.own_views >= self.parallel_min;
        let frame = self.history.begin(tick);
        self.positions.clear();
        let mut hidden = hidden.iter().peekable();
        for e in entities {
            // Both lists are sorted by id: a merge, not a search per entity.
            while hidden.next_if(|&&h| h < e.id).is_some() {}
            if hidden.next_if_eq(&&e.id).is_some() {
                continue;
            }
            frame.push(e.id, self.quantizer.quantize(&e.state));
            self.positions.push(e.state.pos.truncate());
        }
        self.grid.rebuild_with_boxes(&self.positions);
        let Some(frame) = self.history.latest() else {
            return 0;
        };

        // Views: a covered rectangle, or the client's own set.
        let (grid, positions) = (&self.grid, &self.positions);
        each(viewers, parallel, |v| {
            find_view(v.as_mut(), frame, grid, positions, radius)
        });
        let t = &mut self.t;
        self.own_views = t.share_views(viewers, grid, frame);
        if self.budget.is_some() {
            // A budgeted body is some 10 µs of work per client: rayon pays from a few dozen.
            let parallel = match self.parallel_min {
                0 => true,
                usize::MAX => false,
                _ => viewers.len() >= BUDGET_PARALLEL_MIN_CLIENTS,
            };
            return self.replicate_budgeted(tick, viewers, metrics, parallel);
        }
        let t = &mut self.t;

        // Groups, and the baseline ticks that need a delta cache.
        t.group_views(tick, viewers, &self.history);
        t.full.build(&self.quantizer, frame);
        t.build_deltas(&self.quantizer, &self.history, frame, parallel);

        // Shared bodies once each, then every client's header (and own bodies).
        let (full, deltas, shared) = (&t.full, &t.deltas, &t.shared);
        let groups = &mut t.groups[..t.groups_used];
        let encode_group = |g: &mut Group| {
            let view = &shared[g.view as usize];
            let base = g
                .base
                .as_ref()
                .map(|(_, ids)| (&**ids, &deltas[g.delta as usize]));
            g.writer.clear();
            g.enc
                .encode(base, frame, &view.indices, full, &mut g.writer);
            g.body = Bytes::copy_from_slice(g.writer.finish_view());
        };
        if parallel && groups.len() > 1 {
            groups.par_iter_mut().for_each(encode_group);
        } else {
            groups.iter_mut().for_each(encode_group);
        }
        let groups = &t.groups[..t.groups_used];
        let send = |v: &mut C| -> u64 {
            send_snapshot(v.as_mut(), tick, frame, full, deltas, groups, metrics)
        };
        // A direct send is a system call (`crate::wire`), some µs of kernel work: rayon pays
        // from as many of them as a per-client pass does, shared views or not. (A send into
        // a slot is a few dozen ns: not worth rayon.)
        let parallel = match self.parallel_min {
            0 => true,
            usize::MAX => false,
            min => {
                parallel
                    || viewers
                        .iter_mut()
                        .fold(0, |n, v| n + usize::from(v.as_mut().direct))
                        >= min
            }
        };
        sum_each(viewers, parallel, send)
    }
}

impl Replicator {
    /// The budgeted pass: each client's own body within its byte cap, entities chosen by
    /// priority ([`BudgetEncoder`]), deltas from each source tick in use encoded once.
    fn replicate_budgeted<C: AsMut<Viewer> + Send>(
        &mut self,
        tick: Tick,
        viewers: &mut [C],
        metrics: &Metrics,
        parallel: bool,
    ) -> u64 {
        let (Some(budget), Some(frame)) = (self.budget.as_mut(), self.history.latest()) else {
            return 0;
        };
        let t = &mut self.t;
        t.full.build(&self.quantizer, frame);
        // Which source ticks the clients' baselines hold (a delivered snapshot counts).
        let mut ages = 0u64;
        for v in viewers.iter_mut() {
            let v = v.as_mut();
            if let Some(b) = v.budget.as_mut() {
                if let Some(d) = v.out.delivered() {
                    b.on_delivered(d);
                }
                // A socket that has not taken the last snapshot: a newer one would only
                // replace it, and a budgeted body is the dearest part of a tick. It goes as it
                // is (its baseline is still one the client will hold); this client's next
                // snapshot is a later tick's. Under load this keeps the CPU, delta caches
                // included, for snapshots that are sent.
                v.deferred = v.out.snapshot_pending();
                if !v.deferred {
                    ages |= b.source_ages_for(tick);
                }
            }
        }
        budget.slot_of_age = [u8::MAX; 64];
        t.delta_ticks.clear();
        for age in 1..64u32 {
            let Some(src) = tick.0.checked_sub(age * budget.every).map(Tick) else {
                break;
            };
            if ages & (1 << age) == 0 || self.history.get(src).is_none() {
                continue;
            }
            budget.slot_of_age[age as usize] = t.delta_ticks.len() as u8;
            t.delta_ticks.push(src);
            if t.deltas.len() < t.delta_ticks.len() {
                t.deltas.push(DeltaCache::new());
            }
        }
        t.build_deltas(&self.quantizer, &self.history, frame, parallel);
        let history = &self.history;
        let budget = &*budget;
        let (full, deltas, shared) = (&t.full, &t.deltas, &t.shared);
        let delta = |src: Tick| -> Option<&DeltaCache> {
            let age = (tick.0.checked_sub(src.0)? / budget.every) as usize;
            let slot = *budget.slot_of_age.get(age)?;
            deltas.get(usize::from(slot)).filter(|_| slot != u8::MAX)
        };
        let send = |v: &mut C| -> u64 {
            let v = v.as_mut();
            let near = std::mem::take(&mut v.near);
            let cur: &[u32] = match v.cur {
                Cur::Shared { view, .. } => &shared[view as usize].indices,
                Cur::Own { .. } | Cur::Covered(_) => &near,
            };
            let n = send_budgeted(v, cur, tick, history, frame, full, &delta, budget, metrics);
            v.near = near;
            n
        };
        sum_each(viewers, parallel, send)
    }
}

thread_local! {
    /// Scratch for budgeted bodies, one per thread.
    static BUDGET_SCRATCH: std::cell::RefCell<(BudgetEncoder, BitWriter)> =
        std::cell::RefCell::new((BudgetEncoder::new(), BitWriter::new()));
}

/// Bytes of a varint (PROTOCOL.md 2.1) of `v`.
fn varint_len(v: u64) -> usize {
    match v {
        0..=250 => 1,
        251..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

#[allow(clippy::too_many_arguments)]
fn send_budgeted<'a>(
    v: &mut Viewer,
    cur: &[u32],
    tick: Tick,
    history: &WorldHistory,
    frame: &WorldFrame,
    full: &FullCache,
    delta: &impl Fn(Tick) -> Option<&'a DeltaCache>,
    budget: &Budget,
    metrics: &Metrics,
) -> u64 {
    v.cur_ids = None;
    let Some(ring) = v.budget.as_mut() else {
        return 0;
    };
    if v.deferred {
        // See `replicate_budgeted`.
        metrics.snapshots_deferred.fetch_add(1, Relaxed);
        return 0;
    }
    let limit = v
        .out
        .snapshot_limit()
        .map_or(budget.max_bytes, |l| l.min(budget.max_bytes));
    // The envelope up to the body, at its longest for this tick: tag, tick, age (≤ tick),
    // last input, checksum, partial, body length.
    let header_max = 1
        + 2 * varint_len(u64::from(tick.0))
        + varint_len(u64::from(v.last_input.0))
        + 5
        + 1
        + varint_len(limit as u64);
    let me = frame.ids().binary_search(&v.entity).ok();
    let center = me.map(|i| frame.states()[i].pos);
    let mut out = ring.take_spare();
    let (r, body) = BUDGET_SCRATCH.with_borrow_mut(|(enc, w)| {
        w.clear();
        let r = enc.encode(
            history,
            frame,
            cur,
            full,
            delta,
            ring,
            BudgetParams {
                max_body_bytes: limit.saturating_sub(header_max),
                force_age: FORCE_AGE,
                own: me.map(|_| v.entity),
            },
            Weights {
                center,
                near: NEAR_UNITS * tickwire_shared::quant::POS_SCALE as u32,
                kinds: &budget.kinds,
            },
            w,
            &mut out,
        );
        (r, Bytes::copy_from_slice(w.finish_view()))
    });
    ring.push(tick, out);
    let age = r.base.map_or(0, |b| tick.0 - b.0);
    put_frame(v, tick, age, r.checksum, r.partial, body, metrics)
}

/// Frames `body` with `v`'s header and sends it: straight to the socket, or into its outbound
/// slot ([`Outbound::put_snapshot`]); returns the bytes.
fn put_frame(
    v: &mut Viewer,
    tick: Tick,
    age: u32,
    checksum: u32,
    partial: bool,
    body: Bytes,
    metrics: &Metrics,
) -> u64 {
    v.header.clear();
    let header = encode_snapshot_header(
        tick,
        age,
        v.last_input,
        checksum,
        partial,
        body.len(),
        &mut v.header,
    );
    if header.is_err() {
        // Only a body over the frame limit could fail; skip this tick.
        return 0;
    }
    if age == 0 {
        metrics.full_snapshots.fetch_add(1, Relaxed);
    }
    let snap = SnapshotFrame::new(tick, &v.header, body);
    let len = snap.len() as u64;
    v.direct = v.out.put_snapshot(snap, metrics);
    len
}

impl Tables {
    /// Builds the delta cache of every baseline tick in `delta_ticks` against `frame`.
    fn build_deltas(
        &mut self,
        q: &Quantizer,
        history: &WorldHistory,
        frame: &WorldFrame,
        parallel: bool,
    ) {
        let work = self.deltas[..self.delta_ticks.len()]
            .iter_mut()
            .zip(&self.delta_ticks);
        if parallel && self.delta_ticks.len() > 1 {
            work.par_bridge()
                .for_each(|(d, &t)| build_delta(d, q, history, t, frame));
        } else {
            work.for_each(|(d, &t)| build_delta(d, q, history, t, frame));
        }
    }

    /// Gives every client with a covered rectangle the shared view of that rectangle, built
    /// once per tick (its id set is last tick's again when unchanged). Returns how many
    /// clients have views of their own.
    fn share_views<C: AsMut<Viewer>>(
        &mut self,
        viewers: &mut [C],
        grid: &Grid,
        frame: &WorldFrame,
    ) -> usize {
        let mut prev_ids = std::mem::take(&mut self.prev_ids);
        prev_ids.clear();
        for s in &mut self.shared[..self.shared_used] {
            if let Some(ids) = s.ids.take() {
                prev_ids.insert(s.rect, ids);
            }
        }
        self.shared_used = 0;
        self.rect_slot.clear();
        let mut last: Option<(CellRect, u32)> = None;
        let mut own = 0;
        for v in viewers.iter_mut() {
            let v = v.as_mut();
            let Cur::Covered(rect) = v.cur else {
                own += 1;
                continue;
            };
            let slot = match last {
                Some((r, s)) if r == rect => s,
                _ => {
                    let s = match self.rect_slot.get(&rect) {
                        Some(&s) => s,
                        None => {
                            let s = self.new_shared(rect, grid, frame, &mut prev_ids);
                            self.rect_slot.insert(rect, s);
                            s
                        }
                    };
                    last = Some((rect, s));
                    s
                }
            };
            let view = &self.shared[slot as usize];
            v.cur = Cur::Shared {
                view: slot,
                group: u32::MAX,
            };
            v.cur_ids = view.ids.clone();
            v.checksum = view.checksum;
        }
        prev_ids.clear();
        self.prev_ids = prev_ids;
        own
    }

    fn new_shared(
        &mut self,
        rect: CellRect,
        grid: &Grid,
        frame: &WorldFrame,
        prev_ids: &mut HashMap<CellRect, ViewIds>,
    ) -> u32 {
        if self.shared_used == self.shared.len() {
            self.shared.push(SharedView::default());
        }
        let slot = self.shared_used;
        self.shared_used += 1;
        let s = &mut self.shared[slot];
        s.rect = rect;
        s.indices.clear();
        grid.cells(rect, &mut s.indices);
        s.checksum = frame.checksum(&s.indices);
        let ids = frame.ids();
        let set = &mut self.scratch_set;
        set.assign(s.indices.iter().map(|&i| ids[i as usize]));
        s.ids = Some(match prev_ids.remove(&rect) {
            Some(p) if *p == *set => p,
            _ => std::sync::Arc::new(set.clone()),
        });
        slot as u32
    }

    /// Assigns shared-view clients to groups (one body each) and lists the baseline ticks
    /// that need a delta cache.
    fn group_views<C: AsMut<Viewer>>(
        &mut self,
        tick: Tick,
        viewers: &mut [C],
        history: &WorldHistory,
    ) {
        self.delta_ticks.clear();
        self.groups_used = 0;
        self.group_of.clear();
        let mut last: Option<((u32, usize, u32), u32)> = None;
        for v in viewers.iter_mut() {
            let v = v.as_mut();
            // Every tick a client's ring names is in the history (the ring is pushed for every
            // snapshot, sent or not, as the reference encoder does); a baseline without its
            // frame would still only mean a full snapshot.
            let base = v
                .ring
                .baseline(tick)
                .filter(|(t, _)| history.get(*t).is_some())
                .map(|(t, ids)| (t, ids.clone()));
            let delta =
                base.as_ref().map(
                    |(t, _)| match self.delta_ticks.iter().position(|d| d == t) {
                        Some(i) => i as u32,
                        None => {
                            self.delta_ticks.push(*t);
                            if self.deltas.len() < self.delta_ticks.len() {
                                self.deltas.push(DeltaCache::new());
                            }
                            (self.delta_ticks.len() - 1) as u32
                        }
                    },
                );
            let view = match v.cur {
                Cur::Shared { view, .. } => view,
                // `share_views` left no client `Covered`.
                Cur::Own { .. } | Cur::Covered(_) => {
                    v.cur = Cur::Own { delta };
                    continue;
                }
            };
            let key = (
                base.as_ref().map_or(0, |(t, _)| t.0),
                base.as_ref()
                    .map_or(0, |(_, ids)| std::sync::Arc::as_ptr(ids) as usize),
                view,
            );
            let used = self.groups_used as u32;
            // Neighbouring clients usually share a group: skip the hash then.
            let g = match last {
                Some((k, g)) if k == key => g,
                _ => *self.group_of.entry(key).or_insert(used),
            };
            last = Some((key, g));
            if g == used {
                if self.groups.len() == self.groups_used {
                    self.groups.push(Group::default());
                }
                let group = &mut self.groups[self.groups_used];
                group.base = base;
                group.view = view;
                group.delta = delta.unwrap_or(u32::MAX);
                self.groups_used += 1;
            }
            v.cur = Cur::Shared { view, group: g };
        }
    }
}

/// The sum of `f` over every viewer, on rayon's pool when `parallel`.
fn sum_each<C: Send>(
    viewers: &mut [C],
    parallel: bool,
    f: impl Fn(&mut C) -> u64 + Sync + Send,
) -> u64 {
    if parallel {
        viewers
            .par_iter_mut()
            .with_min_len(CLIENTS_PER_TASK)
            .map(f)
            .sum()
    } else {
        viewers.iter_mut().map(f).sum()
    }
}

/// Runs `f` on every viewer, on rayon's pool when `parallel`.
fn each<C: Send>(viewers: &mut [C], parallel: bool, f: impl Fn(&mut C) + Sync + Send) {
    if parallel {
        viewers
            .par_iter_mut()
            .with_min_len(CLIENTS_PER_TASK)
            .for_each(f);
    } else {
        viewers.iter_mut().for_each(f);
    }
}

thread_local! {
    /// [`Grid::query_sorted`]'s bitmap, one per thread that finds views.
    static MARKS: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn find_view(v: &mut Viewer, frame: &WorldFrame, grid: &Grid, positions: &[Vec2], radius: f32) {
    v.near.clear();
    v.cur = Cur::Own { delta: None };
    if let Ok(me) = frame.ids().binary_search(&v.entity) {
        let center = positions[me];
        if let Some(rect) = grid.covered(center, radius) {
            v.cur = Cur::Covered(rect);
            return;
        }
        // Entity indices are in id order, so a view in index order is in id order.
        MARKS.with_borrow_mut(|marks| grid.query_sorted(center, radius, marks, &mut v.near));
    }
    if v.budget.is_some() {
        // A budgeted client's view is what its held view becomes (`send_budgeted`): its id
        // set and checksum as a whole view would be wasted (and a fresh set each tick).
        return;
    }
    v.cur_ids = Some(v.ring.own_view(frame, &v.near));
    v.checksum = frame.checksum(&v.near);
}

fn build_delta(d: &mut DeltaCache, q: &Quantizer, h: &WorldHistory, base: Tick, cur: &WorldFrame) {
    // `group_views` only names baselines whose frame is in the history.
    if let Some(b) = h.get(base) {
        d.build(q, b, cur);
    }
}

fn send_snapshot(
    v: &mut Viewer,
    tick: Tick,
    frame: &WorldFrame,
    full: &FullCache,
    deltas: &[DeltaCache],
    groups: &[Group],
    metrics: &Metrics,
) -> u64 {
    let Some(ids) = v.cur_ids.take() else {
        return 0;
    };
    let (base_tick, body) = match v.cur {
        // `group_views` leaves every client `Shared` or `Own`.
        Cur::Covered(_) => return 0,
        Cur::Shared { group, .. } => {
            let g = &groups[group as usize];
            (g.base.as_ref().map(|(t, _)| *t), g.body.clone())
        }
        Cur::Own { delta } => {
            let base = delta.and_then(|d| {
                let (t, ids) = v.ring.baseline(tick)?;
                Some((t, &**ids, &deltas[d as usize]))
            });
            let body = SCRATCH.with_borrow_mut(|(enc, w)| {
                w.clear();
                enc.encode(base.map(|(_, ids, d)| (ids, d)), frame, &v.near, full, w);
                // A fresh allocation per body measured cheaper than reclaiming a per-client
                // BytesMut (2,000-bot arena: 18.5 against 19.1-19.5 µs per snapshot).
                Bytes::copy_from_slice(w.finish_view())
            });
            (base.map(|(t, ..)| t), body)
        }
    };
    let age = base_tick.map_or(0, |b| tick.0 - b.0);
    // Remembered even if it cannot be sent, as the reference encoder does, so the ring and
    // the history stay in step.
    v.ring.push(tick, ids);
    let checksum = v.checksum;
    put_frame(v, tick, age, checksum, false, body, metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::Outbound;
    use glam::Vec3;
    use proptest::prelude::*;
    use std::sync::Arc;
    use tickwire_shared::{BaselineTracker, EntityState, ViewEntry, WorldBounds};

    /// One step of a random world history: entity moves, spawns and despawns, and per client
    /// whether it acknowledges the newest snapshot, an old one, or nothing.
    #[derive(Debug, Clone)]
    struct Step {
        moves: Vec<(u8, i8, i8, bool)>,
        spawn: u8,
        despawn: Vec<u8>,
        acks: Vec<u8>,
        join: bool,
    }

    fn step() -> impl Strategy<Value = Step> {
        (
            proptest::collection::vec((any::<u8>(), -40i8..40, -40i8..40, any::<bool>()), 0..12),
            0u8..3,
            proptest::collection::vec(any::<u8>(), 0..2),
            proptest::collection::vec(0u8..8, 8),
            proptest::bool::weighted(0.1),
        )
            .prop_map(|(moves, spawn, despawn, acks, join)| Step {
                moves,
                spawn,
                despawn,
                acks,
                join,
            })
    }

    struct Ref {
        tracker: BaselineTracker,
        out: Arc<Outbound>,
    }

    fn check(
        radius: f32,
        ring: usize,
        parallel: bool,
        hide: bool,
        steps: Vec<Step>,
    ) -> Result<(), TestCaseError> {
        let bounds = WorldBounds {
            min: Vec3::new(-100.0, -100.0, 0.0),
            max: Vec3::new(100.0, 100.0, 0.0),
        };
        let q = Quantizer::new(bounds).unwrap();
        let metrics = Metrics::default();
        let mut rep = Replicator::new(q, radius, ring);
        rep.set_parallel_min_clients(if parallel { 0 } else { usize::MAX });
        let mut ents: Vec<Replicated> = Vec::new();
        let mut next_id = 0u32;
        let mut spawn = |ents: &mut Vec<Replicated>, x: f32, y: f32| {
            ents.push(Replicated {
                id: EntityId(next_id),
                state: EntityState {
                    kind: 1,
                    pos: Vec3::new(x, y, 0.0),
                    health: 100,
                    ..Default::default()
                },
            });
            next_id += 1;
        };
        for i in 0..12 {
            spawn(
                &mut ents,
                (i * 17 % 200) as f32 - 100.0,
                (i * 29 % 200) as f32 - 100.0,
            );
        }
        let mut viewers: Vec<Viewer> = Vec::new();
        let mut refs: Vec<Ref> = Vec::new();
        let join = |viewers: &mut Vec<Viewer>, refs: &mut Vec<Ref>, e: EntityId| {
            let out = Arc::new(Outbound::default());
            viewers.push(Viewer::new(e, out.clone(), ring));
            refs.push(Ref {
                tracker: BaselineTracker::new(q, ring),
                out,
            });
        };
        for i in 0..4 {
            join(&mut viewers, &mut refs, EntityId(i));
        }
        let mut sent: Vec<Vec<Tick>> = vec![Vec::new(); 64];
        for (t, st) in steps.iter().enumerate() {
            let tick = Tick(t as u32 + 1);
            for &(who, dx, dy, turn) in &st.moves {
                if ents.is_empty() {
                    break;
                }
                let n = ents.len();
                let e = &mut ents[usize::from(who) % n];
                e.state.pos += Vec3::new(f32::from(dx), f32::from(dy), 0.0);
                e.state.pos = e.state.pos.clamp(bounds.min, bounds.max);
                if turn {
                    e.state.yaw += 0.5;
                    e.state.vel.x = f32::from(dx);
                }
            }
            for &d in &st.despawn {
                // Entities 0..4 are the first clients' players; keep them.
                if ents.len() > 4 {
                    let i = 4 + usize::from(d) % (ents.len() - 4);
                    ents.remove(i);
                }
            }
            for k in 0..st.spawn {
                spawn(
                    &mut ents,
                    f32::from(k) * 30.0 - 50.0,
                    40.0 - f32::from(k) * 7.0,
                );
            }
            if st.join && viewers.len() < 8 {
                let e = ents[ents.len() - 1].id;
                join(&mut viewers, &mut refs, e);
            }
            // Acks: 0-3 the newest sent tick minus that many, 4 a tick long gone, else none.
            for (i, (v, r)) in viewers.iter_mut().zip(&mut refs).enumerate() {
                let a = st.acks[i % st.acks.len()];
                let s = &sent[i];
                let t = match a {
                    0..=3 => s.len().checked_sub(1 + usize::from(a)).map(|k| s[k]),
                    4 => s.first().copied(),
                    _ => None,
                };
                if let Some(t) = t {
                    let (x, y) = (v.ring.on_ack(t), r.tracker.on_ack(t));
                    prop_assert_eq!(x, y);
                }
            }
            // Hidden entities (a player's own among them, now and then) are as if absent.
            let hidden: Vec<EntityId> = ents
                .iter()
                .map(|e| e.id)
                .filter(|id| hide && (id.0 * 3 + tick.0).is_multiple_of(7))
                .collect();
            rep.replicate_hiding(tick, &ents, &hidden, radius, &mut viewers, &metrics);
            let shown: Vec<&Replicated> = ents.iter().filter(|e| !hidden.contains(&e.id)).collect();
            for (i, (v, r)) in viewers.iter().zip(&mut refs).enumerate() {
                let me = shown.iter().position(|e| e.id == v.entity);
                let view: Vec<ViewEntry> = match me {
                    Some(m) => {
                        let c = shown[m].state.pos.truncate();
                        shown
                            .iter()
                            .filter(|e| {
                                e.state.pos.truncate().distance_squared(c) <= radius * radius
                            })
                            .map(|e| (e.id, q.quantize(&e.state)))
                            .collect()
                    }
                    None => Vec::new(),
                };
                let mut want = Vec::new();
                r.tracker
                    .encode_frame(
                        tick,
                        v.last_input,
                        &view,
                        tickwire_shared::view_checksum(&view),
                        &mut want,
                    )
                    .unwrap();
                let got = r.out.take().snapshot.expect("a snapshot for every client");
                prop_assert_eq!(got.to_vec(), want, "client {} tick {}", i, tick.0);
                sent[i].push(tick);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn shared_path_writes_the_reference_bytes(
            radius in prop_oneof![Just(500.0f32), 10.0f32..120.0],
            ring in 2usize..6,
            parallel in any::<bool>(),
            hide in any::<bool>(),
            steps in proptest::collection::vec(step(), 1..40),
        ) {
            check(radius, ring, parallel, hide, steps)?;
        }
    }
}
