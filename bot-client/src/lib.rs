//! Tickwire's load bots: many real, verifying clients in one process.
//!
//! [`client::Client`] is one WebSocket client that decodes and verifies every snapshot, and
//! [`quic::QuicClient`] its QUIC twin; the server's integration tests use both. Either can be
//! told to trust snapshot headers instead ([`client::Trusted`]), which is what the bots
//! outside `--verify FRACTION` do. [`transport::BotClient`] lets the bots drive either.
//! [`matchmake`] gets a bot a seat over HTTP before it connects (`--matchmake URL`).

pub mod client;
pub mod load;
pub mod matchmake;
pub mod quic;
pub mod tls;
pub mod transport;

pub use client::{Client, ClientError, Event, HelloArgs, Trusted};
pub use load::{
    FractionError, LoadConfig, MatchmakeConfig, NiceError, Report, check_nice,
    parse_verify_fraction, run, verifies,
};
pub use matchmake::{MatchmakeError, MatchmakerUrl, Seat};
pub use quic::{QuicClient, QuicError, ServerCert};
pub use tls::{TlsError, TlsTrust};
pub use transport::{BotClient, BotError, Connector, Route, TokenMinter, TransportKind};
