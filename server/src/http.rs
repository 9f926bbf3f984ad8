//! The front door on the game port, over hyper's HTTP/1.1 server (over TLS with
//! `--tls-cert`, see [`crate::tls`]): health, metrics, the web client, matchmaking
//! ([`crate::matchmaking`]) and the WebSocket upgrade at `/ws`.
//!
//! Every connection is bounded: a connection still in HTTP holds a place in the
//! [`PendingTable`] (`--max-pending-http`, `--max-pending-per-ip`; a full table makes room by
//! closing its oldest connection that has not sent a whole head, see [`crate::pending`]); on
//! plain TCP the first request head is read into a buffer no bigger than what arrived
//! ([`crate::head`]) before hyper takes over; the TLS handshake and each request head must
//! be complete within `--handshake-timeout` (a deadline for the whole head, not per byte: the
//! head is read that long from accept, and hyper's `header_read_timeout` is armed once per
//! head); heads fit hyper's smallest read buffer (8 KiB), request bodies are capped at
//! [`MAX_BODY_BYTES`]. A WebSocket upgrade takes a `--max-clients` slot before it answers 101,
//! and leaves the pending table then.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tickwire_shared::ClientId;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use tokio_rustls::server::TlsStream;
use tracing::{Instrument, debug};

use crate::head::{self, Rewind};
use crate::pending::{Admission, PendingGuard};
use crate::{Shared, matchmaking, session, web, ws};

/// Largest request body accepted (matchmaking options); larger gets 413.
pub const MAX_BODY_BYTES: usize = 4 * 1024;

/// hyper's read buffer limit, which bounds a request head.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Connections waiting in the kernel to be accepted (the kernel caps it at
/// `net.core.somaxconn`). tokio's default of 1024 overflowed under a connection flood, and a
/// full queue drops players' SYNs.
pub const ACCEPT_BACKLOG: u32 = 4096;

/// An HTTP answer.
pub(crate) type Answer = Response<Full<Bytes>>;

/// Binds the game port's listener with an [`ACCEPT_BACKLOG`]-deep accept queue.
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// A plain answer with a body.
pub(crate) fn answer(status: StatusCode, content_type: &'static str, body: Bytes) -> Answer {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// A short text answer.
pub(crate) fn text(status: StatusCode, body: &'static str) -> Answer {
    answer(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

/// A JSON answer (serde).
pub(crate) fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Answer {
    match serde_json::to_vec(value) {
        Ok(body) => answer(status, "application/json", body.into()),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n"),
    }
}

/// Takes one accepted connection: a place in the pending table, then a task serving it;
/// `done` is held until the task ends (shutdown waits for every one).
pub(crate) async fn accept(
    sh: &Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    done: &mpsc::Sender<()>,
) {
    if sh.pending.would_evict_unserved() {
        tokio::task::yield_now().await;
    }
    match sh.pending.admit(peer.ip()) {
        Admission::Admitted { guard, evicted } => {
            let span = tracing::info_span!("http", %peer);
            let (sh, done) = (sh.clone(), done.clone());
            tokio::spawn(
                async move {
                    serve(stream, guard, evicted, sh).await;
                    drop(done);
                }
                .instrument(span),
            );
        }
        Admission::Penalized => {
            sh.metrics.http_refused_source.fetch_add(1, Relaxed);
            debug!(%peer, "closed at accept: its source was closed for flooding a moment ago");
        }
        Admission::SourceFull => {
            sh.metrics.http_refused_source.fetch_add(1, Relaxed);
            debug!(%peer, "closed at accept: its source holds --max-pending-per-ip");
        }
    }
}

/// Serves one accepted TCP connection until it closes, upgrades to a WebSocket, or the
/// pending table evicts it to make room for a newer one.
async fn serve(
    stream: TcpStream,
    guard: PendingGuard,
    evicted: oneshot::Receiver<()>,
    sh: Arc<Shared>,
) {
    // `Err`: the connection left the table (it upgraded) without being evicted.
    let evicted = async {
        if evicted.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = serve_conn(stream, Arc::new(guard), sh) => {}
        _ = evicted => debug!("evicted: the pending table needed room"),
    }
}

/// The TLS handshake when the game port has TLS, or the first head read cheaply, then HTTP/1.1
/// requests (keep-alive) until the connection closes or one of them upgrades.
async fn serve_conn(stream: TcpStream, guard: PendingCell, sh: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    if let Some(bytes) = sh.cfg.send_buffer
        && let Err(e) = socket2::SockRef::from(&stream).set_send_buffer_size(bytes)
    {
        debug!(error = %e, "cannot set SO_SNDBUF");
    }
    // Boxed: a hyper connection (or a TLS one) is large, and inline it would make the task
    // of every connection that large while it only waits for its first bytes.
    match sh.tls.clone() {
        None => serve_plain(stream, guard, sh).await,
        Some(tls) => Box::pin(serve_tls(stream, tls, guard, sh)).await,
    }
}

/// The first request head, read into a buffer no bigger than what arrived, then HTTP/1.1.
async fn serve_plain(stream: TcpStream, guard: PendingCell, sh: Arc<Shared>) {
    let mut shutdown = sh.shutdown.clone();
    let head = tokio::select! {
        r = timeout(
            sh.cfg.handshake_timeout,
            head::read_head(&stream, MAX_HEAD_BYTES, || guard.waiting()),
        ) => {
            match r {
                Ok(Ok(head)) if !head.is_empty() => head,
                Ok(_) => return,
                Err(_) => {
                    debug!("request head timed out");
                    return;
                }
            }
        }
        _ = shutdown.changed() => return,
    };
    guard.busy();
    let io = TokioIo::new(Rewind::new(head, stream));
    Box::pin(serve_http(io, sh, guard)).await
}

/// The TLS handshake, then HTTP/1.1 over it.
async fn serve_tls(
    stream: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    guard: PendingCell,
    sh: Arc<Shared>,
) {
    let mut shutdown = sh.shutdown.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let tls = tokio::select! {
        r = timeout(sh.cfg.handshake_timeout, acceptor.accept(stream)) => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                debug!("TLS handshake timed out");
                return;
            }
        },
        _ = shutdown.changed() => return,
    };
    guard.waiting();
    serve_http(TokioIo::new(tls), sh, guard).await
}

/// HTTP/1.1 on one connection, plain or TLS.
async fn serve_http<I>(io: TokioIo<I>, sh: Arc<Shared>, pending: PendingCell)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc_sh = sh.clone();
    let service = hyper::service::service_fn(move |req| {
        let (sh, pending) = (svc_sh.clone(), pending.clone());
        async move { Ok::<_, Infallible>(route(req, sh, pending).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(sh.cfg.handshake_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service).with_upgrades();
    let mut shutdown = sh.shutdown.clone();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = timeout(Duration::from_millis(500), conn).await;
        }
    }
}

/// Client ids, one per session (WebSocket or QUIC).
#[derive(Debug, Default)]
pub(crate) struct AtomicClientIds(std::sync::atomic::AtomicU32);

impl AtomicClientIds {
    /// The next id (never 0).
    pub(crate) fn next(&self) -> ClientId {
        ClientId(self.0.fetch_add(1, Relaxed).wrapping_add(1).max(1))
    }
}

/// A connection's place in the pending table, shared by its requests.
type PendingCell = Arc<PendingGuard>;

/// Answers one request; meanwhile its connection counts as busy, not waiting for a head.
async fn route(req: Request<Incoming>, sh: Arc<Shared>, pending: PendingCell) -> Answer {
    pending.busy();
    let answer = answer_request(req, sh, &pending).await;
    pending.idle();
    answer
}

async fn answer_request(req: Request<Incoming>, sh: Arc<Shared>, pending: &PendingCell) -> Answer {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let head_only = method == Method::HEAD;
    if let Some(rest) = path.strip_prefix("/matchmake/") {
        if method != Method::POST {
            return not_allowed("POST");
        }
        let rest = rest.to_owned();
        // The body is under the same deadline as the head, and while it trickles in the
        // connection is evicted as early as one still sending its head.
        pending.waiting();
        let body = match timeout(sh.cfg.handshake_timeout, read_body(req)).await {
            Ok(Ok(b)) => b,
            Ok(Err(a)) => return a,
            Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "request body too slow\n"),
        };
        pending.busy();
        return matchmaking::handle(&sh, &rest, &body).await;
    }
    if path == "/ws" {
        // RFC 6455 4.1: the opening handshake is a GET.
        if method != Method::GET {
            return not_allowed("GET");
        }
        return upgrade(req, sh, pending);
    }
    if method != Method::GET && !head_only {
        return not_allowed("GET, HEAD");
    }
    let mut answer = match path.as_str() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/rooms" => matchmaking::rooms(&sh).await,
        "/metrics" => {
            let period = Duration::from_secs_f64(1.0 / f64::from(sh.cfg.sim.tick_rate));
            let body = sh.metrics.render(period, &sh.registry.kind_counts());
            answer(
                StatusCode::OK,
                crate::metrics::CONTENT_TYPE,
                Bytes::from(body),
            )
        }
        path => match web::lookup(sh.cfg.web_root.as_deref(), path).await {
            Some((ct, Cow::Borrowed(b))) => answer(StatusCode::OK, ct, Bytes::from_static(b)),
            Some((ct, Cow::Owned(b))) => answer(StatusCode::OK, ct, Bytes::from(b)),
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        },
    };
    if head_only {
        let len = answer
            .body()
            .clone()
            .collect()
            .await
            .map_or(0, |b| b.to_bytes().len());
        *answer.body_mut() = Full::new(Bytes::new());
        answer
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    answer
}

fn not_allowed(allow: &'static str) -> Answer {
    let mut a = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    a.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    a
}

/// The request body, at most [`MAX_BODY_BYTES`] (413 past it, 400 if it breaks off).
async fn read_body(req: Request<Incoming>) -> Result<Bytes, Answer> {
    match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large\n",
        )),
        Err(_) => Err(text(StatusCode::BAD_REQUEST, "bad request body\n")),
    }
}

/// Why a request to `/ws` is not upgraded (RFC 6455 section 4.2.1; RFC 9110 section 15.5.22).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// A plain request (no `Upgrade: websocket`, no `Sec-WebSocket-*` header): 426 Upgrade
    /// Required, naming the protocol to upgrade to. Not 400: the request itself is valid
    /// HTTP, it just asks for something this resource only serves over a WebSocket.
    NotWebSocket,
    /// `Sec-WebSocket-Version` is not 13: 426 with `Sec-WebSocket-Version: 13`, the version
    /// this server speaks (RFC 6455 section 4.4).
    Version,
    /// A request that claims to be a WebSocket upgrade but breaks the handshake rules: 400.
    Bad(&'static str),
}

impl Refusal {
    fn answer(self) -> Answer {
        let mut a = match self {
            Refusal::NotWebSocket => text(
                StatusCode::UPGRADE_REQUIRED,
                "WebSocket endpoint: upgrade required\n",
            ),
            Refusal::Version => text(
                StatusCode::UPGRADE_REQUIRED,
                "unsupported Sec-WebSocket-Version: this server speaks 13\n",
            ),
            Refusal::Bad(why) => return text(StatusCode::BAD_REQUEST, why),
        };
        let h = a.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        a
    }
}

/// Whether any `name` header holds `token` in its comma-separated list (case-insensitive).
fn has_token(h: &header::HeaderMap, name: header::HeaderName, token: &str) -> bool {
    h.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// The one value of `name`, or `Err` when there are several.
fn single(h: &header::HeaderMap, name: header::HeaderName) -> Result<Option<&HeaderValue>, ()> {
    let mut all = h.get_all(name).iter();
    match (all.next(), all.next()) {
        (v, None) => Ok(v),
        _ => Err(()),
    }
}

/// Checks a WebSocket opening handshake (RFC 6455 section 4.2.1) and returns its
/// `Sec-WebSocket-Key`. The method (GET) is checked by the caller.
fn check_upgrade<B>(req: &Request<B>) -> Result<HeaderValue, Refusal> {
    let h = req.headers();
    let upgrade = has_token(h, header::UPGRADE, "websocket");
    if !upgrade
        && !h.contains_key(header::SEC_WEBSOCKET_KEY)
        && !h.contains_key(header::SEC_WEBSOCKET_VERSION)
    {
        return Err(Refusal::NotWebSocket);
    }
    // The version first: a client of another version learns which one to speak, whatever
    // else its version puts in the request.
    match single(h, header::SEC_WEBSOCKET_VERSION) {
        Err(()) => return Err(Refusal::Bad("more than one Sec-WebSocket-Version\n")),
        Ok(None) => return Err(Refusal::Bad("Sec-WebSocket-Version missing\n")),
        Ok(Some(v)) if v.as_bytes() != b"13" => return Err(Refusal::Version),
        Ok(Some(_)) => {}
    }
    if req.version() < hyper::Version::HTTP_11 {
        return Err(Refusal::Bad("a WebSocket upgrade needs HTTP/1.1\n"));
    }
    if !h.contains_key(header::HOST) {
        return Err(Refusal::Bad("Host missing\n"));
    }
    if !upgrade {
        return Err(Refusal::Bad("Upgrade: websocket missing\n"));
    }
    if !has_token(h, header::CONNECTION, "upgrade") {
        return Err(Refusal::Bad("Connection: Upgrade missing\n"));
    }
    let key = match single(h, header::SEC_WEBSOCKET_KEY) {
        Ok(Some(k)) => k,
        Ok(None) => return Err(Refusal::Bad("Sec-WebSocket-Key missing\n")),
        Err(()) => return Err(Refusal::Bad("more than one Sec-WebSocket-Key\n")),
    };
    // Strict base64 (padding required, no stray bits) of exactly 16 bytes.
    match data_encoding::BASE64.decode(key.as_bytes()) {
        Ok(nonce) if nonce.len() == 16 => Ok(key.clone()),
        _ => Err(Refusal::Bad(
            "Sec-WebSocket-Key is not base64 of 16 bytes\n",
        )),
    }
}

/// Answers a valid WebSocket upgrade with 101 and runs the session on the upgraded socket.
/// Only a request that passed [`check_upgrade`] and got a session slot takes a client id.
fn upgrade(mut req: Request<Incoming>, sh: Arc<Shared>, pending: &PendingCell) -> Answer {
    let key = match check_upgrade(&req) {
        Ok(key) => key,
        Err(refusal) => {
            debug!(?refusal, "upgrade refused");
            return refusal.answer();
        }
    };
    if !sh.cfg.origins.allows(
        req.headers()
            .get_all(header::ORIGIN)
            .iter()
            .map(HeaderValue::as_bytes),
    ) {
        debug!(origin = ?req.headers().get(header::ORIGIN), "upgrade refused: origin not allowed");
        return text(StatusCode::FORBIDDEN, "origin not allowed\n");
    }
    let Some(slot) = session::SessionSlot::acquire(&sh) else {
        debug!("refused: server full");
        return text(StatusCode::SERVICE_UNAVAILABLE, "server full\n");
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let peer_ip = pending.ip();
    let id = sh.client_ids.next();
    // A debug span: no session logs above debug, and an enabled span is entered and left
    // on every poll of the session (1% of the server's CPU in a crowd of 1,000, perf).
    let span = tracing::debug_span!("conn", client_id = %id);
    tokio::spawn(
        async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    debug!(error = %e, "upgrade failed");
                    return;
                }
            };
            // Back to the plain TCP (or TLS) stream, plus whatever hyper read past the head,
            // so the session writes straight to the socket.
            match upgraded.downcast::<TokioIo<Rewind<TcpStream>>>() {
                Ok(parts) => {
                    debug!("upgraded");
                    // hyper's unread bytes came out of the prefix before what is left of it.
                    // `read_buf` is a view of hyper's whole read buffer (8 KiB or more), and
                    // `rest` is the head buffer: copy what they hold and let them go now, not
                    // at the end of the session (that was 18 MB at 2,000 connections).
                    let (rest, tcp) = parts.io.into_inner().into_parts();
                    let mut leftover = Vec::with_capacity(parts.read_buf.len() + rest.len());
                    leftover.extend_from_slice(&parts.read_buf);
                    leftover.extend_from_slice(&rest);
                    drop((parts.read_buf, rest));
                    // Boxed, both transports: the task's future is as large as its largest
                    // branch (see `session::run`).
                    Box::pin(ws::serve_tcp(tcp, leftover, sh, id, Some(peer_ip))).await;
                }
                Err(upgraded) => match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
                    Ok(parts) => {
                        debug!("upgraded (TLS)");
                        let leftover = parts.read_buf.to_vec();
                        drop(parts.read_buf);
                        let out = Arc::new(crate::room::Outbound::default());
                        let tls = parts.io.into_inner();
                        Box::pin(ws::serve(tls, leftover, sh, id, out, Some(peer_ip))).await;
                    }
                    Err(_) => debug!("upgraded connection is neither TCP nor TLS over TCP"),
                },
            }
            drop(slot);
        }
        .instrument(span),
    );
    // No longer pending HTTP: the session slot counts it from here on, and the table can no
    // longer evict it mid-handover.
    pending.leave();
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::get("/ws");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    const GOOD: [(&str, &str); 5] = [
        ("host", "x"),
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
    ];

    fn without(name: &str) -> Vec<(&'static str, &'static str)> {
        GOOD.iter().copied().filter(|(k, _)| *k != name).collect()
    }

    fn with(name: &str, value: &'static str) -> Vec<(&'static str, &'static str)> {
        let mut h = without(name);
        h.push((GOOD.iter().find(|(k, _)| *k == name).unwrap().0, value));
        h
    }

    #[test]
    fn handshake_checks_follow_rfc6455() {
        assert!(check_upgrade(&req(&GOOD)).is_ok());
        assert!(check_upgrade(&req(&with("upgrade", "WebSocket"))).is_ok());
        assert_eq!(
            check_upgrade(&req(&[("host", "x")])),
            Err(Refusal::NotWebSocket)
        );
        assert_eq!(
            check_upgrade(&req(&with("upgrade", "h2c"))),
            Err(Refusal::Bad("Upgrade: websocket missing\n"))
        );
        assert_eq!(
            check_upgrade(&req(&with("sec-websocket-version", "8"))),
            Err(Refusal::Version)
        );
        for bad in [
            without("host"),
            without("connection"),
            with("connection", "keep-alive"),
            without("sec-websocket-key"),
            without("sec-websocket-version"),
            // 15 and 17 bytes, not base64, no padding, stray bits.
            with("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAA"),
            with("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAAAAA="),
            with("sec-websocket-key", "not base64 at all!!!!!=="),
            with("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ"),
            with("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZR=="),
        ] {
            assert!(
                matches!(check_upgrade(&req(&bad)), Err(Refusal::Bad(_))),
                "{bad:?}"
            );
        }
        let mut two_keys = GOOD.to_vec();
        two_keys.push(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(matches!(
            check_upgrade(&req(&two_keys)),
            Err(Refusal::Bad(_))
        ));
        let mut old = req(&GOOD);
        *old.version_mut() = hyper::Version::HTTP_10;
        assert!(matches!(check_upgrade(&old), Err(Refusal::Bad(_))));
    }

    #[test]
    fn accept_key_matches_rfc6455_example() {
        assert_eq!(
            tungstenite::handshake::derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
