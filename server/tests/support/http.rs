//! A minimal HTTP/1.1 client for tests (hyper's client connection over one TCP stream).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// Sends one request and returns the status and the body.
pub(crate) async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: &[u8],
) -> (StatusCode, Bytes) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

/// POSTs JSON and parses the JSON answer.
pub(crate) async fn post_json(
    addr: SocketAddr,
    path: &str,
    body: &serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let (status, bytes) =
        request(addr, Method::POST, path, &serde_json::to_vec(body).unwrap()).await;
    let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, v)
}

/// GETs and parses the JSON answer.
pub(crate) async fn get_json(addr: SocketAddr, path: &str) -> (StatusCode, serde_json::Value) {
    let (status, bytes) = request(addr, Method::GET, path, b"").await;
    let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, v)
}
