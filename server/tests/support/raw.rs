//! Raw HTTP/1.1 over a plain TCP socket, for tests of exactly what the front door answers to
//! requests a well-behaved client library would never send.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::WAIT;

/// A response head, and the stream it came on (positioned right after the head).
pub(crate) struct RawResponse<S> {
    pub(crate) status: u16,
    /// Header names lowercased, values as sent.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) stream: S,
    /// Bytes read past the head.
    pub(crate) rest: Vec<u8>,
}

impl<S> RawResponse<S> {
    /// The first value of header `name` (lowercase).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A WebSocket upgrade request for `/ws` with the given extra header lines (each ending in
/// `\r\n`), or the standard ones when `headers` is `None`.
pub(crate) fn upgrade_request(headers: Option<&str>) -> String {
    let std = "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
               Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    format!("GET /ws HTTP/1.1\r\n{}\r\n", headers.unwrap_or(std))
}

/// Connects, writes `request` as is and reads the response head.
pub(crate) async fn exchange(addr: SocketAddr, request: &str) -> RawResponse<TcpStream> {
    let s = TcpStream::connect(addr).await.unwrap();
    exchange_on(s, request).await
}

/// Writes `request` on `s` and reads the response head (at most 5 s).
pub(crate) async fn exchange_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &str,
) -> RawResponse<S> {
    s.write_all(request.as_bytes()).await.unwrap();
    read_head(s).await
}

/// Reads a response head from `s` (at most 5 s).
pub(crate) async fn read_head<S: AsyncRead + Unpin>(mut s: S) -> RawResponse<S> {
    let mut buf = Vec::new();
    let end = timeout(WAIT, async {
        loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return i + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before a response head: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("a response head in time");
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    RawResponse {
        status,
        headers,
        stream: s,
        rest: buf[end..].to_vec(),
    }
}

/// A WebSocket opened by hand: the upgrade over raw TCP, then frames written byte by byte.
pub(crate) async fn raw_websocket(addr: SocketAddr) -> TcpStream {
    let r = exchange(addr, &upgrade_request(None)).await;
    assert_eq!(r.status, 101);
    assert!(
        r.rest.is_empty(),
        "the server speaks first only after Hello"
    );
    r.stream
}

/// One client frame (FIN set, masked as RFC 6455 requires of a client) with a payload under
/// 126 bytes.
pub(crate) fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Reads one server frame (unmasked): its opcode and payload; `None` when the stream ends
/// first (cleanly or by a reset).
pub(crate) async fn read_server_frame<S: AsyncRead + Unpin>(s: &mut S) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await.ok()?;
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).await.ok()?;
            u64::from(u16::from_be_bytes(l))
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).await.ok()?;
            u64::from_be_bytes(l)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).ok()?];
    s.read_exact(&mut payload).await.ok()?;
    Some((h[0] & 0x0f, payload))
}

/// Reads server frames until a close frame: its code (`None` for a close without one), or
/// `Err` when the stream ended without a close frame.
pub(crate) async fn read_close_code<S: AsyncRead + Unpin>(s: &mut S) -> Result<Option<u16>, ()> {
    timeout(WAIT, async {
        loop {
            match read_server_frame(s).await {
                None => return Err(()),
                Some((0x8, p)) => {
                    return Ok(p.first_chunk::<2>().map(|c| u16::from_be_bytes(*c)));
                }
                Some(_) => {}
            }
        }
    })
    .await
    .expect("a close in time")
}
