//! The WebSocket transport: one task per upgraded connection. Binary messages are client
//! envelopes; everything a session does with them is in [`crate::session`], shared with QUIC.
//!
//! The task owns its socket. The simulation touches only the connection's
//! [`crate::room::Outbound`]: on plain TCP it writes snapshots to the socket itself, without
//! blocking, while nothing else is queued for it ([`crate::wire`]), and otherwise leaves them
//! in the latest-wins slot for the task. A slow or stalled client costs the simulation one
//! non-blocking `sendmsg` at most per snapshot.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tickwire_shared::CloseCode;

use futures_util::{SinkExt, StreamExt};
use tickwire_shared::ClientId;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tungstenite::error::ProtocolError;
use tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Bytes, Error as WsError, Message};

use crate::Shared;
use crate::metrics::DisconnectReason;
use crate::replication::SnapshotFrame;
use crate::room::Outbound;
use crate::session::{self, Channel, End, Inbound, Transport};
use crate::wire::WireStream;

/// Largest WebSocket message accepted from a client; anything larger closes with 1009.
pub const MAX_WS_MESSAGE: usize = 4 * 1024;

/// tungstenite limits sized for our messages: small reads, writes sent at once, and a cap on
/// what may queue for a slow reader. tungstenite zero-fills the read buffer before every read
/// attempt (a read that finds nothing too): at 4 KiB that was 3% of the server's CPU in a
/// crowd of 1,000 (perf), for client messages of a few dozen bytes (a `Hello` with a token,
/// a few hundred). A larger message (up to [`MAX_WS_MESSAGE`]) just takes several reads.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(Some(MAX_WS_MESSAGE))
        .max_frame_size(Some(MAX_WS_MESSAGE))
}

/// The reason tungstenite puts in the 1002 it answers a close frame with an invalid code with.
const BAD_CLOSE_CODE: &str = "Protocol violation";

/// How long the echo of a client's close frame may take to be written.
const CLOSE_ECHO_WAIT: Duration = Duration::from_millis(500);

/// How long a close may take in all: queueing `Disconnect` and the close frame behind what
/// the peer has not read yet, then waiting for the peer to close its side. A lagging client
/// that reads its backlog within this gets the real close code.
pub const CLOSE_LINGER: Duration = Duration::from_secs(5);

/// Most bytes read and thrown away while waiting for the peer to close (a flooding client's
/// messages still in flight); past it the socket is dropped, reset and all.
pub const DRAIN_LIMIT: usize = 1 << 20;

/// One upgraded WebSocket, over plain TCP or TLS (a separate monomorphic copy each, so plain
/// TCP's write path is exactly what it was before TLS existed).
struct WsTransport<S> {
    ws: WebSocketStream<S>,
    write_timeout: Duration,
    out: Arc<Outbound>,
}

/// Runs one upgraded plain-TCP connection from `peer` to its end, with the direct write path
/// for snapshots ([`crate::wire`]).
pub(crate) async fn serve_tcp(
    tcp: TcpStream,
    leftover: Vec<u8>,
    sh: Arc<Shared>,
    client: ClientId,
    peer: Option<std::net::IpAddr>,
) {
    let out = Arc::new(Outbound::default());
    // The leftover goes through the stream, which hands tungstenite one frame at a time.
    let stream = WireStream::new(tcp, out.clone(), leftover);
    // Boxed: see `session::run`.
    Box::pin(serve(stream, Vec::new(), sh, client, out, peer)).await;
}

/// Runs one upgraded connection from `peer` to its end; the simulation puts its messages
/// for it in `out`.
pub(crate) async fn serve<S>(
    stream: S,
    leftover: Vec<u8>,
    sh: Arc<Shared>,
    client: ClientId,
    out: Arc<Outbound>,
    peer: Option<std::net::IpAddr>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let ws =
        WebSocketStream::from_partially_read(stream, leftover, Role::Server, Some(ws_config()))
            .await;
    let t = WsTransport {
        ws,
        write_timeout: sh.cfg.write_timeout,
        out: out.clone(),
    };
    let hello_deadline = Instant::now() + sh.cfg.handshake_timeout;
    // Boxed: see `session::run`.
    Box::pin(session::run(t, sh, client, out, hello_deadline, peer)).await;
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsTransport<S> {
    async fn send_frame(&mut self, frame: Bytes) -> Result<u64, End> {
        let len = frame.len() as u64;
        let mut send = std::pin::pin!(self.ws.send(Message::Binary(frame)));
        // Nearly every write completes at once; the write timeout's timer is armed only for
        // one that has to wait for the socket (a timer per snapshot cost measurable CPU).
        let first = std::future::poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await;
        let result = match first {
            Poll::Ready(r) => r,
            Poll::Pending => match timeout(self.write_timeout, send).await {
                Ok(r) => r,
                Err(_) => return Err(End::slow()),
            },
        };
        result.map(|()| len).map_err(|_| End::dropped())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Transport for WsTransport<S> {
    type Frame = Bytes;

    async fn recv(&mut self) -> Inbound<Bytes> {
        let end = match self.ws.next().await {
            Some(Ok(Message::Binary(b))) => return Inbound::Frame(b, Channel::Reliable),
            // tungstenite has queued the answering close frame: the peer's own code echoed,
            // or 1002 in its place when the code is one RFC 6455 7.4 does not allow on the
            // wire (0-999, 1004-1006, 1014-2999, 5000 and up), which it hands us as
            // "1002 Protocol violation".
            Some(Ok(Message::Close(Some(f))))
                if f.code == WsCloseCode::Protocol && f.reason == BAD_CLOSE_CODE =>
            {
                // The session's close flushes that 1002 (no `Disconnect`: the peer's close
                // ends data frames).
                End::protocol("invalid close code")
            }
            Some(Ok(Message::Close(_))) => {
                // Send the echo before the socket goes. Bounded: a peer that closes and
                // stops reading is not waited for.
                // tungstenite hands the echo to the stream and, the close handshake being
                // done, does not flush the stream itself: what the socket did not take yet
                // is in the stream's queue.
                let _ = timeout(CLOSE_ECHO_WAIT, async {
                    let _ = self.ws.flush().await;
                    let _ = self.ws.get_mut().flush().await;
                })
                .await;
                End::peer_closed()
            }
            None => End::peer_closed(),
            Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {
                End::dropped()
            }
            Some(Err(WsError::Capacity(_))) => End::too_big(),
            Some(Err(WsError::Protocol(_) | WsError::Utf8(_))) => {
                End::protocol("invalid WebSocket frame")
            }
            Some(Err(_)) => End::dropped(),
            Some(Ok(Message::Text(_))) => End::close(
                DisconnectReason::TextFrame,
                CloseCode::UnsupportedData,
                "binary frames only",
            ),
            // tungstenite answers a ping itself, keeping at most one pong waiting (a newer
            // ping's replaces it) within the write buffer's cap; the session charges both
            // to the client's message budget.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Inbound::Control,
            Some(Ok(Message::Frame(_))) => return Inbound::Nothing,
        };
        Inbound::End(end)
    }

    async fn send_reliable(&mut self, frame: &[u8]) -> Result<u64, End> {
        self.send_frame(Bytes::copy_from_slice(frame)).await
    }

    async fn drain(&mut self) -> Result<(), End> {
        if self.out.wire_queued() == 0 {
            return Ok(());
        }
        match timeout(self.write_timeout, self.ws.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::dropped()),
            Err(_) => Err(End::slow()),
        }
    }

    async fn send_snapshot(&mut self, frame: SnapshotFrame) -> Result<u64, End> {
        // tungstenite wants the payload in one buffer: the one copy of the shared body. (A
        // per-connection BytesMut reclaimed after each write measured worse: 1,000-client
        // crowd 16.7-17.0 against 15.6-16.1 µs per snapshot, and 52 against 38 MB RSS.)
        self.send_frame(frame.to_vec().into()).await
    }

    /// `Disconnect` and a close frame, queued behind whatever the socket still holds for the
    /// peer; then half-close, and read and discard until the peer closes too. The socket is
    /// never dropped with unread received data while the peer may still be reading: that
    /// makes the kernel answer with a reset, and the peer's kernel then throws away
    /// everything it has not read yet, close frame included (the client sees 1006). Bounded:
    /// [`CLOSE_LINGER`] in all, [`DRAIN_LIMIT`] bytes read.
    async fn close(mut self, code: CloseCode, reason: &str, disconnect: Option<&[u8]>) {
        let deadline = Instant::now() + CLOSE_LINGER;
        let queued = timeout_at(deadline, async {
            if let Some(frame) = disconnect {
                let _ = self
                    .ws
                    .send(Message::Binary(Bytes::copy_from_slice(frame)))
                    .await;
            }
            let _ = self
                .ws
                .close(Some(CloseFrame {
                    code: WsCloseCode::from(code.code()),
                    reason: reason.into(),
                }))
                .await;
            // After the peer's close frame tungstenite refuses the one above, and the answer
            // it queued itself (an echo, or 1002) goes out with a flush.
            let _ = self.ws.flush().await;
        })
        .await;
        if queued.is_err() {
            // The peer read nothing for the whole linger: nothing left to wait for.
            return;
        }
        let stream = self.ws.get_mut();
        let _ = timeout_at(deadline, async {
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 4096];
            let mut drained = 0;
            while drained < DRAIN_LIMIT {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use tokio::net::{TcpListener, TcpSocket};

    /// The echo of a client's close frame goes behind what the socket has not taken yet (the
    /// direct write path's queue), and the session waits for it to be written
    /// ([`CLOSE_ECHO_WAIT`]) instead of dropping the queue with the socket.
    #[tokio::test]
    async fn the_close_echo_is_written_behind_a_full_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let client = socket
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        socket2::SockRef::from(&tcp)
            .set_send_buffer_size(4096)
            .unwrap();
        let out = Arc::new(Outbound::default());
        let stream = WireStream::new(tcp, out.clone(), Vec::new());
        let ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(ws_config())).await;
        let mut t = WsTransport {
            ws,
            write_timeout: Duration::from_secs(5),
            out: out.clone(),
        };
        // More than both sockets hold: the rest waits in the queue.
        let big = Bytes::from(vec![7u8; 200 * 1024]);
        t.ws.feed(Message::Binary(big.clone())).await.unwrap();
        assert!(out.wire_queued() > 0, "the socket took it all");

        let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        client.close(None).await.unwrap();
        let reader = tokio::spawn(async move {
            // Start reading once the server has read the close (and queued its echo).
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut got = Vec::new();
            while let Some(m) = client.next().await {
                match m {
                    Ok(Message::Binary(b)) => got.push(b.len()),
                    Ok(Message::Close(_)) => return (got, true),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            (got, false)
        });
        let end = t.recv().await;
        assert!(matches!(end, Inbound::End(_)), "{end:?}");
        drop(t);
        let (got, echoed) = reader.await.unwrap();
        assert_eq!(got, vec![big.len()], "the message before the close, whole");
        assert!(echoed, "the close echo arrived");
    }
}
