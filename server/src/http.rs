//! The front door on the game port, over hyper's HTTP/1.1 server: health, metrics, the web
//! client, matchmaking ([`crate::matchmaking`]) and the WebSocket upgrade at `/ws`.
//!
//! Every connection is bounded: the request head must arrive within `--handshake-timeout`
//! and fit hyper's smallest read buffer (8 KiB plus what it parses in one go), request bodies
//! are capped at [`MAX_BODY_BYTES`], and at most [`MAX_PENDING_HTTP`] connections may be in
//! HTTP at once (the rest are closed at accept). A WebSocket upgrade takes a `--max-clients`
//! slot before it answers 101.

use std::borrow::Cow;
use std::convert::Infallible;
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
use tokio::net::TcpStream;
use tracing::{Instrument, debug};

use crate::metrics::Metrics;
use crate::{Shared, matchmaking, session, web, ws};

/// Largest request body accepted (matchmaking options); larger gets 413.
pub const MAX_BODY_BYTES: usize = 4 * 1024;

/// Connections still in HTTP (not yet WebSocket sessions) at once; past this a new
/// connection is closed at once, so slow or idle sockets cannot use up every file descriptor
/// before `--max-clients` applies.
pub const MAX_PENDING_HTTP: u64 = 1024;

/// hyper's read buffer limit, which bounds a request head.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// An HTTP answer.
pub(crate) type Answer = Response<Full<Bytes>>;

/// Counts a connection as pending HTTP until dropped.
struct Pending(Arc<Metrics>);

impl Pending {
    fn take(metrics: &Arc<Metrics>) -> Option<Self> {
        if metrics.http_pending.fetch_add(1, Relaxed) >= MAX_PENDING_HTTP {
            metrics.http_pending.fetch_sub(1, Relaxed);
            return None;
        }
        Some(Self(metrics.clone()))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.http_pending.fetch_sub(1, Relaxed);
    }
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

/// Serves one TCP connection: HTTP/1.1 requests (keep-alive) until it closes, or until one
/// of them upgrades to a WebSocket.
pub(crate) async fn serve(stream: TcpStream, sh: Arc<Shared>) {
    let Some(pending) = Pending::take(&sh.metrics) else {
        debug!("too many connections still in HTTP: closed");
        return;
    };
    let _ = stream.set_nodelay(true);
    let pending = Arc::new(std::sync::Mutex::new(Some(pending)));
    let svc_sh = sh.clone();
    let svc_pending = pending.clone();
    let service = hyper::service::service_fn(move |req| {
        let (sh, pending) = (svc_sh.clone(), svc_pending.clone());
        async move { Ok::<_, Infallible>(route(req, sh, pending).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(sh.cfg.handshake_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut shutdown = sh.shutdown.clone();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_millis(500), conn).await;
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

type PendingCell = Arc<std::sync::Mutex<Option<Pending>>>;

async fn route(req: Request<Incoming>, sh: Arc<Shared>, pending: PendingCell) -> Answer {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let head_only = method == Method::HEAD;
    if let Some(rest) = path.strip_prefix("/matchmake/") {
        if method != Method::POST {
            return not_allowed("POST");
        }
        let rest = rest.to_owned();
        let body = match read_body(req).await {
            Ok(b) => b,
            Err(a) => return a,
        };
        return matchmaking::handle(&sh, &rest, &body).await;
    }
    if method != Method::GET && !head_only {
        return not_allowed("GET, HEAD");
    }
    let mut answer = match path.as_str() {
        "/ws" => return upgrade(req, sh, pending),
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

/// Answers a valid WebSocket upgrade with 101 and runs the session on the upgraded socket.
fn upgrade(mut req: Request<Incoming>, sh: Arc<Shared>, pending: PendingCell) -> Answer {
    let h = req.headers();
    let has = |name: header::HeaderName, token: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let is_upgrade = has(header::UPGRADE, "websocket")
        && has(header::CONNECTION, "upgrade")
        && h.get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13");
    let key = h.get(header::SEC_WEBSOCKET_KEY).cloned();
    let (true, Some(key)) = (is_upgrade, key) else {
        return text(StatusCode::UPGRADE_REQUIRED, "WebSocket endpoint\n");
    };
    let Some(slot) = session::SessionSlot::acquire(&sh) else {
        debug!("refused: server full");
        return text(StatusCode::SERVICE_UNAVAILABLE, "server full\n");
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let id = sh.client_ids.next();
    let span = tracing::info_span!("conn", client_id = %id);
    tokio::spawn(
        async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    debug!(error = %e, "upgrade failed");
                    return;
                }
            };
            // No longer pending HTTP: the session slot counts it now.
            drop(
                pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take(),
            );
            // Back to the plain TCP stream (plus whatever hyper read past the head), so the
            // session writes straight to the socket.
            match upgraded.downcast::<TokioIo<TcpStream>>() {
                Ok(parts) => {
                    debug!("upgraded");
                    ws::serve(parts.io.into_inner(), parts.read_buf.to_vec(), sh, id).await;
                }
                Err(_) => debug!("upgraded connection is not a TCP stream"),
            }
            drop(slot);
        }
        .instrument(span),
    );
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
    #[test]
    fn accept_key_matches_rfc6455_example() {
        assert_eq!(
            tungstenite::handshake::derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
