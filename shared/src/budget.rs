//! Bandwidth budgets: which entities a snapshot refreshes when they do not all fit.
//!
//! With a budget (the reference server's `--max-snapshot-bytes`), each client's snapshot is
//! capped, and entities compete for the room by **priority**, as in Gaffer on Games'
//! priority accumulator and naia's entity priority: an entity's priority is its weight
//! (nearer entities and more important kinds weigh more) times the ticks since this client
//! last got it. The highest priorities fill the snapshot; the others stay as the client holds
//! them, and PROTOCOL.md 7.4's `partial` flag tells the client which entries were refreshed.
//!
//! A client's view is then no longer "the world at tick T, seen from here": each entry holds
//! the state of the tick that last refreshed it (its *source* tick). [`HeldView`] remembers,
//! per sent snapshot, each entry's source tick and index in that tick's [`WorldFrame`], so the
//! states themselves stay in the room's one [`WorldHistory`] (12 bytes per entry per
//! snapshot in flight; entries older than the acknowledged snapshot are dropped).
//!
//! Rules the encoder keeps, per snapshot of tick `T` against its baseline `B`
//! ([`BudgetRing::baseline`]):
//! - **Removals** come first: an entity that left the view is listed as removed. An entry
//!   whose source frame has left the history can no longer be delta-encoded, so it is removed
//!   too (it comes back as new); entries are refreshed long before that ([`BudgetParams`]).
//! - The client's own entity is always refreshed; then the rest by priority, within the
//!   budget. New entities count as long overdue.
//! - If everything fits, the snapshot is not partial and is exactly what an unbudgeted
//!   encoder writes.
//!
//! **What is in flight.** A snapshot is a delta against `B`, so what a snapshot sent after
//! `B` refreshed is not in the next one unless chosen again. Over a reliable, ordered
//! transport `B` is the newest snapshot written ([`BudgetRing::on_delivered`]): nothing is in
//! flight, and an entry's as-of tick never goes back. Against an acknowledged baseline (QUIC
//! datagrams, or a WebSocket client whose acknowledgements trail too far) a refresh still in
//! flight may be missing from the next snapshot, so an entry's as-of tick can go back until
//! the acknowledgements catch up (a client keeps the freshest sample it has). Refreshing
//! everything in flight again instead would, with acknowledgements a tick behind, refresh
//! every entity ever refreshed on every tick after: the budget could never move on.

use crate::baseline::AckOutcome;
use crate::bits::BitWriter;
use crate::ids::{EntityId, Tick};
use crate::replication::{DeltaCache, FullCache, SentRing, WorldFrame, WorldHistory};
use crate::snapshot::write_section;

/// Views a [`BudgetRing`] keeps for their buffers: acknowledgements come less often than
/// snapshots (inputs at 20 Hz, snapshots at 30), so one can free two views at once.
const MAX_SPARE_VIEWS: usize = 3;

/// Oldest source age (in ticks) a [`HeldView`] tracks; entries are refreshed before it.
pub const MAX_SOURCE_AGE: u32 = 63;

/// One entry of a view as a budgeted client holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldEntry {
    /// The entity.
    pub id: EntityId,
    /// The tick whose frame holds the state the client has for it.
    pub src: Tick,
    /// Its index in that frame.
    pub idx: u32,
}

/// The view one budgeted snapshot left the client with.
#[derive(Debug, Default, Clone)]
pub struct HeldView {
    entries: Vec<HeldEntry>,
    /// Bit `a`: some entry's source is `a` snapshots before the snapshot's.
    srcs: u64,
    /// Its view checksum (PROTOCOL.md 7.7): the next snapshot's is this one's, updated by
    /// what that snapshot changes.
    checksum: u32,
}

impl HeldView {
    /// The entries, by id.
    pub fn entries(&self) -> &[HeldEntry] {
        &self.entries
    }

    /// Source ages present, in snapshots before this one (bit `a`: `a` snapshots back).
    pub fn source_ages(&self) -> u64 {
        self.srcs
    }
}

/// A budgeted client's sent snapshots (their [`HeldView`]s) and acknowledged baseline.
#[derive(Debug)]
pub struct BudgetRing {
    sent: SentRing<HeldView>,
    spare: Vec<HeldView>,
    /// The newest snapshot handed in full to a reliable, ordered transport, which the client
    /// will therefore receive before any later one.
    delivered: Option<Tick>,
    /// The first snapshot delivered: the lead counts from it until the first
    /// acknowledgement.
    first_delivered: Option<Tick>,
    /// How far (in ticks) `delivered` may lead the acknowledgement and still be the baseline.
    lead: u32,
    /// Ticks between two snapshots: source ages count snapshots, not ticks.
    every: u32,
}

impl BudgetRing {
    /// A ring of `capacity` (at least 1) sent snapshots.
    pub fn new(capacity: usize) -> Self {
        Self {
            sent: SentRing::new(capacity),
            spare: Vec::new(),
            delivered: None,
            first_delivered: None,
            lead: 0,
            every: 1,
        }
    }

    /// Snapshots go every `every` ticks (`--snapshot-every`; default 1): source ages, the
    /// history [`MAX_SOURCE_AGE`] covers and [`BudgetParams::force_age`] count snapshots.
    pub fn set_snapshot_every(&mut self, every: u32) {
        self.every = every.max(1);
    }

    /// See [`BudgetRing::set_snapshot_every`].
    pub fn snapshot_every(&self) -> u32 {
        self.every
    }

    /// The age, in snapshots, of a state from `src` in a snapshot of `tick`.
    pub fn age(&self, tick: Tick, src: Tick) -> u32 {
        let d = tick.0.saturating_sub(src.0);
        // Once per entry per snapshot: no division in the common case.
        if self.every == 1 { d } else { d / self.every }
    }

    /// The source tick of age `age` (in snapshots) in a snapshot of `tick`.
    pub fn source(&self, tick: Tick, age: u32) -> Option<Tick> {
        tick.0.checked_sub(age.checked_mul(self.every)?).map(Tick)
    }

    /// Over a reliable, ordered transport (WebSocket over TCP), snapshots handed to it in full
    /// arrive, in order: the baseline may then be the newest such snapshot
    /// ([`BudgetRing::on_delivered`]) rather than the newest acknowledged one, so a budget is
    /// not spent again on what is still in flight. As long as the acknowledgements trail it
    /// by at most `lead` ticks; past that (a client that rejected a snapshot keeps
    /// acknowledging an older one), the acknowledged snapshot is the baseline again. 0 (the
    /// default) never uses delivered snapshots: for unreliable transports.
    pub fn set_delivery_lead(&mut self, lead: u32) {
        self.lead = lead;
    }

    /// The snapshot of `tick` was handed in full to the (reliable, ordered) transport.
    pub fn on_delivered(&mut self, tick: Tick) {
        if self.delivered.is_none_or(|d| d < tick) {
            self.delivered = Some(tick);
        }
        self.first_delivered.get_or_insert(tick);
    }

    /// Records that the client holds the snapshot of `tick` (see [`SentRing::on_ack`]);
    /// snapshots older than it are forgotten.
    pub fn on_ack(&mut self, tick: Tick) -> AckOutcome {
        let outcome = self.sent.on_ack(tick);
        let spare = &mut self.spare;
        self.sent.prune_before_acked(|v| {
            if spare.len() < MAX_SPARE_VIEWS {
                spare.push(v);
            }
        });
        outcome
    }

    /// See [`SentRing::acked`].
    pub fn acked(&self) -> Option<Tick> {
        self.sent.acked()
    }

    /// The baseline for a snapshot of `tick`: the newest delivered snapshot (see
    /// [`BudgetRing::set_delivery_lead`]) or else the acknowledged one, if still in the ring.
    pub fn baseline(&self, tick: Tick) -> Option<(Tick, &HeldView)> {
        let acked = self.sent.baseline(tick);
        if self.lead > 0
            && let Some(d) = self.delivered.filter(|&d| d < tick)
            && acked.is_none_or(|(a, _)| a < d)
            && d.0
                - self
                    .sent
                    .acked()
                    .or(self.first_delivered)
                    .map_or(0, |a| a.0)
                <= self.lead
            && let Some(v) = self.sent.get(d)
        {
            return Some((d, v));
        }
        acked
    }

    /// The newest sent snapshot.
    pub fn newest(&self) -> Option<(Tick, &HeldView)> {
        self.sent.newest()
    }

    /// The source ticks a snapshot of `tick` may delta-encode against, as a mask of ages in
    /// snapshots (bit `a`: [`BudgetRing::source`]`(tick, a)`): those of its baseline.
    pub fn source_ages_for(&self, tick: Tick) -> u64 {
        match self.baseline(tick) {
            Some((b, v)) => shift_ages(v.srcs, self.age(tick, b)),
            None => 0,
        }
    }

    /// An empty view to fill for the next snapshot, reusing an old buffer when there is one.
    pub fn take_spare(&mut self) -> HeldView {
        // Never from the ring itself: its oldest entry may be the baseline still to use.
        let mut v = self.spare.pop().unwrap_or_default();
        v.entries.clear();
        v.srcs = 0;
        v.checksum = 0;
        v
    }

    /// Remembers `view` as sent with the snapshot of `tick`.
    pub fn push(&mut self, tick: Tick, view: HeldView) {
        if let Some(old) = self.sent.push(tick, view)
            && self.spare.len() < MAX_SPARE_VIEWS
        {
            self.spare.push(old);
        }
    }
}

fn shift_ages(mask: u64, by: u32) -> u64 {
    if by >= 64 { 0 } else { mask << by }
}

/// How to weigh entities for one client.
#[derive(Debug, Clone, Copy)]
pub struct Weights<'a> {
    /// The client's position (quantized), if its entity is in the world: nearer entities
    /// weigh more (8 within `near`, 4 within 3 × `near`, 2 within 7 × `near`, else 1).
    pub center: Option<[u32; 3]>,
    /// The "near" distance, in position quanta.
    pub near: u32,
    /// Weight multiplier by entity kind (index = kind; kinds past the end weigh 1).
    pub kinds: &'a [u8],
}

/// The budget of one snapshot.
#[derive(Debug, Clone, Copy)]
pub struct BudgetParams {
    /// Most bytes of the body (the envelope's header is the caller's to subtract).
    pub max_body_bytes: usize,
    /// An entry not refreshed for this many snapshots (counted up to the baseline: over a
    /// reliable transport, the previous snapshot) goes before everything but removals and
    /// what must go (at most [`MAX_SOURCE_AGE`]; keep it well inside the history).
    pub force_age: u32,
    /// The client's own entity: always refreshed.
    pub own: Option<EntityId>,
}

/// What [`BudgetEncoder::encode`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgeted {
    /// Checksum of the view the client holds after it.
    pub checksum: u32,
    /// Whether anything was held back (the `partial` flag).
    pub partial: bool,
    /// The baseline it was encoded against (`None`: full).
    pub base: Option<Tick>,
    /// Entities refreshed or added.
    pub refreshed: u32,
    /// Entities in view not refreshed, or not yet added, or not yet removed.
    pub held_back: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    /// In the baseline, not in view (or no longer encodable): remove.
    Removed = 0,
    /// In both: refresh or keep.
    Kept = 1,
    /// In view, not in the baseline: add or wait.
    New = 2,
}

/// `Cand::meta`: the kind in bits 0–1, taken in bit 2.
const KIND_MASK: u8 = 0b11;
const TAKE: u8 = 0b100;

/// One entry of the view or of the baseline, as the encoder weighs it (20 bytes: the
/// encoder walks every candidate several times per snapshot).
#[derive(Debug, Clone, Copy)]
struct Cand {
    bucket: u8,
    meta: u8,
    /// Kept: the source age in snapshots (≤ [`MAX_SOURCE_AGE`]).
    age: u8,
    /// Bits of its run (Kept: the delta from its source; New: the full encoding).
    len: u32,
    /// Index in the baseline (Removed, Kept), or of the first baseline entry after it (New).
    base_i: u32,
    /// Index in the current frame (Kept, New).
    c: u32,
    run_start: u32,
}

impl Cand {
    fn kind(&self) -> Kind {
        match self.meta & KIND_MASK {
            0 => Kind::Removed,
            1 => Kind::Kept,
            _ => Kind::New,
        }
    }

    fn taken(&self) -> bool {
        self.meta & TAKE != 0
    }

    /// Bits without the gap code: an unchanged entry costs two zero bits when refreshed.
    fn payload(&self) -> u32 {
        match self.kind() {
            Kind::Removed => 0,
            Kind::Kept => self.len.max(2),
            Kind::New => self.len,
        }
    }

    /// The removal of the baseline entry at index `bi`.
    fn removal(bi: usize) -> Cand {
        Cand {
            bucket: BUCKET_REMOVE,
            meta: Kind::Removed as u8,
            age: 0,
            len: 0,
            base_i: bi as u32,
            c: u32::MAX,
            run_start: 0,
        }
    }
}

const BUCKET_REMOVE: u8 = 255;
const BUCKET_MUST: u8 = 254;
/// Entries at or past the forced age: `BUCKET_FORCED + (age - force_age)`, up to 253, so that
/// the longest waiting go first when they do not all fit.
const BUCKET_FORCED: u8 = 190;
const BUCKET_MAX_PRIORITY: u32 = BUCKET_FORCED as u32 - 1;
/// A new entity counts as this many ticks overdue.
const NEW_AGE: u32 = 16;
const AGES: usize = (MAX_SOURCE_AGE + 1) as usize;

/// What one snapshot's candidates add up to, gathered with them (kept in registers).
#[derive(Debug, Clone, Copy)]
struct Tally {
    /// Candidates per kind.
    n: [u64; 3],
    /// Payload bits plus one, of everything but removals.
    bits: u64,
    /// Lowest and highest new id.
    span_new: (u32, u32),
    /// Kept entries by source age.
    ages: [u32; AGES],
}

/// One priority bucket's candidates: payload bits, and how many are kept and new entries
/// (removals are all in their own bucket).
#[derive(Debug, Clone, Copy, Default)]
struct BucketTally {
    payload: u64,
    kept: u32,
    new: u32,
}

impl Tally {
    const EMPTY: Tally = Tally {
        n: [0; 3],
        bits: 0,
        span_new: (u32::MAX, 0),
        ages: [0; AGES],
    };

    #[inline(always)]
    fn add(&mut self, buckets: &mut [BucketTally; 256], c: &Cand, id: u32) {
        let (k, b) = (c.kind(), usize::from(c.bucket));
        self.n[k as usize] += 1;
        let p = c.payload();
        let bt = &mut buckets[b];
        bt.payload += u64::from(p);
        match k {
            Kind::Removed => {}
            Kind::Kept => {
                self.bits += u64::from(p) + 1;
                bt.kept += 1;
                self.ages[usize::from(c.age)] += 1;
            }
            Kind::New => {
                self.bits += u64::from(p) + 1;
                bt.new += 1;
                self.span_new = (self.span_new.0.min(id), self.span_new.1.max(id));
            }
        }
    }
}

/// Reusable scratch for budgeted snapshots; keep one per thread.
#[derive(Debug, Clone)]
pub struct BudgetEncoder {
    cands: Vec<Cand>,
    tally: Tally,
    buckets: Box<[BucketTally; 256]>,
    /// Per bucket: the cost of all its candidates, gap codes included.
    hist: Box<[u64; 256]>,
    /// Estimated gap code bits per kind.
    gaps: [u32; 3],
    /// The candidates of the bucket that does not all fit.
    partial: Vec<u32>,
    /// What the snapshot changes in the client's view (removals, refreshes, additions), in
    /// candidate order.
    events: Vec<u32>,
    removed: Vec<u32>,
    changed: Vec<u32>,
    new: Vec<u32>,
}

impl Default for BudgetEncoder {
    fn default() -> Self {
        Self::new()
    }
}

fn eg0_len(v: u64) -> u32 {
    let m = v + 1;
    2 * (63 - m.leading_zeros()) + 1
}

#[inline(always)]
fn weight(w: &Weights<'_>, pos: [u32; 3], kind: u16) -> u32 {
    let dist = match w.center {
        Some(c) => {
            let d = |a: usize| {
                let d = u64::from(c[a].abs_diff(pos[a]));
                d * d
            };
            let d2 = d(0) + d(1) + d(2);
            let n = u64::from(w.near.max(1));
            let n2 = n * n;
            // Without branches: the classes fall at random, entity by entity.
            let class = u32::from(d2 >= n2) + u32::from(d2 >= 9 * n2) + u32::from(d2 >= 49 * n2);
            8 >> class
        }
        None => 1,
    };
    let k = w.kinds.get(usize::from(kind)).copied().unwrap_or(1).max(1);
    dist * u32::from(k)
}

/// What one snapshot encodes against, looked up once rather than once per entry.
struct Sources<'h> {
    tick: Tick,
    base: Option<(Tick, &'h HeldView)>,
    /// By source age: the delta cache from that source to the current frame.
    deltas: [Option<&'h DeltaCache>; AGES],
    /// By source age: that source's frame.
    frames: [Option<&'h WorldFrame>; AGES],
    /// Ticks per snapshot.
    every: u32,
}

impl BudgetEncoder {
    /// A new encoder.
    pub fn new() -> Self {
        Self {
            cands: Vec::new(),
            tally: Tally::EMPTY,
            buckets: Box::new([BucketTally::default(); 256]),
            hist: Box::new([0; 256]),
            gaps: [0; 3],
            partial: Vec::new(),
            events: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
            new: Vec::new(),
        }
    }

    /// Appends to `w` the body of `ring`'s client's snapshot of `frame` (the newest frame of
    /// `history`, tick `T`), whose view is the entities at `cur` (increasing indices of
    /// `frame`), within `params`' budget; fills `out` with the view the client will hold and
    /// pushes nothing (the caller pushes `out` into the ring). `delta(t)` is the cache of
    /// changes from frame `t` to `frame`, for every source tick in
    /// [`BudgetRing::source_ages_for`] that is still in the history.
    #[allow(clippy::too_many_arguments)]
    pub fn encode<'a>(
        &mut self,
        history: &WorldHistory,
        frame: &WorldFrame,
        cur: &[u32],
        full: &FullCache,
        delta: impl Fn(Tick) -> Option<&'a DeltaCache>,
        ring: &BudgetRing,
        params: BudgetParams,
        weights: Weights<'_>,
        w: &mut BitWriter,
        out: &mut HeldView,
    ) -> Budgeted {
        let tick = frame.tick();
        let mut src = Sources {
            tick,
            base: ring.baseline(tick),
            deltas: [None; AGES],
            frames: [None; AGES],
            every: ring.snapshot_every(),
        };
        if let Some((b, v)) = src.base {
            let ages = shift_ages(v.srcs, ring.age(tick, b));
            for age in 1..=MAX_SOURCE_AGE {
                if ages & (1 << age) != 0
                    && let Some(t) = ring.source(tick, age)
                {
                    src.deltas[age as usize] = delta(t);
                    src.frames[age as usize] = history.get(t);
                }
            }
        }

        // Ages count from this snapshot, but an acknowledged baseline (QUIC) is itself some
        // snapshots old, and so is everything it holds: the forced age counts from the
        // baseline, or a round trip of the forced age would make every entry overdue.
        let base_age = src.base.map_or(1, |(b, _)| ring.age(tick, b)).max(1);
        let force_age = (params.force_age.saturating_add(base_age - 1)).min(MAX_SOURCE_AGE);
        self.gather(frame, cur, full, &src, ring, params, weights, force_age);

        let budget = params.max_body_bytes.saturating_mul(8) as i64;
        // The section counts, at their longest (every candidate of its kind taken); gap codes
        // are estimated, then the result is checked.
        let n = self.tally.n;
        let mut target = budget - n.iter().map(|&n| i64::from(eg0_len(n))).sum::<i64>();
        self.set_costs(budget, src.base.map_or(0, |(_, v)| v.entries.len()));
        for round in 0..5 {
            self.select(target, tick);
            w.clear();
            let written = self.write(w, frame, full, &src);
            let over = written as i64 - budget;
            if over <= 0 {
                break;
            }
            target -= over + 16;
            if round >= 3 {
                // Last resort: only what must go (removals and what is in flight).
                target = i64::MIN;
            }
        }
        self.finish(frame, &src, out)
    }

    #[allow(clippy::too_many_arguments)]
    fn gather(
        &mut self,
        frame: &WorldFrame,
        cur: &[u32],
        full: &FullCache,
        src: &Sources<'_>,
        ring: &BudgetRing,
        params: BudgetParams,
        weights: Weights<'_>,
        force_age: u32,
    ) {
        let tick = src.tick;
        self.cands.clear();
        self.buckets.fill(BucketTally::default());
        let mut tally = Tally::EMPTY;
        let (cands, buckets) = (&mut self.cands, &mut *self.buckets);
        cands.reserve(cur.len() + src.base.map_or(0, |(_, v)| v.entries.len()));
        let ids = frame.ids();
        let states = frame.states();
        let base_entries: &[HeldEntry] = src.base.map_or(&[], |(_, v)| &v.entries);
        let own = params.own;
        let priority = |c: usize, age: u32| -> u8 {
            let p = weight(&weights, states[c].pos, states[c].kind) * age;
            p.min(BUCKET_MAX_PRIORITY) as u8
        };

        let (mut bi, mut ci) = (0usize, 0usize);
        loop {
            let b = base_entries.get(bi);
            let c = cur.get(ci).map(|&c| c as usize);
            let (b_id, c_id) = (b.map(|e| e.id), c.map(|c| ids[c]));
            match (b, c) {
                (None, None) => break,
                (Some(be), cc) if cc.is_none() || b_id < c_id => {
                    // Left the view.
                    let cand = Cand::removal(bi);
                    tally.add(buckets, &cand, be.id.0);
                    cands.push(cand);
                    bi += 1;
                }
                (Some(be), Some(c)) if b_id == c_id => {
                    let age = ring.age(tick, be.src);
                    let run = src
                        .deltas
                        .get(age as usize)
                        .copied()
                        .flatten()
                        .and_then(|d| d.runs.get(c).copied());
                    let cand = match run {
                        // Its source frame is gone: remove it; it comes back as new.
                        None => Cand::removal(bi),
                        Some(run) => {
                            // Priority: weight times the ticks since the state the client
                            // holds in the baseline (the accumulator, reset by a refresh the
                            // client acknowledged or, over a reliable transport, was sent).
                            let bucket = if own == Some(be.id) {
                                BUCKET_MUST
                            } else if age >= force_age {
                                (u32::from(BUCKET_FORCED) + (age - force_age)).min(253) as u8
                            } else {
                                priority(c, age)
                            };
                            Cand {
                                bucket,
                                meta: Kind::Kept as u8,
                                age: age as u8,
                                len: run.len,
                                base_i: bi as u32,
                                c: c as u32,
                                run_start: run.start,
                            }
                        }
                    };
                    tally.add(buckets, &cand, be.id.0);
                    cands.push(cand);
                    bi += 1;
                    ci += 1;
                }
                (_, Some(c)) => {
                    // In view, not in the baseline.
                    let id = ids[c];
                    let bucket = if own == Some(id) {
                        BUCKET_MUST
                    } else {
                        priority(c, NEW_AGE)
                    };
                    let run = full.runs[c];
                    let cand = Cand {
                        bucket,
                        meta: Kind::New as u8,
                        age: 0,
                        len: run.len,
                        // Where it goes among the baseline's entries.
                        base_i: bi as u32,
                        c: c as u32,
                        run_start: run.start,
                    };
                    tally.add(buckets, &cand, id.0);
                    cands.push(cand);
                    ci += 1;
                }
                _ => break,
            }
        }
        self.tally = tally;
    }

    /// Each bucket's cost: its payloads plus their gap codes, estimated from how many of
    /// their section the budget is likely to take (removals all go; the rest in proportion).
    fn set_costs(&mut self, budget: i64, base_len: usize) {
        let t = &self.tally;
        // The share of the other candidates that fits, at least one in a thousand.
        let fit = |count: u64| -> u64 {
            let share = (budget.max(1) as f64 / t.bits.max(1) as f64).clamp(0.001, 1.0);
            ((count as f64 * share).ceil() as u64).max(1)
        };
        let base = base_len as u64;
        let new_span = u64::from(t.span_new.1.saturating_sub(t.span_new.0)) + 1;
        self.gaps = [
            eg0_len(base / t.n[0].max(1)),
            eg0_len(base / fit(t.n[1])),
            eg0_len(new_span / fit(t.n[2])),
        ];
        let g = self.gaps.map(u64::from);
        for b in 0..256 {
            let bt = &self.buckets[b];
            self.hist[b] = bt.payload + u64::from(bt.kept) * g[1] + u64::from(bt.new) * g[2];
        }
        self.hist[usize::from(BUCKET_REMOVE)] += t.n[0] * g[0];
    }

    /// Marks what to take: removals, then by bucket (what must go, then priority), within
    /// `target` bits.
    fn select(&mut self, target: i64, tick: Tick) {
        // `hist` holds each bucket's cost (see `set_costs`).
        let mut left = target;
        let mut partial_bucket: Option<u8> = None;
        for b in (0..=255u8).rev() {
            let h = self.hist[usize::from(b)] as i64;
            if h <= left {
                left -= h;
            } else {
                partial_bucket = Some(b);
                break;
            }
        }
        let Some(pb) = partial_bucket else {
            for c in &mut self.cands {
                c.meta |= TAKE;
            }
            return;
        };
        // Removals always go, whatever the budget: an entry the client keeps must be one the
        // server can still describe (its source frame may be gone), and they cost a gap code
        // each. Only a view losing more entities than the budget has bits exceeds it.
        // Without branches, listing the bucket that does not all fit as we go.
        let n = self.cands.len();
        self.partial.clear();
        self.partial.resize(n, 0);
        let mut in_pb = 0usize;
        for (i, c) in self.cands.iter_mut().enumerate() {
            let take = c.bucket > pb || c.bucket == BUCKET_REMOVE;
            c.meta = (c.meta & KIND_MASK) | (u8::from(take) << 2);
            self.partial[in_pb] = i as u32;
            in_pb += usize::from(c.bucket == pb);
        }
        self.partial.truncate(in_pb);
        if n == 0 {
            return;
        }
        // That bucket from a rotating start, so that no id range is always last; then
        // anything below it that still fits.
        let gaps = self.gaps;
        let start = (u64::from(tick.0).wrapping_mul(2_654_435_761) % n as u64) as u32;
        let split = self.partial.partition_point(|&i| i < start);
        let (before, after) = self.partial.split_at(split);
        for &i in after.iter().chain(before) {
            let c = &mut self.cands[i as usize];
            let need = i64::from(c.payload() + gaps[c.kind() as usize]);
            if need <= left {
                c.meta |= TAKE;
                left -= need;
            }
        }
        if left < 16 {
            // Nothing below would fit.
            return;
        }
        let (tail, head) = self.cands.split_at_mut(start as usize);
        for c in head.iter_mut().chain(tail.iter_mut()) {
            if c.bucket >= pb || c.taken() {
                continue;
            }
            let need = i64::from(c.payload() + gaps[c.kind() as usize]);
            if need <= left {
                c.meta |= TAKE;
                left -= need;
            }
        }
    }

    /// Writes the body of the current selection; returns its length in bits (padded).
    fn write(
        &mut self,
        w: &mut BitWriter,
        frame: &WorldFrame,
        full: &FullCache,
        src: &Sources<'_>,
    ) -> usize {
        let all = self.cands.iter().all(Cand::taken);
        self.removed.clear();
        self.changed.clear();
        self.new.clear();
        self.events.clear();
        for (i, c) in self.cands.iter().enumerate() {
            if !c.taken() {
                continue;
            }
            match c.kind() {
                Kind::Removed => self.removed.push(i as u32),
                // With nothing held back, an unchanged entry is simply not listed.
                Kind::Kept if all && c.len == 0 => continue,
                Kind::Kept => self.changed.push(i as u32),
                Kind::New => self.new.push(i as u32),
            }
            self.events.push(i as u32);
        }
        let cands = &self.cands;
        write_section(w, &self.removed, |i| cands[i as usize].base_i, |_, _| {});
        write_section(
            w,
            &self.changed,
            |i| cands[i as usize].base_i,
            |w, i| {
                let c = &cands[i as usize];
                if c.len == 0 {
                    // Refreshed but unchanged: pos flag 0, other flag 0.
                    w.write_bits(0, 2);
                } else if let Some(d) = src.deltas[usize::from(c.age)] {
                    w.append_bits(d.bits.written(), c.run_start as usize, c.len as usize);
                }
            },
        );
        let bits = full.bits.written();
        let ids = frame.ids();
        write_section(
            w,
            &self.new,
            |i| ids[cands[i as usize].c as usize].0,
            |w, i| {
                let c = &cands[i as usize];
                w.append_bits(bits, c.run_start as usize, c.len as usize);
            },
        );
        w.bit_len().div_ceil(8) * 8
    }

    fn finish(&mut self, frame: &WorldFrame, src: &Sources<'_>, out: &mut HeldView) -> Budgeted {
        out.entries.clear();
        out.srcs = 0;
        let in_view = (self.tally.n[Kind::Kept as usize] + self.tally.n[Kind::New as usize]) as u32;
        let refreshed = (self.changed.len() + self.new.len()) as u32;
        let partial = self.cands.iter().any(|c| !c.taken());
        if !(partial && self.patch(frame, src, out)) {
            self.rebuild(frame, src, out);
        }
        Budgeted {
            checksum: out.checksum,
            partial,
            base: src.base.map(|(t, _)| t),
            refreshed: if partial { refreshed } else { in_view },
            held_back: in_view - if partial { refreshed } else { in_view },
        }
    }

    /// The view the client holds after a partial snapshot: the baseline's, with what the
    /// snapshot changes applied in stretches, and its checksum updated by them (PROTOCOL.md
    /// 7.7), without a step per entry left as it was. False (and `out` to be rebuilt) if a
    /// removed entry's state has left the history, so that its hash is not at hand.
    fn patch(&mut self, frame: &WorldFrame, src: &Sources<'_>, out: &mut HeldView) -> bool {
        let tick = src.tick;
        let (base, mut sum) = src
            .base
            .map_or((&[][..], 0), |(_, v)| (&v.entries[..], v.checksum));
        let (ids, hashes) = (frame.ids(), frame.hashes());
        let hash_of = |e: &HeldEntry| -> Option<u32> {
            let age = (tick.0.checked_sub(e.src.0)? / src.every) as usize;
            let f = (*src.frames.get(age)?)?;
            f.hashes().get(e.idx as usize).copied()
        };
        let mut left = self.tally.ages;
        let mut next = 0usize;
        out.entries.reserve(base.len() + self.new.len());
        for &i in &self.events {
            let c = &self.cands[i as usize];
            let bi = c.base_i as usize;
            out.entries.extend_from_slice(&base[next..bi]);
            match c.kind() {
                Kind::Removed => {
                    let Some(old) = hash_of(&base[bi]) else {
                        return false;
                    };
                    sum = sum.wrapping_sub(old);
                    next = bi + 1;
                }
                Kind::Kept => {
                    let be = base[bi];
                    let age = usize::from(c.age);
                    let old = src.frames[age].map_or(0, |f| f.hashes()[be.idx as usize]);
                    sum = sum.wrapping_sub(old).wrapping_add(hashes[c.c as usize]);
                    left[age] -= 1;
                    out.entries.push(HeldEntry {
                        id: be.id,
                        src: tick,
                        idx: c.c,
                    });
                    next = bi + 1;
                }
                Kind::New => {
                    sum = sum.wrapping_add(hashes[c.c as usize]);
                    out.entries.push(HeldEntry {
                        id: ids[c.c as usize],
                        src: tick,
                        idx: c.c,
                    });
                    next = bi;
                }
            }
        }
        out.entries.extend_from_slice(&base[next..]);
        out.srcs = u64::from(!self.changed.is_empty() || !self.new.is_empty());
        for (age, &n) in left.iter().enumerate() {
            out.srcs |= u64::from(n > 0) << age;
        }
        out.checksum = sum;
        true
    }

    /// The view the client holds after the snapshot, entry by entry (everything refreshed,
    /// or a removed entry's hash out of reach).
    fn rebuild(&mut self, frame: &WorldFrame, src: &Sources<'_>, out: &mut HeldView) {
        let tick = src.tick;
        out.entries.clear();
        let (ids, hashes) = (frame.ids(), frame.hashes());
        let base_entries: &[HeldEntry] = src.base.map_or(&[], |(_, v)| &v.entries);
        out.entries.reserve(self.cands.len());
        // The view checksum (PROTOCOL.md 7.7), the sum of the entries' hashes, as we go.
        let mut sum = 0u32;
        let mut srcs = 0u64;
        for c in &self.cands {
            let (entry, hash) = match c.kind() {
                Kind::Removed => continue,
                Kind::New if !c.taken() => continue,
                Kind::New => {
                    srcs |= 1;
                    let e = HeldEntry {
                        id: ids[c.c as usize],
                        src: tick,
                        idx: c.c,
                    };
                    (e, hashes[c.c as usize])
                }
                Kind::Kept => {
                    // Refreshed or kept as held, chosen without a branch. A kept entry's
                    // source is at most MAX_SOURCE_AGE old and in the history (else it was a
                    // forced removal, which is always taken).
                    let be = base_entries[c.base_i as usize];
                    let age = usize::from(c.age);
                    let old = src.frames[age].map_or(0, |f| f.hashes()[be.idx as usize]);
                    let take = c.taken();
                    srcs |= 1 << if take { 0 } else { age };
                    let e = HeldEntry {
                        id: be.id,
                        src: if take { tick } else { be.src },
                        idx: if take { c.c } else { be.idx },
                    };
                    (e, if take { hashes[c.c as usize] } else { old })
                }
            };
            sum = sum.wrapping_add(hash);
            out.entries.push(entry);
        }
        out.srcs = srcs;
        out.checksum = sum;
    }
}
