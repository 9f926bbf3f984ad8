//! Shared pieces of Tickwire's benchmarks: a deterministic arena scenario that needs no server,
//! and the "naive" full-state encoding the bandwidth figures are compared against.
//!
//! Everything here is seeded and single-threaded, so two runs print the same bytes.

// Benchmarks: a failed setup is a bug in the bench itself, so it may panic loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use glam::{Vec2, Vec3};
use tickwire_shared::{EntityId, EntityState, Quantizer, ViewEntry, WorldBounds};
use wincode::config::Configuration;
use wincode::{SchemaRead, SchemaWrite};

pub use tickwire_server::game::{KIND_NPC, KIND_PLAYER};
pub use tickwire_server::rng::Rng;

/// Scenario parameters (the defaults are the bandwidth scenario).
#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    /// Moving players, each one a client.
    pub players: usize,
    /// Wandering NPCs.
    pub npcs: usize,
    /// Side of the square world, in units.
    pub world_size: f32,
    /// Interest radius, in units.
    pub view_radius: f32,
    /// Ticks per second.
    pub tick_rate: f32,
    /// Player speed, units per second (a running human: a few metres per second).
    pub player_speed: f32,
    /// NPC speed, units per second.
    pub npc_speed: f32,
    /// Seed.
    pub seed: u64,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        Self {
            players: 1000,
            npcs: 1000,
            world_size: 2000.0,
            view_radius: 150.0,
            tick_rate: 30.0,
            player_speed: 6.0,
            npc_speed: 3.0,
            seed: 0x7157_c0de,
        }
    }
}

#[derive(Debug, Clone)]
struct Walker {
    state: EntityState,
    speed: f32,
    turn_in: f32,
}

/// A world of random walkers: players change direction every 0.5–2 s, NPCs every 1–4 s, both
/// bounce off the walls; 1% of entities per second take damage and heal over time.
#[derive(Debug, Clone)]
pub struct Scenario {
    cfg: ScenarioConfig,
    rng: Rng,
    walkers: Vec<Walker>,
    quantizer: Quantizer,
    cell: f32,
    cells: usize,
    grid: Vec<Vec<u32>>,
}

impl Scenario {
    /// A new world.
    pub fn new(cfg: ScenarioConfig) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let half = cfg.world_size / 2.0;
        let walkers = (0..cfg.players + cfg.npcs)
            .map(|i| {
                let player = i < cfg.players;
                let pos = Vec3::new(rng.range(-half, half), rng.range(-half, half), 0.0);
                Walker {
                    state: EntityState {
                        kind: if player { KIND_PLAYER } else { KIND_NPC },
                        pos,
                        health: 100,
                        ..Default::default()
                    },
                    speed: if player {
                        cfg.player_speed
                    } else {
                        cfg.npc_speed
                    },
                    turn_in: 0.0,
                }
            })
            .collect();
        let bounds = WorldBounds {
            min: Vec3::new(-half, -half, 0.0),
            max: Vec3::new(half, half, 0.0),
        };
        let cell = cfg.view_radius.max(1.0);
        let cells = (cfg.world_size / cell).ceil() as usize;
        Self {
            quantizer: Quantizer::new(bounds).expect("scenario bounds are valid"),
            rng,
            walkers,
            cell,
            cells,
            grid: vec![Vec::new(); cells * cells],
            cfg,
        }
    }

    /// The quantizer of this world.
    pub fn quantizer(&self) -> Quantizer {
        self.quantizer
    }

    /// Number of clients (players).
    pub fn clients(&self) -> usize {
        self.cfg.players
    }

    /// Advances one tick.
    pub fn step(&mut self) {
        let dt = 1.0 / self.cfg.tick_rate;
        let half = self.cfg.world_size / 2.0;
        for (i, w) in self.walkers.iter_mut().enumerate() {
            w.turn_in -= dt;
            if w.turn_in <= 0.0 {
                let heading = self.rng.range(0.0, std::f32::consts::TAU);
                let dir = Vec2::from_angle(heading);
                w.state.vel = Vec3::new(dir.x, dir.y, 0.0) * w.speed;
                w.state.yaw = heading;
                w.turn_in = if i < self.cfg.players {
                    self.rng.range(0.5, 2.0)
                } else {
                    self.rng.range(1.0, 4.0)
                };
            }
            w.state.pos += w.state.vel * dt;
            for a in 0..2 {
                if w.state.pos[a].abs() > half {
                    w.state.pos[a] = w.state.pos[a].clamp(-half, half);
                    w.state.vel[a] = -w.state.vel[a];
                }
            }
            if self.rng.unit() < 0.01 * dt {
                w.state.health = w.state.health.saturating_sub(25);
            } else if w.state.health < 100 && self.rng.unit() < dt {
                w.state.health += 1;
            }
        }
        for c in &mut self.grid {
            c.clear();
        }
        for (i, w) in self.walkers.iter().enumerate() {
            let c = self.cell_of(w.state.pos);
            self.grid[c.1 * self.cells + c.0].push(i as u32);
        }
    }

    fn cell_of(&self, p: Vec3) -> (usize, usize) {
        let half = self.cfg.world_size / 2.0;
        let f = |v: f32| (((v + half) / self.cell) as usize).min(self.cells - 1);
        (f(p.x), f(p.y))
    }

    /// Fills `out` with client `client`'s quantized view (entities within the view radius,
    /// itself included), sorted by id. Entity ids equal walker indices.
    pub fn view(&self, client: usize, out: &mut Vec<ViewEntry>) {
        out.clear();
        let me = self.walkers[client].state.pos;
        let (cx, cy) = self.cell_of(me);
        let r2 = self.cfg.view_radius * self.cfg.view_radius;
        for y in cy.saturating_sub(1)..=(cy + 1).min(self.cells - 1) {
            for x in cx.saturating_sub(1)..=(cx + 1).min(self.cells - 1) {
                for &i in &self.grid[y * self.cells + x] {
                    let s = &self.walkers[i as usize].state;
                    if s.pos.distance_squared(me) <= r2 {
                        out.push((EntityId(i), self.quantizer.quantize(s)));
                    }
                }
            }
        }
        out.sort_unstable_by_key(|e| e.0);
    }

    /// The full-precision state of entity `id`.
    pub fn state(&self, id: EntityId) -> &EntityState {
        &self.walkers[id.0 as usize].state
    }
}

/// One entity as a naive server would send it: every field, full precision.
#[derive(Debug, Clone, SchemaWrite, SchemaRead)]
pub struct NaiveEntity {
    /// Entity id.
    pub id: u32,
    /// Kind.
    pub kind: u16,
    /// Position.
    pub pos: [f32; 3],
    /// Velocity.
    pub vel: [f32; 3],
    /// Yaw.
    pub yaw: f32,
    /// Health.
    pub health: u16,
    /// Flags.
    pub flags: u16,
}

/// The naive server message: the same envelope format as ours, full state, no delta.
#[derive(Debug, Clone, SchemaWrite, SchemaRead)]
pub enum NaiveMessage {
    /// Unused; gives the enum the same tag layout as a real message set.
    Hello,
    /// A full-state snapshot.
    Snapshot {
        /// Tick.
        tick: u32,
        /// Every visible entity.
        entities: Vec<NaiveEntity>,
    },
}

/// Bytes of the naive message for a view.
pub fn naive_bytes(
    tick: u32,
    view: &[ViewEntry],
    states: impl Fn(EntityId) -> EntityState,
) -> usize {
    let msg = NaiveMessage::Snapshot {
        tick,
        entities: view
            .iter()
            .map(|(id, _)| {
                let s = states(*id);
                NaiveEntity {
                    id: id.0,
                    kind: s.kind,
                    pos: s.pos.to_array(),
                    vel: s.vel.to_array(),
                    yaw: s.yaw,
                    health: s.health,
                    flags: s.flags,
                }
            })
            .collect(),
    };
    let cfg = Configuration::default().with_varint_encoding();
    wincode::config::serialize(&msg, cfg)
        .map(|v| v.len())
        .unwrap_or(0)
}

/// A throwaway `redis-server` (no persistence) on a free loopback port, for the fleet
/// scenarios and the matchmaking bench; killed by its handle when dropped.
#[derive(Debug)]
pub struct RedisProcess {
    child: std::process::Child,
    port: u16,
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        // Our own child only, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisProcess {
    /// Starts `redis-server` and waits (up to `within`) until it answers PING.
    pub fn start(within: std::time::Duration) -> std::io::Result<RedisProcess> {
        use std::process::{Command, Stdio};
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let redis = RedisProcess { child, port };
        let t0 = std::time::Instant::now();
        while t0.elapsed() < within {
            if redis.ping() {
                return Ok(redis);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Err(std::io::Error::other(format!(
            "redis-server on port {port} did not answer PING"
        )))
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut conn) =
            client.get_connection_with_timeout(std::time::Duration::from_millis(500))
        else {
            return false;
        };
        redis::cmd("PING")
            .query::<String>(&mut conn)
            .is_ok_and(|r| r == "PONG")
    }
}

/// Joins clients 1 to `n` to `room`, each with its own outbound slot (returned, by client),
/// as connections would: what the tick and record benches drive a room with.
pub fn join_clients<G: tickwire_server::Game>(
    room: &mut tickwire_server::Room<G>,
    n: usize,
) -> Vec<std::sync::Arc<tickwire_server::room::Outbound>> {
    (0..n)
        .map(|i| {
            let out = std::sync::Arc::new(tickwire_server::room::Outbound::default());
            room.control(tickwire_server::room::Control::Join {
                client: tickwire_shared::ClientId(i as u32 + 1),
                resume: None,
                player_id: None,
                out: out.clone(),
            });
            out
        })
        .collect()
}
