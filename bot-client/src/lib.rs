//! Tickwire's load bots: many real, verifying clients in one process.
//!
//! [`client::Client`] is one WebSocket client that decodes and verifies every snapshot; the
//! server's integration tests use it too.

pub mod client;
pub mod load;

pub use client::{Client, ClientError, Event};
pub use load::{LoadConfig, Report, run};
