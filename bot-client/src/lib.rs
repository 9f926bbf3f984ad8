//! Tickwire's load bots: many real, verifying clients in one process.
//!
//! [`client::Client`] is one WebSocket client that decodes and verifies every snapshot, and
//! [`quic::QuicClient`] its QUIC twin; the server's integration tests use both.
//! [`transport::BotClient`] lets the bots drive either.

pub mod client;
pub mod load;
pub mod quic;
pub mod transport;

pub use client::{Client, ClientError, Event};
pub use load::{LoadConfig, Report, run};
pub use quic::{QuicClient, QuicError, ServerCert};
pub use transport::{BotClient, BotError, Connector, TransportKind};
