//! The client side of delta compression: [`SnapshotReceiver`].
//!
//! Feed it every `Snapshot` the server sends, in whatever order and however often the network
//! delivers them; read the current view with [`SnapshotReceiver::view`] and put
//! [`SnapshotReceiver::ack_tick`] into the next `Input`. It keeps the last `capacity`
//! snapshots it verified, by tick, so the server may delta against any of them.
//!
//! A snapshot whose baseline it no longer holds, that does not decode, or whose checksum does
//! not match is rejected with a [`ReceiveError`] and changes nothing: the client keeps
//! acknowledging its newest good tick, and the server, seeing no newer ack, eventually sends
//! a snapshot against that one or a full one.

use std::collections::VecDeque;

use crate::baseline::DEFAULT_RING;
use crate::ids::{EntityId, InputSeq, Tick};
use crate::message::SnapshotMessage;
use crate::quant::{QuantizedState, Quantizer};
use crate::snapshot::{SnapshotError, ViewEntry, decode_delta_listing, entity_hash};

/// Why a snapshot was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    /// The named baseline is not (or no longer) held. Not a desync: wait for a newer snapshot.
    #[error("snapshot {tick} is against baseline {baseline}, which is not held")]
    MissingBaseline {
        /// The snapshot's tick.
        tick: Tick,
        /// The baseline it names.
        baseline: Tick,
    },
    /// `baseline_age` is larger than the tick.
    #[error("snapshot {tick} has a baseline age of {age}")]
    BadBaselineAge {
        /// The snapshot's tick.
        tick: Tick,
        /// The age it claims.
        age: u32,
    },
    /// The body is malformed.
    #[error(transparent)]
    Decode(#[from] SnapshotError),
    /// The decoded view does not hash to the server's checksum: client and server disagree.
    #[error("desync at tick {tick}: checksum {actual:#010x}, server said {expected:#010x}")]
    ChecksumMismatch {
        /// The snapshot's tick.
        tick: Tick,
        /// The server's checksum.
        expected: u32,
        /// The checksum of the decoded view.
        actual: u32,
    },
}

/// What an accepted snapshot did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Decoded and verified; it is now the newest view.
    Current {
        /// Its tick.
        tick: Tick,
        /// Whether it was a full snapshot.
        full: bool,
    },
    /// Older than the newest view (reordered). If it is newer than the oldest snapshot held
    /// it was decoded, verified and kept as a possible baseline; if it is older than
    /// everything held while the history is full, it was dropped undecoded (it could never be
    /// a baseline again). Either way the current view is unchanged.
    Stale {
        /// Its tick.
        tick: Tick,
    },
    /// A tick already held: ignored.
    Duplicate {
        /// Its tick.
        tick: Tick,
    },
}

#[derive(Debug)]
struct Held {
    tick: Tick,
    last_input: InputSeq,
    view: Vec<ViewEntry>,
    /// Per entry of `view`: the tick of the snapshot that last refreshed it (PROTOCOL.md 7.4).
    as_of: Vec<Tick>,
    /// Per entry of `view`: its entity hash (PROTOCOL.md 7.7), so that a snapshot built on
    /// this one only hashes the entries it lists.
    hashes: Vec<u32>,
}

/// Client-side snapshot history, decoder and verifier.
#[derive(Debug)]
pub struct SnapshotReceiver {
    quantizer: Quantizer,
    capacity: usize,
    /// Sorted by tick, oldest first.
    held: VecDeque<Held>,
    scratch: Vec<ViewEntry>,
    scratch_as_of: Vec<Tick>,
    scratch_hashes: Vec<u32>,
    listed: Vec<EntityId>,
}

impl SnapshotReceiver {
    /// A receiver keeping the last `capacity` (at least 1) verified snapshots. Use at least
    /// the server's ring size ([`DEFAULT_RING`]).
    pub fn new(quantizer: Quantizer, capacity: usize) -> Self {
        Self {
            quantizer,
            capacity: capacity.max(1),
            held: VecDeque::new(),
            scratch: Vec::new(),
            scratch_as_of: Vec::new(),
            scratch_hashes: Vec::new(),
            listed: Vec::new(),
        }
    }

    /// A receiver with the default history size.
    pub fn with_default_history(quantizer: Quantizer) -> Self {
        Self::new(quantizer, DEFAULT_RING)
    }

    /// The quantizer views are expressed in.
    pub fn quantizer(&self) -> &Quantizer {
        &self.quantizer
    }

    /// Decodes, verifies and stores one snapshot.
    pub fn receive(&mut self, msg: &SnapshotMessage) -> Result<Received, ReceiveError> {
        let tick = msg.tick;
        let slot = self.held.binary_search_by_key(&tick, |h| h.tick);
        let insert_at = match slot {
            Ok(_) => return Ok(Received::Duplicate { tick }),
            Err(i) => i,
        };
        if insert_at == 0 && self.held.len() == self.capacity {
            // Older than everything held and no room: it could never be a baseline again.
            return Ok(Received::Stale { tick });
        }
        let (baseline, base_as_of, base_hashes): (&[ViewEntry], &[Tick], &[u32]) =
            if msg.baseline_age == 0 {
                (&[], &[], &[])
            } else {
                let Some(base_tick) = msg.baseline_tick() else {
                    return Err(ReceiveError::BadBaselineAge {
                        tick,
                        age: msg.baseline_age,
                    });
                };
                match self.held.binary_search_by_key(&base_tick, |h| h.tick) {
                    Ok(i) => {
                        let h = &self.held[i];
                        (&h.view, &h.as_of, &h.hashes)
                    }
                    Err(_) => {
                        return Err(ReceiveError::MissingBaseline {
                            tick,
                            baseline: base_tick,
                        });
                    }
                }
            };
        let listed = &mut self.listed;
        listed.clear();
        decode_delta_listing(
            &self.quantizer,
            baseline,
            &msg.body,
            &mut self.scratch,
            |id| listed.push(id),
        )?;
        // The checksum (a sum, PROTOCOL.md 7.7) and the as-of ticks in one walk: what the
        // body listed is hashed and as of `tick`; every other entry is its baseline entry,
        // unchanged, whose hash and as-of tick it keeps. (Unless partial, unlisted entries are
        // unchanged too, and as of `tick`.)
        self.listed.sort_unstable();
        let (listed, as_of, hashes) = (
            &self.listed,
            &mut self.scratch_as_of,
            &mut self.scratch_hashes,
        );
        as_of.clear();
        hashes.clear();
        let (mut li, mut bi, mut actual) = (0, 0, 0u32);
        for (id, state) in &self.scratch {
            while li < listed.len() && listed[li] < *id {
                li += 1;
            }
            let (h, t) = if listed.get(li) == Some(id) {
                (entity_hash(*id, state), tick)
            } else {
                while bi < baseline.len() && baseline[bi].0 < *id {
                    bi += 1;
                }
                // Not listed: a baseline entry (the body cannot add an entry unlisted).
                let h = base_hashes
                    .get(bi)
                    .copied()
                    .filter(|_| baseline.get(bi).is_some_and(|b| b.0 == *id))
                    .unwrap_or_else(|| entity_hash(*id, state));
                let t = if msg.partial {
                    base_as_of.get(bi).copied().unwrap_or(tick)
                } else {
                    tick
                };
                (h, t)
            };
            actual = actual.wrapping_add(h);
            hashes.push(h);
            as_of.push(t);
        }
        if actual != msg.checksum {
            return Err(ReceiveError::ChecksumMismatch {
                tick,
                expected: msg.checksum,
                actual,
            });
        }

        let mut insert_at = insert_at;
        let (mut view, mut as_of, mut hashes) = if self.held.len() == self.capacity {
            insert_at -= 1;
            self.held
                .pop_front()
                .map(|h| (h.view, h.as_of, h.hashes))
                .unwrap_or_default()
        } else {
            Default::default()
        };
        view.clear();
        as_of.clear();
        hashes.clear();
        std::mem::swap(&mut view, &mut self.scratch);
        std::mem::swap(&mut as_of, &mut self.scratch_as_of);
        std::mem::swap(&mut hashes, &mut self.scratch_hashes);
        self.held.insert(
            insert_at,
            Held {
                tick,
                last_input: msg.last_input,
                view,
                as_of,
                hashes,
            },
        );
        if insert_at + 1 == self.held.len() {
            Ok(Received::Current {
                tick,
                full: msg.baseline_age == 0,
            })
        } else {
            Ok(Received::Stale { tick })
        }
    }

    /// The tick to acknowledge: the newest verified snapshot, if any.
    pub fn ack_tick(&self) -> Option<Tick> {
        self.held.back().map(|h| h.tick)
    }

    /// The newest verified view, id-sorted.
    pub fn view(&self) -> &[ViewEntry] {
        self.held.back().map_or(&[], |h| h.view.as_slice())
    }

    /// Per entry of [`SnapshotReceiver::view`]: the tick of the snapshot that last refreshed
    /// it. All equal to the view's tick unless a bandwidth budget held entities back
    /// (`Snapshot.partial`, PROTOCOL.md 7.4).
    pub fn as_of(&self) -> &[Tick] {
        self.held.back().map_or(&[], |h| h.as_of.as_slice())
    }

    /// How many ticks the least recently refreshed entry of the newest view is behind it
    /// (0 for an empty view or one refreshed whole).
    pub fn staleness(&self) -> u32 {
        self.held.back().map_or(0, |h| {
            h.as_of
                .iter()
                .map(|t| h.tick.0.saturating_sub(t.0))
                .max()
                .unwrap_or(0)
        })
    }

    /// The last input the server had applied at the newest verified snapshot.
    pub fn last_input(&self) -> InputSeq {
        self.held.back().map_or(InputSeq(0), |h| h.last_input)
    }

    /// One entity of the newest view.
    pub fn entity(&self, id: EntityId) -> Option<&QuantizedState> {
        let view = self.view();
        view.binary_search_by_key(&id, |e| e.0)
            .ok()
            .map(|i| &view[i].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::BaselineTracker;
    use crate::quant::WorldBounds;
    use glam::Vec3;

    fn q() -> Quantizer {
        Quantizer::new(WorldBounds {
            min: Vec3::ZERO,
            max: Vec3::splat(100.0),
        })
        .unwrap()
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
    fn applies_deltas_and_rejects_missing_baselines() {
        let mut server = BaselineTracker::new(q(), 8);
        let mut client = SnapshotReceiver::new(q(), 8);
        let s1 = server.encode(Tick(1), InputSeq(0), &view(1)).message;
        assert_eq!(
            client.receive(&s1),
            Ok(Received::Current {
                tick: Tick(1),
                full: true
            })
        );
        assert_eq!(
            client.receive(&s1),
            Ok(Received::Duplicate { tick: Tick(1) })
        );
        server.on_ack(client.ack_tick().unwrap());
        let s2 = server.encode(Tick(2), InputSeq(4), &view(2)).message;
        let s3 = server.encode(Tick(3), InputSeq(5), &view(3)).message;
        // Reordered: 3 then 2.
        assert!(matches!(client.receive(&s3), Ok(Received::Current { .. })));
        assert_eq!(client.receive(&s2), Ok(Received::Stale { tick: Tick(2) }));
        assert_eq!(client.view(), view(3).as_slice());
        assert_eq!(client.last_input(), InputSeq(5));

        // A delta against a tick the client never saw.
        let mut forged = s3.clone();
        forged.tick = Tick(10);
        forged.baseline_age = 1;
        assert_eq!(
            client.receive(&forged),
            Err(ReceiveError::MissingBaseline {
                tick: Tick(10),
                baseline: Tick(9)
            })
        );
        let mut bad = s3.clone();
        bad.tick = Tick(11);
        bad.baseline_age = 0;
        assert!(matches!(
            client.receive(&bad),
            Err(ReceiveError::Decode(_)) | Err(ReceiveError::ChecksumMismatch { .. })
        ));
        assert_eq!(client.ack_tick(), Some(Tick(3)));
    }
}
