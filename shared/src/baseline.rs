//! The server side of delta compression: one [`BaselineTracker`] per client.
//!
//! Call order per client: [`BaselineTracker::on_ack`] for every acknowledgement the client
//! sends (any order, any number of times), and [`BaselineTracker::encode`] once per snapshot
//! with the client's current view. The tracker keeps a ring of the last `capacity` views it
//! sent; a snapshot is encoded against the newest acknowledged view still in the ring, or as a
//! full snapshot when there is none. Memory is bounded by `capacity` views. Views in the ring
//! reuse their buffers, so a steady state allocates nothing but the outgoing body.

use crate::bits::BitWriter;
use crate::codec::{EncodeError, encode_snapshot_frame};
use crate::ids::{InputSeq, Tick};
use crate::message::SnapshotMessage;
use crate::quant::Quantizer;
use crate::replication::SentRing;
use crate::snapshot::{DeltaEncoder, ViewEntry, view_checksum};

/// Default number of sent snapshots remembered per client.
pub const DEFAULT_RING: usize = 32;

/// What [`BaselineTracker::on_ack`] made of an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The tick is now the baseline for the next snapshot.
    Accepted,
    /// Not newer than the current baseline (a duplicate or reordered ack): ignored.
    Old,
    /// A tick that is no longer in the ring: ignored; the next snapshot is full unless a
    /// newer ack arrives.
    Expired,
    /// A tick this tracker never sent: the client is lying or broken.
    NeverSent,
}

/// One encoded snapshot and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedSnapshot {
    /// The message to frame and send.
    pub message: SnapshotMessage,
    /// Whether it is a full snapshot (no usable baseline).
    pub full: bool,
}

/// Per-client ring of sent views and the acknowledged baseline: the simple reference encoder
/// (a server shares the work between clients with [`crate::replication`], whose bytes the
/// tests compare against this).
#[derive(Debug)]
pub struct BaselineTracker {
    quantizer: Quantizer,
    ring: SentRing<Vec<ViewEntry>>,
    writer: BitWriter,
    encoder: DeltaEncoder,
}

impl BaselineTracker {
    /// A tracker remembering `capacity` (at least 1) sent snapshots.
    pub fn new(quantizer: Quantizer, capacity: usize) -> Self {
        Self {
            quantizer,
            ring: SentRing::new(capacity),
            writer: BitWriter::new(),
            encoder: DeltaEncoder::new(),
        }
    }

    /// The newest acknowledged tick still usable as a baseline.
    pub fn acked(&self) -> Option<Tick> {
        self.ring.acked()
    }

    /// Records that the client holds the snapshot of `tick`.
    pub fn on_ack(&mut self, tick: Tick) -> AckOutcome {
        self.ring.on_ack(tick)
    }

    /// Encodes `current` (id-sorted, ids unique) as the snapshot of `tick`, against the
    /// acknowledged baseline if it is still in the ring, and remembers it.
    /// `tick` must be later than every tick encoded before.
    pub fn encode(
        &mut self,
        tick: Tick,
        last_input: InputSeq,
        current: &[ViewEntry],
    ) -> EncodedSnapshot {
        self.encode_with_checksum(tick, last_input, current, view_checksum(current))
    }

    /// As [`BaselineTracker::encode`], with the view's checksum computed by the caller (a
    /// server hashes each entity once per tick and combines the hashes per client with
    /// [`crate::snapshot::combine_hashes`]). `checksum` must equal `view_checksum(current)`.
    pub fn encode_with_checksum(
        &mut self,
        tick: Tick,
        last_input: InputSeq,
        current: &[ViewEntry],
        checksum: u32,
    ) -> EncodedSnapshot {
        let baseline_age = self.encode_body(tick, current, checksum);
        let message = SnapshotMessage {
            tick,
            baseline_age,
            last_input,
            checksum,
            partial: false,
            body: self.writer.finish_view().to_vec(),
        };
        EncodedSnapshot {
            message,
            full: baseline_age == 0,
        }
    }

    /// As [`BaselineTracker::encode_with_checksum`], but appends the finished envelope
    /// (`ServerMessage::Snapshot`) straight to `frame`: no owned message, no body copy.
    /// Returns whether it is a full snapshot.
    pub fn encode_frame(
        &mut self,
        tick: Tick,
        last_input: InputSeq,
        current: &[ViewEntry],
        checksum: u32,
        frame: &mut Vec<u8>,
    ) -> Result<bool, EncodeError> {
        let baseline_age = self.encode_body(tick, current, checksum);
        let body = self.writer.finish_view();
        frame.reserve(body.len() + crate::codec::MAX_SNAPSHOT_HEADER_BYTES);
        // The reference encoder sends every entity of the view: never partial.
        encode_snapshot_frame(tick, baseline_age, last_input, checksum, false, body, frame)?;
        Ok(baseline_age == 0)
    }

    /// Writes the body into `self.writer` against the acked baseline, remembers `current`,
    /// and returns the baseline age (0 = full).
    fn encode_body(&mut self, tick: Tick, current: &[ViewEntry], checksum: u32) -> u32 {
        debug_assert_eq!(checksum, view_checksum(current));
        let (base_view, baseline_age) = match self.ring.baseline(tick) {
            Some((t, v)) => (v.as_slice(), tick.0 - t.0),
            None => (&[][..], 0),
        };
        self.writer.clear();
        self.encoder
            .encode(&self.quantizer, base_view, current, &mut self.writer);
        // Reuse the buffer of the view about to leave the ring.
        let mut view = self.ring.pop_if_full().unwrap_or_default();
        view.clear();
        view.extend_from_slice(current);
        self.ring.push(tick, view);
        baseline_age
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::EntityId;
    use crate::quant::{QuantizedState, WorldBounds};
    use glam::Vec3;

    fn tracker(cap: usize) -> BaselineTracker {
        let q = Quantizer::new(WorldBounds {
            min: Vec3::ZERO,
            max: Vec3::splat(100.0),
        })
        .unwrap();
        BaselineTracker::new(q, cap)
    }

    fn view(x: u32) -> Vec<ViewEntry> {
        vec![(
            EntityId(3),
            QuantizedState {
                pos: [x, 0, 0],
                ..Default::default()
            },
        )]
    }

    #[test]
    fn uses_newest_ack_and_falls_back_to_full() {
        let mut t = tracker(4);
        assert!(t.encode(Tick(1), InputSeq(0), &view(1)).full);
        assert_eq!(t.on_ack(Tick(9)), AckOutcome::NeverSent);
        assert!(t.encode(Tick(2), InputSeq(0), &view(2)).full);
        assert_eq!(t.on_ack(Tick(1)), AckOutcome::Accepted);
        assert_eq!(t.on_ack(Tick(1)), AckOutcome::Old);
        let s = t.encode(Tick(3), InputSeq(0), &view(3));
        assert!(!s.full);
        assert_eq!(s.message.baseline_tick(), Some(Tick(1)));
        assert_eq!(t.on_ack(Tick(2)), AckOutcome::Accepted);
        assert_eq!(
            t.encode(Tick(4), InputSeq(0), &view(4))
                .message
                .baseline_age,
            2
        );
        // Ring of 4 now holds ticks 1..=4; two more push out 1 and 2, the acked one.
        t.encode(Tick(5), InputSeq(0), &view(5));
        t.encode(Tick(6), InputSeq(0), &view(6));
        assert_eq!(t.acked(), None);
        assert!(t.encode(Tick(7), InputSeq(0), &view(7)).full);
        assert_eq!(t.on_ack(Tick(3)), AckOutcome::Expired);
        assert_eq!(t.on_ack(Tick(7)), AckOutcome::Accepted);
        assert!(!t.encode(Tick(8), InputSeq(0), &view(8)).full);
    }
}
