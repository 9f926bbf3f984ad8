//! The direct write path of a plain-TCP WebSocket: the simulation writes a snapshot straight
//! to the client's socket, in one non-blocking `sendmsg` of the frame header, the client's
//! envelope header and the shared body, when nothing else is queued for that socket.
//!
//! Without it, every snapshot woke the connection's task, which copied the body into one
//! buffer, and tungstenite copied that into its frame buffer before the write: in a crowd of
//! 1,000 clients, the two copies of a 5 kB body were 5% of the server's CPU, and the wake-up,
//! the poll and the write path through tokio-tungstenite a good part of the rest above the
//! kernel's own cost (perf).
//!
//! Ordering is kept by one lock per connection (the [`crate::room::Outbound`] slot's, which
//! the simulation took for every snapshot anyway) and one queue of unwritten bytes:
//! - the simulation writes only while the connection task has nothing in hand (no `Welcome`,
//!   snapshot or close taken and not yet written) and nothing is queued;
//! - every write of the task (tungstenite's frames: `Welcome`, `Pong`, WebSocket pongs and
//!   closes) goes through [`WireStream`], which writes what the socket takes at once and queues
//!   the rest, whole frames at a time, so the two never interleave inside a frame;
//! - a snapshot the socket takes only in part has its tail queued, for the task to write (with
//!   the write timeout, as before); one the socket takes nothing of goes into the latest-wins
//!   slot, for the task, as every snapshot did before.
//!
//! So the bytes on the wire are the same frames, in the same order, as tungstenite would have
//! written. TLS connections (which need the TLS stream's state) and QUIC keep the task path.

use std::io::{self, Cursor, ErrorKind, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use crate::replication::SnapshotFrame;
use crate::room::Outbound;

/// Most bytes queued for a socket that does not take them (tungstenite's cap before).
pub const MAX_QUEUED: usize = 256 * 1024;

/// A queue buffer larger than this is freed once it has drained, not kept for the next time.
const KEEP_QUEUE_CAPACITY: usize = 16 * 1024;

/// The largest WebSocket frame header a server writes (no mask): 2 bytes and a 64-bit length.
const MAX_FRAME_HEADER: usize = 10;

/// `MSG_NOSIGNAL`: a write to a socket the peer has reset fails with `EPIPE` instead of
/// raising `SIGPIPE` (Rust's runtime ignores `SIGPIPE`, but a host process might not).
#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_FLAGS: i32 = 0x4000;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SEND_FLAGS: i32 = 0;

/// The direct write side of one connection: a second handle on its socket, and the bytes
/// accepted for the socket but not yet written. Lives inside the connection's
/// [`Outbound`] lock.
#[derive(Debug, Default)]
pub struct Wire {
    /// The simulation's handle on the socket (a duplicate of the task's descriptor, so
    /// non-blocking like it). `None` before the connection installs it, once the session has
    /// ended, and after a write failed.
    sock: Option<socket2::Socket>,
    /// Whole frames, or the tail of one, accepted but not yet written, from `off`.
    queue: Vec<u8>,
    off: usize,
}

/// What became of a snapshot offered to the socket directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direct {
    /// The socket took it all: the bytes of the envelope.
    Sent(u64),
    /// The socket took part of it and the rest is queued: the connection task must be woken
    /// to write it. The bytes of the envelope.
    Partial(u64),
    /// Not written at all (no direct socket, something queued, or the socket took nothing):
    /// it goes through the slot.
    No,
}

impl Wire {
    /// A direct write side on `sock`.
    pub fn new(sock: socket2::Socket) -> Wire {
        Wire {
            sock: Some(sock),
            ..Wire::default()
        }
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.queue.len() - self.off
    }

    /// Whether the simulation may write directly.
    pub fn active(&self) -> bool {
        self.sock.is_some()
    }

    /// The simulation may not write any more (the session ended).
    pub fn stop(&mut self) {
        self.sock = None;
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.off != 0 {
            self.queue.drain(..self.off);
            self.off = 0;
        }
        self.queue.extend_from_slice(bytes);
    }

    /// The connection task writes `frames` (whole frames, as tungstenite hands them over):
    /// once one of them is a close frame, the simulation must not write after it. Found with
    /// tungstenite's own header parser; a close frame of the task's own making comes after
    /// [`Wire::stop`] anyway, so this is for the echo tungstenite writes itself when the
    /// client closes.
    fn note_frames(&mut self, frames: &[u8]) {
        let mut cursor = Cursor::new(frames);
        while let Ok(Some((header, len))) = FrameHeader::parse(&mut cursor) {
            if header.opcode == OpCode::Control(Control::Close) {
                self.stop();
                return;
            }
            let next = cursor.position().saturating_add(len);
            if next >= frames.len() as u64 {
                return;
            }
            cursor.set_position(next);
        }
    }

    /// Writes `snap` as one binary frame if nothing is queued; queues the tail when the
    /// socket takes part of it ([`Direct::Partial`]).
    pub fn send(&mut self, snap: &SnapshotFrame) -> Direct {
        if self.queued() != 0 {
            return Direct::No;
        }
        let Some(sock) = &self.sock else {
            return Direct::No;
        };
        let len = snap.len();
        let mut hdr = [0u8; MAX_FRAME_HEADER];
        let hdr_len = {
            let mut cursor = &mut hdr[..];
            let header = FrameHeader {
                opcode: OpCode::Data(Data::Binary),
                ..FrameHeader::default()
            };
            if header.format(len as u64, &mut cursor).is_err() {
                return Direct::No;
            }
            MAX_FRAME_HEADER - cursor.len()
        };
        let parts = [&hdr[..hdr_len], snap.header(), &snap.body()[..]];
        let slices = parts.map(IoSlice::new);
        let total = hdr_len + len;
        match sock.send_vectored_with_flags(&slices, SEND_FLAGS) {
            Ok(n) if n == total => Direct::Sent(len as u64),
            Ok(n) if n > 0 => {
                // The socket took part of the frame: the rest goes first, before anything
                // else, and the task writes it when the socket has room.
                let mut skip = n;
                for p in parts {
                    let k = skip.min(p.len());
                    skip -= k;
                    self.queue.extend_from_slice(&p[k..]);
                }
                Direct::Partial(len as u64)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                Direct::No
            }
            // A broken socket (or a zero-length write, which cannot happen here): the task
            // finds out on its own next read or write.
            _ => {
                self.sock = None;
                Direct::No
            }
        }
    }
}

/// The connection task's view of a plain-TCP socket, under tungstenite: reads go straight to
/// the socket; every write is taken whole (the socket's share at once, the rest queued behind
/// what is already queued, up to [`MAX_QUEUED`]), and `flush` writes the queue out. Sharing
/// the queue with the simulation's direct writes keeps every frame whole and in order.
#[derive(Debug)]
pub struct WireStream {
    tcp: TcpStream,
    out: Arc<Outbound>,
}

impl WireStream {
    /// Wraps `tcp`, installing a duplicate of its socket in `out` for the simulation.
    pub fn new(tcp: TcpStream, out: Arc<Outbound>) -> WireStream {
        match socket2::SockRef::from(&tcp).try_clone() {
            Ok(sock) => out.install_wire(Wire::new(sock)),
            // Out of descriptors: this connection keeps the task path only.
            Err(e) => tracing::debug!(error = %e, "no direct write path"),
        }
        WireStream { tcp, out }
    }
}

impl Drop for WireStream {
    fn drop(&mut self) {
        // The simulation's duplicate must not keep the socket open once the task lets go.
        self.out.stop_wire();
    }
}

impl AsyncRead for WireStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for WireStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let tcp = &mut this.tcp;
        this.out.with_wire(|w| {
            if w.queued() + buf.len() > MAX_QUEUED {
                return Poll::Ready(Err(io::Error::other("write queue full")));
            }
            w.note_frames(buf);
            if w.queued() == 0 {
                match Pin::new(&mut *tcp).poll_write(cx, buf) {
                    Poll::Ready(Ok(n)) => w.push(&buf[n..]),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => w.push(buf),
                }
            } else {
                w.push(buf);
            }
            Poll::Ready(Ok(buf.len()))
        })
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let tcp = &mut this.tcp;
        let drained = this.out.with_wire(|w| {
            while w.queued() != 0 {
                match Pin::new(&mut *tcp).poll_write(cx, &w.queue[w.off..]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) => w.off += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            w.queue.clear();
            w.off = 0;
            if w.queue.capacity() > KEEP_QUEUE_CAPACITY {
                w.queue = Vec::new();
            }
            Poll::Ready(Ok(()))
        });
        match drained {
            Poll::Ready(Ok(())) => Pin::new(&mut this.tcp).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.as_mut().poll_flush(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.tcp).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        FrameHeader {
            opcode,
            ..FrameHeader::default()
        }
        .format(payload.len() as u64, &mut out)
        .unwrap();
        out.extend_from_slice(payload);
        out
    }

    fn wire() -> Wire {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None);
        Wire::new(sock.unwrap())
    }

    /// A close frame the task writes stops the direct writes; a data frame whose payload
    /// looks like a close frame's header does not.
    #[test]
    fn only_a_real_close_frame_stops_direct_writes() {
        let close_lookalike = [0x88, 0x02, 0x03, 0xe8];
        let binary = frame(OpCode::Data(Data::Binary), &close_lookalike);
        let long = frame(OpCode::Data(Data::Binary), &[0x88; 300]);
        let pong = frame(OpCode::Control(Control::Pong), b"ping");
        let close = frame(OpCode::Control(Control::Close), &[0x03, 0xe8]);

        let mut w = wire();
        w.note_frames(&binary);
        w.note_frames(&long);
        w.note_frames(&[pong.clone(), long.clone(), binary.clone()].concat());
        assert!(w.active(), "data and pong frames leave direct writes on");

        w.note_frames(&[pong.clone(), binary.clone(), close.clone()].concat());
        assert!(!w.active(), "a close frame behind others stops them");

        let mut w = wire();
        w.note_frames(&close);
        assert!(!w.active(), "a close frame alone stops them");
    }
}
