//! A contract fake of the Agones SDK sidecar's REST API, as the real `sdk-server --local`
//! answered in the recordings in `server/tests/data/agones/` (kept honest by
//! `server/tests/agones_contract.rs`, which replays them against this fake).
//!
//! A hyper 1 server on 127.0.0.1 port 0. It keeps a GameServer like the local sidecar's
//! (state, labels/annotations set through the SDK, player tracking, Counters and Lists with
//! their range and capacity checks), answers with the recorded statuses and JSON bodies
//! (int64 fields as strings; errors as `{"code","message","details"}`), streams
//! `GET /watch/gameserver`, and records every call in order.
//!
//! Not recorded, so chosen here: a known path with another method answers like an unknown
//! path (404, code 5); an int64 field that is neither a number nor a numeric string is a 400
//! (code 3).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The GameServer the fake starts with.
#[derive(Debug, Clone)]
pub(crate) struct FakeConfig {
    /// `status.state` before any call.
    pub(crate) state: String,
    /// `status.address`.
    pub(crate) address: String,
    /// `status.ports` (name, port).
    pub(crate) ports: Vec<(String, u16)>,
    /// `status.players.capacity` (player tracking).
    pub(crate) player_capacity: i64,
    /// `status.counters`: key → (count, capacity).
    pub(crate) counters: BTreeMap<String, (i64, i64)>,
    /// `status.lists`: key → (capacity, values).
    pub(crate) lists: BTreeMap<String, (i64, Vec<String>)>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self::recorded()
    }
}

impl FakeConfig {
    /// The `status:` block of `local-gameserver.yaml` (what `rest-local-with-status.txt` ran
    /// against): Scheduled, Counter `rooms` 0/8, List `players` capacity 3.
    pub(crate) fn recorded() -> Self {
        Self {
            state: "Scheduled".into(),
            address: "127.0.0.1".into(),
            ports: vec![("game".into(), 7777)],
            player_capacity: 4,
            counters: BTreeMap::from([("rooms".into(), (0, 8))]),
            lists: BTreeMap::from([("players".into(), (3, Vec::new()))]),
        }
    }

    /// The same file without its `status:` block (what `rest-local-spec-only.txt` ran
    /// against): the local sidecar sees no Counters or Lists at all.
    pub(crate) fn spec_only() -> Self {
        Self {
            state: String::new(),
            address: String::new(),
            ports: Vec::new(),
            player_capacity: 0,
            counters: BTreeMap::new(),
            lists: BTreeMap::new(),
        }
    }

    /// The Counter `rooms` with this capacity (count 0).
    pub(crate) fn rooms_capacity(mut self, capacity: i64) -> Self {
        self.counters.insert("rooms".into(), (0, capacity));
        self
    }

    /// The List `players` with this capacity (empty).
    pub(crate) fn players_capacity(mut self, capacity: i64) -> Self {
        self.lists.insert("players".into(), (capacity, Vec::new()));
        self
    }
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    /// "GET", "POST", ...
    pub(crate) method: String,
    /// The path with its query, as sent.
    pub(crate) path: String,
    /// The body parsed as JSON (None when empty or not JSON).
    pub(crate) body: Option<Value>,
    /// The body as text.
    pub(crate) raw: String,
}

impl Call {
    /// Whether this is `method path` (path compared with its query).
    pub(crate) fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.method, self.path, self.raw)
    }
}

#[derive(Debug)]
struct GameServer {
    state: String,
    address: String,
    ports: Vec<(String, u16)>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    player_ids: Vec<String>,
    player_capacity: i64,
    counters: BTreeMap<String, (i64, i64)>,
    lists: BTreeMap<String, (i64, Vec<String>)>,
}

impl GameServer {
    fn to_json(&self) -> Value {
        let ports: Vec<Value> = self
            .ports
            .iter()
            .map(|(name, port)| json!({"name": name, "port": port}))
            .collect();
        let counters: Map<String, Value> = self
            .counters
            .iter()
            .map(|(k, (count, capacity))| {
                (
                    k.clone(),
                    json!({"count": count.to_string(), "capacity": capacity.to_string()}),
                )
            })
            .collect();
        let lists: Map<String, Value> = self
            .lists
            .iter()
            .map(|(k, (capacity, values))| {
                (
                    k.clone(),
                    json!({"capacity": capacity.to_string(), "values": values}),
                )
            })
            .collect();
        json!({
            "object_meta": {
                "name": "local-gs",
                "namespace": "",
                "uid": "",
                "resource_version": "",
                "generation": "0",
                "creation_timestamp": "-62135596800",
                "deletion_timestamp": "0",
                "annotations": self.annotations,
                "labels": self.labels,
            },
            "spec": {"health": {
                "disabled": false,
                "period_seconds": 5,
                "failure_threshold": 3,
                "initial_delay_seconds": 5,
            }},
            "status": {
                "state": self.state,
                "address": self.address,
                "addresses": [],
                "ports": ports,
                "players": {
                    "count": self.player_ids.len().to_string(),
                    "capacity": self.player_capacity.to_string(),
                    "ids": self.player_ids,
                },
                "counters": counters,
                "lists": lists,
            },
        })
    }
}

#[derive(Debug)]
struct Inner {
    gs: Mutex<GameServer>,
    calls: Mutex<Vec<Call>>,
    /// Bumped on every change a `/watch/gameserver` stream reports.
    version: watch::Sender<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }
}

/// The running fake sidecar; stops when dropped.
#[derive(Debug)]
pub(crate) struct AgonesFake {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl Drop for AgonesFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AgonesFake {
    /// The recorded GameServer ([`FakeConfig::recorded`]).
    pub(crate) async fn start() -> AgonesFake {
        Self::start_with(FakeConfig::recorded()).await
    }

    /// A GameServer from `cfg`.
    pub(crate) async fn start_with(cfg: FakeConfig) -> AgonesFake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            gs: Mutex::new(GameServer {
                state: cfg.state,
                address: cfg.address,
                ports: cfg.ports,
                labels: BTreeMap::from([("app".to_owned(), "stsync".to_owned())]),
                annotations: BTreeMap::new(),
                player_ids: Vec::new(),
                player_capacity: cfg.player_capacity,
                counters: cfg.counters,
                lists: cfg.lists,
            }),
            calls: Mutex::new(Vec::new()),
            version: watch::Sender::new(0),
        });
        let shared = inner.clone();
        let task = tokio::spawn(async move {
            // Connection tasks live in the set, so aborting this task ends them too.
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                while conns.try_join_next().is_some() {}
                let inner = shared.clone();
                conns.spawn(async move {
                    let service = service_fn(move |req| handle(inner.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        AgonesFake { addr, inner, task }
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port (what `AGONES_SDK_HTTP_PORT` would say).
    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every call so far, in arrival order.
    pub(crate) fn calls(&self) -> Vec<Call> {
        lock(&self.inner.calls).clone()
    }

    /// Waits until `pred` holds for the calls so far and returns them; panics, listing the
    /// calls, after `within`.
    pub(crate) async fn wait_for(
        &self,
        what: &str,
        within: Duration,
        pred: impl Fn(&[Call]) -> bool,
    ) -> Vec<Call> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let calls = self.calls();
            if pred(&calls) {
                return calls;
            }
            if tokio::time::Instant::now() >= deadline {
                let listed: Vec<String> = calls.iter().map(ToString::to_string).collect();
                panic!(
                    "the fake sidecar did not see {what} within {within:?}; calls:\n{}",
                    listed.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `pred` holds for the fake's GameServer (as `GET /gameserver` shows it);
    /// panics after `within`.
    pub(crate) async fn wait_for_state(
        &self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let gs = self.gameserver();
            if pred(&gs) {
                return gs;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("the fake sidecar's GameServer never showed {what} within {within:?}: {gs}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The GameServer as `GET /gameserver` returns it.
    pub(crate) fn gameserver(&self) -> Value {
        lock(&self.inner.gs).to_json()
    }

    /// `status.state`.
    pub(crate) fn state(&self) -> String {
        lock(&self.inner.gs).state.clone()
    }

    /// A Counter's (count, capacity).
    pub(crate) fn counter(&self, name: &str) -> Option<(i64, i64)> {
        lock(&self.inner.gs).counters.get(name).copied()
    }

    /// A List's (capacity, values).
    pub(crate) fn list(&self, name: &str) -> Option<(i64, Vec<String>)> {
        lock(&self.inner.gs).lists.get(name).cloned()
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// An answer: status and JSON body.
type Answer = (StatusCode, Value);

fn ok(body: Value) -> Answer {
    (StatusCode::OK, body)
}

/// What the sidecar returns for an error from the SDK server (gRPC Unknown → HTTP 500).
fn sdk_error(message: String) -> Answer {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"code": 2, "message": message, "details": []}),
    )
}

fn not_found_path() -> Answer {
    (
        StatusCode::NOT_FOUND,
        json!({"code": 5, "message": "Not Found", "details": []}),
    )
}

fn bad_request(message: String) -> Answer {
    (
        StatusCode::BAD_REQUEST,
        json!({"code": 3, "message": message, "details": []}),
    )
}

/// The routes of the REST gateway.
#[derive(Debug)]
enum Route {
    GameServer,
    Watch,
    Ready,
    Health,
    Allocate,
    Reserve,
    Shutdown,
    Label,
    Annotation,
    GetCounter(String),
    UpdateCounter(String),
    GetList(String),
    UpdateList(String),
    AddValue(String),
    RemoveValue(String),
    PlayerConnect,
    PlayerDisconnect,
    PlayerCount,
    GetPlayerCapacity,
    SetPlayerCapacity,
    PlayerConnected(String),
    ConnectedPlayers,
}

fn route(method: &Method, path: &str) -> Option<Route> {
    let m = method.as_str();
    let r = match (m, path) {
        ("GET", "/gameserver") => Route::GameServer,
        ("GET", "/watch/gameserver") => Route::Watch,
        ("POST", "/ready") => Route::Ready,
        ("POST", "/health") => Route::Health,
        ("POST", "/allocate") => Route::Allocate,
        ("POST", "/reserve") => Route::Reserve,
        ("POST", "/shutdown") => Route::Shutdown,
        ("PUT", "/metadata/label") => Route::Label,
        ("PUT", "/metadata/annotation") => Route::Annotation,
        ("POST", "/alpha/player/connect") => Route::PlayerConnect,
        ("POST", "/alpha/player/disconnect") => Route::PlayerDisconnect,
        ("GET", "/alpha/player/count") => Route::PlayerCount,
        ("GET", "/alpha/player/capacity") => Route::GetPlayerCapacity,
        ("PUT", "/alpha/player/capacity") => Route::SetPlayerCapacity,
        ("GET", "/alpha/player/connected") => Route::ConnectedPlayers,
        _ => {
            if let Some(id) = path.strip_prefix("/alpha/player/connected/") {
                return (m == "GET" && !id.is_empty() && !id.contains('/'))
                    .then(|| Route::PlayerConnected(decode(id)));
            }
            if let Some(name) = path.strip_prefix("/v1beta1/counters/") {
                if name.is_empty() || name.contains('/') {
                    return None;
                }
                return match m {
                    "GET" => Some(Route::GetCounter(decode(name))),
                    "PATCH" => Some(Route::UpdateCounter(decode(name))),
                    _ => None,
                };
            }
            let rest = path.strip_prefix("/v1beta1/lists/")?;
            if rest.is_empty() || rest.contains('/') {
                return None;
            }
            return match (m, rest.split_once(':')) {
                ("POST", Some((name, "addValue"))) => Some(Route::AddValue(decode(name))),
                ("POST", Some((name, "removeValue"))) => Some(Route::RemoveValue(decode(name))),
                ("GET", None) => Some(Route::GetList(decode(rest))),
                ("PATCH", None) => Some(Route::UpdateList(decode(rest))),
                _ => None,
            };
        }
    };
    Some(r)
}

/// Percent-decoding of a path segment.
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(Ok(b)) = segment.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The message Go's `encoding/json` gives for a body that does not start like JSON (the
/// case the recording has: `not json`); other malformed bodies get serde's wording.
fn go_json_error(raw: &str, serde_message: &str) -> String {
    let text = raw.trim_start_matches([' ', '\t', '\r', '\n']);
    let Some(first) = text.chars().next() else {
        return "unexpected end of JSON input".into();
    };
    let literal = match first {
        'n' => "null",
        't' => "true",
        'f' => "false",
        '{' | '[' | '"' | '-' | '0'..='9' => return serde_message.to_owned(),
        c => return format!("invalid character '{c}' looking for beginning of value"),
    };
    for (got, want) in text.chars().zip(literal.chars()).skip(1) {
        if got != want {
            return format!("invalid character '{got}' in literal {literal} (expecting '{want}')");
        }
    }
    serde_message.to_owned()
}

/// An int64 field from a request: a JSON number or a numeric string (None when absent).
fn int64(body: &Value, field: &str) -> Result<Option<i64>, Answer> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| bad_request(format!("bad value for int64 field {field}: {n}"))),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| bad_request(format!("bad value for int64 field {field}: {s:?}"))),
        Some(other) => Err(bad_request(format!(
            "bad value for int64 field {field}: {other}"
        ))),
    }
}

fn string_field(body: &Value, field: &str) -> String {
    body.get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

async fn handle(inner: Arc<Inner>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| path.clone(), |p| p.as_str().to_owned());
    let query = req.uri().query().unwrap_or_default().to_owned();
    let bytes = match req.into_body().collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    let parsed = if raw.trim().is_empty() {
        Ok(json!({}))
    } else {
        serde_json::from_str::<Value>(&raw)
    };
    lock(&inner.calls).push(Call {
        method: method.to_string(),
        path: path_and_query,
        body: parsed
            .as_ref()
            .ok()
            .filter(|_| !raw.trim().is_empty())
            .cloned(),
        raw: raw.clone(),
    });

    let Some(route) = route(&method, &path) else {
        let (status, body) = not_found_path();
        return Ok(json_response(status, &body));
    };
    let body = match parsed {
        Ok(v) => v,
        Err(e) => {
            let (status, body) = bad_request(go_json_error(&raw, &e.to_string()));
            return Ok(json_response(status, &body));
        }
    };
    if let Route::Watch = route {
        return Ok(watch_response(inner));
    }
    let (status, answer) = match answer(&inner, route, &body, &query) {
        Ok(a) | Err(a) => a,
    };
    Ok(json_response(status, &answer))
}

fn watch_response(inner: Arc<Inner>) -> Response<Body> {
    let rx = inner.version.subscribe();
    let lines = futures_util::stream::unfold((rx, true), move |(mut rx, first)| {
        let inner = inner.clone();
        async move {
            if first {
                rx.borrow_and_update();
            } else if rx.changed().await.is_err() {
                return None;
            }
            let gs = lock(&inner.gs).to_json();
            let mut line = serde_json::to_vec(&json!({"result": gs})).unwrap_or_default();
            line.push(b'\n');
            Some((
                Ok::<_, Infallible>(Frame::data(Bytes::from(line))),
                (rx, false),
            ))
        }
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(lines)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn set_state(inner: &Inner, state: &str) -> Answer {
    lock(&inner.gs).state = state.to_owned();
    inner.changed();
    ok(json!({}))
}

fn answer(inner: &Inner, route: Route, body: &Value, query: &str) -> Result<Answer, Answer> {
    Ok(match route {
        Route::GameServer => ok(lock(&inner.gs).to_json()),
        Route::Watch => not_found_path(),
        Route::Ready => set_state(inner, "Ready"),
        Route::Allocate => set_state(inner, "Allocated"),
        Route::Shutdown => set_state(inner, "Shutdown"),
        Route::Reserve => {
            int64(body, "seconds")?;
            // The local sidecar stays Reserved (it does not time the reservation out).
            set_state(inner, "Reserved")
        }
        Route::Health => ok(json!({})),
        Route::Label | Route::Annotation => {
            let key = format!("agones.dev/sdk-{}", string_field(body, "key"));
            let value = string_field(body, "value");
            let mut gs = lock(&inner.gs);
            match route {
                Route::Label => gs.labels.insert(key, value),
                _ => gs.annotations.insert(key, value),
            };
            drop(gs);
            inner.changed();
            ok(json!({}))
        }
        Route::PlayerConnect => {
            let id = string_field(body, "playerID");
            let mut gs = lock(&inner.gs);
            if gs.player_ids.contains(&id) {
                ok(json!({"bool": false}))
            } else if i64::try_from(gs.player_ids.len()).unwrap_or(i64::MAX) >= gs.player_capacity {
                sdk_error("Players are already at capacity".into())
            } else {
                gs.player_ids.push(id);
                drop(gs);
                inner.changed();
                ok(json!({"bool": true}))
            }
        }
        Route::PlayerDisconnect => {
            let id = string_field(body, "playerID");
            let mut gs = lock(&inner.gs);
            let before = gs.player_ids.len();
            gs.player_ids.retain(|p| *p != id);
            let removed = gs.player_ids.len() != before;
            drop(gs);
            if removed {
                inner.changed();
            }
            ok(json!({"bool": removed}))
        }
        Route::PlayerCount => ok(json!({"count": lock(&inner.gs).player_ids.len().to_string()})),
        Route::GetPlayerCapacity => {
            ok(json!({"count": lock(&inner.gs).player_capacity.to_string()}))
        }
        Route::SetPlayerCapacity => {
            let count = int64(body, "count")?.unwrap_or(0);
            lock(&inner.gs).player_capacity = count;
            inner.changed();
            ok(json!({}))
        }
        Route::PlayerConnected(id) => ok(json!({"bool": lock(&inner.gs).player_ids.contains(&id)})),
        Route::ConnectedPlayers => ok(json!({"list": lock(&inner.gs).player_ids})),
        Route::GetCounter(name) => match lock(&inner.gs).counters.get(&name) {
            Some(&(count, capacity)) => ok(counter_json(&name, count, capacity)),
            None => sdk_error(format!("not found. {name} Counter not found")),
        },
        Route::UpdateCounter(name) => update_counter(inner, &name, body)?,
        Route::GetList(name) => match lock(&inner.gs).lists.get(&name) {
            Some((capacity, values)) => ok(list_json(&name, *capacity, values)),
            None => sdk_error(format!("not found. {name} List not found")),
        },
        Route::UpdateList(name) => update_list(inner, &name, body, query)?,
        Route::AddValue(name) => {
            let value = string_field(body, "value");
            let mut gs = lock(&inner.gs);
            let Some((capacity, values)) = gs.lists.get_mut(&name) else {
                return Err(sdk_error(format!("not found. {name} List not found")));
            };
            if *capacity <= i64::try_from(values.len()).unwrap_or(i64::MAX) {
                return Err(sdk_error(format!(
                    "out of range. No available capacity. Current Capacity: {capacity}, List Size: {}",
                    values.len()
                )));
            }
            if values.contains(&value) {
                return Err(sdk_error(format!(
                    "already exists. Value: {value} already in List: {name}"
                )));
            }
            values.push(value);
            ok(list_json(&name, *capacity, values))
        }
        Route::RemoveValue(name) => {
            let value = string_field(body, "value");
            let mut gs = lock(&inner.gs);
            let Some((capacity, values)) = gs.lists.get_mut(&name) else {
                return Err(sdk_error(format!("not found. {name} List not found")));
            };
            let Some(at) = values.iter().position(|v| *v == value) else {
                return Err(sdk_error(format!(
                    "not found. Value: {value} not found in List: {name}"
                )));
            };
            values.remove(at);
            ok(list_json(&name, *capacity, values))
        }
    })
}

fn counter_json(name: &str, count: i64, capacity: i64) -> Value {
    json!({"name": name, "count": count.to_string(), "capacity": capacity.to_string()})
}

fn list_json(name: &str, capacity: i64, values: &[String]) -> Value {
    json!({"name": name, "capacity": capacity.to_string(), "values": values})
}

/// `PATCH /v1beta1/counters/{name}`: capacity, then count, then countDiff, each checked;
/// nothing changes unless all pass.
fn update_counter(inner: &Inner, name: &str, body: &Value) -> Result<Answer, Answer> {
    let capacity = int64(body, "capacity")?;
    let count = int64(body, "count")?;
    let diff = int64(body, "countDiff")?.unwrap_or(0);
    let mut gs = lock(&inner.gs);
    let Some(counter) = gs.counters.get_mut(name) else {
        return Err(sdk_error(format!("not found. {name} Counter not found")));
    };
    let (mut new_count, mut new_capacity) = *counter;
    let out_of_range = |count: i64, capacity: i64| {
        sdk_error(format!(
            "out of range. Count must be within range [0,Capacity]. Found Count: {count}, Capacity: {capacity}"
        ))
    };
    if let Some(c) = capacity {
        if c < 0 {
            return Err(sdk_error(format!(
                "out of range. Capacity must be greater than or equal to 0. Found Capacity: {c}"
            )));
        }
        new_capacity = c;
    }
    if let Some(c) = count {
        new_count = c;
        if !(0..=new_capacity).contains(&new_count) {
            return Err(out_of_range(new_count, new_capacity));
        }
    }
    if diff != 0 {
        new_count = new_count.saturating_add(diff);
        if !(0..=new_capacity).contains(&new_count) {
            return Err(out_of_range(new_count, new_capacity));
        }
    }
    *counter = (new_count, new_capacity);
    Ok(ok(counter_json(name, new_count, new_capacity)))
}

/// `PATCH /v1beta1/lists/{name}`, as recorded: a missing List answers "no {name} for list";
/// any non-zero `capacity` in the body is refused with the [0,1000] message (the recorded
/// sidecar refused 10 and 20 that way, whatever the message claims); otherwise the fields
/// in the update mask (`update_mask`/`updateMask` query, else the body's fields) replace the
/// List's, values cut to the capacity.
fn update_list(inner: &Inner, name: &str, body: &Value, query: &str) -> Result<Answer, Answer> {
    let mut gs = lock(&inner.gs);
    let Some((capacity, values)) = gs.lists.get_mut(name) else {
        return Err(sdk_error(format!("no {name} for list")));
    };
    let new_capacity = int64(body, "capacity")?.unwrap_or(0);
    if new_capacity != 0 {
        return Err(sdk_error(format!(
            "out of range. Capacity must be within range [0,1000]. Found Capacity: {new_capacity}"
        )));
    }
    let mask: Vec<String> = query
        .split('&')
        .find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == "update_mask" || k == "updateMask")
                .then(|| v.split(',').map(str::to_owned).collect())
        })
        .unwrap_or_else(|| {
            body.as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default()
        });
    if let Some(bad) = mask.iter().find(|p| *p != "capacity" && *p != "values") {
        return Err(sdk_error(format!(
            "invalid argument. Field Mask Path(s): [{bad}] are invalid for List"
        )));
    }
    if mask.iter().any(|p| p == "values") {
        *values = body
            .get("values")
            .and_then(Value::as_array)
            .map(|vs| {
                vs.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
    }
    if mask.iter().any(|p| p == "capacity") {
        *capacity = new_capacity;
    }
    let keep = usize::try_from(*capacity).unwrap_or(0);
    values.truncate(keep);
    Ok(ok(list_json(name, *capacity, values)))
}
