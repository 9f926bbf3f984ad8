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
//!
//! The read side works the same way once a client has joined ([`Wire::start_reads`]): the
//! simulation reads the socket itself, once a tick, and applies the `Input` messages it finds
//! (nearly all a client sends), so an input costs one `recv` on the simulation thread instead
//! of an epoll wake-up, a task poll, two reads and a channel hop. While it does, the socket's
//! receive low-water mark is raised ([`READ_LOWAT`]), so the kernel does not report it readable
//! and the runtime is not woken for each input. Everything else stays the task's:
//! - every other frame (WebSocket control frames, any other message, anything that does not
//!   decode) the simulation hands to the task whole, in order ([`Reader::Frame`]), and reads on
//!   after it: tungstenite and the session handle it exactly as before (a `Ping` is answered,
//!   a bad message closed with its code);
//! - the socket's end, an error, a fragmented or oversized frame, or more messages than the
//!   session's rate limit allows, hand reading back to the task for good ([`Reader::Task`]),
//!   with the low-water mark back at 1: what follows is read, rate-limited and closed as on
//!   any other connection.
//!
//! The task reads through one buffer with the simulation, and hands tungstenite at most one
//! frame per read ([`WireStream`]): so when tungstenite has returned a message it holds no
//! byte of the next one, and the simulation can take over reading at that point without
//! reordering anything.

use std::io::{self, Cursor, ErrorKind, IoSlice, Read};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use tickwire_shared::codec::decode_client;
use tickwire_shared::{ClientMessage, InputFrame, Tick};
use tokio::time::Instant;

use crate::replication::SnapshotFrame;
use crate::room::Outbound;
use crate::session::{Budget, RateLimit};
use crate::ws::MAX_WS_MESSAGE;

/// Most bytes queued for a socket that does not take them (tungstenite's cap before).
pub const MAX_QUEUED: usize = 256 * 1024;

/// A queue buffer larger than this is freed once it has drained, not kept for the next time.
const KEEP_QUEUE_CAPACITY: usize = 16 * 1024;

/// The largest WebSocket frame header a server writes (no mask): 2 bytes and a 64-bit length.
const MAX_FRAME_HEADER: usize = 10;

/// Most bytes read from a socket and not yet consumed: a whole message of the largest size
/// with its header, and more. A client that sends faster than the simulation reads fills its
/// own socket buffers, not the server's memory.
pub const MAX_READ_BUFFER: usize = 2 * MAX_WS_MESSAGE;

/// The receive low-water mark while the simulation reads: far above what a client sends in a
/// tick, so the socket is not reported readable (and the runtime not woken) for its inputs.
pub const READ_LOWAT: i32 = 64 * 1024;

/// Bytes the connection task reads from the socket at a time.
const TASK_READ_CHUNK: usize = 1024;

/// A read buffer larger than this is freed once it is empty (the task's reads leave one of
/// [`TASK_READ_CHUNK`]; 2,000 of them were 2 MB).
const KEEP_READ_CAPACITY: usize = 256;

/// Who reads next, after the simulation's read of a tick.
enum Next {
    /// The simulation, next tick.
    Sim,
    /// The task, the frame at the front.
    Frame,
    /// The task, for good.
    Task,
}

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
    /// Bytes read from the socket and not yet consumed, from `rpos`.
    rbuf: Vec<u8>,
    rpos: usize,
    /// Bytes of the frame being handed to tungstenite that it has not been given yet (0: the
    /// next byte starts a frame).
    frame_left: u64,
    reader: Reader,
    /// The task's read, waiting while the simulation reads.
    waker: Option<Waker>,
    /// The connection's message budget (the session's rate limit), shared by the task's reads
    /// and the simulation's ([`Wire::charge`]).
    budget: Option<RateLimit>,
    /// The tick rate the budget is made for.
    tick_rate: u32,
    /// Reading was handed back to the task for good.
    handed_back: bool,
    /// The task has been handed all of the frame it was given to read (it reads on, or
    /// hands reading to the simulation, on its next read).
    frame_done: bool,
    /// The receive low-water mark is raised ([`READ_LOWAT`]).
    lowat_raised: bool,
}

/// Who reads the socket.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// The connection task, through tungstenite: before the join, and for good once the
    /// simulation has handed reading back.
    #[default]
    Task,
    /// The simulation, once a tick ([`Wire::read_inputs`]); the task's reads wait.
    Sim,
    /// The task, for the one whole frame at the front of the buffer; then the simulation.
    Frame,
}

/// The length of the frame at the start of `bytes`, header included, if its header is all
/// there (tungstenite's parser; a header it refuses counts as all of `bytes`, for tungstenite
/// to refuse again).
fn frame_len(bytes: &[u8]) -> Option<u64> {
    let mut c = Cursor::new(bytes);
    match FrameHeader::parse(&mut c) {
        Ok(Some((_, len))) => Some(c.position().saturating_add(len)),
        Ok(None) => None,
        Err(_) => Some(bytes.len() as u64),
    }
}

/// Sets the socket's receive low-water mark (`SO_RCVLOWAT`).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_rcvlowat(sock: &socket2::Socket, bytes: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor, and a pointer to an int of the size passed, which the call
    // only reads.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            std::ptr::from_ref(&bytes).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere the simulation does not read sockets: the task keeps reading.
#[cfg(not(target_os = "linux"))]
fn set_rcvlowat(_: &socket2::Socket, _: i32) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// What the simulation found on a socket this tick: `Input` messages as (ack, frames), oldest
/// first, into a caller's list.
pub type DirectInputs = Vec<(Tick, Vec<InputFrame>)>;

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

    /// The simulation may not write any more (the session ended); reading is the task's.
    pub fn stop(&mut self) {
        if self.reader != Reader::Task {
            drop(self.hand_back());
        }
        self.sock = None;
    }

    /// Charges one message to the connection's budget (the session's rate limit for
    /// `tick_rate`), whichever side read it.
    pub(crate) fn charge(&mut self, tick_rate: u32, now: Instant) -> Budget {
        self.budget
            .get_or_insert_with(|| RateLimit::new(tick_rate, now))
            .take(now)
    }

    /// The client has joined and tungstenite holds no byte after the message it returned
    /// last: the simulation reads from now on ([`Wire::read_inputs`]), charging the
    /// connection's budget for `tick_rate`. Returns whether it does (not without a direct
    /// socket, after reading was handed back, or if the low-water mark cannot be set).
    pub fn start_reads(&mut self, tick_rate: u32) -> bool {
        if self.reader != Reader::Task || self.handed_back || self.frame_left != 0 {
            return self.reader != Reader::Task;
        }
        let Some(sock) = &self.sock else {
            return false;
        };
        if set_rcvlowat(sock, READ_LOWAT).is_err() {
            return false;
        }
        self.lowat_raised = true;
        self.tick_rate = tick_rate;
        if self.rpos == self.rbuf.len() {
            self.rbuf = Vec::new();
            self.rpos = 0;
        }
        self.reader = Reader::Sim;
        true
    }

    /// Reading is the task's for good: the low-water mark goes back to 1, so the runtime
    /// hears of what is waiting. Returns the task's waker, to wake once the lock is let go.
    fn hand_back(&mut self) -> Option<Waker> {
        self.reader = Reader::Task;
        self.handed_back = true;
        self.frame_done = false;
        if self.lowat_raised
            && let Some(sock) = &self.sock
            && set_rcvlowat(sock, 1).is_ok()
        {
            self.lowat_raised = false;
        }
        // Otherwise the task lowers it on its own handle before it reads.
        self.waker.take()
    }

    /// The frame at the front of the buffer is the task's, then reading is the simulation's
    /// again.
    fn hand_frame(&mut self) -> Option<Waker> {
        self.reader = Reader::Frame;
        self.frame_left = 0;
        self.frame_done = false;
        self.waker.take()
    }

    /// The simulation's read of one tick: what the socket has (up to [`MAX_READ_BUFFER`]
    /// waiting), then every whole `Input` message at the front, into `inputs`, until a frame
    /// that is the task's. `scratch` is the caller's read buffer (parsed in place: only the
    /// part of a message that has not all arrived yet is kept per connection), `msg` its
    /// buffer for an unmasked payload. Returns the task's waker if it has something to do now.
    pub fn read_inputs(
        &mut self,
        now: Instant,
        scratch: &mut [u8],
        msg: &mut Vec<u8>,
        inputs: &mut DirectInputs,
    ) -> Option<Waker> {
        if self.reader != Reader::Sim {
            return None;
        }
        let Some(sock) = &self.sock else {
            return self.hand_back();
        };
        let want = MAX_READ_BUFFER
            .saturating_sub(self.rbuf.len() - self.rpos)
            .min(scratch.len());
        let mut n = 0;
        if want != 0 {
            let mut s: &socket2::Socket = sock;
            match s.read(&mut scratch[..want]) {
                // The peer's end, or the socket's error: the task reads it (again) and ends.
                Ok(0) => return self.hand_back(),
                Ok(k) => n = k,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(_) => return self.hand_back(),
            }
        }
        let (next, used) = if self.rpos == self.rbuf.len() {
            // The usual case: nothing left over from the last tick.
            self.rbuf.clear();
            self.rpos = 0;
            let data = &scratch[..n];
            let (next, used) = self.take_inputs(data, now, msg, inputs);
            self.rbuf.extend_from_slice(&data[used..]);
            (next, 0)
        } else {
            self.rbuf.extend_from_slice(&scratch[..n]);
            let data = std::mem::take(&mut self.rbuf);
            let r = self.take_inputs(&data[self.rpos..], now, msg, inputs);
            self.rbuf = data;
            r
        };
        self.rpos += used;
        if self.rpos == self.rbuf.len() && self.rbuf.capacity() > KEEP_READ_CAPACITY {
            self.rbuf = Vec::new();
            self.rpos = 0;
        }
        match next {
            Next::Sim => None,
            // More than a message's worth behind the task's frame: a client flooding with
            // pings or other messages the task handles one a tick. Its session's limit
            // judges them all, from this one on.
            Next::Frame if self.rbuf.len() - self.rpos > MAX_WS_MESSAGE => self.hand_back(),
            Next::Frame => self.hand_frame(),
            Next::Task => self.hand_back(),
        }
    }

    /// The `Input` messages at the front of `data`, while the rate limit lets them through:
    /// returns who reads next, and the bytes taken.
    fn take_inputs(
        &mut self,
        data: &[u8],
        now: Instant,
        msg: &mut Vec<u8>,
        inputs: &mut DirectInputs,
    ) -> (Next, usize) {
        let mut used = 0;
        loop {
            let rest = &data[used..];
            let mut c = Cursor::new(rest);
            let (h, len) = match FrameHeader::parse(&mut c) {
                Ok(Some(f)) => f,
                Ok(None) => return (Next::Sim, used),
                Err(_) => return (Next::Task, used),
            };
            let start = c.position() as usize;
            let fragment = matches!(h.opcode, OpCode::Data(_))
                && (!h.is_final || h.opcode == OpCode::Data(Data::Continue));
            if len > MAX_WS_MESSAGE as u64 || fragment {
                // Oversized or fragmented: tungstenite's to judge, from here on (a data frame
                // inside a fragmented message is a protocol error only it can see).
                return (Next::Task, used);
            }
            let end = start + len as usize;
            if rest.len() < end {
                return (Next::Sim, used);
            }
            let input = h.is_final
                && !(h.rsv1 || h.rsv2 || h.rsv3)
                && h.opcode == OpCode::Data(Data::Binary);
            let Some(mask) = h.mask.filter(|_| input) else {
                return (Next::Frame, used);
            };
            msg.clear();
            msg.extend(
                rest[start..end]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask[i & 3]),
            );
            let Ok(ClientMessage::Input { ack_tick, frames }) = decode_client(msg) else {
                // Another message, or none: the session's, as if it had read it itself.
                return (Next::Frame, used);
            };
            if self.charge(self.tick_rate, now) != Budget::Take {
                // Over the rate: the session drops and closes, from this message on.
                return (Next::Task, used);
            }
            inputs.push((ack_tick, frames));
            used += end;
        }
    }

    /// The task's read: at most the rest of one frame from the buffer, reading the socket
    /// when the buffer has not got the frame's header yet. Waits while the simulation reads.
    fn poll_task_read(
        &mut self,
        tcp: &mut TcpStream,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.reader == Reader::Frame && self.frame_done {
            // tungstenite has taken the handed frame and the session has acted on it (a Leave
            // or a close has stopped the simulation's reads by now): the simulation reads on.
            self.reader = Reader::Sim;
            self.frame_done = false;
        }
        loop {
            if self.reader == Reader::Sim {
                if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    self.waker = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            let avail = &self.rbuf[self.rpos..];
            if self.frame_left == 0 && !avail.is_empty() {
                self.frame_left = frame_len(avail).unwrap_or(0);
            }
            if self.frame_left != 0 && !avail.is_empty() {
                let k = (avail.len() as u64)
                    .min(self.frame_left)
                    .min(buf.remaining() as u64) as usize;
                buf.put_slice(&avail[..k]);
                self.rpos += k;
                self.frame_left -= k as u64;
                if self.rpos == self.rbuf.len() {
                    self.rbuf.clear();
                    self.rpos = 0;
                }
                if self.frame_left == 0 && self.reader == Reader::Frame {
                    self.frame_done = true;
                }
                return Poll::Ready(Ok(()));
            }
            if self.reader == Reader::Frame {
                // The simulation hands over whole frames only; should one not be, the task
                // reads on by itself rather than wait for bytes no one will fetch.
                drop(self.hand_back());
            }
            if self.lowat_raised {
                // Handed back without a direct handle to lower it with (a failed write).
                if let Err(e) = set_rcvlowat(&socket2::SockRef::from(&*tcp), 1) {
                    return Poll::Ready(Err(e));
                }
                self.lowat_raised = false;
            }
            let mut chunk = [0u8; TASK_READ_CHUNK];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut *tcp).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    // The end (a partial header left behind is tungstenite's to complain of).
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(())) => {
                    if self.rpos == self.rbuf.len() {
                        self.rbuf.clear();
                        self.rpos = 0;
                    }
                    self.rbuf.extend_from_slice(rb.filled());
                }
                other => return other,
            }
        }
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
            // finds out on its own next read or write, reading for itself from now on.
            _ => {
                if self.reader != Reader::Task
                    && let Some(w) = self.hand_back()
                {
                    w.wake();
                }
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
    /// `read` is what was read from the socket already (the HTTP upgrade's leftover): it is
    /// read first.
    pub fn new(tcp: TcpStream, out: Arc<Outbound>, read: Vec<u8>) -> WireStream {
        let mut wire = match socket2::SockRef::from(&tcp).try_clone() {
            Ok(sock) => Wire::new(sock),
            Err(e) => {
                // Out of descriptors: this connection keeps the task path only.
                tracing::debug!(error = %e, "no direct write path");
                Wire::default()
            }
        };
        wire.rbuf = read;
        out.install_wire(wire);
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
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let tcp = &mut this.tcp;
        this.out.with_wire(|w| w.poll_task_read(tcp, cx, buf))
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

#[cfg(test)]
mod read_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use futures_util::{FutureExt, SinkExt};
    use tickwire_shared::codec::encode_client;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;
    use tokio_tungstenite::WebSocketStream;
    use tungstenite::Message;
    use tungstenite::protocol::Role;

    /// A server-side stream with its direct side, and a WebSocket client on the other end.
    async fn pair() -> (WireStream, Arc<Outbound>, WebSocketStream<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let out = Arc::new(Outbound::default());
        let stream = WireStream::new(accepted.unwrap().0, out.clone(), Vec::new());
        let ws = WebSocketStream::from_raw_socket(client.unwrap(), Role::Client, None).await;
        (stream, out, ws)
    }

    fn input(ack: u32) -> Message {
        let mut b = Vec::new();
        let msg = ClientMessage::Input {
            ack_tick: Tick(ack),
            frames: Vec::new(),
        };
        encode_client(&msg, &mut b).unwrap();
        Message::Binary(b.into())
    }

    /// The simulation's reads until one finds something (or 2 s pass), as the ticks would.
    async fn read_some(out: &Outbound) -> Vec<u32> {
        let (mut scratch, mut msg, mut inputs) = (vec![0; MAX_READ_BUFFER], Vec::new(), Vec::new());
        for _ in 0..200 {
            out.read_inputs(Instant::now(), &mut scratch, &mut msg, &mut inputs);
            if !inputs.is_empty() || reader(out) != Reader::Sim {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        inputs.iter().map(|(t, _)| t.0).collect()
    }

    fn reader(out: &Outbound) -> Reader {
        out.with_wire(|w| w.reader)
    }

    /// Before the simulation reads, the task gets one frame per read however the bytes
    /// arrived, so tungstenite never holds a byte of the next message.
    #[tokio::test]
    async fn the_task_is_handed_one_frame_at_a_time() {
        let (mut stream, _out, mut ws) = pair().await;
        let a = input(1);
        let b = Message::Ping(vec![9; 100].into());
        ws.feed(a.clone()).await.unwrap();
        ws.feed(b).await.unwrap();
        ws.flush().await.unwrap();
        let mut buf = [0u8; 4096];
        // A client frame: 2 header bytes and a 4-byte mask before the payload.
        let n = stream.read(&mut buf).await.unwrap();
        assert_eq!(n, 6 + a.len());
        let n = stream.read(&mut buf).await.unwrap();
        assert_eq!(n, 6 + 100);
    }

    /// Once the client has joined, the simulation takes the inputs; a frame of another kind
    /// goes to the task whole and in order, and the simulation reads on after it.
    #[tokio::test]
    async fn the_simulation_takes_inputs_and_hands_the_task_the_rest() {
        let (mut stream, out, mut ws) = pair().await;
        assert!(out.start_reads(30));
        assert_eq!(reader(&out), Reader::Sim);
        for m in [
            input(3),
            input(4),
            Message::Ping(vec![1, 2, 3].into()),
            input(5),
        ] {
            ws.feed(m).await.unwrap();
        }
        ws.flush().await.unwrap();
        assert_eq!(read_some(&out).await, vec![3, 4]);
        assert_eq!(reader(&out), Reader::Frame, "the ping is the task's");
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..2], &[0x89, 0x83], "a masked ping of 3 bytes, alone");
        assert_eq!(n, 6 + 3);
        assert_eq!(reader(&out), Reader::Frame, "until the task reads again");
        let mut task = tokio_test_read(&mut stream, &mut buf);
        assert!(task.as_mut().now_or_never().is_none(), "it waits");
        assert_eq!(reader(&out), Reader::Sim);
        drop(task);
        assert_eq!(read_some(&out).await, vec![5]);
    }

    fn tokio_test_read<'a>(
        s: &'a mut WireStream,
        buf: &'a mut [u8],
    ) -> Pin<Box<impl Future<Output = io::Result<usize>> + 'a>> {
        Box::pin(s.read(buf))
    }

    /// A handed frame larger than one read of the task's goes over in several, and the
    /// simulation reads on after it.
    #[tokio::test]
    async fn a_large_frame_is_handed_over_in_several_reads() {
        let (mut stream, out, mut ws) = pair().await;
        assert!(out.start_reads(30));
        // Binary, but not a message: the session's to refuse (1002).
        for m in [input(1), Message::Binary(vec![0xff; 3000].into()), input(2)] {
            ws.feed(m).await.unwrap();
        }
        ws.flush().await.unwrap();
        assert_eq!(read_some(&out).await, vec![1]);
        assert_eq!(reader(&out), Reader::Frame);
        let mut got = 0;
        let mut buf = [0u8; 1024];
        while got < 8 + 3000 {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0 && got + n <= 8 + 3000, "{got} + {n}");
            got += n;
        }
        assert!(
            tokio_test_read(&mut stream, &mut buf)
                .now_or_never()
                .is_none()
        );
        assert_eq!(read_some(&out).await, vec![2]);
    }

    /// A fragmented message, of any kind, is tungstenite's to judge: reading is handed back.
    #[tokio::test]
    async fn a_fragment_hands_reading_back() {
        let (_stream, out, mut ws) = pair().await;
        assert!(out.start_reads(30));
        ws.send(Message::Frame(
            tungstenite::protocol::frame::Frame::message(
                b"he".to_vec(),
                OpCode::Data(Data::Text),
                false,
            ),
        ))
        .await
        .unwrap();
        let _ = read_some(&out).await;
        assert_eq!(reader(&out), Reader::Task);
    }

    /// While the simulation reads, the task's read waits, and is woken when a frame is its.
    #[tokio::test]
    async fn the_task_waits_while_the_simulation_reads() {
        let (mut stream, out, mut ws) = pair().await;
        assert!(out.start_reads(30));
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let n = stream.read(&mut buf).await.unwrap();
            (n, buf[0])
        });
        ws.send(input(8)).await.unwrap();
        assert_eq!(read_some(&out).await, vec![8]);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!task.is_finished(), "the task read an input");
        ws.send(Message::Ping(Vec::new().into())).await.unwrap();
        let _ = read_some(&out).await;
        let (n, first) = tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("the task was woken")
            .unwrap();
        assert_eq!((n, first), (6, 0x89));
    }

    /// The peer's end, and a flood past the rate limit, hand reading back to the task for
    /// good: it reads what is left itself, in order.
    #[tokio::test]
    async fn the_end_and_a_flood_hand_reading_back() {
        let (mut stream, out, ws) = pair().await;
        assert!(out.start_reads(30));
        drop(ws);
        let _ = read_some(&out).await;
        assert_eq!(reader(&out), Reader::Task);
        let mut buf = [0u8; 64];
        assert_eq!(
            stream.read(&mut buf).await.unwrap(),
            0,
            "the task sees the end"
        );
        assert!(!out.start_reads(30), "not again");

        let (mut stream, out, mut ws) = pair().await;
        assert!(out.start_reads(30));
        for ack in 0..100 {
            ws.feed(input(ack)).await.unwrap();
        }
        ws.flush().await.unwrap();
        // The whole burst arrives before the simulation reads it all.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let taken = read_some(&out).await;
        assert_eq!(
            taken,
            (0..32).collect::<Vec<_>>(),
            "the burst of the rate limit"
        );
        assert_eq!(reader(&out), Reader::Task);
        let n = stream.read(&mut buf).await.unwrap();
        assert_eq!(
            n,
            6 + input(32).len(),
            "the task reads on from the next message"
        );
    }

    /// A ping flood: more than a message's worth waiting behind a frame of the task's hands
    /// reading back, so the session's limit sees the flood (and closes it with 4013).
    #[tokio::test]
    async fn pings_piling_up_hand_reading_back() {
        let (_stream, out, mut ws) = pair().await;
        assert!(out.start_reads(30));
        for _ in 0..64 {
            ws.feed(Message::Ping(vec![0; 125].into())).await.unwrap();
        }
        ws.flush().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let _ = read_some(&out).await;
        assert_eq!(reader(&out), Reader::Task);
    }
}
