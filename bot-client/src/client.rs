//! One real Tickwire client over WebSocket: it moves bytes between the socket and a
//! [`ClientSession`] (shared's sans-IO client: handshake, inputs with redundant frames,
//! pings, snapshots decoded and verified by its [`SnapshotReceiver`]). The bots are built on
//! it, and so are the server's integration tests.
//!
//! `wss://` URLs go through TLS ([`crate::tls`]) given a client configuration
//! ([`Client::connect_with_tls`]).
//!
//! A client can also be told not to verify ([`Client::set_verify`]): it still reads and
//! decodes every envelope and acknowledges, but trusts each snapshot's header instead of
//! decoding its body (see [`Trusted`]). Load generators use that so that they are not the
//! bottleneck.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tickwire_shared::codec::{DecodeError, decode_server};
use tickwire_shared::quant::BoundsError;
use tickwire_shared::session::{ClientSession, HandshakeStep, SessionConfig, SessionError};
pub use tickwire_shared::session::{Event, HelloArgs, Trusted};
use tickwire_shared::{
    ClientMessage, CloseCode, InputFrame, InputSeq, ServerMessage, SnapshotReceiver, Tick, Welcome,
};
use tokio::net::TcpSocket;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;

use crate::tls::WsStream;

/// The WebSocket over TCP, or over TLS for `wss://`.
pub type Ws = WebSocketStream<WsStream>;

/// Why a client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `ws://host:port/path` or `wss://host:port/path`.
    #[error("bad url {0:?}: expected ws://host:port/path or wss://host:port/path")]
    BadUrl(String),
    /// A `wss://` URL, and no TLS configuration to check the server with.
    #[error("{0}: wss:// needs a certificate check (--ca-cert PEM or --insecure)")]
    NoTls(String),
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

impl From<SessionError> for ClientError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Decode(e) => ClientError::Decode(e),
            SessionError::Bounds(e) => ClientError::Bounds(e),
            SessionError::Protocol(what) => ClientError::Protocol(what),
            SessionError::Encode(_) => ClientError::Protocol("a Hello field over its limit"),
            SessionError::NotWelcomed => ClientError::Protocol("no Welcome yet"),
            SessionError::InputExhausted => ClientError::Protocol("input sequence exhausted"),
        }
    }
}

/// A WebSocket URL split up: whether it is `wss://`, and the host (the TLS server name) and
/// authority to dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `wss://`: TLS over TCP.
    pub tls: bool,
    /// The host, without brackets for IPv6.
    pub host: String,
    /// `host:port`, as written.
    pub authority: String,
}

impl WsUrl {
    /// Parses `ws://host:port/path` or `wss://host:port/path`.
    pub fn parse(url: &str) -> Result<WsUrl, ClientError> {
        let bad = || ClientError::BadUrl(url.to_owned());
        let (tls, rest) = match (url.strip_prefix("wss://"), url.strip_prefix("ws://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => return Err(bad()),
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, _) = authority.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        Ok(WsUrl {
            tls,
            host: host.to_owned(),
            authority: authority.to_owned(),
        })
    }
}

/// The address to dial for `ws://host:port/path` (or `wss://`).
pub async fn resolve(url: &str) -> Result<SocketAddr, ClientError> {
    let parsed = WsUrl::parse(url)?;
    let mut addrs = tokio::net::lookup_host(&parsed.authority)
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
/// arbitrary frames. `ws://` only; see [`connect_raw_tls`].
pub async fn connect_raw(url: &str, bind: Option<IpAddr>) -> Result<Ws, ClientError> {
    connect_raw_tls(url, bind, None).await
}

/// As [`connect_raw`], and a `wss://` URL goes through `tls` (made by
/// [`crate::tls::TlsTrust::client_config`]).
pub async fn connect_raw_tls(
    url: &str,
    bind: Option<IpAddr>,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Ws, ClientError> {
    let parsed = WsUrl::parse(url)?;
    let tls = match (parsed.tls, tls) {
        (false, _) => None,
        (true, Some(c)) => Some(c),
        (true, None) => return Err(ClientError::NoTls(url.to_owned())),
    };
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
    let stream = match tls {
        None => WsStream::Plain(stream),
        Some(tls) => {
            let name = ServerName::try_from(parsed.host.clone())
                .map_err(|_| ClientError::BadUrl(url.to_owned()))?;
            let tls = TlsConnector::from(tls.clone());
            WsStream::Tls(Box::new(tls.connect(name, stream).await?))
        }
    };
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(client_ws_config())).await?;
    Ok(ws)
}

/// How a connection ended: its close code (raw: a server may send one this crate does not
/// know; [`CloseCode::Abnormal`] when the socket just dropped) and reason.
pub type Closed = (u16, String);

fn dropped() -> Closed {
    (CloseCode::Abnormal.code(), String::new())
}

/// Reads the next binary frame, undecoded, or how the connection closed. Cancel-safe.
pub async fn next_frame<S>(
    ws: &mut WebSocketStream<S>,
) -> Result<Result<tungstenite::Bytes, Closed>, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match ws.next().await {
            None => return Ok(Err(dropped())),
            Some(Err(
                tungstenite::Error::ConnectionClosed
                | tungstenite::Error::AlreadyClosed
                | tungstenite::Error::Io(_)
                | tungstenite::Error::Protocol(_),
            )) => return Ok(Err(dropped())),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Message::Binary(b))) => return Ok(Ok(b)),
            Some(Ok(Message::Close(f))) => {
                // A close frame without a status code: WebSocket's 1005, "no status".
                let closed = f.map_or((u16::from(WsCloseCode::Status), String::new()), |f| {
                    (u16::from(f.code), f.reason.to_string())
                });
                return Ok(Err(closed));
            }
            Some(Ok(_)) => continue,
        }
    }
}

/// Reads the next binary server message, or how the connection closed.
pub async fn next_message(
    ws: &mut Ws,
) -> Result<Result<(ServerMessage, usize), Closed>, ClientError> {
    Ok(match next_frame(ws).await? {
        Ok(b) => Ok((decode_server(&b)?, b.len())),
        Err(closed) => Err(closed),
    })
}

/// A connected, welcomed client.
#[derive(Debug)]
pub struct Client {
    ws: Ws,
    session: ClientSession,
    /// The server's Welcome.
    pub welcome: Welcome,
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

    /// As [`Client::connect`], saying `hello` (a name, and optionally a resume token, a
    /// matchmaking seat and a signed player token).
    pub async fn connect_with(
        url: &str,
        hello: &HelloArgs,
        bind: Option<IpAddr>,
        wait: Duration,
    ) -> Result<Client, ClientError> {
        Self::connect_with_tls(url, hello, None, bind, wait).await
    }

    /// As [`Client::connect_with`], and a `wss://` URL goes through `tls` (made by
    /// [`crate::tls::TlsTrust::client_config`]); the TLS handshake counts in `wait`.
    pub async fn connect_with_tls(
        url: &str,
        hello: &HelloArgs,
        tls: Option<&Arc<ClientConfig>>,
        bind: Option<IpAddr>,
        wait: Duration,
    ) -> Result<Client, ClientError> {
        let mut session = ClientSession::new(hello, SessionConfig::default(), Instant::now())?;
        let handshake = async {
            let mut ws = connect_raw_tls(url, bind, tls).await?;
            let sent = flush(&mut session, &mut ws).await?;
            let welcome = loop {
                let received = next_frame(&mut ws).await?;
                match session.handshake_receive(Instant::now(), received)? {
                    HandshakeStep::Welcomed(w) => break w,
                    HandshakeStep::Closed { code, reason } => {
                        return Err(ClientError::Closed { code, reason });
                    }
                    HandshakeStep::Waiting => {}
                }
            };
            Ok((ws, welcome, sent))
        };
        let (ws, welcome, sent) = timeout(wait, handshake)
            .await
            .map_err(|_| ClientError::Timeout)??;
        Ok(Client {
            ws,
            session,
            welcome,
            bytes_out: sent,
        })
    }

    /// Snapshot history and the current verified view (empty when not verifying).
    pub fn receiver(&self) -> &SnapshotReceiver {
        // A `Client` exists only once its session has the Welcome, which made the receiver.
        #[allow(clippy::expect_used)]
        self.session
            .receiver()
            .expect("a welcomed session has a receiver")
    }

    /// The session, for what this type does not forward.
    pub fn session(&self) -> &ClientSession {
        &self.session
    }

    /// Whether snapshots are decoded and verified (the default) or only their headers trusted
    /// (see [`Trusted`]). Call it before reading the first snapshot: switching later starts
    /// the new mode with no history (a verifying client then waits for a usable snapshot).
    pub fn set_verify(&mut self, verify: bool) {
        self.session.set_verify(verify);
    }

    /// Whether snapshots are decoded and verified.
    pub fn verifies(&self) -> bool {
        self.session.verifies()
    }

    /// Pings every `interval` from now on ([`Client::handle_timeout`] sends them), or only
    /// on [`Client::ping`].
    pub fn set_ping_interval(&mut self, interval: Option<Duration>) {
        self.session.set_ping_interval(interval, Instant::now());
    }

    /// The tick the next `Input` acknowledges: the newest verified snapshot, or, when not
    /// verifying, the newest snapshot received.
    pub fn ack_tick(&self) -> Option<Tick> {
        self.session.ack_tick()
    }

    /// When [`Client::handle_timeout`] is next due (a ping, an acknowledgement), if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    /// Runs the session's timers due at `now` and sends what they produce.
    pub async fn handle_timeout(&mut self, now: Instant) -> Result<(), ClientError> {
        self.session.handle_timeout(now)?;
        self.flush().await
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
        let seq = self.session.send_input(move_x, move_y, aim_yaw, buttons)?;
        self.flush().await?;
        Ok(seq)
    }

    /// As [`Client::send_input`], with the frame's `view_tick` and `interp_ms` as the caller
    /// says (what it drew, for lag compensation: PROTOCOL.md 5.3); `frame.seq` is ignored.
    pub async fn send_input_viewing(&mut self, frame: InputFrame) -> Result<InputSeq, ClientError> {
        let seq = self.session.send_input_viewing(frame)?;
        self.flush().await?;
        Ok(seq)
    }

    /// Sends a ping; its answer is an [`Event::Pong`] with the round trip.
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        self.session.ping(Instant::now())?;
        self.flush().await
    }

    /// Says goodbye; the server closes with 1000.
    pub async fn leave(&mut self) -> Result<(), ClientError> {
        self.session.leave()?;
        self.flush().await
    }

    /// Sends any client message.
    pub async fn send(&mut self, msg: &ClientMessage) -> Result<(), ClientError> {
        self.session.send_message(msg)?;
        self.flush().await
    }

    async fn flush(&mut self) -> Result<(), ClientError> {
        self.bytes_out += flush(&mut self.session, &mut self.ws).await?;
        Ok(())
    }

    /// The raw socket, for tests that send malformed frames.
    pub fn ws_mut(&mut self) -> &mut Ws {
        &mut self.ws
    }

    /// Waits for the next event. Snapshots are fed to the receiver (or, when not verifying,
    /// trusted) before they are returned. Once closed, every call returns the same
    /// [`Event::Closed`]. Cancel-safe.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        loop {
            if let Some(ev) = self.session.poll_event() {
                return Ok(ev);
            }
            if let Some((code, reason)) = self.session.close_reason() {
                return Ok(Event::Closed {
                    code,
                    reason: reason.to_owned(),
                });
            }
            match next_frame(&mut self.ws).await? {
                Ok(b) => self.session.handle_envelope(Instant::now(), &b)?,
                Err((code, reason)) => self.session.handle_close(code, &reason),
            }
        }
    }

    /// Closes the socket with a normal close frame.
    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tungstenite::protocol::CloseFrame {
                code: WsCloseCode::from(CloseCode::Normal.code()),
                reason: "".into(),
            }))
            .await;
    }
}

/// Sends every envelope the session has queued; returns the bytes sent.
async fn flush<S>(
    session: &mut ClientSession,
    ws: &mut WebSocketStream<S>,
) -> Result<u64, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut sent = 0;
    while let Some(t) = session.poll_transmit() {
        sent += t.envelope.len() as u64;
        // The session's buffer becomes the frame's: no copy.
        ws.send(Message::Binary(t.envelope.into())).await?;
    }
    Ok(sent)
}
