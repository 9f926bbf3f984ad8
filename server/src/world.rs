//! World files: the bounds and static obstacles a room is built from, read once at start-up.

use glam::{Vec2, Vec3};
use tickwire_shared::WorldBounds;
use tickwire_shared::quant::{BoundsError, Quantizer};

/// The default world, compiled into the binary so it runs from any directory.
pub const ARENA_TOML: &str = include_str!("../../assets/worlds/arena.toml");
/// The crowded room of the load harness and benches (`assets/worlds/crowd.toml`): a 1,000 ×
/// 1,000 open square.
pub const CROWD_TOML: &str = include_str!("../../assets/worlds/crowd.toml");

/// Most obstacles a world file may declare (each one costs every movement step a test).
pub const MAX_OBSTACLES: usize = 4096;

/// An axis-aligned box on the ground plane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Obstacle {
    /// Lowest corner.
    pub min: Vec2,
    /// Highest corner.
    pub max: Vec2,
}

impl Obstacle {
    /// Whether a circle of `radius` at `p` overlaps this box.
    pub fn hits_circle(&self, p: Vec2, radius: f32) -> bool {
        let nearest = p.clamp(self.min, self.max);
        nearest.distance_squared(p) < radius * radius
    }

    /// How far along the ray from `origin` in the unit direction `dir` it enters this box,
    /// if it does within `max` (0 when `origin` is inside).
    pub fn ray_hit(&self, origin: Vec2, dir: Vec2, max: f32) -> Option<f32> {
        if !(origin.is_finite() && dir.is_finite()) {
            return None;
        }
        let (mut near, mut far) = (0.0f32, max);
        for axis in 0..2 {
            let (o, d) = (origin[axis], dir[axis]);
            let (lo, hi) = (self.min[axis], self.max[axis]);
            if d == 0.0 {
                // Parallel to this pair of faces: in the slab or never.
                if o < lo || o > hi {
                    return None;
                }
                continue;
            }
            let (a, b) = ((lo - o) / d, (hi - o) / d);
            near = near.max(a.min(b));
            far = far.min(a.max(b));
            if near > far {
                return None;
            }
        }
        Some(near)
    }
}

/// A parsed world.
#[derive(Debug, Clone, PartialEq)]
pub struct World {
    /// Display name.
    pub name: String,
    /// Bounds every position is clamped to.
    pub bounds: WorldBounds,
    /// Static obstacles.
    pub obstacles: Vec<Obstacle>,
}

/// Why a world file was refused.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// Not TOML.
    #[error("world file is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// A key is missing or of the wrong type.
    #[error("world file: {0}")]
    Field(String),
    /// Bounds unusable for quantization.
    #[error("world bounds: {0}")]
    Bounds(#[from] BoundsError),
}

fn field(msg: impl Into<String>) -> WorldError {
    WorldError::Field(msg.into())
}

fn floats<const N: usize>(v: Option<&toml::Value>, what: &str) -> Result<[f32; N], WorldError> {
    let arr = v
        .and_then(|v| v.as_array())
        .ok_or_else(|| field(format!("`{what}` must be an array of {N} numbers")))?;
    if arr.len() != N {
        return Err(field(format!("`{what}` must have {N} numbers")));
    }
    let mut out = [0.0; N];
    for (o, x) in out.iter_mut().zip(arr) {
        let f = x
            .as_float()
            .or_else(|| x.as_integer().map(|i| i as f64))
            .ok_or_else(|| field(format!("`{what}` must hold numbers")))?;
        if !f.is_finite() {
            return Err(field(format!("`{what}` must be finite")));
        }
        *o = f as f32;
    }
    Ok(out)
}

impl World {
    /// Parses a world file.
    pub fn parse(text: &str) -> Result<World, WorldError> {
        let table: toml::Table = text.parse()?;
        let name = table
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or("unnamed")
            .to_owned();
        let bounds = WorldBounds {
            min: Vec3::from_array(floats::<3>(table.get("min"), "min")?),
            max: Vec3::from_array(floats::<3>(table.get("max"), "max")?),
        };
        Quantizer::new(bounds)?;
        let mut obstacles = Vec::new();
        if let Some(list) = table.get("obstacle") {
            let list = list
                .as_array()
                .ok_or_else(|| field("`obstacle` must be an array of tables"))?;
            if list.len() > MAX_OBSTACLES {
                return Err(field(format!("more than {MAX_OBSTACLES} obstacles")));
            }
            for (i, o) in list.iter().enumerate() {
                let min =
                    Vec2::from_array(floats::<2>(o.get("min"), &format!("obstacle[{i}].min"))?);
                let max =
                    Vec2::from_array(floats::<2>(o.get("max"), &format!("obstacle[{i}].max"))?);
                if max.cmplt(min).any() {
                    return Err(field(format!("obstacle[{i}] has max below min")));
                }
                obstacles.push(Obstacle { min, max });
            }
        }
        Ok(World {
            name,
            bounds,
            obstacles,
        })
    }

    /// The built-in arena.
    pub fn arena() -> World {
        // The file is part of the binary and covered by a test, so this cannot fail at run time.
        #[allow(clippy::expect_used)]
        World::parse(ARENA_TOML).expect("built-in arena.toml is valid")
    }

    /// The crowded room (with a view radius of 2,000 everyone sees everyone).
    pub fn crowd() -> World {
        // As for the arena: built in and covered by a test.
        #[allow(clippy::expect_used)]
        World::parse(CROWD_TOML).expect("built-in crowd.toml is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_arena_parses() {
        let w = World::parse(ARENA_TOML).unwrap();
        assert_eq!(w.name, "arena");
        assert_eq!(w.bounds.max, Vec3::new(1000.0, 1000.0, 0.0));
        assert!(w.obstacles.len() >= 4);
    }

    #[test]
    fn built_in_crowd_is_an_open_1000_square() {
        let w = World::crowd();
        assert_eq!(w.name, "crowd");
        assert_eq!(w.bounds.max - w.bounds.min, Vec3::new(1000.0, 1000.0, 0.0));
        assert!(w.obstacles.is_empty());
    }

    #[test]
    fn rays_enter_boxes() {
        let o = Obstacle {
            min: Vec2::new(10.0, -1.0),
            max: Vec2::new(12.0, 1.0),
        };
        assert_eq!(o.ray_hit(Vec2::ZERO, Vec2::X, 100.0), Some(10.0));
        assert_eq!(o.ray_hit(Vec2::ZERO, Vec2::X, 9.0), None, "too short");
        assert_eq!(o.ray_hit(Vec2::ZERO, -Vec2::X, 100.0), None, "behind");
        assert_eq!(
            o.ray_hit(Vec2::new(0.0, 2.0), Vec2::X, 100.0),
            None,
            "beside"
        );
        assert_eq!(
            o.ray_hit(Vec2::new(11.0, 0.0), Vec2::Y, 100.0),
            Some(0.0),
            "inside"
        );
        let diag = Vec2::new(1.0, 1.0).normalize();
        let hit = o.ray_hit(Vec2::new(0.0, -11.0), diag, 100.0).unwrap();
        assert!((hit - 10.0 * 2f32.sqrt()).abs() < 1e-4, "{hit}");
        assert_eq!(o.ray_hit(Vec2::NAN, Vec2::X, 100.0), None);
    }

    #[test]
    fn bad_worlds_are_refused() {
        assert!(World::parse("min = [0,0,0]").is_err());
        assert!(World::parse("min = [0,0,0]\nmax = [1,1]").is_err());
        assert!(World::parse("min = [0,0,0]\nmax = [-1,1,1]").is_err());
        assert!(
            World::parse("min = [0,0,0]\nmax = [9,9,0]\n[[obstacle]]\nmin=[2,2]\nmax=[1,3]")
                .is_err()
        );
        assert!(World::parse("min = [0,0,0]\nmax = [9,9,0]").is_ok());
    }
}
