//! Replicated entity state and its quantization.
//!
//! Quantization is what both ends agree on: the server quantizes its float state once per
//! snapshot, the delta codec moves quantized integers, and the client's view is those integers
//! exactly. Formulas (all rounding is round-half-away-from-zero, `f32::round`):
//! - position axis `a`: `q = clamp(round((p - min[a]) * 64), 0, max_q[a])` with
//!   `max_q[a] = round((max[a] - min[a]) * 64)`; so 1/64 unit resolution, clamped to the
//!   world bounds. Decoded as `min[a] + q / 64`. Sent in `bits(max_q[a])` bits, where
//!   `bits(n)` is the bit length of `n` (0 for a flat axis).
//! - velocity axis: `q = clamp(round(v * 64), -32767, 32767)` as `i16`: 1/64 unit per second,
//!   clamped at about ±512 units per second.
//! - yaw: `q = round(rem_euclid(yaw, 2π) / 2π * 4096) mod 4096`: 12 bits, about 0.09°.
//! - kind, health, flags: sent as they are (`u16`).
//!
//! Non-finite floats never escape: a NaN position or velocity quantizes to 0 (the lowest
//! corner for positions), ±∞ clamps, and a non-finite yaw quantizes to 0.

use glam::Vec3;

/// Position quanta per world unit.
pub const POS_SCALE: f32 = 64.0;
/// Velocity quanta per unit per second.
pub const VEL_SCALE: f32 = 64.0;
/// Bits of a quantized yaw.
pub const YAW_BITS: u32 = 12;
/// Largest world extent per axis, in units, so that every quantized position fits 30 bits.
pub const MAX_WORLD_EXTENT: f32 = 16_000_000.0;

/// The axis-aligned box every replicated position is clamped into.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorldBounds {
    /// Lowest corner.
    pub min: Vec3,
    /// Highest corner.
    pub max: Vec3,
}

/// Why a pair of corners is not a usable world.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum BoundsError {
    /// A corner has a NaN or infinite coordinate.
    #[error("world bounds must be finite")]
    NotFinite,
    /// `max` is below `min` on some axis.
    #[error("world max must be >= min on every axis")]
    Inverted,
    /// An axis is longer than [`MAX_WORLD_EXTENT`].
    #[error("world is wider than {MAX_WORLD_EXTENT} units on some axis")]
    TooLarge,
}

/// The full-precision state of one replicated entity, as the simulation holds it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EntityState {
    /// Game-defined kind (player, NPC, projectile, …).
    pub kind: u16,
    /// Position in world units.
    pub pos: Vec3,
    /// Velocity in units per second.
    pub vel: Vec3,
    /// Facing, radians counter-clockwise from +x.
    pub yaw: f32,
    /// Hit points.
    pub health: u16,
    /// Game-defined flags.
    pub flags: u16,
}

/// The quantized state of one entity: exactly what a client's view holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct QuantizedState {
    /// Game-defined kind.
    pub kind: u16,
    /// Position quanta above the world's lowest corner, per axis.
    pub pos: [u32; 3],
    /// Velocity quanta, per axis.
    pub vel: [i16; 3],
    /// Yaw quanta (0..4096).
    pub yaw: u16,
    /// Hit points.
    pub health: u16,
    /// Game-defined flags.
    pub flags: u16,
}

/// Converts between [`EntityState`] and [`QuantizedState`] for one world.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantizer {
    bounds: WorldBounds,
    max_q: [u32; 3],
    bits: [u32; 3],
}

impl Quantizer {
    /// A quantizer for `bounds`, or an error for unusable bounds.
    pub fn new(bounds: WorldBounds) -> Result<Self, BoundsError> {
        let (min, max) = (bounds.min, bounds.max);
        if !min.is_finite() || !max.is_finite() {
            return Err(BoundsError::NotFinite);
        }
        if max.cmplt(min).any() {
            return Err(BoundsError::Inverted);
        }
        let extent = max - min;
        if extent.max_element() > MAX_WORLD_EXTENT {
            return Err(BoundsError::TooLarge);
        }
        let max_q = (extent * POS_SCALE).round().to_array().map(|q| q as u32);
        let bits = max_q.map(|q| u32::BITS - q.leading_zeros());
        Ok(Self {
            bounds,
            max_q,
            bits,
        })
    }

    /// The world these quantize against.
    pub fn bounds(&self) -> WorldBounds {
        self.bounds
    }

    /// Largest quantized position per axis.
    pub fn max_q(&self) -> [u32; 3] {
        self.max_q
    }

    /// Bits a quantized position takes per axis.
    pub fn pos_bits(&self) -> [u32; 3] {
        self.bits
    }

    /// Quantizes one position, clamping into the world.
    pub fn quantize_pos(&self, pos: Vec3) -> [u32; 3] {
        let rel = ((pos - self.bounds.min) * POS_SCALE).to_array();
        std::array::from_fn(|a| {
            // `as i64` saturates and maps NaN to 0, so no input can escape the clamp.
            (rel[a].round() as i64).clamp(0, i64::from(self.max_q[a])) as u32
        })
    }

    /// Quantizes a full state.
    pub fn quantize(&self, s: &EntityState) -> QuantizedState {
        QuantizedState {
            kind: s.kind,
            pos: self.quantize_pos(s.pos),
            vel: s.vel.to_array().map(quantize_vel),
            yaw: quantize_yaw(s.yaw),
            health: s.health,
            flags: s.flags,
        }
    }

    /// The world position a quantized position stands for.
    pub fn dequantize_pos(&self, q: [u32; 3]) -> Vec3 {
        self.bounds.min + Vec3::new(q[0] as f32, q[1] as f32, q[2] as f32) / POS_SCALE
    }

    /// The state a quantized state stands for.
    pub fn dequantize(&self, q: &QuantizedState) -> EntityState {
        EntityState {
            kind: q.kind,
            pos: self.dequantize_pos(q.pos),
            vel: Vec3::from_array(q.vel.map(|v| f32::from(v) / VEL_SCALE)),
            yaw: f32::from(q.yaw) / (1 << YAW_BITS) as f32 * std::f32::consts::TAU,
            health: q.health,
            flags: q.flags,
        }
    }
}

/// Quantizes one velocity component.
pub fn quantize_vel(v: f32) -> i16 {
    ((v * VEL_SCALE).round() as i32).clamp(-32767, 32767) as i16
}

/// Quantizes a yaw in radians to [`YAW_BITS`] bits.
pub fn quantize_yaw(yaw: f32) -> u16 {
    let turns = yaw.rem_euclid(std::f32::consts::TAU) / std::f32::consts::TAU;
    ((turns * (1 << YAW_BITS) as f32).round() as u32 % (1 << YAW_BITS)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arena() -> Quantizer {
        Quantizer::new(WorldBounds {
            min: Vec3::new(-1000.0, -1000.0, 0.0),
            max: Vec3::new(1000.0, 1000.0, 0.0),
        })
        .unwrap()
    }

    #[test]
    fn positions_clamp_and_roundtrip() {
        let q = arena();
        assert_eq!(q.pos_bits(), [17, 17, 0]);
        assert_eq!(
            q.quantize_pos(Vec3::new(-5000.0, 5000.0, 3.0)),
            [0, 128_000, 0]
        );
        assert_eq!(
            q.quantize_pos(Vec3::new(f32::NAN, f32::INFINITY, 0.0)),
            [0, 128_000, 0]
        );
        let p = Vec3::new(12.3456, -999.99, 0.0);
        let back = q.dequantize_pos(q.quantize_pos(p));
        assert!((back - p).abs().max_element() <= 0.5 / 64.0 + 1e-4);
    }

    #[test]
    fn yaw_and_velocity() {
        assert_eq!(quantize_yaw(0.0), 0);
        assert_eq!(quantize_yaw(std::f32::consts::TAU), 0);
        assert_eq!(quantize_yaw(-std::f32::consts::FRAC_PI_2), 3072);
        assert_eq!(quantize_yaw(f32::NAN), 0);
        assert_eq!(quantize_vel(1e9), 32767);
        assert_eq!(quantize_vel(-1e9), -32767);
        assert_eq!(quantize_vel(1.0), 64);
    }

    #[test]
    fn bad_bounds_are_rejected() {
        let b = |min: Vec3, max: Vec3| Quantizer::new(WorldBounds { min, max });
        assert_eq!(b(Vec3::ZERO, Vec3::NAN), Err(BoundsError::NotFinite));
        assert_eq!(b(Vec3::ONE, Vec3::ZERO), Err(BoundsError::Inverted));
        assert_eq!(b(Vec3::ZERO, Vec3::splat(1e9)), Err(BoundsError::TooLarge));
    }
}
