//! Encode once, send to many: the server side of replication that a room's clients share.
//!
//! The per-client [`crate::BaselineTracker`] keeps a copy of every view it sent and encodes
//! every body from scratch, so its CPU and memory grow as clients × visible entities × ring.
//! This module splits that work the way Quake 3 (`svs.snapshotEntities`), the Source engine
//! (packed entities) and Unreal's FastShared path do:
//! - [`WorldHistory`]: one ring of quantized entity states and entity hashes per snapshot tick,
//!   for the whole room.
//! - [`ViewIds`]: the ids one client saw at one tick, behind an `Arc`, so that clients with
//!   equal sets (everyone sees everyone, a shared cell) and ticks with an unchanged set share
//!   one copy. A client's [`ClientRing`] holds only ticks and such sets.
//! - [`DeltaCache`] and [`FullCache`]: the bits of entity *e*'s change from baseline tick *B* to
//!   the current tick, and of its full state, encoded once per tick and (*e*, *B*).
//! - [`SharedEncoder`]: writes one client's body from the caches, appending the cached bit runs
//!   ([`BitWriter::append_bits`]); clients with the same baseline tick and the same baseline
//!   and current sets get the same body, which the caller encodes once.
//!
//! The bytes are exactly those of [`crate::snapshot::DeltaEncoder`] over the equivalent
//! `ViewEntry` slices (the tests compare them). Call order per snapshot tick `T`:
//! [`WorldHistory::begin`] and [`WorldFrame::push`] every entity in id order; the views;
//! [`FullCache::build`] and a [`DeltaCache::build`] for each baseline tick in use; then
//! [`SharedEncoder::encode`] per distinct body; then [`ClientRing::push`] each client's set.
//! Nothing here allocates once its buffers have grown to size.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::baseline::AckOutcome;
use crate::bits::BitWriter;
use crate::ids::{EntityId, Tick};
use crate::quant::{QuantizedState, Quantizer};
use crate::snapshot::{combine_hashes, entity_hash, write_changed, write_full, write_section};

/// The quantized state of every entity of a room at one snapshot tick, in id order.
#[derive(Debug, Default, Clone)]
pub struct WorldFrame {
    tick: Tick,
    ids: Vec<EntityId>,
    states: Vec<QuantizedState>,
    hashes: Vec<u32>,
}

impl WorldFrame {
    /// The tick this frame is the state of.
    pub fn tick(&self) -> Tick {
        self.tick
    }

    /// Adds an entity; ids must be pushed in increasing order. Hashes it once for every
    /// client's checksum ([`crate::snapshot::entity_hash`]).
    pub fn push(&mut self, id: EntityId, state: QuantizedState) {
        debug_assert!(self.ids.last().is_none_or(|&last| last < id));
        self.ids.push(id);
        self.hashes.push(entity_hash(id, &state));
        self.states.push(state);
    }

    /// The entity ids, increasing.
    pub fn ids(&self) -> &[EntityId] {
        &self.ids
    }

    /// The states, by index.
    pub fn states(&self) -> &[QuantizedState] {
        &self.states
    }

    /// The entity hashes, by index.
    pub fn hashes(&self) -> &[u32] {
        &self.hashes
    }

    /// Entities in the frame.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the frame holds no entity.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The checksum of the view made of the entities at `indices` (increasing), as
    /// [`crate::snapshot::view_checksum`] computes it: a sum of the entity hashes of the
    /// frame, no re-hashing.
    pub fn checksum(&self, indices: &[u32]) -> u32 {
        combine_hashes(indices.iter().map(|&i| self.hashes[i as usize]))
    }

    fn clear(&mut self, tick: Tick) {
        self.tick = tick;
        self.ids.clear();
        self.states.clear();
        self.hashes.clear();
    }
}

/// The room's ring of the last `capacity` [`WorldFrame`]s. With one snapshot per client per
/// snapshot tick, a capacity of the clients' ring plus one (the frame being sent) keeps every
/// baseline a client can name. Frames reuse their buffers.
#[derive(Debug)]
pub struct WorldHistory {
    frames: VecDeque<WorldFrame>,
    capacity: usize,
}

impl WorldHistory {
    /// A history of `capacity` (at least 1) frames.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            frames: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Keeps at least `capacity` frames from now on.
    pub fn ensure_capacity(&mut self, capacity: usize) {
        self.capacity = self.capacity.max(capacity);
    }

    /// Starts the (empty) frame of `tick`, later than every tick before it, dropping the
    /// oldest frame when the ring is full.
    pub fn begin(&mut self, tick: Tick) -> &mut WorldFrame {
        debug_assert!(self.frames.back().is_none_or(|f| f.tick < tick));
        let mut frame = if self.frames.len() == self.capacity {
            self.frames.pop_front().unwrap_or_default()
        } else {
            WorldFrame::default()
        };
        frame.clear(tick);
        self.frames.push_back(frame);
        let last = self.frames.len() - 1;
        &mut self.frames[last]
    }

    /// The frame of `tick`, if it is still in the ring.
    pub fn get(&self, tick: Tick) -> Option<&WorldFrame> {
        let i = self.frames.binary_search_by_key(&tick, |f| f.tick).ok()?;
        self.frames.get(i)
    }

    /// The newest frame.
    pub fn latest(&self) -> Option<&WorldFrame> {
        self.frames.back()
    }
}

/// The ids of one view, increasing, packed: the first id and then each gap to the next
/// (`id - previous - 1`) as LEB128 varints, about one byte per id in a dense view instead of
/// four. A client's ring holds one set per sent snapshot, so this is most of its memory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IdSet {
    len: u32,
    bytes: Vec<u8>,
}

impl IdSet {
    /// Ids in the set.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The ids, increasing.
    pub fn iter(&self) -> IdIter<'_> {
        IdIter {
            bytes: &self.bytes,
            prev: -1,
            left: self.len,
        }
    }

    /// Replaces the contents with `ids` (increasing), keeping the buffer.
    pub fn assign(&mut self, ids: impl Iterator<Item = EntityId>) {
        self.bytes.clear();
        self.len = 0;
        let mut prev: i64 = -1;
        for id in ids {
            debug_assert!(i64::from(id.0) > prev);
            let mut gap = (i64::from(id.0) - prev - 1) as u32;
            prev = i64::from(id.0);
            while gap >= 0x80 {
                self.bytes.push((gap as u8) | 0x80);
                gap >>= 7;
            }
            self.bytes.push(gap as u8);
            self.len += 1;
        }
    }

    /// The set of `ids` (increasing).
    pub fn from_ids(ids: impl Iterator<Item = EntityId>) -> Self {
        let mut s = Self::default();
        s.assign(ids);
        s
    }
}

/// Iterator over an [`IdSet`].
#[derive(Debug, Clone)]
pub struct IdIter<'a> {
    bytes: &'a [u8],
    prev: i64,
    left: u32,
}

impl Iterator for IdIter<'_> {
    type Item = EntityId;

    fn next(&mut self) -> Option<EntityId> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut gap = 0u64;
        let mut shift = 0;
        while let Some((&b, rest)) = self.bytes.split_first() {
            self.bytes = rest;
            gap |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b < 0x80 {
                break;
            }
        }
        // Only `IdSet::assign` writes the bytes, so the id fits a u32.
        self.prev += 1 + gap as i64;
        Some(EntityId(self.prev as u32))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

/// A view's id set, shared: clients with equal sets, and a client's consecutive ticks with an
/// unchanged set, hold the same allocation.
pub type ViewIds = Arc<IdSet>;

/// A ring of what was sent to one client, newest last, and its acknowledged baseline; `V` is
/// what is remembered per snapshot (a view's ids here, whole views in the reference
/// [`crate::BaselineTracker`]).
#[derive(Debug)]
pub struct SentRing<V> {
    capacity: usize,
    ring: VecDeque<(Tick, V)>,
    acked: Option<Tick>,
}

impl<V> SentRing<V> {
    /// A ring of `capacity` (at least 1) snapshots.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            ring: VecDeque::with_capacity(capacity),
            acked: None,
        }
    }

    /// Records that the client holds the snapshot of `tick`.
    pub fn on_ack(&mut self, tick: Tick) -> AckOutcome {
        if self.acked.is_some_and(|a| tick <= a) {
            return AckOutcome::Old;
        }
        if self.position(tick).is_some() {
            self.acked = Some(tick);
            AckOutcome::Accepted
        } else if self.ring.front().is_some_and(|s| tick < s.0) {
            // Older than anything remembered: it may have been sent, we cannot tell.
            AckOutcome::Expired
        } else {
            AckOutcome::NeverSent
        }
    }

    /// The newest acknowledged tick still in the ring.
    pub fn acked(&self) -> Option<Tick> {
        self.acked.filter(|&t| self.position(t).is_some())
    }

    /// The baseline for a snapshot of `tick`: the acknowledged entry, if it is still in the
    /// ring and older than `tick`.
    pub fn baseline(&self, tick: Tick) -> Option<(Tick, &V)> {
        let a = self.acked.filter(|&a| a < tick)?;
        let (t, v) = self.ring.get(self.position(a)?)?;
        Some((*t, v))
    }

    /// The entry of `tick`, if it is in the ring.
    pub fn get(&self, tick: Tick) -> Option<&V> {
        self.ring.get(self.position(tick)?).map(|(_, v)| v)
    }

    /// The newest entry.
    pub fn newest(&self) -> Option<(Tick, &V)> {
        self.ring.back().map(|(t, v)| (*t, v))
    }

    /// Remembers what was sent as the snapshot of `tick` (later than every tick before);
    /// returns the entry it pushed out of a full ring, for its buffer to be reused.
    pub fn push(&mut self, tick: Tick, v: V) -> Option<V> {
        debug_assert!(self.ring.back().is_none_or(|s| s.0 < tick));
        let evicted = self.pop_if_full();
        self.ring.push_back((tick, v));
        evicted
    }

    /// Takes the oldest entry out when the ring is full, so its buffer can carry the next
    /// [`SentRing::push`].
    pub fn pop_if_full(&mut self) -> Option<V> {
        if self.ring.len() == self.capacity {
            self.ring.pop_front().map(|(_, v)| v)
        } else {
            None
        }
    }

    fn position(&self, tick: Tick) -> Option<usize> {
        // A client is usually sent every tick, so the ring's ticks are consecutive and the
        // entry is where its distance from the oldest says: one look instead of a search
        // (each of whose steps is a cache miss when thousands of rings are walked per tick).
        let front = self.ring.front()?.0;
        let guess = tick.since(front)? as usize;
        if self.ring.get(guess).is_some_and(|s| s.0 == tick) {
            return Some(guess);
        }
        self.ring.binary_search_by_key(&tick, |s| s.0).ok()
    }

    /// Takes out the entries older than the acknowledged one: acknowledgements only move
    /// forward, so they can never be a baseline again. Hands each to `spare`, for its buffer.
    pub fn prune_before_acked(&mut self, mut spare: impl FnMut(V)) {
        let Some(acked) = self.acked else {
            return;
        };
        while self.ring.front().is_some_and(|s| s.0 < acked) {
            if let Some((_, v)) = self.ring.pop_front() {
                spare(v);
            }
        }
    }
}

/// One client's replication state: the ticks it was sent with their view sets, its
/// acknowledged baseline, and spare sets evicted from the ring that no one else held.
/// Memory is O(ring) pointers plus the packed view sets no other client or tick shares.
#[derive(Debug)]
pub struct ClientRing {
    sent: SentRing<ViewIds>,
    /// Unshared sets taken out of the ring, reused (allocation and buffer) for new sets.
    spare: Vec<ViewIds>,
    scratch: IdSet,
}

/// Spare sets kept per client: one is enough for a set that changes every tick.
const MAX_SPARE_SETS: usize = 2;

impl ClientRing {
    /// A ring of `capacity` (at least 1) sent snapshots.
    pub fn new(capacity: usize) -> Self {
        Self {
            sent: SentRing::new(capacity),
            spare: Vec::new(),
            scratch: IdSet::default(),
        }
    }

    /// See [`SentRing::on_ack`].
    pub fn on_ack(&mut self, tick: Tick) -> AckOutcome {
        self.sent.on_ack(tick)
    }

    /// See [`SentRing::acked`].
    pub fn acked(&self) -> Option<Tick> {
        self.sent.acked()
    }

    /// See [`SentRing::baseline`].
    pub fn baseline(&self, tick: Tick) -> Option<(Tick, &ViewIds)> {
        self.sent.baseline(tick)
    }

    /// The set for a view of the entities at `indices` of `frame`: the newest sent set again
    /// when the ids are the same (and so a body shared with the previous tick's group), else
    /// a new set in a recycled allocation.
    pub fn own_view(&mut self, frame: &WorldFrame, indices: &[u32]) -> ViewIds {
        let ids = frame.ids();
        self.scratch
            .assign(indices.iter().map(|&i| ids[i as usize]));
        if let Some((_, prev)) = self.sent.newest()
            && **prev == self.scratch
        {
            return prev.clone();
        }
        let mut set = self.spare.pop().unwrap_or_default();
        match Arc::get_mut(&mut set) {
            // Spares are unshared by construction; this is the path every time.
            Some(s) => std::mem::swap(s, &mut self.scratch),
            None => set = Arc::new(self.scratch.clone()),
        }
        set
    }

    /// Remembers `view` as sent with the snapshot of `tick`.
    pub fn push(&mut self, tick: Tick, view: ViewIds) {
        if let Some(old) = self.sent.push(tick, view)
            && Arc::strong_count(&old) == 1
            && self.spare.len() < MAX_SPARE_SETS
        {
            self.spare.push(old);
        }
    }
}

/// Where one entity's cached bits are in a cache's buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) start: u32,
    pub(crate) len: u32,
}

/// The full-state bits ([`crate::snapshot`]'s "new entity" encoding) of every entity of the
/// current frame, encoded once per tick for every client it enters the view of.
#[derive(Debug, Default)]
pub struct FullCache {
    pub(crate) bits: BitWriter,
    pub(crate) runs: Vec<Run>,
}

impl FullCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Encodes every entity of `frame`.
    pub fn build(&mut self, q: &Quantizer, frame: &WorldFrame) {
        self.bits.clear();
        self.runs.clear();
        for s in frame.states() {
            let start = self.bits.bit_len();
            write_full(&mut self.bits, q, s);
            self.runs.push(run(start, self.bits.bit_len()));
        }
        self.bits.finish_view();
    }
}

/// The change bits of every entity of the current frame against its state at one baseline
/// tick; an entity whose state did not change has an empty run (it costs nothing in a body).
#[derive(Debug, Default)]
pub struct DeltaCache {
    base: Tick,
    pub(crate) bits: BitWriter,
    /// By current-frame index; entities not in the baseline frame have an empty run and are
    /// never asked for (a baseline view only holds entities of its frame).
    pub(crate) runs: Vec<Run>,
}

impl DeltaCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The baseline tick this cache was built against.
    pub fn base_tick(&self) -> Tick {
        self.base
    }

    /// Encodes the change of every entity of `cur` that is also in `base`: one merge walk over
    /// both frames, O(entities), whatever the number of clients using this baseline.
    pub fn build(&mut self, q: &Quantizer, base: &WorldFrame, cur: &WorldFrame) {
        self.base = base.tick();
        self.bits.clear();
        self.runs.clear();
        let (bids, bstates) = (base.ids(), base.states());
        let mut i = 0;
        for (id, s) in cur.ids().iter().zip(cur.states()) {
            while i < bids.len() && bids[i] < *id {
                i += 1;
            }
            if i < bids.len() && bids[i] == *id && bstates[i] != *s {
                let start = self.bits.bit_len();
                write_changed(&mut self.bits, q, &bstates[i], s);
                self.runs.push(run(start, self.bits.bit_len()));
            } else {
                self.runs.push(Run::default());
            }
        }
        self.bits.finish_view();
    }
}

fn run(start: usize, end: usize) -> Run {
    // A body is bounded far below 4 Gbit (wincode's frame limit is 1 MiB).
    Run {
        start: start as u32,
        len: (end - start) as u32,
    }
}

/// Reusable scratch for [`SharedEncoder::encode`]; keep one per thread.
#[derive(Debug, Default, Clone)]
pub struct SharedEncoder {
    removed: Vec<u32>,
    /// (baseline index, run)
    changed: Vec<(u32, Run)>,
    /// (id, run)
    new: Vec<(EntityId, Run)>,
}

impl SharedEncoder {
    /// A new encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends to `w` the body that turns the client's baseline (the ids `base` at the tick
    /// `delta` was built against, or nothing for a full snapshot) into the view of the
    /// entities at `cur` (increasing indices) of the frame `full` was built from. The bytes
    /// are those [`crate::snapshot::DeltaEncoder`] writes for the same views.
    pub fn encode(
        &mut self,
        base: Option<(&IdSet, &DeltaCache)>,
        frame: &WorldFrame,
        cur: &[u32],
        full: &FullCache,
        w: &mut BitWriter,
    ) {
        self.removed.clear();
        self.changed.clear();
        self.new.clear();
        let ids = frame.ids();
        let empty = IdSet::default();
        let (base_ids, delta) = match base {
            Some((b, d)) => (b, Some(d)),
            None => (&empty, None),
        };
        let mut bi = base_ids.iter();
        let (mut i, mut j) = (0u32, 0);
        let mut b = bi.next();
        while let (Some(bid), Some(&c)) = (b, cur.get(j)) {
            let c = c as usize;
            let cid = ids[c];
            if bid == cid {
                // A baseline set only holds entities of its frame, so `delta` exists here.
                if let Some(d) = delta {
                    let r = d.runs[c];
                    if r.len > 0 {
                        self.changed.push((i, r));
                    }
                }
                i += 1;
                b = bi.next();
                j += 1;
            } else if bid < cid {
                self.removed.push(i);
                i += 1;
                b = bi.next();
            } else {
                self.new.push((cid, full.runs[c]));
                j += 1;
            }
        }
        self.removed.extend(i..base_ids.len() as u32);
        self.new.extend(
            cur[j..]
                .iter()
                .map(|&c| (ids[c as usize], full.runs[c as usize])),
        );

        write_section(w, &self.removed, |i| i, |_, _| {});
        let src = delta.map_or(&[][..], |d| d.bits.written());
        write_section(
            w,
            &self.changed,
            |(i, _)| i,
            |w, (_, r)| w.append_bits(src, r.start as usize, r.len as usize),
        );
        let src = full.bits.written();
        write_section(
            w,
            &self.new,
            |(id, _)| id.0,
            |w, (_, r)| w.append_bits(src, r.start as usize, r.len as usize),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::WorldBounds;
    use crate::snapshot::{DeltaEncoder, ViewEntry};
    use glam::Vec3;

    fn q() -> Quantizer {
        Quantizer::new(WorldBounds {
            min: Vec3::ZERO,
            max: Vec3::new(100.0, 100.0, 0.0),
        })
        .unwrap()
    }

    fn st(x: u32) -> QuantizedState {
        QuantizedState {
            kind: 1,
            pos: [x, 2 * x, 0],
            health: 100,
            ..Default::default()
        }
    }

    #[test]
    fn shared_body_matches_the_reference() {
        let q = q();
        let mut h = WorldHistory::new(4);
        let f = h.begin(Tick(1));
        for id in [1, 2, 5, 9] {
            f.push(EntityId(id), st(id * 10));
        }
        let f = h.begin(Tick(2));
        // 1 unchanged, 2 moved, 5 gone, 7 new, 9 moved.
        for (id, x) in [(1, 10), (2, 21), (7, 70), (9, 95)] {
            f.push(EntityId(id), st(x));
        }
        let (b, c) = (h.get(Tick(1)).unwrap(), h.latest().unwrap());
        let mut full = FullCache::new();
        full.build(&q, c);
        let mut delta = DeltaCache::new();
        delta.build(&q, b, c);
        assert_eq!(delta.base_tick(), Tick(1));
        let view = |f: &WorldFrame, idx: &[u32]| -> Vec<ViewEntry> {
            idx.iter()
                .map(|&i| (f.ids()[i as usize], f.states()[i as usize]))
                .collect()
        };
        let mut enc = SharedEncoder::new();
        for (bidx, cidx) in [
            (vec![0, 1, 2, 3], vec![0, 1, 2, 3]),
            (vec![0, 2], vec![1, 2]),
            (vec![], vec![0, 3]),
            (vec![1, 3], vec![]),
        ] {
            let base_ids = IdSet::from_ids(bidx.iter().map(|&i| b.ids()[i as usize]));
            let mut want = BitWriter::new();
            DeltaEncoder::new().encode(&q, &view(b, &bidx), &view(c, &cidx), &mut want);
            let mut got = BitWriter::new();
            enc.encode(Some((&base_ids, &delta)), c, &cidx, &full, &mut got);
            assert_eq!(got.finish(), want.finish(), "{bidx:?} -> {cidx:?}");
            let mut want = BitWriter::new();
            DeltaEncoder::new().encode(&q, &[], &view(c, &cidx), &mut want);
            let mut got = BitWriter::new();
            enc.encode(None, c, &cidx, &full, &mut got);
            assert_eq!(got.finish(), want.finish());
        }
    }

    #[test]
    fn id_sets_pack_gaps_and_roundtrip() {
        let ids = [0u32, 1, 2, 130, 131, 20_000, 20_001, u32::MAX - 1, u32::MAX];
        let s = IdSet::from_ids(ids.iter().map(|&i| EntityId(i)));
        assert_eq!(s.len(), ids.len());
        assert_eq!(s.iter().map(|e| e.0).collect::<Vec<_>>(), ids);
        // 0,1,2: one byte each; 130: gap 127 one byte; 131; 20,000: gap 19,868, 3 bytes; …
        assert_eq!(s.bytes[..5], [0, 0, 0, 127, 0]);
        assert!(IdSet::default().iter().next().is_none());
    }

    #[test]
    fn sent_ring_finds_ticks_with_and_without_gaps() {
        let mut r = SentRing::new(4);
        // Consecutive ticks (the fast path), then gaps (a client skipped by the budget or
        // deferral), with evictions moving the oldest.
        for t in [3, 4, 5, 7, 10, 11] {
            r.push(Tick(t), t * 100);
        }
        assert_eq!(r.get(Tick(3)), None);
        assert_eq!(r.get(Tick(4)), None);
        assert_eq!(r.get(Tick(5)), Some(&500));
        assert_eq!(r.get(Tick(6)), None);
        assert_eq!(r.get(Tick(7)), Some(&700));
        assert_eq!(r.get(Tick(10)), Some(&1000));
        assert_eq!(r.get(Tick(11)), Some(&1100));
        assert_eq!(r.get(Tick(12)), None);
        assert_eq!(r.on_ack(Tick(8)), AckOutcome::NeverSent);
        assert_eq!(r.on_ack(Tick(3)), AckOutcome::Expired);
        assert_eq!(r.on_ack(Tick(10)), AckOutcome::Accepted);
        assert_eq!(r.baseline(Tick(12)), Some((Tick(10), &1000)));
        assert_eq!(r.baseline(Tick(10)), None);
        for t in 12..=30 {
            r.push(Tick(t), t * 100);
        }
        assert_eq!(r.acked(), None, "the acknowledged tick left the ring");
        assert_eq!(r.get(Tick(27)), Some(&2700));
        assert_eq!(
            r.get(Tick(29)),
            Some(&2900),
            "at its distance from the oldest"
        );
        assert_eq!(r.get(Tick(31)), None);
        assert_eq!(r.get(Tick(26)), None);
    }

    #[test]
    fn client_ring_shares_unchanged_sets_and_recycles() {
        let mut h = WorldHistory::new(2);
        let f = h.begin(Tick(1));
        f.push(EntityId(1), st(1));
        f.push(EntityId(2), st(2));
        let mut r = ClientRing::new(2);
        let a = r.own_view(h.latest().unwrap(), &[0, 1]);
        r.push(Tick(1), a.clone());
        let again = r.own_view(h.latest().unwrap(), &[0, 1]);
        assert!(Arc::ptr_eq(&a, &again), "an unchanged set is shared");
        let other = r.own_view(h.latest().unwrap(), &[1]);
        assert!(!Arc::ptr_eq(&a, &other));
        assert_eq!(r.on_ack(Tick(1)), AckOutcome::Accepted);
        assert_eq!(r.baseline(Tick(2)).map(|(t, _)| t), Some(Tick(1)));
        assert_eq!(r.baseline(Tick(1)), None, "never against itself");
        drop((a, again));
        r.push(Tick(2), other);
        r.push(Tick(3), Arc::new(IdSet::default()));
        // Tick 1 left the ring: its set (held by no one else) became a spare.
        assert_eq!(r.acked(), None);
        assert_eq!(r.spare.len(), 1);
        assert!(h.get(Tick(1)).is_some() && h.get(Tick(9)).is_none());
    }
}
