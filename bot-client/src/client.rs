//! One real Tickwire client over WebSocket: handshake, inputs with redundant frames, pings,
//! and snapshots decoded and verified by [`SnapshotReceiver`]. The bots are built on it, and so
//! are the server's integration tests.
//!
//! A client can also be told not to verify ([`Client::set_verify`]): it still reads and
//! decodes every envelope and acknowledges, but trusts each snapshot's header instead of
//! decoding its body (see [`Trusted`]). Load generators use that so that they are not the
//! bottleneck.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tickwire_shared::InputHistory;
use tickwire_shared::codec::{DecodeError, decode_server, encode_client};
use tickwire_shared::quant::BoundsError;
use tickwire_shared::{
    ClientMessage, InputSeq, PROTOCOL_VERSION, Quantizer, ReceiveError, Received, ServerMessage,
    SnapshotMessage, SnapshotReceiver, Tick, Welcome, WorldBounds,
};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::protocol::frame::coding::CloseCode;

/// The WebSocket over a plain TCP stream.
pub type Ws = WebSocketStream<TcpStream>;

/// Why a client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `ws://host:port/path`.
    #[error("bad url {0:?}: expected ws://host:port/path")]
    BadUrl(String),
    /// TCP connect or bind failed.
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    /// The WebSocket handshake or a frame failed.
    #[error("websocket: {0}")]
    Ws(#[from] tungstenite::Error),
    /// The server answered with an undecodable frame.
    #[error("server sent an undecodable frame: {0}")]
    Decode(#[from] DecodeError),
    /// The server's Welcome carried unusable world bounds.
    #[error("welcome: {0}")]
    Bounds(#[from] BoundsError),
    /// The server did not follow the protocol (e.g. no Welcome first).
    #[error("protocol: {0}")]
    Protocol(&'static str),
    /// The server closed the connection.
    #[error("closed by server: {code} {reason}")]
    Closed {
        /// Close code.
        code: u16,
        /// Reason text.
        reason: String,
    },
    /// No answer in time.
    #[error("timed out")]
    Timeout,
}

/// What the server sent, after decoding and (for snapshots) verification.
#[derive(Debug)]
pub enum Event {
    /// A snapshot: what the receiver made of it, its size on the wire, and the message.
    Snapshot {
        /// Outcome (an `Err` is a missing baseline, a bad body or a desync). A client that
        /// does not verify reports what [`Trusted::accept`] made of the header: never an `Err`.
        outcome: Result<Received, ReceiveError>,
        /// Frame bytes.
        bytes: usize,
        /// The decoded message (header fields like `last_input`).
        message: SnapshotMessage,
    },
    /// An answer to a ping.
    Pong {
        /// The value sent.
        client_time: u64,
        /// The server's tick.
        server_tick: Tick,
    },
    /// The connection is closed; `code` is the close frame's (or `Disconnect`'s) code, 1006
    /// when the socket just dropped.
    Closed {
        /// Close code.
        code: u16,
        /// Reason.
        reason: String,
    },
}

/// The snapshot bookkeeping of a client that does not verify: it trusts every snapshot it
/// receives, by its header alone, and acknowledges the newest tick it received. A verifying
/// client acknowledges the newest snapshot it decoded, which on a correct server is the same
/// tick, so the server picks the same baselines for both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trusted {
    newest: Option<Tick>,
}

impl Trusted {
    /// Accepts `msg` without decoding its body: [`Received::Current`] when it is newer than
    /// every snapshot before it, [`Received::Duplicate`] for the newest tick again, and
    /// [`Received::Stale`] when older (a reordered datagram).
    pub fn accept(&mut self, msg: &SnapshotMessage) -> Received {
        let tick = msg.tick;
        match self.newest {
            Some(newest) if tick == newest => Received::Duplicate { tick },
            Some(newest) if tick < newest => Received::Stale { tick },
            _ => {
                self.newest = Some(tick);
                Received::Current {
                    tick,
                    full: msg.baseline_age == 0,
                }
            }
        }
    }

    /// The tick to acknowledge: the newest snapshot received, if any.
    pub fn ack_tick(&self) -> Option<Tick> {
        self.newest
    }
}

/// Whether a client verifies snapshots, and its bookkeeping when it does not. Both clients
/// (WebSocket and QUIC) keep one beside their [`SnapshotReceiver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checking {
    /// Every snapshot goes through the [`SnapshotReceiver`].
    Verify,
    /// Snapshot bodies are skipped; the receiver stays empty.
    Trust(Trusted),
}

impl Checking {
    /// `Verify` or a fresh `Trust`.
    pub(crate) fn new(verify: bool) -> Self {
        if verify {
            Checking::Verify
        } else {
            Checking::Trust(Trusted::default())
        }
    }

    /// Takes one snapshot: decodes and verifies it, or trusts its header.
    pub(crate) fn receive(
        &mut self,
        receiver: &mut SnapshotReceiver,
        msg: &SnapshotMessage,
    ) -> Result<Received, ReceiveError> {
        match self {
            Checking::Verify => receiver.receive(msg),
            Checking::Trust(t) => Ok(t.accept(msg)),
        }
    }

    /// The tick the next `Input` acknowledges.
    pub(crate) fn ack_tick(&self, receiver: &SnapshotReceiver) -> Option<Tick> {
        match self {
            Checking::Verify => receiver.ack_tick(),
            Checking::Trust(t) => t.ack_tick(),
        }
    }
}

/// Splits `ws://host:port/path` into the address to dial and the URL to request.
pub async fn resolve(url: &str) -> Result<SocketAddr, ClientError> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| ClientError::BadUrl(url.to_owned()))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let mut addrs = tokio::net::lookup_host(authority)
        .await
        .map_err(|_| ClientError::BadUrl(url.to_owned()))?;
    addrs
        .next()
        .ok_or_else(|| ClientError::BadUrl(url.to_owned()))
}

/// A WebSocket config for clients: snapshots can be large, everything else small.
pub fn client_ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        // tungstenite zero-fills this much before every read attempt (it showed as 7% of bot
        // CPU at 16 KiB); snapshots are a few hundred bytes, bigger ones take several reads.
        .read_buffer_size(2 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(tickwire_shared::codec::MAX_SERVER_MESSAGE_BYTES))
        .max_frame_size(Some(tickwire_shared::codec::MAX_SERVER_MESSAGE_BYTES))
}

/// Opens the WebSocket (no Hello yet), from `bind` if given. For tests that need to send
/// arbitrary frames.
pub async fn connect_raw(url: &str, bind: Option<IpAddr>) -> Result<Ws, ClientError> {
    let addr = resolve(url).await?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = bind {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(client_ws_config())).await?;
    Ok(ws)
}

/// Reads the next binary server message, or how the connection closed.
pub async fn next_message(
    ws: &mut Ws,
) -> Result<Result<(ServerMessage, usize), (u16, String)>, ClientError> {
    loop {
        match ws.next().await {
            None => return Ok(Err((1006, String::new()))),
            Some(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => {
                return Ok(Err((1006, String::new())));
            }
            Some(Err(tungstenite::Error::Io(_) | tungstenite::Error::Protocol(_))) => {
                return Ok(Err((1006, String::new())));
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Message::Binary(b))) => return Ok(Ok((decode_server(&b)?, b.len()))),
            Some(Ok(Message::Close(f))) => {
                let (code, reason) = f.map_or((1005, String::new()), |f| {
                    (u16::from(f.code), f.reason.to_string())
                });
                return Ok(Err((code, reason)));
            }
            Some(Ok(_)) => continue,
        }
    }
}

/// What a client says in its `Hello`, besides the protocol version: its name, the resume
/// token of an earlier `Welcome`, the seat token matchmaking gave it, and a signed player
/// token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HelloArgs {
    /// Display name, at most [`tickwire_shared::message::MAX_NAME_BYTES`] bytes.
    pub name: String,
    /// The token of an earlier `Welcome`, to take the same player back.
    pub resume_token: Option<u64>,
    /// The `seat_token` of a matchmaking answer, at most
    /// [`tickwire_shared::message::MAX_SEAT_BYTES`] bytes; `None` joins the default room.
    pub seat: Option<String>,
    /// A signed player token (`--auth-secret-file`), at most
    /// [`tickwire_shared::message::MAX_AUTH_BYTES`] bytes.
    pub auth: Option<String>,
}

impl HelloArgs {
    /// A first connection as `name`, with no seat (the server's default room).
    pub fn new(name: &str) -> HelloArgs {
        HelloArgs {
            name: name.to_owned(),
            ..HelloArgs::default()
        }
    }

    /// The same, offering `resume_token`.
    pub fn with_resume_token(mut self, resume_token: Option<u64>) -> HelloArgs {
        self.resume_token = resume_token;
        self
    }

    /// The same, presenting `seat`.
    pub fn with_seat(mut self, seat: Option<String>) -> HelloArgs {
        self.seat = seat;
        self
    }

    /// The same, presenting the signed player token `auth`.
    pub fn with_auth(mut self, auth: Option<String>) -> HelloArgs {
        self.auth = auth;
        self
    }

    /// The `Hello` message, for this crate's protocol version.
    pub fn message(&self) -> ClientMessage {
        ClientMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            name: self.name.clone(),
            resume_token: self.resume_token,
            seat: self.seat.clone(),
            auth: self.auth.clone(),
        }
    }
}

/// A connected, welcomed client.
#[derive(Debug)]
pub struct Client {
    ws: Ws,
    /// The server's Welcome.
    pub welcome: Welcome,
    /// Snapshot history and the current verified view.
    pub receiver: SnapshotReceiver,
    checking: Checking,
    inputs: InputHistory,
    buf: Vec<u8>,
    /// Bytes sent so far.
    pub bytes_out: u64,
}

impl Client {
    /// Connects, says Hello and waits (up to `wait`) for the Welcome.
    pub async fn connect(
        url: &str,
        name: &str,
        bind: Option<IpAddr>,
        wait: Duration,
    ) -> Result<Client, ClientError> {
        Self::connect_resuming(url, name, None, bind, wait).await
    }

    /// As [`Client::connect`], offering a resume token from an earlier Welcome.
    pub async fn connect_resuming(
        url: &str,
        name: &str,
        resume_token: Option<u64>,
        bind: Option<IpAddr>,
        wait: Duration,
    ) -> Result<Client, ClientError> {
        let hello = HelloArgs::new(name).with_resume_token(resume_token);
        Self::connect_with(url, &hello, bind, wait).await
    }

    /// As [`Client::connect`], saying `hello` (a name, and optionally a resume token and a
    /// matchmaking seat).
    pub async fn connect_with(
        url: &str,
        hello: &HelloArgs,
        bind: Option<IpAddr>,
        wait: Duration,
    ) -> Result<Client, ClientError> {
        let handshake = async {
            let mut ws = connect_raw(url, bind).await?;
            let mut buf = Vec::new();
            encode_client(&hello.message(), &mut buf)
                .map_err(|_| ClientError::Protocol("name or seat too long"))?;
            let sent = buf.len() as u64;
            ws.send(Message::Binary(buf.into())).await?;
            match next_message(&mut ws).await? {
                Ok((ServerMessage::Welcome(welcome), _)) => Ok((ws, welcome, sent)),
                Ok((ServerMessage::Disconnect { code, reason }, _)) | Err((code, reason)) => {
                    Err(ClientError::Closed { code, reason })
                }
                Ok(_) => Err(ClientError::Protocol("first message was not Welcome")),
            }
        };
        let (ws, welcome, sent) = timeout(wait, handshake)
            .await
            .map_err(|_| ClientError::Timeout)??;
        let quantizer = Quantizer::new(WorldBounds {
            min: welcome.world_min.into(),
            max: welcome.world_max.into(),
        })?;
        Ok(Client {
            ws,
            welcome,
            receiver: SnapshotReceiver::with_default_history(quantizer),
            checking: Checking::Verify,
            inputs: InputHistory::new(),
            buf: Vec::with_capacity(128),
            bytes_out: sent,
        })
    }

    /// Whether snapshots are decoded and verified (the default) or only their headers trusted
    /// (see [`Trusted`]). Call it before reading the first snapshot: switching later starts
    /// the new mode with no history (a verifying client then waits for a usable snapshot).
    pub fn set_verify(&mut self, verify: bool) {
        if verify != self.verifies() {
            self.checking = Checking::new(verify);
        }
    }

    /// Whether snapshots are decoded and verified.
    pub fn verifies(&self) -> bool {
        matches!(self.checking, Checking::Verify)
    }

    /// The tick the next `Input` acknowledges: the newest verified snapshot, or, when not
    /// verifying, the newest snapshot received.
    pub fn ack_tick(&self) -> Option<Tick> {
        self.checking.ack_tick(&self.receiver)
    }

    /// Sends one new input frame (plus the previous ones, for redundancy) and the ack of
    /// the newest verified snapshot ([`Client::ack_tick`]). Returns the new frame's sequence
    /// number.
    pub async fn send_input(
        &mut self,
        move_x: i8,
        move_y: i8,
        aim_yaw: u16,
        buttons: u8,
    ) -> Result<InputSeq, ClientError> {
        let seq = self
            .inputs
            .push(move_x, move_y, aim_yaw, buttons)
            .ok_or(ClientError::Protocol("input sequence exhausted"))?;
        let msg = self.inputs.message(self.ack_tick());
        self.send(&msg).await?;
        Ok(seq)
    }

    /// Sends a ping carrying `client_time`.
    pub async fn ping(&mut self, client_time: u64) -> Result<(), ClientError> {
        self.send(&ClientMessage::Ping { client_time }).await
    }

    /// Says goodbye; the server closes with 1000.
    pub async fn leave(&mut self) -> Result<(), ClientError> {
        self.send(&ClientMessage::Leave).await
    }

    /// Sends any client message.
    pub async fn send(&mut self, msg: &ClientMessage) -> Result<(), ClientError> {
        self.buf.clear();
        encode_client(msg, &mut self.buf).map_err(|_| ClientError::Protocol("unencodable"))?;
        self.bytes_out += self.buf.len() as u64;
        self.ws
            .send(Message::Binary(self.buf.clone().into()))
            .await?;
        Ok(())
    }

    /// The raw socket, for tests that send malformed frames.
    pub fn ws_mut(&mut self) -> &mut Ws {
        &mut self.ws
    }

    /// Waits for the next event. Snapshots are fed to the receiver (or, when not verifying,
    /// trusted) before they are returned.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        match next_message(&mut self.ws).await? {
            Ok((ServerMessage::Snapshot(message), bytes)) => Ok(Event::Snapshot {
                outcome: self.checking.receive(&mut self.receiver, &message),
                bytes,
                message,
            }),
            Ok((
                ServerMessage::Pong {
                    client_time,
                    server_tick,
                },
                _,
            )) => Ok(Event::Pong {
                client_time,
                server_tick,
            }),
            Ok((ServerMessage::Disconnect { code, reason }, _)) => {
                // The close frame follows; report the code the server gave.
                Ok(Event::Closed { code, reason })
            }
            Ok((ServerMessage::Welcome(_), _)) => Err(ClientError::Protocol("second Welcome")),
            Err((code, reason)) => Ok(Event::Closed { code, reason }),
        }
    }

    /// Closes the socket with a normal close frame.
    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    }
}
