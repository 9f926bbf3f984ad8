//! Close codes the server uses (also listed in shared/PROTOCOL.md). Before closing, the
//! server sends `ServerMessage::Disconnect` with the same code when the socket still accepts
//! writes.

/// The client sent `Leave`.
pub const NORMAL: u16 = 1000;
/// The server is shutting down.
pub const GOING_AWAY: u16 = 1001;
/// Undecodable or out-of-protocol message (bad bytes, `Input` before `Hello`, a second `Hello`).
pub const PROTOCOL_ERROR: u16 = 1002;
/// A text frame: the protocol is binary only.
pub const UNSUPPORTED_DATA: u16 = 1003;
/// No `Hello` within the handshake timeout.
pub const POLICY_VIOLATION: u16 = 1008;
/// A message over the size limit.
pub const TOO_BIG: u16 = 1009;
/// The server failed internally.
pub const INTERNAL_ERROR: u16 = 1011;
/// The room directory (Redis) could not be reached to check the seat: retry with backoff.
pub const TRY_AGAIN_LATER: u16 = 1013;
/// The client acknowledged no snapshot within the ack timeout.
pub const ACK_TIMEOUT: u16 = 4000;
/// `Hello` carried a protocol version this server does not speak.
pub const BAD_VERSION: u16 = 4001;
/// Another connection resumed this player with its resume token.
pub const REPLACED: u16 = 4002;
/// `Hello` had no seat token, and the server has no default room.
pub const SEAT_REQUIRED: u16 = 4003;
/// The seat token expired before its `Hello`: matchmake again.
pub const SEAT_EXPIRED: u16 = 4004;
/// The seat token is unknown, used already, or malformed.
pub const SEAT_INVALID: u16 = 4005;
/// The seat is for a room on another node: connect to the `ws_url` matchmaking gave.
pub const SEAT_FOREIGN: u16 = 4006;
/// The room is full or gone: matchmake again.
pub const ROOM_UNAVAILABLE: u16 = 4007;
