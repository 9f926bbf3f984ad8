//! Matchmaking over HTTP (PROTOCOL.md section 12): `POST /matchmake/{mode}/{kind}` with
//! `{"max_clients": N}`, answered by a seat (`room_id`, `ws_url`, `quic_url`, `seat_token`,
//! `expires_in_s`) or an error status with `{"error", "message"}`.
//!
//! The HTTP client is hyper 1's HTTP/1.1 connection over a plain TCP stream, one connection
//! per request (`http://` only: the matchmaker sits on the server's HTTP port). The pure parts
//! ([`MatchmakerUrl::parse`], [`request_body`], [`parse_answer`]) are unit-tested here; the
//! exchange itself needs a server with matchmaking.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use tokio::net::TcpSocket;
use tokio::time::timeout;

/// Largest matchmaking answer read (an answer is a few hundred bytes).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Which matchmaking request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `join_or_create`: a free place in an open room of the kind, else a new room.
    #[default]
    JoinOrCreate,
    /// `create`: always a new room.
    Create,
}

impl Mode {
    /// The path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::JoinOrCreate => "join_or_create",
            Mode::Create => "create",
        }
    }
}

/// Why matchmaking failed.
#[derive(Debug, thiserror::Error)]
pub enum MatchmakeError {
    /// The matchmaker URL is not `http://host:port[/prefix]`.
    #[error("bad matchmaker url {0:?}: expected http://host:port")]
    BadUrl(String),
    /// TCP connect or bind failed.
    #[error("matchmake connect: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP exchange failed.
    #[error("matchmake http: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built (a kind that makes no valid path).
    #[error("matchmake request: {0}")]
    Request(#[from] hyper::http::Error),
    /// The answer body could not be read (or was over the size limit).
    #[error("matchmake answer body: {0}")]
    Body(String),
    /// The matchmaker answered with an error status.
    #[error("matchmake refused: {status} {}{}", error.as_deref().unwrap_or("error"),
            if message.is_empty() { String::new() } else { format!(": {message}") })]
    Status {
        /// HTTP status.
        status: u16,
        /// The answer's `error` code (`room_full`, `directory_unavailable`, ...), if any.
        error: Option<String>,
        /// The answer's `message`, if any.
        message: String,
    },
    /// A 2xx answer that is not a seat.
    #[error("matchmake answer is not a seat: {0}")]
    BadAnswer(#[from] serde_json::Error),
    /// No answer in time.
    #[error("matchmake timed out")]
    Timeout,
}

impl MatchmakeError {
    /// Whether trying again may help: connection failures, time-outs, 409 (a room filled or
    /// locked under us), 5xx (503: the room directory is unavailable). Not a bad URL, 400,
    /// 404 or 413, which a retry would only repeat.
    pub fn is_retryable(&self) -> bool {
        match self {
            MatchmakeError::Io(_) | MatchmakeError::Http(_) | MatchmakeError::Timeout => true,
            MatchmakeError::Body(_) => true,
            MatchmakeError::Status { status, .. } => *status == 409 || *status >= 500,
            MatchmakeError::BadUrl(_)
            | MatchmakeError::Request(_)
            | MatchmakeError::BadAnswer(_) => false,
        }
    }
}

/// A seat, as the matchmaker gave it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Seat {
    /// The room the seat is in.
    pub room_id: String,
    /// Where to connect over WebSocket.
    pub ws_url: String,
    /// Where to connect over QUIC (absent or null: the node has none).
    #[serde(default)]
    pub quic_url: Option<String>,
    /// The token for `Hello.seat`.
    pub seat_token: String,
    /// Seconds within which the `Hello` must arrive.
    pub expires_in_s: f64,
}

/// The JSON body of an error answer.
#[derive(Debug, serde::Deserialize)]
struct ErrorAnswer {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The JSON body of a request.
#[derive(Debug, serde::Serialize)]
struct Request {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_clients: Option<u32>,
}

/// The body of a matchmaking request: `{"max_clients": N}`, or `{}` without a room size.
pub fn request_body(max_clients: Option<u32>) -> String {
    // A struct of one optional integer always serialises.
    serde_json::to_string(&Request { max_clients }).unwrap_or_else(|_| "{}".to_owned())
}

/// Reads a matchmaking answer: a [`Seat`] for a 2xx status, otherwise
/// [`MatchmakeError::Status`] with the answer's `error` and `message` when it has them.
pub fn parse_answer(status: u16, body: &[u8]) -> Result<Seat, MatchmakeError> {
    if (200..300).contains(&status) {
        return Ok(serde_json::from_slice(body)?);
    }
    let answer: Option<ErrorAnswer> = serde_json::from_slice(body).ok();
    let (error, message) = answer.map_or((None, None), |a| (a.error, a.message));
    Err(MatchmakeError::Status {
        status,
        error,
        message: message.unwrap_or_default(),
    })
}

/// A matchmaker's address: `http://host:port`, optionally with a path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchmakerUrl {
    /// `host:port` as written (the `Host` header).
    pub authority: String,
    /// The host to resolve.
    pub host: String,
    /// The port (80 when the URL has none).
    pub port: u16,
    /// The path before `/matchmake/...`, without a trailing slash (usually empty).
    pub prefix: String,
}

impl MatchmakerUrl {
    /// Parses `http://host[:port][/prefix]`. `https://` is refused (no TLS here).
    pub fn parse(url: &str) -> Result<MatchmakerUrl, MatchmakeError> {
        let bad = || MatchmakeError::BadUrl(url.to_owned());
        let rest = url.trim().strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() || path.contains(['?', '#']) {
            return Err(bad());
        }
        let (host, port) = match authority.rsplit_once(':') {
            // `[::1]:8080`, `127.0.0.1:8080`, `localhost:8080`; a bare IPv6 literal needs [ ].
            Some((h, p)) if !h.is_empty() && (!h.contains(':') || h.starts_with('[')) => {
                (h, p.parse::<u16>().map_err(|_| bad())?)
            }
            Some(_) => return Err(bad()),
            None => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        Ok(MatchmakerUrl {
            authority: authority.to_owned(),
            host: host.to_owned(),
            port,
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }

    /// The request path for `mode` and `kind` (the kind percent-encoded).
    pub fn path(&self, mode: Mode, kind: &str) -> String {
        format!(
            "{}/matchmake/{}/{}",
            self.prefix,
            mode.as_str(),
            percent_encode(kind)
        )
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Asks the matchmaker at `url` for a seat in a room of `kind` (one HTTP/1.1 request on its
/// own connection, from `bind` if given), waiting at most `wait`.
pub async fn request_seat(
    url: &MatchmakerUrl,
    mode: Mode,
    kind: &str,
    max_clients: Option<u32>,
    bind: Option<IpAddr>,
    wait: Duration,
) -> Result<Seat, MatchmakeError> {
    timeout(wait, exchange(url, mode, kind, max_clients, bind))
        .await
        .map_err(|_| MatchmakeError::Timeout)?
}

async fn exchange(
    url: &MatchmakerUrl,
    mode: Mode,
    kind: &str,
    max_clients: Option<u32>,
    bind: Option<IpAddr>,
) -> Result<Seat, MatchmakeError> {
    let addr = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await?
        .next()
        .ok_or_else(|| MatchmakeError::BadUrl(url.authority.clone()))?;
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
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    // The connection task ends when the server closes (we ask it to, after the answer).
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let body = request_body(max_clients);
    let request = hyper::Request::builder()
        .method(hyper::Method::POST)
        .uri(url.path(mode, kind))
        .header(hyper::header::HOST, &url.authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::CONNECTION, "close")
        .body(Full::new(Bytes::from(body)))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| MatchmakeError::Body(e.to_string()))?
        .to_bytes();
    parse_answer(status, &bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn matchmaker_urls_parse() {
        let u = MatchmakerUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            u,
            MatchmakerUrl {
                authority: "127.0.0.1:8080".into(),
                host: "127.0.0.1".into(),
                port: 8080,
                prefix: String::new(),
            }
        );
        assert_eq!(
            u.path(Mode::JoinOrCreate, "arena"),
            "/matchmake/join_or_create/arena"
        );
        assert_eq!(u.path(Mode::Create, "a b/c"), "/matchmake/create/a%20b%2Fc");
        let u = MatchmakerUrl::parse("http://localhost/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("localhost", 80, "")
        );
        let u = MatchmakerUrl::parse("http://[::1]:9000/mm/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9000));
        assert_eq!(u.authority, "[::1]:9000");
        assert_eq!(
            u.path(Mode::JoinOrCreate, "x"),
            "/mm/matchmake/join_or_create/x"
        );
        for bad in [
            "",
            "127.0.0.1:8080",
            "https://127.0.0.1:8080",
            "ws://127.0.0.1:8080/ws",
            "http://",
            "http://:8080",
            "http://host:port",
            "http://host:70000",
            "http://::1:8080",
            "http://h:1/x?y",
        ] {
            assert!(
                matches!(MatchmakerUrl::parse(bad), Err(MatchmakeError::BadUrl(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn request_bodies_are_json() {
        assert_eq!(request_body(Some(8)), r#"{"max_clients":8}"#);
        assert_eq!(request_body(None), "{}");
    }

    #[test]
    fn answers_parse_into_seats_or_errors() {
        let ok = br#"{"room_id":"r8kq2mz4tb","ws_url":"ws://127.0.0.1:8080/ws",
            "quic_url":"quic://127.0.0.1:4433","seat_token":"r8kq2mz4tb.3f9d0c1a2b4e6f7a8c9d0e1f2a",
            "expires_in_s":30}"#;
        let seat = parse_answer(200, ok).unwrap();
        assert_eq!(seat.room_id, "r8kq2mz4tb");
        assert_eq!(seat.ws_url, "ws://127.0.0.1:8080/ws");
        assert_eq!(seat.quic_url.as_deref(), Some("quic://127.0.0.1:4433"));
        assert_eq!(seat.seat_token, "r8kq2mz4tb.3f9d0c1a2b4e6f7a8c9d0e1f2a");
        assert_eq!(seat.expires_in_s, 30.0);
        // quic_url may be missing or null; unknown members are ignored.
        let no_quic = br#"{"room_id":"a","ws_url":"ws://h:1/ws","quic_url":null,
            "seat_token":"t","expires_in_s":2.5,"extra":true}"#;
        assert_eq!(parse_answer(201, no_quic).unwrap().quic_url, None);
        // A 2xx that is not a seat.
        let e = parse_answer(200, br#"{"room_id":"a"}"#).unwrap_err();
        assert!(
            matches!(e, MatchmakeError::BadAnswer(_)) && !e.is_retryable(),
            "{e}"
        );

        let e = parse_answer(409, br#"{"error":"room_full","message":"8 of 8"}"#).unwrap_err();
        assert_eq!(e.to_string(), "matchmake refused: 409 room_full: 8 of 8");
        assert!(e.is_retryable());
        let e = parse_answer(503, br#"{"error":"directory_unavailable"}"#).unwrap_err();
        assert!(
            matches!(&e, MatchmakeError::Status { status: 503, error: Some(c), .. } if c == "directory_unavailable")
        );
        assert!(e.is_retryable());
        let e = parse_answer(404, b"not json").unwrap_err();
        assert!(matches!(
            &e,
            MatchmakeError::Status {
                status: 404,
                error: None,
                ..
            }
        ));
        assert_eq!(e.to_string(), "matchmake refused: 404 error");
        assert!(!e.is_retryable());
        for status in [400, 413] {
            assert!(!parse_answer(status, b"{}").unwrap_err().is_retryable());
        }
    }
}
