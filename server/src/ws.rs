//! One task per WebSocket connection: decode client frames into simulation events, write the
//! simulation's Welcome and snapshots, and close with a documented code on anything wrong.
//!
//! The task owns its socket; the simulation only ever touches the connection's [`Outbound`]
//! slot, so a slow or stalled client costs the simulation nothing.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tickwire_shared::codec::{DecodeError, MAX_CLIENT_MESSAGE_BYTES, decode_client, encode_server};
use tickwire_shared::message::MAX_REASON_BYTES;
use tickwire_shared::{ClientId, ClientMessage, PROTOCOL_VERSION, ServerMessage, Tick};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tracing::debug;
use tungstenite::error::ProtocolError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Error as WsError, Message};

use crate::Shared;
use crate::close;
use crate::metrics::DisconnectReason;
use crate::sim::{Control, InputMsg, Outbound};

/// Largest WebSocket message accepted from a client; anything larger closes with 1009.
pub const MAX_WS_MESSAGE: usize = 4 * 1024;

/// tungstenite limits sized for our messages: small reads, writes sent at once, and a cap on
/// what may queue for a slow reader.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        // tungstenite zero-fills this much before every read attempt; inputs are ~100 bytes.
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(Some(MAX_WS_MESSAGE))
        .max_frame_size(Some(MAX_WS_MESSAGE))
}

/// How a session ended.
struct End {
    why: DisconnectReason,
    /// Close code and reason to send, if the socket can still take them.
    close: Option<(u16, &'static str)>,
    /// The player is gone for good (no resume).
    graceful: bool,
}

impl End {
    fn close(why: DisconnectReason, code: u16, reason: &'static str) -> Self {
        Self {
            why,
            close: Some((code, reason)),
            graceful: true,
        }
    }

    fn dropped() -> Self {
        Self {
            why: DisconnectReason::Dropped,
            close: None,
            graceful: false,
        }
    }
}

struct Session {
    ws: WebSocketStream<TcpStream>,
    sh: Arc<Shared>,
    client: ClientId,
    out: Arc<Outbound>,
    joined: bool,
    welcomed: bool,
    buf: Vec<u8>,
}

/// Runs one upgraded connection to its end.
pub(crate) async fn serve(stream: TcpStream, leftover: Vec<u8>, sh: Arc<Shared>, client: ClientId) {
    let ws =
        WebSocketStream::from_partially_read(stream, leftover, Role::Server, Some(ws_config()))
            .await;
    let mut s = Session {
        ws,
        sh,
        client,
        out: Arc::new(Outbound::default()),
        joined: false,
        welcomed: false,
        buf: Vec::with_capacity(256),
    };
    let end = s.run().await;
    if s.joined {
        // The control channel is unbounded and outlives every session; a send error means the
        // simulation already stopped, when there is nothing left to leave.
        let _ = s.sh.sim.control.send(Control::Leave {
            client,
            graceful: end.graceful,
        });
    }
    s.sh.metrics.disconnect(end.why);
    debug!(why = end.why.label(), "session ended");
    if let Some((code, reason)) = end.close {
        s.close(code, reason).await;
    }
}

impl Session {
    async fn run(&mut self) -> End {
        let mut shutdown = self.sh.shutdown.clone();
        if *shutdown.borrow() {
            return End::close(
                DisconnectReason::Shutdown,
                close::GOING_AWAY,
                "server shutting down",
            );
        }
        let hello_deadline = Instant::now() + self.sh.cfg.handshake_timeout;
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    return End::close(
                        DisconnectReason::Shutdown,
                        close::GOING_AWAY,
                        "server shutting down",
                    );
                }
                _ = sleep_until(hello_deadline), if !self.welcomed => {
                    return End::close(
                        DisconnectReason::HandshakeTimeout,
                        close::POLICY_VIOLATION,
                        "no Hello in time",
                    );
                }
                _ = self.out.notify.notified() => {
                    if let Some(end) = self.flush_outbound().await {
                        return end;
                    }
                }
                msg = self.ws.next() => {
                    if let Some(end) = self.on_message(msg).await {
                        return end;
                    }
                }
            }
        }
    }

    async fn flush_outbound(&mut self) -> Option<End> {
        let st = self.out.take();
        if let Some(w) = st.welcome {
            self.welcomed = true;
            if let Err(end) = self.send(&ServerMessage::Welcome(w)).await {
                return Some(end);
            }
        }
        if let Some(frame) = st.snapshot {
            if let Err(end) = self.send_frame(frame).await {
                return Some(end);
            }
            self.sh.metrics.snapshots_sent.fetch_add(1, Relaxed);
        }
        if let Some((code, reason)) = st.close {
            // The simulation already dropped this client.
            self.joined = false;
            let why = if code == close::ACK_TIMEOUT {
                DisconnectReason::AckTimeout
            } else {
                DisconnectReason::Replaced
            };
            return Some(End {
                why,
                close: Some((code, reason)),
                graceful: true,
            });
        }
        None
    }

    async fn on_message(&mut self, msg: Option<Result<Message, WsError>>) -> Option<End> {
        let bytes = match msg {
            None | Some(Ok(Message::Close(_))) => {
                return Some(End {
                    why: DisconnectReason::Normal,
                    close: None,
                    graceful: false,
                });
            }
            Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {
                return Some(End::dropped());
            }
            Some(Err(WsError::Capacity(_))) => {
                return Some(End::close(
                    DisconnectReason::TooBig,
                    close::TOO_BIG,
                    "message too big",
                ));
            }
            Some(Err(WsError::Protocol(_) | WsError::Utf8(_))) => {
                return Some(End::close(
                    DisconnectReason::ProtocolError,
                    close::PROTOCOL_ERROR,
                    "invalid WebSocket frame",
                ));
            }
            Some(Err(_)) => return Some(End::dropped()),
            Some(Ok(Message::Text(_))) => {
                return Some(End::close(
                    DisconnectReason::TextFrame,
                    close::UNSUPPORTED_DATA,
                    "binary frames only",
                ));
            }
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(_)) => return None, // ping/pong are answered by tungstenite
        };
        let msg = match decode_client(&bytes) {
            Ok(m) => m,
            Err(DecodeError::TooLarge { .. }) => {
                return Some(End::close(
                    DisconnectReason::TooBig,
                    close::TOO_BIG,
                    "message too big",
                ));
            }
            Err(_) => {
                return Some(End::close(
                    DisconnectReason::ProtocolError,
                    close::PROTOCOL_ERROR,
                    "undecodable message",
                ));
            }
        };
        self.sh.metrics.inbound_messages.fetch_add(1, Relaxed);
        match msg {
            ClientMessage::Hello {
                protocol_version,
                resume_token,
                ..
            } => {
                if self.joined {
                    return Some(End::close(
                        DisconnectReason::ProtocolError,
                        close::PROTOCOL_ERROR,
                        "second Hello",
                    ));
                }
                if protocol_version != PROTOCOL_VERSION {
                    return Some(End::close(
                        DisconnectReason::BadVersion,
                        close::BAD_VERSION,
                        "unsupported protocol version",
                    ));
                }
                let join = Control::Join {
                    client: self.client,
                    resume: resume_token,
                    out: self.out.clone(),
                };
                if self.sh.sim.control.send(join).is_err() {
                    return Some(End::close(
                        DisconnectReason::Shutdown,
                        close::GOING_AWAY,
                        "server shutting down",
                    ));
                }
                self.joined = true;
                None
            }
            ClientMessage::Input { ack_tick, frames } => {
                if !self.joined {
                    return Some(End::close(
                        DisconnectReason::ProtocolError,
                        close::PROTOCOL_ERROR,
                        "Input before Hello",
                    ));
                }
                // Full queue: drop this message. The next one repeats its frames.
                let msg = InputMsg {
                    client: self.client,
                    ack: ack_tick,
                    frames,
                };
                if self.sh.sim.input.try_send(msg).is_err() {
                    self.sh.metrics.inputs_dropped.fetch_add(1, Relaxed);
                }
                None
            }
            ClientMessage::Ping { client_time } => {
                let server_tick = Tick(self.sh.sim.tick.load(Relaxed));
                self.send(&ServerMessage::Pong {
                    client_time,
                    server_tick,
                })
                .await
                .err()
            }
            ClientMessage::Leave => {
                Some(End::close(DisconnectReason::Normal, close::NORMAL, "bye"))
            }
        }
    }

    async fn send(&mut self, msg: &ServerMessage) -> Result<(), End> {
        self.buf.clear();
        if encode_server(msg, &mut self.buf).is_err() {
            return Err(End::close(
                DisconnectReason::ProtocolError,
                close::INTERNAL_ERROR,
                "encode failed",
            ));
        }
        let frame = self.buf.clone();
        self.send_frame(frame).await
    }

    async fn send_frame(&mut self, frame: Vec<u8>) -> Result<(), End> {
        let len = frame.len() as u64;
        match timeout(
            self.sh.cfg.write_timeout,
            self.ws.send(Message::Binary(frame.into())),
        )
        .await
        {
            Ok(Ok(())) => {
                self.sh.metrics.bytes_sent.fetch_add(len, Relaxed);
                Ok(())
            }
            Ok(Err(_)) => Err(End::dropped()),
            Err(_) => Err(End {
                why: DisconnectReason::SlowClient,
                close: None,
                graceful: false,
            }),
        }
    }

    /// Best effort: `Disconnect`, a close frame, then half-close and drain so the peer reads
    /// them instead of a reset. Bounded in time and bytes.
    async fn close(mut self, code: u16, reason: &'static str) {
        let reason = &reason[..reason.len().min(MAX_REASON_BYTES)];
        let work = async {
            self.buf.clear();
            let msg = ServerMessage::Disconnect {
                code,
                reason: reason.to_owned(),
            };
            if encode_server(&msg, &mut self.buf).is_ok() {
                let frame = self.buf.clone();
                let _ = self.ws.send(Message::Binary(frame.into())).await;
            }
            let _ = self
                .ws
                .close(Some(CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                }))
                .await;
            let tcp = self.ws.get_mut();
            let _ = tcp.shutdown().await;
            let mut sink = [0u8; 4096];
            let mut drained = 0;
            while drained < 64 * MAX_CLIENT_MESSAGE_BYTES {
                match tcp.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
        };
        let _ = timeout(Duration::from_secs(1), work).await;
    }
}
