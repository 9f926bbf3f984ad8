//! Tickwire's sans-IO protocol core.
//!
//! Everything a Tickwire server, bot or native game client needs to speak the wire protocol,
//! and nothing that touches a socket or a clock: time and ticks are always arguments. The
//! byte-level specification lives in `PROTOCOL.md` next to this crate; the code here is its
//! reference implementation and the tests keep the two in step.
//!
//! The layers, bottom up:
//! - [`close`]: the close codes, one [`CloseCode`] enum for server, clients and docs.
//! - [`ids`]: newtypes for ticks, client ids, entity ids and input sequence numbers.
//! - [`message`]: the messages both sides exchange, and the [`codec`] that frames them in
//!   bincode's wire format (through `wincode`) with explicit size limits.
//! - [`bits`]: the LSB-first bit writer and reader used by snapshot bodies.
//! - [`quant`]: replicated entity state and its quantization against the world bounds.
//! - [`snapshot`]: the delta codec and the view checksum.
//! - [`replication`]: the server side, shared by a room: one history of world states, view
//!   sets shared between clients, and per-tick caches of encoded entity bits (encode once,
//!   send to many); [`baseline`]: the per-client reference encoder, [`BaselineTracker`].
//! - `token` (feature `token`): signed player tokens, made by a game backend and checked by
//!   the server.
//! - [`receiver`]: the client side, [`SnapshotReceiver`]; [`input`]: the client's
//!   [`InputHistory`] (sequence numbers and redundant frames).
//! - [`session`]: the client session state machine, [`ClientSession`], that every client
//!   transport drives: handshake, inputs, snapshots, acknowledgements, pings.
//! - [`quic`]: the QUIC framing (ALPN, the length prefix on streams) for servers and clients.
#![warn(missing_docs)]

pub mod baseline;
pub mod bits;
pub mod budget;
pub mod close;
pub mod codec;
pub mod ids;
pub mod input;
pub mod message;
pub mod quant;
pub mod quic;
pub mod receiver;
pub mod replication;
#[cfg(all(unix, feature = "rlimit"))]
pub mod rlimit;
pub mod session;
pub mod snapshot;
#[cfg(feature = "token")]
pub mod token;

pub use baseline::{BaselineTracker, EncodedSnapshot};
pub use close::CloseCode;
pub use codec::{DecodeError, EncodeError};
pub use ids::{ClientId, EntityId, InputSeq, Tick};
pub use input::InputHistory;
pub use message::{ClientMessage, InputFrame, ServerMessage, SnapshotMessage, Welcome};
pub use quant::{EntityState, QuantizedState, Quantizer, WorldBounds};
pub use receiver::{ReceiveError, Received, SnapshotReceiver};
pub use session::{ClientSession, HelloArgs, SessionConfig, SessionError, Trusted};
pub use snapshot::{SnapshotError, ViewEntry, combine_hashes, entity_hash, view_checksum};

/// The protocol version this crate speaks. A server refuses a `Hello` with any other version.
pub const PROTOCOL_VERSION: u16 = 5;
