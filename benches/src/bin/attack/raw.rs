//! A WebSocket client written by hand, for the attacks: the upgrade request and the masked
//! client frames are built here byte by byte, so an attacker can send what a well-behaved
//! library would not (a trickled head, pings back to back, close code 999) as fast as the
//! socket takes it, and read back exactly which frames the server sent.

use std::io;
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context as _, bail};
use tickwire_shared::codec::{MAX_SERVER_MESSAGE_BYTES, decode_server, encode_client};
use tickwire_shared::{ClientMessage, ServerMessage, Welcome};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

/// Binary data frame (RFC 6455 §5.2).
pub(crate) const OP_BINARY: u8 = 0x2;
/// Close frame.
pub(crate) const OP_CLOSE: u8 = 0x8;
/// Ping frame.
pub(crate) const OP_PING: u8 = 0x9;

/// The key of every upgrade request (RFC 6455's own example): the server only hashes it.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The mask of every client frame. RFC 6455 wants it unpredictable (against proxy cache
/// poisoning); a loopback load generator has no proxy to fool.
pub(crate) const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Longest upgrade answer head read before giving up.
const MAX_HEAD: usize = 8 * 1024;

/// Most bytes [`Reader::until_end`] reads looking for the end of a connection.
const MAX_DRAIN: usize = 64 << 20;

/// The upgrade request for `/ws` on `server`, without the blank line that would end it.
pub(crate) fn upgrade_lines(server: SocketAddr) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
    )
}

/// A TCP connection to `server` from `bind` (the port picked by the OS), Nagle off.
pub(crate) async fn tcp_from(bind: IpAddr, server: SocketAddr) -> io::Result<TcpStream> {
    let socket = if server.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(bind, 0))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Appends one masked client frame (FIN set).
pub(crate) fn put_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | (opcode & 0x0f));
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, m)| b ^ m));
}

/// One client message as a masked binary frame.
pub(crate) fn message_frame(msg: &ClientMessage) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::with_capacity(64);
    encode_client(msg, &mut body).map_err(|e| anyhow::anyhow!("cannot encode: {e:?}"))?;
    let mut out = Vec::with_capacity(body.len() + 8);
    put_frame(&mut out, OP_BINARY, &body);
    Ok(out)
}

/// A close frame with `code` (any number: the attacks send invalid ones).
pub(crate) fn close_frame(code: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    put_frame(&mut out, OP_CLOSE, &code.to_be_bytes());
    out
}

/// How a connection ended, as this side saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Ending {
    /// `close frame`, `eof` (the TCP stream ended with no close frame), `reset`, `error`,
    /// `too much data` or `timeout` (nothing ended it while we waited).
    pub(crate) how: &'static str,
    /// The close frame's code (1005 for a close frame without one).
    pub(crate) code: Option<u16>,
    /// The close frame's reason text.
    pub(crate) reason: String,
    /// The code of a `Disconnect` message that came before, if one did.
    pub(crate) disconnect: Option<u16>,
}

impl Ending {
    /// Nothing ended the connection while we waited.
    pub(crate) fn timeout() -> Ending {
        Ending::without_close("timeout", None)
    }

    fn without_close(how: &'static str, disconnect: Option<u16>) -> Ending {
        Ending {
            how,
            code: None,
            reason: String::new(),
            disconnect,
        }
    }

    /// `close 1002`, `eof`, `eof after Disconnect 4000`, ... for tables and counts.
    pub(crate) fn label(&self) -> String {
        let mut s = match self.code {
            Some(c) => format!("close {c}"),
            None => self.how.to_owned(),
        };
        if let Some(d) = self.disconnect
            && self.code != Some(d)
        {
            s.push_str(&format!(" (Disconnect {d})"));
        }
        s
    }
}

/// What a read error says about how the connection ended.
fn io_ending(e: &io::Error, disconnect: Option<u16>) -> Ending {
    let how = match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => "reset",
        io::ErrorKind::UnexpectedEof => "eof",
        _ => "error",
    };
    Ending::without_close(how, disconnect)
}

/// Reads what the server sends: the upgrade answer's head, then frames, keeping whatever
/// was read past either for the next call.
#[derive(Debug)]
pub(crate) struct Reader<R> {
    r: R,
    buf: Vec<u8>,
    pos: usize,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub(crate) fn new(r: R) -> Self {
        Self {
            r,
            buf: Vec::with_capacity(16 * 1024),
            pos: 0,
        }
    }

    /// Reads more; `false` at end of stream.
    async fn fill(&mut self) -> io::Result<bool> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(16 * 1024);
        Ok(self.r.read_buf(&mut self.buf).await? > 0)
    }

    /// The upgrade answer's status code, once its whole head is in.
    pub(crate) async fn head(&mut self) -> anyhow::Result<u16> {
        loop {
            let pending = &self.buf[self.pos..];
            if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                self.pos += end + 4;
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .with_context(|| format!("odd answer head {head:?}"))?;
                return Ok(status);
            }
            if pending.len() > MAX_HEAD {
                bail!("answer head longer than {MAX_HEAD} bytes");
            }
            if !self.fill().await? {
                bail!("closed before the answer head ended");
            }
        }
    }

    /// The next whole frame, `(opcode, payload)`; `None` at end of stream. Server frames are
    /// unmasked and at most [`MAX_SERVER_MESSAGE_BYTES`] (plus a little): anything else is
    /// an `InvalidData` error.
    pub(crate) async fn frame(&mut self) -> io::Result<Option<(u8, &[u8])>> {
        loop {
            if let Some((header, len)) = parse_header(&self.buf[self.pos..])? {
                if self.buf.len() - self.pos >= header + len {
                    let start = self.pos + header;
                    self.pos = start + len;
                    let opcode = self.buf[start - header] & 0x0f;
                    return Ok(Some((opcode, &self.buf[start..start + len])));
                }
                self.buf.reserve(header + len);
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// The next server message (control frames skipped), or how the connection ended.
    pub(crate) async fn message(&mut self) -> anyhow::Result<Result<ServerMessage, Ending>> {
        loop {
            match self.frame().await {
                Ok(Some((OP_BINARY, payload))) => return Ok(Ok(decode_server(payload)?)),
                Ok(Some((OP_CLOSE, payload))) => return Ok(Err(close_ending(payload, None))),
                Ok(Some(_)) => {}
                Ok(None) => return Ok(Err(Ending::without_close("eof", None))),
                Err(e) => return Ok(Err(io_ending(&e, None))),
            }
        }
    }

    /// Reads (and drops) everything until the connection ends: a close frame, end of stream
    /// or an error; noting a `Disconnect` message on the way. At most [`MAX_DRAIN`] bytes.
    pub(crate) async fn until_end(&mut self) -> Ending {
        self.until_end_seeing(MAX_DRAIN, |_| {}).await
    }

    /// As [`Reader::until_end`], reading at most `max` bytes and showing `seen` every server
    /// message on the way.
    pub(crate) async fn until_end_seeing(
        &mut self,
        max: usize,
        mut seen: impl FnMut(&ServerMessage),
    ) -> Ending {
        let mut disconnect = None;
        let mut read = 0usize;
        loop {
            let (opcode, payload) = match self.frame().await {
                Ok(Some(f)) => f,
                Ok(None) => return Ending::without_close("eof", disconnect),
                Err(e) => return io_ending(&e, disconnect),
            };
            read = read.saturating_add(payload.len() + 2);
            match opcode {
                OP_CLOSE => return close_ending(payload, disconnect),
                OP_BINARY => match decode_server(payload) {
                    Ok(ServerMessage::Disconnect { code, .. }) => disconnect = Some(code),
                    Ok(m) => seen(&m),
                    Err(_) => {}
                },
                _ => {}
            }
            if read > max {
                return Ending::without_close("too much data", disconnect);
            }
        }
    }
}

/// The ending a close frame's payload gives.
fn close_ending(payload: &[u8], disconnect: Option<u16>) -> Ending {
    let (code, reason) = match payload {
        [a, b, rest @ ..] => (
            u16::from_be_bytes([*a, *b]),
            String::from_utf8_lossy(rest).into_owned(),
        ),
        _ => (1005, String::new()),
    };
    Ending {
        how: "close frame",
        code: Some(code),
        reason,
        disconnect,
    }
}

/// `(header bytes, payload bytes)` of the server frame starting `buf`, `None` while the
/// header is incomplete.
fn parse_header(buf: &[u8]) -> io::Result<Option<(usize, usize)>> {
    let [_, b1, rest @ ..] = buf else {
        return Ok(None);
    };
    if b1 & 0x80 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "masked server frame",
        ));
    }
    let (header, len) = match b1 & 0x7f {
        126 => match rest {
            [a, b, ..] => (4, u64::from(u16::from_be_bytes([*a, *b]))),
            _ => return Ok(None),
        },
        127 => match rest.get(..8) {
            Some(b) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                (10, u64::from_be_bytes(a))
            }
            None => return Ok(None),
        },
        n => (2, u64::from(n)),
    };
    match usize::try_from(len) {
        Ok(len) if len <= MAX_SERVER_MESSAGE_BYTES + 64 => Ok(Some((header, len))),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("server frame of {len} bytes"),
        )),
    }
}

/// An upgraded WebSocket, its halves apart so that one task can read and write at once.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) reader: Reader<OwnedReadHalf>,
    pub(crate) writer: OwnedWriteHalf,
}

impl Conn {
    /// Connects from `bind`, upgrades at `/ws` and checks for 101.
    pub(crate) async fn open(bind: IpAddr, server: SocketAddr) -> anyhow::Result<Conn> {
        let mut stream = tcp_from(bind, server).await.context("connect")?;
        let request = upgrade_lines(server) + "\r\n";
        stream.write_all(request.as_bytes()).await?;
        let (r, writer) = stream.into_split();
        let mut reader = Reader::new(r);
        let status = reader.head().await?;
        if status != 101 {
            bail!("the upgrade was answered {status}");
        }
        Ok(Conn { reader, writer })
    }

    /// Says `Hello` as `name` and waits for the `Welcome` (no timeout: callers add theirs).
    pub(crate) async fn hello(&mut self, name: &str) -> anyhow::Result<Welcome> {
        let hello = tickwire_bot_client::HelloArgs::new(name).message();
        self.writer.write_all(&message_frame(&hello)?).await?;
        match self.reader.message().await? {
            Ok(ServerMessage::Welcome(w)) => Ok(w),
            Ok(ServerMessage::Disconnect { code, reason }) => {
                bail!("refused with Disconnect {code} {reason:?}")
            }
            Ok(_) => bail!("the first message was not Welcome"),
            Err(end) => bail!("no Welcome: {}", end.label()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unmasks a client frame as a server would: `(opcode, payload)`.
    fn unmask(frame: &[u8]) -> (u8, Vec<u8>) {
        let (len, at) = match frame[1] & 0x7f {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        assert_eq!(frame[1] & 0x80, 0x80, "client frames are masked");
        let mask = &frame[at..at + 4];
        let body = &frame[at + 4..];
        assert_eq!(body.len(), len);
        let payload = body.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m);
        (frame[0] & 0x0f, payload.collect())
    }

    #[test]
    fn client_frames_are_masked_and_sized() {
        for n in [0usize, 1, 125, 126, 1000, 65_535, 65_536] {
            let payload: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let mut f = Vec::new();
            put_frame(&mut f, OP_PING, &payload);
            assert_eq!(f[0], 0x89);
            assert_eq!(unmask(&f), (OP_PING, payload));
        }
        // The ping: 0x89, 0x80|125, mask, payload.
        let mut f = Vec::new();
        put_frame(&mut f, OP_PING, &[0; 125]);
        assert_eq!((f[0], f[1], f.len()), (0x89, 0x80 | 125, 131));
        assert_eq!(unmask(&close_frame(999)), (OP_CLOSE, vec![0x03, 0xe7]));
    }

    #[tokio::test]
    async fn reads_heads_and_frames_split_anywhere() {
        let mut wire = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
        wire.extend([0x89, 3, 1, 2, 3]);
        wire.extend([0x82, 126, 0x01, 0x00]);
        wire.extend([7u8; 256]);
        wire.extend([0x88, 5, 0x03, 0xea, b'b', b'y', b'e']);
        // One byte per read: every boundary falls mid-header somewhere.
        let (mut tx, rx) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move { tx.write_all(&wire).await });
        let mut r = Reader::new(rx);
        assert_eq!(r.head().await.unwrap(), 101);
        assert_eq!(r.frame().await.unwrap(), Some((OP_PING, &[1u8, 2, 3][..])));
        let (op, p) = r.frame().await.unwrap().unwrap();
        assert_eq!((op, p.len()), (OP_BINARY, 256));
        let end = r.until_end().await;
        assert_eq!(
            (end.how, end.code, end.reason.as_str()),
            ("close frame", Some(1002), "bye")
        );
        assert_eq!(end.label(), "close 1002");
        writer.await.unwrap().unwrap();
        assert_eq!(r.frame().await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_stream_that_just_ends_has_no_close_frame() {
        let (tx, rx) = tokio::io::duplex(64);
        drop(tx);
        let end = Reader::new(rx).until_end().await;
        assert_eq!((end.how, end.code), ("eof", None));
        assert_eq!(
            close_ending(&[], Some(4000)).label(),
            "close 1005 (Disconnect 4000)"
        );
    }

    #[test]
    fn masked_or_huge_server_frames_are_refused() {
        assert!(parse_header(&[0x82, 0x85]).is_err());
        let mut huge = vec![0x82, 127];
        huge.extend((u64::MAX).to_be_bytes());
        assert!(parse_header(&huge).is_err());
        assert_eq!(parse_header(&[0x82]).unwrap(), None);
        assert_eq!(parse_header(&[0x82, 126, 1]).unwrap(), None);
    }
}
