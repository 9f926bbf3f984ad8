//! The snapshot delta codec and the view checksum.
//!
//! A *view* is what one client sees at one tick: a slice of [`ViewEntry`] sorted by entity id,
//! ids unique. A snapshot body turns a baseline view (the empty view for a full snapshot) into
//! the current view. Body layout, in [`crate::bits`] order:
//!
//! ```text
//! removed_count: eg0, then per removed entity: eg0 index gap into the baseline
//! changed_count: eg0, then per changed entity: eg0 index gap into the baseline, field changes
//! new_count:     eg0, then per new entity:     eg0 id gap, full state
//! ```
//!
//! Index gaps count baseline entries skipped since the previous one in the same list (the
//! first gap counts from index 0). Id gaps likewise count ids skipped since the previous new
//! entity (the first gap is the id itself). Entities in neither list are unchanged and cost
//! nothing beyond the counts. `PROTOCOL.md` gives the field encodings bit by bit.

use crate::bits::{BitError, BitReader, BitWriter};
use crate::ids::EntityId;
use crate::quant::{QuantizedState, Quantizer, YAW_BITS};

/// One entity of a view.
pub type ViewEntry = (EntityId, QuantizedState);

/// Most entities a decoded view may hold; bounds a client's memory per snapshot.
pub const MAX_VIEW_ENTITIES: usize = 65_536;

/// Fewest bits a new entity takes (id gap, kind, vel flag, yaw, health, flags), used to
/// reject an impossible `new_count` before allocating for it.
const MIN_NEW_ENTITY_BITS: usize = 1 + 16 + 1 + YAW_BITS as usize + 16 + 16;

// Mask bits of the "other fields" group of a changed entity.
const CH_VEL: u32 = 1;
const CH_YAW: u32 = 2;
const CH_HEALTH: u32 = 4;
const CH_FLAGS: u32 = 8;
const CH_KIND: u32 = 16;
const CH_BITS: u32 = 5;

/// Why a snapshot body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The bit stream is truncated or holds an over-long code.
    #[error("snapshot body: {0}")]
    Bits(#[from] BitError),
    /// An index points past the end of the baseline, or lists overlap.
    #[error("snapshot body names baseline entry {index} of {len}")]
    BadIndex {
        /// The index.
        index: u64,
        /// Baseline length.
        len: usize,
    },
    /// A new entity's id is out of order, beyond `u32`, or already in the view.
    #[error("snapshot body has a duplicate or out-of-range entity id")]
    BadId,
    /// A position is outside the world.
    #[error("snapshot body has a position outside the world")]
    OutOfBounds,
    /// More entities than [`MAX_VIEW_ENTITIES`] or than the body could hold.
    #[error("snapshot body claims {0} entities")]
    TooMany(u64),
    /// Bytes other than zero padding after the last field.
    #[error("snapshot body has trailing data")]
    TrailingData,
}

/// FNV-1a (32-bit) offset basis: the hash of nothing, where [`fnv1a`] starts.
pub const FNV_OFFSET: u32 = 0x811c_9dc5;
/// FNV-1a (32-bit) prime.
const FNV_PRIME: u32 = 0x0100_0193;

/// FNV-1a (32-bit) of `bytes`, continuing from `h` ([`FNV_OFFSET`] to start): hashing `a`
/// then `b` this way equals hashing `a ++ b`.
pub fn fnv1a(mut h: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The hash of one entity: FNV-1a (32-bit) over the little-endian bytes of
/// `id: u32, kind: u16, pos: 3 × u32, vel: 3 × i16, yaw: u16, health: u16, flags: u16`
/// (30 bytes).
pub fn entity_hash(id: EntityId, s: &QuantizedState) -> u32 {
    let mut b = [0u8; 30];
    b[0..4].copy_from_slice(&id.0.to_le_bytes());
    b[4..6].copy_from_slice(&s.kind.to_le_bytes());
    for a in 0..3 {
        b[6 + 4 * a..10 + 4 * a].copy_from_slice(&s.pos[a].to_le_bytes());
        b[18 + 2 * a..20 + 2 * a].copy_from_slice(&s.vel[a].to_le_bytes());
    }
    b[24..26].copy_from_slice(&s.yaw.to_le_bytes());
    b[26..28].copy_from_slice(&s.health.to_le_bytes());
    b[28..30].copy_from_slice(&s.flags.to_le_bytes());
    fnv1a(FNV_OFFSET, &b)
}

/// Combines entity hashes into a view checksum: their sum, modulo 2^32 (PROTOCOL.md 7.7).
/// The order does not matter, so a server can update a client's checksum by what a snapshot
/// changes rather than recombine the whole view; it hashes every entity once per tick.
pub fn combine_hashes(hashes: impl IntoIterator<Item = u32>) -> u32 {
    hashes.into_iter().fold(0, u32::wrapping_add)
}

/// The checksum of a view: [`combine_hashes`] of every entry's [`entity_hash`]. The empty
/// view's checksum is 0.
pub fn view_checksum(view: &[ViewEntry]) -> u32 {
    combine_hashes(view.iter().map(|(id, s)| entity_hash(*id, s)))
}

fn zigzag(d: i64) -> u64 {
    ((d << 1) ^ (d >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    (z >> 1) as i64 ^ -((z & 1) as i64)
}

/// Writes the change of one integer from `base` to `cur`, where `abs_bits` is the width of an
/// absolute value:
/// `0` no change; `10` + 5 bits: zigzag 1..=32; `110` + 8 bits: zigzag 33..=288;
/// `1110` + 12 bits: zigzag 289..=4384; `1111` + `abs_bits` bits: the new value itself.
fn write_change(w: &mut BitWriter, base: u32, cur: u32, abs_bits: u32, signed16: bool) {
    let d = if signed16 {
        i64::from(cur as u16 as i16) - i64::from(base as u16 as i16)
    } else {
        i64::from(cur) - i64::from(base)
    };
    if d == 0 {
        w.write_bits(0, 1);
        return;
    }
    let z = zigzag(d);
    if z <= 32 {
        w.write_bits(0b01, 2);
        w.write_bits((z - 1) as u32, 5);
    } else if z <= 288 {
        w.write_bits(0b011, 3);
        w.write_bits((z - 33) as u32, 8);
    } else if z <= 4384 {
        w.write_bits(0b0111, 4);
        w.write_bits((z - 289) as u32, 12);
    } else {
        w.write_bits(0b1111, 4);
        w.write_bits(cur, abs_bits);
    }
}

/// Reads what [`write_change`] wrote; returns the new value as written (not yet range-checked).
fn read_change(
    r: &mut BitReader<'_>,
    base: u32,
    abs_bits: u32,
    signed16: bool,
) -> Result<i64, SnapshotError> {
    let base = if signed16 {
        i64::from(base as u16 as i16)
    } else {
        i64::from(base)
    };
    if !r.read_bit()? {
        return Ok(base);
    }
    let z = if !r.read_bit()? {
        u64::from(r.read_bits(5)?) + 1
    } else if !r.read_bit()? {
        u64::from(r.read_bits(8)?) + 33
    } else if !r.read_bit()? {
        u64::from(r.read_bits(12)?) + 289
    } else {
        let raw = r.read_bits(abs_bits)?;
        return Ok(if signed16 {
            i64::from(raw as u16 as i16)
        } else {
            i64::from(raw)
        });
    };
    Ok(base + unzigzag(z))
}

pub(crate) fn write_full(w: &mut BitWriter, q: &Quantizer, s: &QuantizedState) {
    w.write_bits(u32::from(s.kind), 16);
    for (a, bits) in q.pos_bits().into_iter().enumerate() {
        w.write_bits(s.pos[a], bits);
    }
    if s.vel == [0; 3] {
        w.write_bit(false);
    } else {
        w.write_bit(true);
        for v in s.vel {
            w.write_bits(u32::from(v as u16), 16);
        }
    }
    w.write_bits(u32::from(s.yaw), YAW_BITS);
    w.write_bits(u32::from(s.health), 16);
    w.write_bits(u32::from(s.flags), 16);
}

fn read_full(r: &mut BitReader<'_>, q: &Quantizer) -> Result<QuantizedState, SnapshotError> {
    let mut s = QuantizedState {
        kind: r.read_bits(16)? as u16,
        ..QuantizedState::default()
    };
    for a in 0..3 {
        s.pos[a] = r.read_bits(q.pos_bits()[a])?;
        if s.pos[a] > q.max_q()[a] {
            return Err(SnapshotError::OutOfBounds);
        }
    }
    if r.read_bit()? {
        for v in &mut s.vel {
            *v = r.read_bits(16)? as u16 as i16;
        }
    }
    s.yaw = r.read_bits(YAW_BITS)? as u16;
    s.health = r.read_bits(16)? as u16;
    s.flags = r.read_bits(16)? as u16;
    Ok(s)
}

pub(crate) fn write_changed(
    w: &mut BitWriter,
    q: &Quantizer,
    base: &QuantizedState,
    cur: &QuantizedState,
) {
    if base.pos != cur.pos {
        w.write_bit(true);
        for (a, bits) in q.pos_bits().into_iter().enumerate() {
            if bits > 0 {
                write_change(w, base.pos[a], cur.pos[a], bits, false);
            }
        }
    } else {
        w.write_bit(false);
    }
    let mut mask = 0;
    if base.vel != cur.vel {
        mask |= CH_VEL;
    }
    if base.yaw != cur.yaw {
        mask |= CH_YAW;
    }
    if base.health != cur.health {
        mask |= CH_HEALTH;
    }
    if base.flags != cur.flags {
        mask |= CH_FLAGS;
    }
    if base.kind != cur.kind {
        mask |= CH_KIND;
    }
    if mask == 0 {
        w.write_bit(false);
        return;
    }
    w.write_bit(true);
    w.write_bits(mask, CH_BITS);
    if mask & CH_VEL != 0 {
        for a in 0..3 {
            write_change(
                w,
                u32::from(base.vel[a] as u16),
                u32::from(cur.vel[a] as u16),
                16,
                true,
            );
        }
    }
    if mask & CH_YAW != 0 {
        w.write_bits(u32::from(cur.yaw), YAW_BITS);
    }
    if mask & CH_HEALTH != 0 {
        w.write_bits(u32::from(cur.health), 16);
    }
    if mask & CH_FLAGS != 0 {
        w.write_bits(u32::from(cur.flags), 16);
    }
    if mask & CH_KIND != 0 {
        w.write_bits(u32::from(cur.kind), 16);
    }
}

fn read_changed(
    r: &mut BitReader<'_>,
    q: &Quantizer,
    base: &QuantizedState,
) -> Result<QuantizedState, SnapshotError> {
    let mut s = *base;
    if r.read_bit()? {
        for a in 0..3 {
            let bits = q.pos_bits()[a];
            if bits == 0 {
                continue;
            }
            let v = read_change(r, base.pos[a], bits, false)?;
            if v < 0 || v > i64::from(q.max_q()[a]) {
                return Err(SnapshotError::OutOfBounds);
            }
            s.pos[a] = v as u32;
        }
    }
    if r.read_bit()? {
        let mask = r.read_bits(CH_BITS)?;
        if mask & CH_VEL != 0 {
            for a in 0..3 {
                let v = read_change(r, u32::from(base.vel[a] as u16), 16, true)?;
                // Out-of-range deltas wrap like the i16 arithmetic a JavaScript client does
                // with `<< 16 >> 16`, so every decoder agrees on the result.
                s.vel[a] = v as i16;
            }
        }
        if mask & CH_YAW != 0 {
            s.yaw = r.read_bits(YAW_BITS)? as u16;
        }
        if mask & CH_HEALTH != 0 {
            s.health = r.read_bits(16)? as u16;
        }
        if mask & CH_FLAGS != 0 {
            s.flags = r.read_bits(16)? as u16;
        }
        if mask & CH_KIND != 0 {
            s.kind = r.read_bits(16)? as u16;
        }
    }
    Ok(s)
}

/// Reusable scratch for delta encoding: one merge walk of baseline and current view records
/// what was removed, changed and added, then the three sections are written. Keep one per
/// client (the [`crate::BaselineTracker`] does) and a steady state allocates nothing.
#[derive(Debug, Default, Clone)]
pub struct DeltaEncoder {
    removed: Vec<u32>,
    /// (baseline index, current index)
    changed: Vec<(u32, u32)>,
    /// current index
    new: Vec<u32>,
}

impl DeltaEncoder {
    /// A new encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the body that turns `baseline` into `current` (both id-sorted, ids unique) to
    /// `w`. Pass an empty baseline for a full snapshot.
    pub fn encode(
        &mut self,
        q: &Quantizer,
        baseline: &[ViewEntry],
        current: &[ViewEntry],
        w: &mut BitWriter,
    ) {
        debug_assert!(baseline.windows(2).all(|p| p[0].0 < p[1].0));
        debug_assert!(current.windows(2).all(|p| p[0].0 < p[1].0));
        self.removed.clear();
        self.changed.clear();
        self.new.clear();
        let (mut i, mut j) = (0, 0);
        while i < baseline.len() && j < current.len() {
            let (b, c) = (&baseline[i], &current[j]);
            if b.0 == c.0 {
                if b.1 != c.1 {
                    self.changed.push((i as u32, j as u32));
                }
                i += 1;
                j += 1;
            } else if b.0 < c.0 {
                self.removed.push(i as u32);
                i += 1;
            } else {
                self.new.push(j as u32);
                j += 1;
            }
        }
        self.removed.extend(i as u32..baseline.len() as u32);
        self.new.extend(j as u32..current.len() as u32);

        write_section(w, &self.removed, |i| i, |_, _| {});
        write_section(
            w,
            &self.changed,
            |(i, _)| i,
            |w, (i, j)| write_changed(w, q, &baseline[i as usize].1, &current[j as usize].1),
        );
        write_section(
            w,
            &self.new,
            |j| current[j as usize].0.0,
            |w, j| write_full(w, q, &current[j as usize].1),
        );
    }
}

/// Writes one section of a body: its count, then for each item the eg0 gap of its `key` from
/// the previous item's (the first counts from 0) and whatever `payload` writes. Keys are
/// baseline indices in the removed and changed sections, entity ids in the new one.
pub(crate) fn write_section<T: Copy>(
    w: &mut BitWriter,
    items: &[T],
    key: impl Fn(T) -> u32,
    mut payload: impl FnMut(&mut BitWriter, T),
) {
    w.write_eg0(items.len() as u32);
    let mut prev: i64 = -1;
    for &item in items {
        let k = i64::from(key(item));
        w.write_eg0((k - prev - 1) as u32);
        prev = k;
        payload(w, item);
    }
}

/// Appends the body that turns `baseline` into `current` (both id-sorted, ids unique) to `w`.
/// Pass an empty baseline for a full snapshot. A one-off convenience: it allocates scratch;
/// encode repeatedly with a [`DeltaEncoder`].
pub fn encode_delta(
    q: &Quantizer,
    baseline: &[ViewEntry],
    current: &[ViewEntry],
    w: &mut BitWriter,
) {
    DeltaEncoder::new().encode(q, baseline, current, w);
}

/// Reads a list of strictly increasing indices below `len`, written as eg0 gaps.
fn read_index(r: &mut BitReader<'_>, prev: &mut i64, len: usize) -> Result<usize, SnapshotError> {
    let index = *prev + 1 + i64::from(r.read_eg0()?);
    if index >= len as i64 {
        return Err(SnapshotError::BadIndex {
            index: index as u64,
            len,
        });
    }
    *prev = index;
    Ok(index as usize)
}

/// Decodes `body` against `baseline` (id-sorted) into `out` (cleared first), which ends up
/// id-sorted with unique ids. Any malformed body is an error, never a panic; `out` never grows
/// past [`MAX_VIEW_ENTITIES`] or what the body's length could describe.
pub fn decode_delta(
    q: &Quantizer,
    baseline: &[ViewEntry],
    body: &[u8],
    out: &mut Vec<ViewEntry>,
) -> Result<(), SnapshotError> {
    decode_delta_listing(q, baseline, body, out, |_| {})
}

/// As [`decode_delta`], calling `listed` with the id of every entry the body lists (changed
/// entries in baseline order, then new ones in id order): in a partial snapshot (PROTOCOL.md
/// 7.4), the entries it refreshed.
pub fn decode_delta_listing(
    q: &Quantizer,
    baseline: &[ViewEntry],
    body: &[u8],
    out: &mut Vec<ViewEntry>,
    mut listed: impl FnMut(EntityId),
) -> Result<(), SnapshotError> {
    out.clear();
    let mut r = BitReader::new(body);
    let len = baseline.len();

    // Removed entries: mark by walking; we keep a cursor into the baseline and copy survivors
    // lazily once the changed list is known, so no side table is needed.
    let removed_count = r.read_eg0()? as usize;
    if removed_count > len {
        return Err(SnapshotError::TooMany(removed_count as u64));
    }
    // Decode the removed indices into `out` as placeholders would cost memory; instead we
    // remember the reader position and re-read them during the merge below.
    let removed_start = r.clone();
    let mut prev = -1;
    for _ in 0..removed_count {
        read_index(&mut r, &mut prev, len)?;
    }
    let mut removed_reader = removed_start;
    let mut removed_prev = -1;
    let mut removed_left = removed_count;
    let mut next_removed = |rr: &mut BitReader<'_>| -> Result<Option<usize>, SnapshotError> {
        if removed_left == 0 {
            return Ok(None);
        }
        removed_left -= 1;
        read_index(rr, &mut removed_prev, len).map(Some)
    };

    let changed_count = r.read_eg0()? as usize;
    if changed_count > len - removed_count {
        return Err(SnapshotError::TooMany(changed_count as u64));
    }
    out.reserve(len - removed_count);

    // Walk the baseline once: drop removed entries, apply changes, keep the rest.
    let mut removed_next = next_removed(&mut removed_reader)?;
    let mut changed_prev = -1;
    let mut copied_to = 0;
    for _ in 0..changed_count {
        let idx = read_index(&mut r, &mut changed_prev, len)?;
        // Copy unchanged survivors before idx.
        while copied_to < idx {
            if removed_next == Some(copied_to) {
                removed_next = next_removed(&mut removed_reader)?;
            } else {
                out.push(baseline[copied_to]);
            }
            copied_to += 1;
        }
        if removed_next == Some(idx) {
            return Err(SnapshotError::BadIndex {
                index: idx as u64,
                len,
            });
        }
        let (id, base) = &baseline[idx];
        out.push((*id, read_changed(&mut r, q, base)?));
        listed(*id);
        copied_to = idx + 1;
    }
    while copied_to < len {
        if removed_next == Some(copied_to) {
            removed_next = next_removed(&mut removed_reader)?;
        } else {
            out.push(baseline[copied_to]);
        }
        copied_to += 1;
    }

    let new_count = r.read_eg0()? as usize;
    if new_count > MAX_VIEW_ENTITIES - out.len().min(MAX_VIEW_ENTITIES)
        || new_count > r.remaining() / MIN_NEW_ENTITY_BITS
    {
        return Err(SnapshotError::TooMany(new_count as u64));
    }
    if new_count > 0 {
        let survivors = out.len();
        out.reserve(new_count);
        let mut prev: i64 = -1;
        for _ in 0..new_count {
            let id = prev + 1 + i64::from(r.read_eg0()?);
            let id = u32::try_from(id).map_err(|_| SnapshotError::BadId)?;
            prev = i64::from(id);
            out.push((EntityId(id), read_full(&mut r, q)?));
            listed(EntityId(id));
        }
        // Survivors and new entities are each sorted; merge them in place.
        if survivors > 0 {
            out.sort_unstable_by_key(|e| e.0);
        }
        if out.windows(2).any(|p| p[0].0 == p[1].0) {
            return Err(SnapshotError::BadId);
        }
    }
    if !r.only_padding_left() {
        return Err(SnapshotError::TrailingData);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::WorldBounds;
    use glam::Vec3;

    fn q() -> Quantizer {
        Quantizer::new(WorldBounds {
            min: Vec3::new(-100.0, -100.0, 0.0),
            max: Vec3::new(100.0, 100.0, 10.0),
        })
        .unwrap()
    }

    fn st(x: u32, y: u32) -> QuantizedState {
        QuantizedState {
            kind: 1,
            pos: [x, y, 0],
            vel: [0; 3],
            yaw: 7,
            health: 100,
            flags: 0,
        }
    }

    fn roundtrip(base: &[ViewEntry], cur: &[ViewEntry]) -> usize {
        let mut w = BitWriter::new();
        encode_delta(&q(), base, cur, &mut w);
        let bytes = w.finish();
        let mut out = Vec::new();
        decode_delta(&q(), base, &bytes, &mut out).unwrap();
        assert_eq!(out, cur);
        bytes.len()
    }

    #[test]
    fn deltas_roundtrip() {
        let base = vec![
            (EntityId(1), st(10, 10)),
            (EntityId(5), st(20, 20)),
            (EntityId(9), st(30, 30)),
        ];
        let mut moved = base.clone();
        moved[1].1.pos[0] += 3;
        moved[2].1.vel = [-5, 300, 32767];
        moved[2].1.health = 3;
        roundtrip(&base, &moved);
        // Remove 5, add 2 and 7, change 9.
        let cur = vec![
            (EntityId(1), st(10, 10)),
            (EntityId(2), st(0, 12_800)),
            (EntityId(7), st(1, 1)),
            (EntityId(9), st(12_800, 0)),
        ];
        roundtrip(&base, &cur);
        roundtrip(&[], &cur);
        roundtrip(&cur, &[]);
        // Unchanged costs only the three counts.
        assert_eq!(roundtrip(&base, &base), 1);
    }

    #[test]
    fn small_moves_are_small() {
        let base: Vec<ViewEntry> = (0..64).map(|i| (EntityId(i), st(5000, 5000))).collect();
        let cur: Vec<ViewEntry> = base
            .iter()
            .map(|(id, s)| {
                let mut s = *s;
                s.pos[0] += 10;
                s.pos[1] -= 7;
                (*id, s)
            })
            .collect();
        let bytes = roundtrip(&base, &cur);
        // 64 × (gap 1 + pos flag 1 + 2 × 7 + z 1 + other flag 1) bits + counts.
        assert!(bytes <= 64 * 18 / 8 + 3, "{bytes} bytes");
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let base = vec![(EntityId(1), st(10, 10))];
        let mut out = Vec::new();
        // removed_count = 2 > 1
        let mut w = BitWriter::new();
        w.write_eg0(2);
        let b = w.finish();
        assert!(decode_delta(&q(), &base, &b, &mut out).is_err());
        // new entity with duplicate id of a survivor
        let mut w = BitWriter::new();
        w.write_eg0(0);
        w.write_eg0(0);
        w.write_eg0(1);
        w.write_eg0(1);
        write_full(&mut w, &q(), &st(1, 1));
        let b = w.finish();
        assert_eq!(
            decode_delta(&q(), &base, &b, &mut out),
            Err(SnapshotError::BadId)
        );
        // Trailing garbage.
        let mut w = BitWriter::new();
        encode_delta(&q(), &base, &base, &mut w);
        let mut b = w.finish();
        b.push(0xff);
        assert_eq!(
            decode_delta(&q(), &base, &b, &mut out),
            Err(SnapshotError::TrailingData)
        );
    }

    #[test]
    fn checksum_is_the_sum_of_fnv1a_entity_hashes() {
        assert_eq!(view_checksum(&[]), 0);
        // FNV-1a's published test vector: "a" → 0xe40c292c.
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xe40c_292c);
        let e = (EntityId(1), st(1, 2));
        assert_eq!(
            view_checksum(&[e]),
            combine_hashes([entity_hash(e.0, &e.1)])
        );
        // The worked example in PROTOCOL.md section 7.7 (entity 3 of the vectors).
        let e3 = QuantizedState {
            kind: 1,
            pos: [64672, 62704, 0],
            vel: [128, -96, 0],
            yaw: 1024,
            health: 100,
            flags: 0,
        };
        assert_eq!(entity_hash(EntityId(3), &e3), 0xd5d5_6ae6);
        assert_eq!(view_checksum(&[(EntityId(3), e3)]), 0xd5d5_6ae6);
        // The sum wraps, and the order does not matter.
        assert_eq!(combine_hashes([0xd5d5_6ae6, 0x4000_0000]), 0x15d5_6ae6);
        assert_eq!(combine_hashes([0x4000_0000, 0xd5d5_6ae6]), 0x15d5_6ae6);
        let a = view_checksum(&[(EntityId(1), st(1, 2))]);
        let b = view_checksum(&[(EntityId(1), st(1, 3))]);
        assert_ne!(a, b);
    }
}
