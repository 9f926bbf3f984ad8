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
