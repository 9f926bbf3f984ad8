//! The messages a client and a server exchange. Each one travels as one binary frame,
//! encoded by [`crate::codec`]; `PROTOCOL.md` gives every byte.

use wincode::{SchemaRead, SchemaWrite};

use crate::ids::{ClientId, EntityId, InputSeq, Tick};

/// Most input frames one `Input` message may carry. Clients resend their newest frames in
/// every message so that a lost datagram loses no input.
pub const MAX_INPUT_FRAMES: usize = 8;
/// Longest player name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 32;
/// Longest `Hello` seat token, in bytes.
pub const MAX_SEAT_BYTES: usize = 128;
/// Longest `Hello.auth` (a signed player token's text), in bytes.
pub const MAX_AUTH_BYTES: usize = 256;
/// Longest `Disconnect` reason, in bytes of UTF-8.
pub const MAX_REASON_BYTES: usize = 123;

/// Bit of [`InputFrame::buttons`]: fire the primary weapon.
pub const BUTTON_FIRE: u8 = 1;
/// Bit of [`InputFrame::buttons`]: fire the secondary weapon (the arena's: a hitscan beam,
/// tested against targets where the player saw them, PROTOCOL.md 5.3).
pub const BUTTON_SECONDARY: u8 = 2;

/// A message from a client to the server.
#[derive(Debug, Clone, PartialEq, SchemaWrite, SchemaRead)]
pub enum ClientMessage {
    /// The first message of every connection.
    Hello {
        /// Must equal [`crate::PROTOCOL_VERSION`].
        protocol_version: u16,
        /// Display name, at most [`MAX_NAME_BYTES`] bytes.
        name: String,
        /// The token from an earlier `Welcome`, to take back the same player after a drop.
        resume_token: Option<u64>,
        /// The seat token matchmaking gave (`POST /matchmake/...`), at most
        /// [`MAX_SEAT_BYTES`] bytes; `None` joins the server's default room, if it has one.
        seat: Option<String>,
        /// A signed player token from the game's backend (PROTOCOL.md section 13), at most
        /// [`MAX_AUTH_BYTES`] bytes. A server started with `--auth-secret-file` requires it.
        auth: Option<String>,
    },
    /// Player input plus the acknowledgement of the newest snapshot received.
    Input {
        /// Newest snapshot tick this client has received and verified (0 before any).
        ack_tick: Tick,
        /// The newest input frames, oldest first, newest last; at most [`MAX_INPUT_FRAMES`].
        frames: Vec<InputFrame>,
    },
    /// Round-trip probe; the server answers with `Pong`.
    Ping {
        /// Any value of the client's; echoed back untouched.
        client_time: u64,
    },
    /// The client is leaving; the server closes with code 1000.
    Leave,
}

/// One tick's worth of a player's intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, SchemaWrite, SchemaRead)]
pub struct InputFrame {
    /// Sequence number, one more than the previous frame's.
    pub seq: InputSeq,
    /// Move direction, x component, in units of 1/127 (-127..=127). A longer vector is
    /// normalised by the server: sending more gains nothing.
    pub move_x: i8,
    /// Move direction, y component, as `move_x`.
    pub move_y: i8,
    /// Aim direction in units of 1/65536 of a turn, counter-clockwise from +x.
    pub aim_yaw: u16,
    /// Button bitmask: [`BUTTON_FIRE`], [`BUTTON_SECONDARY`]; other bits are reserved and
    /// ignored.
    pub buttons: u8,
    /// The tick of the newest snapshot the client had applied when it sampled this frame
    /// (0: none yet). With `interp_ms` it says what the player saw: lag compensation tests a
    /// shot against the world as it was then (PROTOCOL.md 5.3).
    pub view_tick: Tick,
    /// How far behind `view_tick` the client was drawing other entities, in milliseconds:
    /// its interpolation delay (0 for a client that draws the newest snapshot as it is). The
    /// moment the player saw is `view_tick - interp_ms * tick_rate / 1000` ticks.
    pub interp_ms: u16,
}

impl InputFrame {
    /// The move direction as a vector of length at most 1 (`move_x`, `move_y` over 127; a
    /// longer one is normalised, so sending more gains nothing).
    pub fn move_intent(&self) -> glam::Vec2 {
        let v = glam::Vec2::new(f32::from(self.move_x), f32::from(self.move_y)) / 127.0;
        if v.length_squared() > 1.0 {
            v.normalize_or_zero()
        } else {
            v
        }
    }

    /// The aim direction in radians, counter-clockwise from +x (0 to 2π).
    pub fn aim_radians(&self) -> f32 {
        f32::from(self.aim_yaw) / 65536.0 * std::f32::consts::TAU
    }
}

/// A message from the server to a client.
#[derive(Debug, Clone, PartialEq, SchemaWrite, SchemaRead)]
pub enum ServerMessage {
    /// The answer to a valid `Hello`.
    Welcome(Welcome),
    /// A delta-compressed view of the world.
    Snapshot(SnapshotMessage),
    /// The answer to `Ping`.
    Pong {
        /// The client's value, echoed.
        client_time: u64,
        /// The server's newest tick when it answered.
        server_tick: Tick,
    },
    /// The server is closing the connection; the transport closes with the same code.
    Disconnect {
        /// A close code listed in PROTOCOL.md.
        code: u16,
        /// Human-readable reason, at most [`MAX_REASON_BYTES`] bytes.
        reason: String,
    },
}

/// The server's handshake answer.
#[derive(Debug, Clone, PartialEq, SchemaWrite, SchemaRead)]
pub struct Welcome {
    /// The protocol version the server speaks.
    pub protocol_version: u16,
    /// This connection's client id.
    pub client_id: ClientId,
    /// The entity this client controls.
    pub entity_id: EntityId,
    /// Simulation ticks per second.
    pub tick_rate: u16,
    /// A snapshot is sent every `snapshot_every` ticks, so snapshots per second is
    /// `tick_rate / snapshot_every`.
    pub snapshot_every: u16,
    /// Lowest corner of the world; positions are quantized against it.
    pub world_min: [f32; 3],
    /// Highest corner of the world.
    pub world_max: [f32; 3],
    /// Secret that lets this player resume after a dropped connection.
    pub resume_token: u64,
}

/// A snapshot: the header in the envelope, the entity changes bit-packed in `body`.
#[derive(Debug, Clone, PartialEq, Eq, SchemaWrite, SchemaRead)]
pub struct SnapshotMessage {
    /// The tick this snapshot shows.
    pub tick: Tick,
    /// How many ticks back the baseline is (baseline tick = `tick - baseline_age`);
    /// 0 means a full snapshot against the empty view.
    pub baseline_age: u32,
    /// The newest input sequence of this client the server had applied at `tick`.
    pub last_input: InputSeq,
    /// [`crate::view_checksum`] of the view the client must hold after applying this.
    pub checksum: u32,
    /// Whether the server held back some entities to fit a bandwidth budget (PROTOCOL.md
    /// 7.4). Then the body lists every entity it refreshed, unchanged ones included, and a
    /// baseline entity in neither list is still in view but was not refreshed: its state is
    /// as of an earlier tick. When `false`, every entity in view is as of `tick`.
    pub partial: bool,
    /// The bit-packed delta (see [`crate::snapshot`]).
    pub body: Vec<u8>,
}

impl SnapshotMessage {
    /// The baseline tick this snapshot was encoded against, `None` for a full snapshot.
    pub fn baseline_tick(&self) -> Option<Tick> {
        if self.baseline_age == 0 {
            None
        } else {
            self.tick.0.checked_sub(self.baseline_age).map(Tick)
        }
    }
}
