//! The Agones SDK sidecar over its REST API (`127.0.0.1:$AGONES_SDK_HTTP_PORT`).
//!
//! [`AgonesClient`] is one call per method (one short HTTP/1.1 connection each, every call
//! bounded by a timeout). [`AgonesHandle::start`] runs the long-lived part: `Health` every
//! interval, and the Counter [`ROOMS_COUNTER`] and the List [`PLAYERS_LIST`] reconciled to
//! the latest [`AgonesHandle::report`]; [`AgonesHandle::shutdown`] flushes, stops health and
//! sends `Shutdown`.
//!
//! Wire format, as the recorded sidecar behaves (`server/tests/data/agones/`): request and
//! response bodies are JSON; int64 fields come back as JSON strings (`"count":"5"`) and are
//! sent as strings too (the sidecar takes both); errors are `{"code":..,"message":..}` with
//! HTTP 500 for "not found." / "already exists." / "out of range." answers, 404 for unknown
//! paths and 400 for a body that is not JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, timeout};
use tracing::{debug, info, warn};

/// The port Agones documents for the SDK server's REST API when `AGONES_SDK_HTTP_PORT` is unset.
pub const DEFAULT_HTTP_PORT: u16 = 9358;

/// The environment variable Agones sets in the game server container with the REST port.
pub const HTTP_PORT_ENV: &str = "AGONES_SDK_HTTP_PORT";

/// How often [`AgonesHandle`] sends `Health` by default (the Fleet's `health.periodSeconds`
/// is 5, so two pings fit in every period).
pub const DEFAULT_HEALTH_EVERY: Duration = Duration::from_secs(2);

/// How long one SDK call (connect, request, whole response) may take by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How long [`AgonesHandle::ready`] keeps retrying while the sidecar cannot be reached (it
/// may start after the game server container).
pub const READY_RETRY_FOR: Duration = Duration::from_secs(10);

/// The Counter the reporter keeps equal to the number of rooms.
pub const ROOMS_COUNTER: &str = "rooms";

/// The List the reporter keeps equal to the set of connected players.
pub const PLAYERS_LIST: &str = "players";

/// The longest error body kept in [`AgonesError::Status`] when it is not the sidecar's JSON.
const MAX_ERROR_TEXT: usize = 512;

/// Why an SDK call failed.
#[derive(Debug, thiserror::Error)]
pub enum AgonesError {
    /// No TCP connection to the sidecar.
    #[error("cannot connect to the Agones SDK server at {addr}: {source}")]
    Connect {
        /// Where the sidecar was expected.
        addr: SocketAddr,
        /// What the connect returned.
        source: std::io::Error,
    },
    /// The HTTP exchange broke (connection reset, malformed HTTP, ...).
    #[error("HTTP exchange with the Agones SDK server failed ({method} {path}): {source}")]
    Http {
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
        /// What hyper reported.
        source: hyper::Error,
    },
    /// The sidecar did not answer in time.
    #[error("the Agones SDK server did not answer {method} {path} within {after:?}")]
    Timeout {
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The sidecar answered with an error status.
    #[error("Agones SDK {method} {path}: HTTP {status}: {message}")]
    Status {
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
        /// The HTTP status.
        status: StatusCode,
        /// The gRPC status code from the error body (2 unknown, 3 invalid argument, 5 not found).
        code: Option<i64>,
        /// The sidecar's message (its JSON `message`, else the body as text).
        message: String,
    },
    /// A success status with a body that is not what the API promises.
    #[error("bad response from the Agones SDK server to {method} {path}: {reason}")]
    BadResponse {
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The request could not be built (a name that is not a valid path segment).
    #[error("cannot build the request {method} {path}: {reason}")]
    Request {
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

/// What an error answer from the sidecar means, from its message's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdkErrorKind {
    /// "not found. ...": no such Counter/List, or no such value in the List.
    NotFound,
    /// "already exists. ...": the value is already in the List.
    AlreadyExists,
    /// "out of range. ...": a count past the capacity, or a full List.
    OutOfRange,
    /// Anything else, including failures to reach the sidecar.
    Other,
}

impl AgonesError {
    /// What the sidecar's error answer means ([`SdkErrorKind::Other`] for transport errors).
    pub fn kind(&self) -> SdkErrorKind {
        match self {
            AgonesError::Status { message, .. } => classify(message),
            _ => SdkErrorKind::Other,
        }
    }

    /// Whether the sidecar could not be reached or did not answer (worth retrying later),
    /// as opposed to an answer.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            AgonesError::Connect { .. } | AgonesError::Http { .. } | AgonesError::Timeout { .. }
        )
    }
}

fn classify(message: &str) -> SdkErrorKind {
    if message.starts_with("not found") {
        SdkErrorKind::NotFound
    } else if message.starts_with("already exists") {
        SdkErrorKind::AlreadyExists
    } else if message.starts_with("out of range") {
        SdkErrorKind::OutOfRange
    } else {
        SdkErrorKind::Other
    }
}

/// An int64 the way the SDK's JSON carries it: a string on the wire, read from a string or
/// a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Int64(i64);

impl Serialize for Int64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Int64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Number(i64),
            Text(String),
        }
        match Wire::deserialize(d)? {
            Wire::Number(n) => Ok(Int64(n)),
            Wire::Text(t) => t.parse().map(Int64).map_err(serde::de::Error::custom),
        }
    }
}

fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Int64::deserialize(d).map(|v| v.0)
}

/// `{}`: the body of Ready, Health, Allocate, Shutdown.
#[derive(Debug, Serialize)]
struct Empty {}

/// The body of `PATCH /v1beta1/counters/{name}` (absent fields are left alone).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct CounterUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<Int64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    capacity: Option<Int64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    count_diff: Option<Int64>,
}

/// The body of `:addValue` and `:removeValue`.
#[derive(Debug, Serialize)]
struct ListValue<'a> {
    value: &'a str,
}

/// The body of `/reserve`.
#[derive(Debug, Serialize)]
struct Reserve {
    seconds: Int64,
}

/// The body of `/metadata/label` and `/metadata/annotation`.
#[derive(Debug, Serialize)]
struct KeyValue<'a> {
    key: &'a str,
    value: &'a str,
}

/// The sidecar's error body.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: String,
}

/// A Counter as the SDK returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Counter {
    /// The Counter's key.
    #[serde(default)]
    pub name: String,
    /// The current count.
    #[serde(default, deserialize_with = "int64")]
    pub count: i64,
    /// The most the count may be.
    #[serde(default, deserialize_with = "int64")]
    pub capacity: i64,
}

/// A List as the SDK returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct List {
    /// The List's key.
    #[serde(default)]
    pub name: String,
    /// The most values the List may hold.
    #[serde(default, deserialize_with = "int64")]
    pub capacity: i64,
    /// The values, in insertion order.
    #[serde(default)]
    pub values: Vec<String>,
}

/// The parts of `GET /gameserver` the server uses.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GameServer {
    /// Name, labels, annotations.
    #[serde(default)]
    pub object_meta: ObjectMeta,
    /// State, address, ports, Counters and Lists.
    #[serde(default)]
    pub status: GameServerStatus,
}

/// `object_meta` of a [`GameServer`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ObjectMeta {
    /// The GameServer's name.
    #[serde(default)]
    pub name: String,
    /// Its namespace.
    #[serde(default)]
    pub namespace: String,
    /// Its labels (SDK-set ones are prefixed `agones.dev/sdk-`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its annotations (SDK-set ones are prefixed `agones.dev/sdk-`).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl GameServer {
    /// Where clients reach this GameServer: `ws://ADDRESS:PORT/ws` from the port named `ws`
    /// (else the first port), and `quic://ADDRESS:PORT` from the port named `quic`; `None`
    /// until Agones has scheduled it (no address or no port yet).
    pub fn public_urls(&self) -> Option<(String, Option<String>)> {
        let st = &self.status;
        if st.address.is_empty() {
            return None;
        }
        let host = if st.address.contains(':') {
            format!("[{}]", st.address)
        } else {
            st.address.clone()
        };
        let port = |name: &str| st.ports.iter().find(|p| p.name == name).map(|p| p.port);
        let ws = port("ws").or_else(|| st.ports.first().map(|p| p.port))?;
        Some((
            format!("ws://{host}:{ws}/ws"),
            port("quic").map(|q| format!("quic://{host}:{q}")),
        ))
    }
}

/// `status` of a [`GameServer`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GameServerStatus {
    /// "Scheduled", "Ready", "Allocated", "Reserved", "Shutdown", ...
    #[serde(default)]
    pub state: String,
    /// The node's address.
    #[serde(default)]
    pub address: String,
    /// The allocated host ports.
    #[serde(default)]
    pub ports: Vec<GameServerPort>,
    /// Counters by key.
    #[serde(default)]
    pub counters: BTreeMap<String, CounterStatus>,
    /// Lists by key.
    #[serde(default)]
    pub lists: BTreeMap<String, ListStatus>,
}

/// One entry of [`GameServerStatus::ports`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GameServerPort {
    /// The port's name in the GameServer spec.
    #[serde(default)]
    pub name: String,
    /// The host port.
    #[serde(default)]
    pub port: u16,
}

/// One entry of [`GameServerStatus::counters`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CounterStatus {
    /// The current count.
    #[serde(default, deserialize_with = "int64")]
    pub count: i64,
    /// The most the count may be.
    #[serde(default, deserialize_with = "int64")]
    pub capacity: i64,
}

/// One entry of [`GameServerStatus::lists`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ListStatus {
    /// The most values the List may hold.
    #[serde(default, deserialize_with = "int64")]
    pub capacity: i64,
    /// The values.
    #[serde(default)]
    pub values: Vec<String>,
}

/// Ignores whatever JSON object a call returns (`{}` for most).
#[derive(Debug, Deserialize)]
struct Ignored {}

/// One call per SDK method against the sidecar's REST API.
#[derive(Debug, Clone)]
pub struct AgonesClient {
    addr: SocketAddr,
    timeout: Duration,
}

impl AgonesClient {
    /// The sidecar on `127.0.0.1:port`, with [`DEFAULT_REQUEST_TIMEOUT`].
    pub fn new(port: u16) -> Self {
        Self::with_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }

    /// The sidecar at `addr`.
    pub fn with_addr(addr: SocketAddr) -> Self {
        Self {
            addr,
            timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// The same client with another per-call timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Where the sidecar is.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `POST /ready`: the GameServer may be allocated.
    pub async fn ready(&self) -> Result<(), AgonesError> {
        self.call::<Ignored>(Method::POST, "/ready".into(), Some(&Empty {}))
            .await
            .map(drop)
    }

    /// `POST /health`: one health ping.
    pub async fn health(&self) -> Result<(), AgonesError> {
        self.call::<Ignored>(Method::POST, "/health".into(), Some(&Empty {}))
            .await
            .map(drop)
    }

    /// `POST /shutdown`: the GameServer is done.
    pub async fn shutdown(&self) -> Result<(), AgonesError> {
        self.call::<Ignored>(Method::POST, "/shutdown".into(), Some(&Empty {}))
            .await
            .map(drop)
    }

    /// `POST /allocate`: mark the GameServer Allocated (self-allocation).
    pub async fn allocate(&self) -> Result<(), AgonesError> {
        self.call::<Ignored>(Method::POST, "/allocate".into(), Some(&Empty {}))
            .await
            .map(drop)
    }

    /// `POST /reserve`: Reserved for `seconds` (0: until something else changes the state).
    pub async fn reserve(&self, seconds: u32) -> Result<(), AgonesError> {
        let body = Reserve {
            seconds: Int64(seconds.into()),
        };
        self.call::<Ignored>(Method::POST, "/reserve".into(), Some(&body))
            .await
            .map(drop)
    }

    /// `PUT /metadata/label`: label `agones.dev/sdk-{key}` on the GameServer.
    pub async fn set_label(&self, key: &str, value: &str) -> Result<(), AgonesError> {
        let body = KeyValue { key, value };
        self.call::<Ignored>(Method::PUT, "/metadata/label".into(), Some(&body))
            .await
            .map(drop)
    }

    /// `PUT /metadata/annotation`: annotation `agones.dev/sdk-{key}` on the GameServer.
    pub async fn set_annotation(&self, key: &str, value: &str) -> Result<(), AgonesError> {
        let body = KeyValue { key, value };
        self.call::<Ignored>(Method::PUT, "/metadata/annotation".into(), Some(&body))
            .await
            .map(drop)
    }

    /// `GET /gameserver`.
    pub async fn get_gameserver(&self) -> Result<GameServer, AgonesError> {
        self.call::<GameServer>(Method::GET, "/gameserver".into(), None::<&Empty>)
            .await
    }

    /// `GET /v1beta1/counters/{name}`.
    pub async fn get_counter(&self, name: &str) -> Result<Counter, AgonesError> {
        self.call(Method::GET, counter_path(name), None::<&Empty>)
            .await
    }

    /// `PATCH /v1beta1/counters/{name}` with `{"count":"N"}`; the sidecar refuses a count
    /// past the Counter's capacity ("out of range").
    pub async fn set_counter_count(&self, name: &str, count: u64) -> Result<Counter, AgonesError> {
        let body = CounterUpdate {
            count: Some(Int64(saturating_i64(count))),
            ..CounterUpdate::default()
        };
        self.call(Method::PATCH, counter_path(name), Some(&body))
            .await
    }

    /// `PATCH /v1beta1/counters/{name}` with `{"countDiff":"N"}`.
    pub async fn add_counter(&self, name: &str, diff: i64) -> Result<Counter, AgonesError> {
        let body = CounterUpdate {
            count_diff: Some(Int64(diff)),
            ..CounterUpdate::default()
        };
        self.call(Method::PATCH, counter_path(name), Some(&body))
            .await
    }

    /// `PATCH /v1beta1/counters/{name}` with `{"capacity":"N"}`.
    pub async fn set_counter_capacity(
        &self,
        name: &str,
        capacity: u64,
    ) -> Result<Counter, AgonesError> {
        let body = CounterUpdate {
            capacity: Some(Int64(saturating_i64(capacity))),
            ..CounterUpdate::default()
        };
        self.call(Method::PATCH, counter_path(name), Some(&body))
            .await
    }

    /// `GET /v1beta1/lists/{name}`.
    pub async fn get_list(&self, name: &str) -> Result<List, AgonesError> {
        self.call(Method::GET, list_path(name, ""), None::<&Empty>)
            .await
    }

    /// `POST /v1beta1/lists/{name}:addValue`; "already exists" for a value already there,
    /// "out of range" when the List is full.
    pub async fn add_list_value(&self, name: &str, value: &str) -> Result<List, AgonesError> {
        self.call(
            Method::POST,
            list_path(name, ":addValue"),
            Some(&ListValue { value }),
        )
        .await
    }

    /// `POST /v1beta1/lists/{name}:removeValue`; "not found" for a value not there.
    pub async fn remove_list_value(&self, name: &str, value: &str) -> Result<List, AgonesError> {
        self.call(
            Method::POST,
            list_path(name, ":removeValue"),
            Some(&ListValue { value }),
        )
        .await
    }

    /// One request on a fresh connection, all of it within the timeout.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Option<&impl Serialize>,
    ) -> Result<T, AgonesError> {
        match timeout(self.timeout, self.exchange(&method, &path, body)).await {
            Ok(result) => result,
            Err(_) => Err(AgonesError::Timeout {
                method,
                path,
                after: self.timeout,
            }),
        }
    }

    async fn exchange<T: DeserializeOwned>(
        &self,
        method: &Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, AgonesError> {
        let request_error = |reason: String| AgonesError::Request {
            method: method.clone(),
            path: path.to_owned(),
            reason,
        };
        let http_error = |source: hyper::Error| AgonesError::Http {
            method: method.clone(),
            path: path.to_owned(),
            source,
        };
        let bytes = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| request_error(e.to_string()))?,
            None => Vec::new(),
        };
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, self.addr.to_string());
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| request_error(e.to_string()))?;

        let stream =
            TcpStream::connect(self.addr)
                .await
                .map_err(|source| AgonesError::Connect {
                    addr: self.addr,
                    source,
                })?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http_error)?;
        let exchange = async move {
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        // Drive the connection and the exchange together; the connection is dropped (and the
        // socket closed) when this returns.
        tokio::pin!(conn, exchange);
        let mut conn_done = false;
        let (status, body) = loop {
            tokio::select! {
                r = &mut exchange => break r.map_err(http_error)?,
                r = &mut conn, if !conn_done => {
                    conn_done = true;
                    if let Err(e) = r {
                        debug!(error = %e, "Agones SDK connection ended early");
                    }
                }
            }
        };
        if !status.is_success() {
            let (code, message) = match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(e) => (e.code, e.message),
                Err(_) => (None, lossy_prefix(&body)),
            };
            return Err(AgonesError::Status {
                method: method.clone(),
                path: path.to_owned(),
                status,
                code,
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|e| AgonesError::BadResponse {
            method: method.clone(),
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn lossy_prefix(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(MAX_ERROR_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim().to_owned()
}

/// Percent-encodes a Counter/List name for a path segment (names are Kubernetes-style keys;
/// anything else is escaped rather than trusted).
fn segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn counter_path(name: &str) -> String {
    format!("/v1beta1/counters/{}", segment(name))
}

fn list_path(name: &str, verb: &str) -> String {
    format!("/v1beta1/lists/{}{verb}", segment(name))
}

/// What the server wants the sidecar to show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Desired {
    rooms: u64,
    players: BTreeSet<String>,
}

/// What the reporter last got the sidecar to accept.
#[derive(Debug, Default)]
struct Applied {
    /// The count last set (None: not yet, or the last attempt failed).
    rooms: Option<u64>,
    /// The List's values as far as the reporter knows (None: not read yet).
    players: Option<BTreeSet<String>>,
}

/// The calls that bring the sidecar from `applied` to `desired`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    set_rooms: Option<u64>,
    remove: Vec<String>,
    add: Vec<String>,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.set_rooms.is_none() && self.remove.is_empty() && self.add.is_empty()
    }
}

/// Removals come before additions so a full List frees room first.
fn plan(desired: &Desired, rooms: Option<u64>, players: &BTreeSet<String>) -> Plan {
    Plan {
        set_rooms: (rooms != Some(desired.rooms)).then_some(desired.rooms),
        remove: players.difference(&desired.players).cloned().collect(),
        add: desired.players.difference(players).cloned().collect(),
    }
}

/// Logs a failure at `warn` the first time it is seen in a row (per operation) and at
/// `debug` after, so a sidecar that is down or a full List does not flood the log every
/// interval.
#[derive(Debug, Default)]
struct QuietLog {
    last: BTreeMap<&'static str, String>,
}

impl QuietLog {
    fn failed(&mut self, what: &'static str, error: &AgonesError) {
        let text = error.to_string();
        if self.last.get(what) == Some(&text) {
            debug!(error = %error, "Agones: {what} failed again");
        } else {
            warn!(error = %error, "Agones: {what} failed; retrying on the next change or interval");
            self.last.insert(what, text);
        }
    }

    fn succeeded(&mut self) {
        self.last.clear();
    }
}

/// Outcome of one reconcile pass.
#[derive(Debug, PartialEq, Eq)]
enum Pass {
    /// Everything desired is applied.
    Done,
    /// Something is still to do (an error answer, or the sidecar unreachable).
    Pending,
}

/// Brings the sidecar to `desired`, tolerating the answers it gives for values already
/// there or already gone; stops at the first transport error.
async fn reconcile(
    client: &AgonesClient,
    desired: &Desired,
    applied: &mut Applied,
    log: &mut QuietLog,
) -> Pass {
    let players = match &applied.players {
        Some(p) => p.clone(),
        None => match client.get_list(PLAYERS_LIST).await {
            Ok(list) => {
                let known: BTreeSet<String> = list.values.into_iter().collect();
                applied.players = Some(known.clone());
                known
            }
            Err(e) if e.is_transport() => {
                log.failed("reading the players List", &e);
                return Pass::Pending;
            }
            Err(e) => {
                // No such List (the Fleet does not declare it) or another answer: start from
                // empty; the add calls below say what is wrong.
                log.failed("reading the players List", &e);
                applied.players = Some(BTreeSet::new());
                BTreeSet::new()
            }
        },
    };
    let todo = plan(desired, applied.rooms, &players);
    if todo.is_empty() {
        return Pass::Done;
    }
    let mut pass = Pass::Done;
    if let Some(rooms) = todo.set_rooms {
        match client.set_counter_count(ROOMS_COUNTER, rooms).await {
            Ok(_) => applied.rooms = Some(rooms),
            Err(e) => {
                applied.rooms = None;
                log.failed("setting the rooms Counter", &e);
                if e.is_transport() {
                    return Pass::Pending;
                }
                pass = Pass::Pending;
            }
        }
    }
    let known = applied.players.get_or_insert_with(BTreeSet::new);
    for value in &todo.remove {
        match client.remove_list_value(PLAYERS_LIST, value).await {
            Ok(_) => {
                known.remove(value);
            }
            // Not in the List (or no List): as good as removed.
            Err(e) if e.kind() == SdkErrorKind::NotFound => {
                debug!(player = %value, error = %e, "Agones: player already gone from the List");
                known.remove(value);
            }
            Err(e) => {
                log.failed("removing a player from the List", &e);
                if e.is_transport() {
                    return Pass::Pending;
                }
                pass = Pass::Pending;
            }
        }
    }
    for value in &todo.add {
        match client.add_list_value(PLAYERS_LIST, value).await {
            Ok(_) => {
                known.insert(value.clone());
            }
            Err(e) if e.kind() == SdkErrorKind::AlreadyExists => {
                debug!(player = %value, "Agones: player already in the List");
                known.insert(value.clone());
            }
            Err(e) => {
                // Full List ("out of range"), no List ("not found"), or the sidecar is gone.
                log.failed("adding a player to the List", &e);
                if e.is_transport() {
                    return Pass::Pending;
                }
                pass = Pass::Pending;
            }
        }
    }
    if pass == Pass::Done {
        log.succeeded();
    }
    pass
}

/// The running reporter: health pings, and the rooms Counter and players List kept current.
///
/// Dropping it without [`AgonesHandle::shutdown`] stops its tasks without telling the sidecar.
#[derive(Debug)]
pub struct AgonesHandle {
    client: AgonesClient,
    desired: watch::Sender<Desired>,
    stop_health: watch::Sender<bool>,
    stop_reconcile: watch::Sender<bool>,
    health: JoinHandle<()>,
    reconciler: JoinHandle<()>,
    retry_every: Duration,
}

impl AgonesHandle {
    /// Starts health pings every `health_every` and the reconciler against the sidecar on
    /// `127.0.0.1:port`. Must be called inside a tokio runtime. Sends nothing else until
    /// [`AgonesHandle::ready`] or [`AgonesHandle::report`].
    pub fn start(port: u16, health_every: Duration) -> AgonesHandle {
        Self::start_with(AgonesClient::new(port), health_every)
    }

    /// As [`AgonesHandle::start`], with a configured client.
    pub fn start_with(client: AgonesClient, health_every: Duration) -> AgonesHandle {
        let health_every = health_every.max(Duration::from_millis(10));
        let (desired, desired_rx) = watch::channel(Desired::default());
        let (stop_health, stop_health_rx) = watch::channel(false);
        let (stop_reconcile, stop_reconcile_rx) = watch::channel(false);
        let health = tokio::spawn(health_loop(client.clone(), health_every, stop_health_rx));
        let reconciler = tokio::spawn(reconcile_loop(
            client.clone(),
            health_every,
            desired_rx,
            stop_reconcile_rx,
        ));
        info!(sidecar = %client.addr(), ?health_every, "Agones SDK reporter started");
        AgonesHandle {
            client,
            desired,
            stop_health,
            stop_reconcile,
            health,
            reconciler,
            retry_every: health_every,
        }
    }

    /// The client the reporter uses, for one-off calls (`get_gameserver`, labels, ...).
    pub fn client(&self) -> &AgonesClient {
        &self.client
    }

    /// `Ready`: the listeners are bound. Retries for up to [`READY_RETRY_FOR`] while the
    /// sidecar cannot be reached; an error answer is returned at once.
    pub async fn ready(&self) -> Result<(), AgonesError> {
        let deadline = tokio::time::Instant::now() + READY_RETRY_FOR;
        loop {
            match self.client.ready().await {
                Ok(()) => {
                    info!("Agones: Ready");
                    return Ok(());
                }
                Err(e) if e.is_transport() && tokio::time::Instant::now() < deadline => {
                    debug!(error = %e, "Agones: Ready failed; retrying");
                    tokio::time::sleep(self.retry_every.min(Duration::from_millis(250))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The current number of rooms and the set of connected players; never blocks. The
    /// reconciler applies the latest report (intermediate ones may be skipped).
    pub fn report(&self, rooms: u64, players: BTreeSet<String>) {
        self.desired.send_if_modified(|d| {
            let next = Desired { rooms, players };
            if *d == next {
                false
            } else {
                *d = next;
                true
            }
        });
    }

    /// Applies the last report (one last attempt), stops health pings, then sends
    /// `Shutdown`. Returns the result of `Shutdown`; flush failures are only logged.
    pub async fn shutdown(self) -> Result<(), AgonesError> {
        let AgonesHandle {
            client,
            desired,
            stop_health,
            stop_reconcile,
            health,
            reconciler,
            ..
        } = self;
        let _ = stop_reconcile.send(true);
        let _ = stop_health.send(true);
        // Each task finishes the call it is in (bounded by the client's timeout) and, for
        // the reconciler, one last pass; the bound here is a backstop.
        let bound = client.timeout.saturating_mul(8).max(Duration::from_secs(1));
        join_bounded(reconciler, bound, "reconciler").await;
        join_bounded(health, bound, "health").await;
        drop(desired);
        let result = client.shutdown().await;
        match &result {
            Ok(()) => info!("Agones: Shutdown sent"),
            Err(e) => warn!(error = %e, "Agones: Shutdown failed"),
        }
        result
    }
}

async fn join_bounded(task: JoinHandle<()>, bound: Duration, name: &str) {
    let abort = task.abort_handle();
    match timeout(bound, task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "Agones {name} task ended abnormally"),
        Err(_) => {
            warn!("Agones {name} task did not stop in time; aborted");
            abort.abort();
        }
    }
}

/// Resolves once `stop` is true or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn health_loop(client: AgonesClient, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut log = QuietLog::default();
    loop {
        tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            _ = tick.tick() => match client.health().await {
                Ok(()) => log.succeeded(),
                Err(e) => log.failed("Health", &e),
            },
        }
    }
}

async fn reconcile_loop(
    client: AgonesClient,
    retry_every: Duration,
    mut desired: watch::Receiver<Desired>,
    mut stop: watch::Receiver<bool>,
) {
    let mut applied = Applied::default();
    let mut log = QuietLog::default();
    let mut retry = tokio::time::interval(retry_every);
    retry.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pending = false;
    // Nothing is sent until the first report.
    let mut reported = false;
    loop {
        tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            changed = desired.changed() => {
                if changed.is_err() {
                    return;
                }
                reported = true;
            }
            _ = retry.tick(), if pending => {}
        }
        if reported {
            let want = desired.borrow_and_update().clone();
            pending = reconcile(&client, &want, &mut applied, &mut log).await == Pass::Pending;
        }
    }
    // The final flush: one last pass with the latest report.
    if reported || desired.has_changed().unwrap_or(false) {
        let want = desired.borrow_and_update().clone();
        if reconcile(&client, &want, &mut applied, &mut log).await == Pass::Pending {
            warn!("Agones: the last report was not fully applied before Shutdown");
        }
    }
}

impl fmt::Display for SdkErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SdkErrorKind::NotFound => "not found",
            SdkErrorKind::AlreadyExists => "already exists",
            SdkErrorKind::OutOfRange => "out of range",
            SdkErrorKind::Other => "other",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(values: &[&str]) -> BTreeSet<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn plan_from_nothing_sets_everything() {
        let want = Desired {
            rooms: 3,
            players: set(&["a", "b"]),
        };
        let p = plan(&want, None, &BTreeSet::new());
        assert_eq!(p.set_rooms, Some(3));
        assert!(p.remove.is_empty());
        assert_eq!(p.add, vec!["a", "b"]);
    }

    #[test]
    fn plan_diffs_against_what_was_applied() {
        let want = Desired {
            rooms: 1,
            players: set(&["b", "c"]),
        };
        let p = plan(&want, Some(3), &set(&["a", "b"]));
        assert_eq!(p.set_rooms, Some(1));
        assert_eq!(p.remove, vec!["a"]);
        assert_eq!(p.add, vec!["c"]);
    }

    #[test]
    fn plan_is_empty_when_in_sync() {
        let want = Desired {
            rooms: 2,
            players: set(&["x"]),
        };
        assert!(plan(&want, Some(2), &set(&["x"])).is_empty());
        // A zero count that was never set is still sent once.
        assert_eq!(
            plan(&Desired::default(), None, &BTreeSet::new()).set_rooms,
            Some(0)
        );
    }

    #[test]
    fn request_bodies_have_the_sdk_shapes() {
        let count = CounterUpdate {
            count: Some(Int64(5)),
            ..CounterUpdate::default()
        };
        assert_eq!(serde_json::to_value(&count).unwrap(), json!({"count": "5"}));
        let diff = CounterUpdate {
            count_diff: Some(Int64(-1)),
            ..CounterUpdate::default()
        };
        assert_eq!(
            serde_json::to_value(&diff).unwrap(),
            json!({"countDiff": "-1"})
        );
        let capacity = CounterUpdate {
            capacity: Some(Int64(16)),
            ..CounterUpdate::default()
        };
        assert_eq!(
            serde_json::to_value(&capacity).unwrap(),
            json!({"capacity": "16"})
        );
        assert_eq!(
            serde_json::to_value(ListValue { value: "alice" }).unwrap(),
            json!({"value": "alice"})
        );
        assert_eq!(serde_json::to_value(Empty {}).unwrap(), json!({}));
        assert_eq!(
            serde_json::to_value(Reserve { seconds: Int64(2) }).unwrap(),
            json!({"seconds": "2"})
        );
        assert_eq!(
            serde_json::to_value(KeyValue {
                key: "node",
                value: "n1"
            })
            .unwrap(),
            json!({"key": "node", "value": "n1"})
        );
    }

    #[test]
    fn responses_parse_int64_as_string_or_number() {
        let c: Counter =
            serde_json::from_value(json!({"name": "rooms", "count": "5", "capacity": 8})).unwrap();
        assert_eq!(
            c,
            Counter {
                name: "rooms".into(),
                count: 5,
                capacity: 8
            }
        );
        let l: List = serde_json::from_value(
            json!({"name": "players", "capacity": "3", "values": ["alice", "bob"]}),
        )
        .unwrap();
        assert_eq!(l.capacity, 3);
        assert_eq!(l.values, vec!["alice", "bob"]);
        assert!(serde_json::from_value::<Counter>(json!({"count": "five"})).is_err());
    }

    #[test]
    fn gameserver_parses_the_recorded_status() {
        let gs: GameServer = serde_json::from_value(json!({
            "object_meta": {"name": "local-gs", "labels": {"app": "stsync"}, "annotations": {}},
            "spec": {"health": {"disabled": false, "period_seconds": 5}},
            "status": {
                "state": "Ready", "address": "127.0.0.1", "addresses": [],
                "ports": [{"name": "game", "port": 7777}],
                "players": {"count": "0", "capacity": "4", "ids": []},
                "counters": {"rooms": {"count": "0", "capacity": "8"}},
                "lists": {"players": {"capacity": "3", "values": []}}
            }
        }))
        .unwrap();
        assert_eq!(gs.object_meta.name, "local-gs");
        assert_eq!(gs.status.state, "Ready");
        assert_eq!(gs.status.ports[0].port, 7777);
        assert_eq!(
            gs.status.counters["rooms"],
            CounterStatus {
                count: 0,
                capacity: 8
            }
        );
        assert_eq!(gs.status.lists["players"].capacity, 3);
    }

    #[test]
    fn error_kinds_come_from_the_message_prefix() {
        let status = |message: &str| AgonesError::Status {
            method: Method::POST,
            path: "/x".into(),
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: Some(2),
            message: message.into(),
        };
        assert_eq!(
            status("already exists. Value: alice already in List: players").kind(),
            SdkErrorKind::AlreadyExists
        );
        assert_eq!(
            status("not found. Value: zed not found in List: players").kind(),
            SdkErrorKind::NotFound
        );
        assert_eq!(
            status("out of range. No available capacity. Current Capacity: 3, List Size: 3").kind(),
            SdkErrorKind::OutOfRange
        );
        assert_eq!(status("no players for list").kind(), SdkErrorKind::Other);
        assert!(!status("x").is_transport());
    }

    #[test]
    fn names_are_escaped_in_paths() {
        assert_eq!(counter_path("rooms"), "/v1beta1/counters/rooms");
        assert_eq!(
            list_path("players", ":addValue"),
            "/v1beta1/lists/players:addValue"
        );
        assert_eq!(counter_path("a/b c"), "/v1beta1/counters/a%2Fb%20c");
    }

    #[tokio::test]
    async fn an_absent_sidecar_is_a_connect_error_not_a_hang() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let client = AgonesClient::new(port).with_timeout(Duration::from_secs(1));
        let err = client.health().await.unwrap_err();
        assert!(err.is_transport(), "{err}");
    }

    #[test]
    fn public_urls_come_from_the_address_and_named_ports() {
        let gs = |json: serde_json::Value| -> GameServer { serde_json::from_value(json).unwrap() };
        let scheduled = gs(
            serde_json::json!({"status": {"address": "10.0.0.7", "ports": [
            {"name": "quic", "port": 7001}, {"name": "ws", "port": 7000}]}}),
        );
        assert_eq!(
            scheduled.public_urls(),
            Some((
                "ws://10.0.0.7:7000/ws".to_owned(),
                Some("quic://10.0.0.7:7001".to_owned())
            ))
        );
        let v6 = gs(
            serde_json::json!({"status": {"address": "fd00::7", "ports": [
            {"name": "game", "port": 7777}]}}),
        );
        assert_eq!(
            v6.public_urls(),
            Some(("ws://[fd00::7]:7777/ws".to_owned(), None))
        );
        assert_eq!(
            gs(serde_json::json!({"status": {"address": ""}})).public_urls(),
            None
        );
        assert_eq!(
            gs(serde_json::json!({"status": {"address": "10.0.0.7", "ports": []}})).public_urls(),
            None
        );
    }
}
