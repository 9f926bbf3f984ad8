//! A deliberately small HTTP/1.1 front door on the game port: it reads one request head
//! (bounded in size and time), then either upgrades `/ws` to a WebSocket or answers a plain
//! request (`/healthz`, `/metrics`, the web client) and closes.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest request head accepted.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method, as sent.
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Headers with lower-cased names.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a header holds `token` in its comma-separated list (case-insensitive).
    pub fn header_has(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

/// Why a request head was refused.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The socket failed or closed early.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Head larger than [`MAX_HEAD_BYTES`].
    #[error("request head too large")]
    TooLarge,
    /// Not HTTP/1.x.
    #[error("malformed request head")]
    Malformed,
}

/// Reads one request head; returns it and any bytes read past it.
pub async fn read_head(stream: &mut TcpStream) -> Result<(Request, Vec<u8>), HttpError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HttpError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let req = parse_head(&buf[..end])?;
            return Ok((req, buf[end + 4..].to_vec()));
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(HttpError::TooLarge);
        }
    }
}

/// Parses a request head (without the final blank line).
pub fn parse_head(head: &[u8]) -> Result<Request, HttpError> {
    let text = std::str::from_utf8(head).map_err(|_| HttpError::Malformed)?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next().ok_or(HttpError::Malformed)?.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (first.next(), first.next(), first.next(), first.next())
    else {
        return Err(HttpError::Malformed);
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(HttpError::Malformed);
    }
    let path = target.split('?').next().unwrap_or("/").to_owned();
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(HttpError::Malformed)?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(Request {
        method: method.to_owned(),
        path,
        headers,
    })
}

/// Writes a complete response and closes the write side.
pub async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}

/// The `101 Switching Protocols` answer to a valid WebSocket upgrade.
pub fn upgrade_response(key: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        tungstenite::handshake::derive_accept_key(key.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_upgrade() {
        let r = parse_head(
            b"GET /ws?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade",
        )
        .unwrap();
        assert_eq!(r.path, "/ws");
        assert!(r.header_has("upgrade", "websocket"));
        assert!(r.header_has("connection", "upgrade"));
        assert!(parse_head(b"GARBAGE").is_err());
        assert!(parse_head(b"GET /x HTTP/1.1\r\nno-colon").is_err());
        assert!(parse_head(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn accept_key_matches_rfc6455_example() {
        assert!(
            upgrade_response("dGhlIHNhbXBsZSBub25jZQ==")
                .contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
    }
}
