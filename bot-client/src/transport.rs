//! One bot client over either transport: [`BotClient`] wraps the WebSocket [`Client`] or the
//! [`QuicClient`] behind the same calls and the same [`Event`]s, and [`Connector`] makes them
//! from a [`LoadConfig`], so the bot loop in [`crate::load`] does not care which it drives.

use std::net::IpAddr;
use std::time::Duration;

use tickwire_shared::{InputSeq, Welcome};

use crate::client::{Client, ClientError, Event};
use crate::load::LoadConfig;
use crate::quic::{QuicClient, QuicConnector, QuicError, ServerCert};

/// UDP sockets the QUIC bots of one run share at most (quinn demultiplexes by connection id).
const MAX_QUIC_ENDPOINTS: usize = 32;

/// Which transport the bots use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TransportKind {
    /// Binary WebSocket over TCP (`ws://host:port/ws`).
    #[default]
    Ws,
    /// QUIC with datagram snapshots (`quic://host:port`).
    Quic,
}

/// Why a bot client failed, on either transport.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// A WebSocket client error.
    #[error(transparent)]
    Ws(#[from] ClientError),
    /// A QUIC client error.
    #[error(transparent)]
    Quic(#[from] QuicError),
    /// QUIC needs a certificate check: a pinned SHA-256 or, explicitly, none.
    #[error("QUIC needs --cert-sha256 HEX (the server logs cert_sha256=) or --insecure")]
    NoCertCheck,
}

impl BotError {
    /// Whether the server broke the protocol (an undecodable frame, a message out of order),
    /// as opposed to a connection failing.
    pub fn is_protocol(&self) -> bool {
        matches!(
            self,
            BotError::Ws(ClientError::Decode(_) | ClientError::Protocol(_))
                | BotError::Quic(QuicError::Decode(_) | QuicError::Protocol(_))
        )
    }
}

/// Makes bot clients for one run.
#[derive(Debug)]
pub enum Connector {
    /// WebSocket: every bot dials the URL.
    Ws {
        /// `ws://host:port/ws`.
        url: String,
    },
    /// QUIC: bots share a pool of client endpoints.
    Quic(QuicConnector),
}

impl Connector {
    /// A connector for `cfg` (for QUIC: resolves the URL and binds the client sockets).
    pub async fn new(cfg: &LoadConfig) -> Result<Connector, BotError> {
        match cfg.transport {
            TransportKind::Ws => Ok(Connector::Ws {
                url: cfg.url.clone(),
            }),
            TransportKind::Quic => {
                let cert = match (cfg.cert_sha256, cfg.insecure) {
                    (Some(pin), _) => ServerCert::Pinned(pin),
                    (None, true) => ServerCert::Insecure,
                    (None, false) => return Err(BotError::NoCertCheck),
                };
                let endpoints = cfg.bots.clamp(1, MAX_QUIC_ENDPOINTS);
                let c = QuicConnector::new(&cfg.url, cert, endpoints, &cfg.bind_ips).await?;
                Ok(Connector::Quic(c))
            }
        }
    }

    /// Connects bot `index` (from `bind`, for WebSocket; QUIC bots use the endpoint pool),
    /// says Hello and waits up to `wait` for the Welcome.
    pub async fn connect(
        &self,
        index: usize,
        name: &str,
        bind: Option<IpAddr>,
        wait: Duration,
    ) -> Result<BotClient, BotError> {
        Ok(match self {
            Connector::Ws { url } => BotClient::Ws(Client::connect(url, name, bind, wait).await?),
            Connector::Quic(q) => BotClient::Quic(q.connect(index, name, None, wait).await?),
        })
    }
}

/// A connected, welcomed client on either transport.
#[derive(Debug)]
pub enum BotClient {
    /// Over WebSocket.
    Ws(Client),
    /// Over QUIC.
    Quic(QuicClient),
}

impl BotClient {
    /// The server's Welcome.
    pub fn welcome(&self) -> &Welcome {
        match self {
            BotClient::Ws(c) => &c.welcome,
            BotClient::Quic(c) => &c.welcome,
        }
    }

    /// Verify every snapshot (the default), or only read and decode the envelope, trust the
    /// header and acknowledge its tick (see [`crate::client::Trusted`]). Call it before the
    /// first [`BotClient::next_event`].
    pub fn set_verify(&mut self, verify: bool) {
        match self {
            BotClient::Ws(c) => c.set_verify(verify),
            BotClient::Quic(c) => c.set_verify(verify),
        }
    }

    /// Bytes sent so far.
    pub fn bytes_out(&self) -> u64 {
        match self {
            BotClient::Ws(c) => c.bytes_out,
            BotClient::Quic(c) => c.bytes_out,
        }
    }

    /// Sends one new input frame with the redundant older ones and the newest ack.
    pub async fn send_input(
        &mut self,
        move_x: i8,
        move_y: i8,
        aim_yaw: u16,
        buttons: u8,
    ) -> Result<InputSeq, BotError> {
        Ok(match self {
            BotClient::Ws(c) => c.send_input(move_x, move_y, aim_yaw, buttons).await?,
            BotClient::Quic(c) => c.send_input(move_x, move_y, aim_yaw, buttons).await?,
        })
    }

    /// Sends a ping.
    pub async fn ping(&mut self, client_time: u64) -> Result<(), BotError> {
        match self {
            BotClient::Ws(c) => c.ping(client_time).await?,
            BotClient::Quic(c) => c.ping(client_time).await?,
        }
        Ok(())
    }

    /// Says goodbye.
    pub async fn leave(&mut self) -> Result<(), BotError> {
        match self {
            BotClient::Ws(c) => c.leave().await?,
            BotClient::Quic(c) => c.leave().await?,
        }
        Ok(())
    }

    /// The next event (cancel-safe on both transports).
    pub async fn next_event(&mut self) -> Result<Event, BotError> {
        Ok(match self {
            BotClient::Ws(c) => c.next_event().await?,
            BotClient::Quic(c) => c.next_event().await?,
        })
    }

    /// Closes the connection.
    pub async fn close(self) {
        match self {
            BotClient::Ws(c) => c.close().await,
            BotClient::Quic(c) => c.close().await,
        }
    }
}
