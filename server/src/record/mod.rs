//! Match recording (`--record DIR`): one log per room of every call the room made on its
//! [`Game`](crate::game::Game), so that [`crate::replay`] can make the same calls on a new
//! game and check that every tick ends in the same world.
//!
//! The room's game is wrapped in a [`Recording`], which forwards each call and appends a
//! compact record of it ([`codec::TickEncoder`]); after each step it appends a full-precision
//! checksum of the world and hands the tick's bytes to the [`Recorder`]'s writer thread. The
//! simulation thread never touches the disk and never waits: buffers come from a pool and go
//! over a bounded channel with `try_send`, and a room whose writer falls behind stops
//! recording (with a warning) instead of blocking or queueing without bound.
//!
//! Recording at this level needs nothing of the room's own logic (input budgets, acks,
//! resume): those decide which calls happen, and the calls are what is recorded. Any game
//! kind replays if its game can be built again from the log's [`codec::LogHeader`]: its kind,
//! [`crate::RoomSpec`] and the setup bytes the kind was registered with
//! ([`crate::Server::register_game_with_setup`]; the arena's is an [`ArenaSetup`]).

pub mod codec;
mod recording;
mod writer;

pub use codec::{EndReason, LogHeader, WorldSum};
pub use recording::Recording;
pub use writer::{MAX_BEHIND_TICKS, QUEUE_TICKS, Recorder};

use wincode::config::{Config, Configuration};
use wincode::{SchemaRead, SchemaWrite};

use crate::game::{Arena, ArenaRules};
use crate::world::{MAX_OBSTACLES, Obstacle, World};

/// What the built-in arena kind is built from besides the room's seed: the setup bytes of
/// its logs. Building the game and recording it from one value keeps the two in step.
#[derive(Debug, Clone)]
pub struct ArenaSetup {
    /// The world.
    pub world: World,
    /// The rules.
    pub rules: ArenaRules,
    /// Wandering NPCs.
    pub npcs: usize,
}

/// The setup on the wire: floats as their bit patterns (bincode's format), so a replay
/// rebuilds exactly the same world.
#[derive(SchemaWrite, SchemaRead)]
struct ArenaSetupWire {
    name: String,
    min: [f32; 3],
    max: [f32; 3],
    obstacles: Vec<[f32; 4]>,
    rules: ArenaRules,
    npcs: u64,
}

/// Longest world name a setup may carry.
const MAX_WORLD_NAME: usize = 256;

fn setup_config() -> impl Config {
    const LIMIT: usize = codec::MAX_HEADER_BYTES;
    Configuration::default()
        .with_varint_encoding()
        .with_preallocation_size_limit::<LIMIT>()
        .with_deserialization_size_limit::<LIMIT>()
}

/// Why setup bytes do not make an arena.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Not an encoded setup.
    #[error("arena setup does not decode: {0}")]
    Decode(#[from] wincode::ReadError),
    /// It decodes, but the world is not one a server could have run.
    #[error("arena setup: {0}")]
    Invalid(String),
}

impl ArenaSetup {
    /// The arena of a room with `seed`.
    pub fn build(&self, seed: u64) -> Arena {
        Arena::new(self.world.clone(), self.rules.clone(), self.npcs, seed)
    }

    /// The setup bytes.
    pub fn encode(&self) -> Result<Vec<u8>, wincode::WriteError> {
        let b = self.world.bounds;
        let wire = ArenaSetupWire {
            name: self.world.name.clone(),
            min: b.min.to_array(),
            max: b.max.to_array(),
            obstacles: self
                .world
                .obstacles
                .iter()
                .map(|o| [o.min.x, o.min.y, o.max.x, o.max.y])
                .collect(),
            rules: self.rules.clone(),
            npcs: self.npcs as u64,
        };
        wincode::config::serialize(&wire, setup_config())
    }

    /// A setup from its bytes, checked as a world file would be.
    pub fn decode(bytes: &[u8]) -> Result<ArenaSetup, SetupError> {
        let w: ArenaSetupWire = wincode::config::deserialize_exact(bytes, setup_config())?;
        let bad = |s: String| Err(SetupError::Invalid(s));
        if w.name.len() > MAX_WORLD_NAME {
            return bad(format!("world name of {} bytes", w.name.len()));
        }
        if w.obstacles.len() > MAX_OBSTACLES {
            return bad(format!("{} obstacles", w.obstacles.len()));
        }
        let bounds = tickwire_shared::WorldBounds {
            min: glam::Vec3::from_array(w.min),
            max: glam::Vec3::from_array(w.max),
        };
        if let Err(e) = tickwire_shared::Quantizer::new(bounds) {
            return bad(format!("world bounds: {e}"));
        }
        let mut obstacles = Vec::with_capacity(w.obstacles.len());
        for [x0, y0, x1, y1] in w.obstacles {
            if ![x0, y0, x1, y1].iter().all(|v| v.is_finite()) || x1 < x0 || y1 < y0 {
                return bad(format!("obstacle {x0},{y0}..{x1},{y1}"));
            }
            obstacles.push(Obstacle {
                min: glam::Vec2::new(x0, y0),
                max: glam::Vec2::new(x1, y1),
            });
        }
        // As --npcs allows.
        if w.npcs > 100_000 {
            return bad(format!("{} NPCs", w.npcs));
        }
        // As the flags allow (a log is untrusted: a 4-billion-ms rewind would size its history
        // by it), and sane physics.
        let r = &w.rules;
        if r.max_rewind_ms > 1000 {
            return bad(format!("a rewind of {} ms", r.max_rewind_ms));
        }
        let lengths = [
            r.player_speed,
            r.npc_speed,
            r.projectile_speed,
            r.projectile_life,
            r.fire_cooldown,
            r.body_radius,
            r.hitscan_cooldown,
            r.hitscan_range,
        ];
        if !lengths
            .iter()
            .all(|v| v.is_finite() && (0.0..=1.0e6).contains(v))
        {
            return bad(format!("arena rules {lengths:?}"));
        }
        Ok(ArenaSetup {
            world: World {
                name: w.name,
                bounds,
                obstacles,
            },
            rules: w.rules,
            npcs: w.npcs as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_setups_round_trip_exactly() {
        let s = ArenaSetup {
            world: World::arena(),
            rules: ArenaRules {
                player_speed: 0.1 + 0.2,
                ..ArenaRules::default()
            },
            npcs: 17,
        };
        let back = ArenaSetup::decode(&s.encode().unwrap()).unwrap();
        assert_eq!(back.world, s.world);
        assert_eq!(back.npcs, 17);
        assert_eq!(
            back.rules.player_speed.to_bits(),
            s.rules.player_speed.to_bits()
        );
        assert_eq!(format!("{:?}", back.rules), format!("{:?}", s.rules));
        let sum = |a: &Arena| WorldSum::of(crate::game::Game::entities(a));
        assert_eq!(sum(&back.build(9)), sum(&s.build(9)));
    }

    #[test]
    fn a_log_cannot_ask_for_rules_the_flags_refuse() {
        // A log is untrusted: a huge rewind would size the replayer's history by it.
        for rules in [
            ArenaRules {
                max_rewind_ms: u32::MAX,
                ..ArenaRules::default()
            },
            ArenaRules {
                hitscan_range: f32::INFINITY,
                ..ArenaRules::default()
            },
            ArenaRules {
                body_radius: -1.0,
                ..ArenaRules::default()
            },
        ] {
            let s = ArenaSetup {
                world: World::arena(),
                rules,
                npcs: 1,
            };
            assert!(ArenaSetup::decode(&s.encode().unwrap()).is_err());
        }
    }

    #[test]
    fn bad_setups_are_errors() {
        assert!(ArenaSetup::decode(&[]).is_err());
        assert!(ArenaSetup::decode(&[0xff; 64]).is_err());
        let mut s = ArenaSetup {
            world: World::arena(),
            rules: ArenaRules::default(),
            npcs: 1,
        };
        s.world.bounds.max.x = s.world.bounds.min.x - 1.0;
        let e = ArenaSetup::decode(&s.encode().unwrap()).unwrap_err();
        assert!(e.to_string().contains("bounds"), "{e}");
        let mut bytes = ArenaSetup {
            world: World::arena(),
            rules: ArenaRules::default(),
            npcs: 1,
        }
        .encode()
        .unwrap();
        bytes.push(0);
        assert!(ArenaSetup::decode(&bytes).is_err(), "trailing bytes");
    }
}
