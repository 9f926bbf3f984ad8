//! The Agones SDK contract: the fake sidecar (`support/agones_fake.rs`) answers every
//! recorded request of the real local sidecar (`data/agones/`) exactly as recorded, and the
//! server's `AgonesHandle` drives it through Ready, reports, Health and Shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use support::agones_fake::{AgonesFake, Call, FakeConfig};
use tickwire_server::agones::{AgonesClient, AgonesError, AgonesHandle, SdkErrorKind};
use tokio::net::TcpStream;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

/// Every call of the status-bearing run. The README says this file is one run against
/// `local-gameserver.yaml` with its `status:` block (its first `GET /gameserver` already
/// shows the block), so every line is replayed, in order, on one fresh fake. Nothing in it
/// varies between runs (the timestamps are the zero time), so every body is compared whole.
const WITH_STATUS: &str = include_str!("data/agones/rest-local-with-status.txt");

/// Every call of the run against the same file without `status:` (no Counters or Lists).
const SPEC_ONLY: &str = include_str!("data/agones/rest-local-spec-only.txt");

/// The first lines of `GET /watch/gameserver` (the last line is cut off in the recording).
const WATCH: &str = include_str!("data/agones/watch-gameserver-first-lines.ndjson");

/// One transcript line: `METHOD PATH [body=BODY] -> STATUS JSON`.
#[derive(Debug)]
struct Recorded {
    line: usize,
    method: Method,
    path: String,
    /// The body as sent (raw text, JSON or not); None for no body.
    body: Option<String>,
    status: StatusCode,
    response: Value,
}

fn parse_transcript(text: &str) -> Vec<Recorded> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let (request, answer) = l
                .split_once(" -> ")
                .unwrap_or_else(|| panic!("line {}: no ' -> ': {l}", i + 1));
            let (method, rest) = request.split_once(' ').unwrap();
            let (path, body) = match rest.split_once(" body=") {
                Some((p, b)) => (p.trim(), Some(b.to_owned())),
                None => (rest.trim(), None),
            };
            let (status, response) = answer.split_once(' ').unwrap();
            Recorded {
                line: i + 1,
                method: method.parse().unwrap(),
                path: path.to_owned(),
                body,
                status: StatusCode::from_u16(status.parse().unwrap()).unwrap(),
                response: serde_json::from_str(response)
                    .unwrap_or_else(|e| panic!("line {}: response is not JSON: {e}", i + 1)),
            }
        })
        .collect()
}

/// One request on a fresh connection; the whole response.
async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let response = open(addr, method, path, body).await;
    let status = response.status();
    let bytes = timeout(WAIT, response.into_body().collect())
        .await
        .expect("response body in time")
        .unwrap()
        .to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{path}: answer is not JSON ({e}): {bytes:?}"));
    (status, value)
}

/// Sends a request and returns the response head (the body streams on).
async fn open(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> Response<Incoming> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string());
    if body.is_some() {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    let request = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default().to_owned())))
        .unwrap();
    timeout(WAIT, sender.send_request(request))
        .await
        .expect("response in time")
        .unwrap()
}

async fn replay(fake: &AgonesFake, transcript: &str) -> usize {
    let recorded = parse_transcript(transcript);
    for r in &recorded {
        let (status, body) = send(fake.addr(), r.method.clone(), &r.path, r.body.as_deref()).await;
        assert_eq!(
            (status, &body),
            (r.status, &r.response),
            "line {}: {} {} {:?}",
            r.line,
            r.method,
            r.path,
            r.body
        );
    }
    // The fake recorded each call as sent.
    let calls = fake.calls();
    assert_eq!(calls.len(), recorded.len());
    for (call, r) in calls.iter().zip(&recorded) {
        assert!(
            call.is(r.method.as_str(), &r.path),
            "{call} vs line {}",
            r.line
        );
        assert_eq!(call.raw, r.body.clone().unwrap_or_default());
    }
    recorded.len()
}

#[tokio::test]
async fn fake_answers_the_status_bearing_recording() {
    let fake = AgonesFake::start().await;
    let n = timeout(Duration::from_secs(20), replay(&fake, WITH_STATUS))
        .await
        .expect("replay in time");
    assert_eq!(n, 37);
    assert_eq!(fake.state(), "Shutdown");
    assert_eq!(fake.counter("rooms"), Some((5, 16)));
}

#[tokio::test]
async fn fake_answers_the_spec_only_recording() {
    let fake = AgonesFake::start_with(FakeConfig::spec_only()).await;
    let n = timeout(Duration::from_secs(20), replay(&fake, SPEC_ONLY))
        .await
        .expect("replay in time");
    assert_eq!(n, 39);
    assert_eq!(fake.state(), "Reserved");
}

#[tokio::test]
async fn fake_streams_the_recorded_watch() {
    let fake = AgonesFake::start().await;
    let expected: Vec<Value> = WATCH
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(expected.len(), 2, "two complete lines in the recording");

    let mut body = open(fake.addr(), Method::GET, "/watch/gameserver", None)
        .await
        .into_body();
    let mut buffered = Vec::new();
    let mut next_line = async || -> Value {
        loop {
            if let Some(end) = buffered.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffered.drain(..=end).collect();
                return serde_json::from_slice(&line).unwrap();
            }
            let frame = timeout(WAIT, body.frame())
                .await
                .expect("a watch line in time")
                .expect("the stream stays open")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                buffered.extend_from_slice(&data);
            }
        }
    };
    assert_eq!(next_line().await, expected[0]);
    let (status, _) = send(fake.addr(), Method::POST, "/ready", Some("{}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(next_line().await, expected[1]);
}

#[tokio::test]
async fn client_methods_against_the_fake() {
    let fake = AgonesFake::start().await;
    let client = AgonesClient::new(fake.port()).with_timeout(Duration::from_secs(2));
    let run = async {
        assert_eq!(
            client.get_gameserver().await.unwrap().status.state,
            "Scheduled"
        );
        client.ready().await.unwrap();
        client.health().await.unwrap();
        let gs = client.get_gameserver().await.unwrap();
        assert_eq!(gs.status.state, "Ready");
        assert_eq!(gs.status.counters["rooms"].capacity, 8);

        let c = client.set_counter_count("rooms", 5).await.unwrap();
        assert_eq!((c.count, c.capacity), (5, 8));
        assert_eq!(client.get_counter("rooms").await.unwrap().count, 5);
        assert_eq!(client.add_counter("rooms", -2).await.unwrap().count, 3);
        assert_eq!(
            client
                .set_counter_capacity("rooms", 16)
                .await
                .unwrap()
                .capacity,
            16
        );
        let err = client.set_counter_count("rooms", 99).await.unwrap_err();
        match &err {
            AgonesError::Status {
                status,
                code,
                message,
                ..
            } => {
                assert_eq!(*status, StatusCode::INTERNAL_SERVER_ERROR);
                assert_eq!(*code, Some(2));
                assert_eq!(
                    message,
                    "out of range. Count must be within range [0,Capacity]. Found Count: 99, Capacity: 16"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err.kind(), SdkErrorKind::OutOfRange);
        assert_eq!(
            client.get_counter("nope").await.unwrap_err().kind(),
            SdkErrorKind::NotFound
        );

        assert_eq!(
            client.add_list_value("players", "a").await.unwrap().values,
            ["a"]
        );
        assert_eq!(
            client
                .add_list_value("players", "a")
                .await
                .unwrap_err()
                .kind(),
            SdkErrorKind::AlreadyExists
        );
        client.add_list_value("players", "b").await.unwrap();
        client.add_list_value("players", "c").await.unwrap();
        assert_eq!(
            client
                .add_list_value("players", "d")
                .await
                .unwrap_err()
                .kind(),
            SdkErrorKind::OutOfRange
        );
        assert_eq!(
            client
                .remove_list_value("players", "zed")
                .await
                .unwrap_err()
                .kind(),
            SdkErrorKind::NotFound
        );
        let l = client.remove_list_value("players", "a").await.unwrap();
        assert_eq!(
            (l.capacity, l.values),
            (3, vec!["b".to_owned(), "c".to_owned()])
        );
        assert_eq!(client.get_list("players").await.unwrap().values, ["b", "c"]);

        client.set_label("node", "n1").await.unwrap();
        client.allocate().await.unwrap();
        assert_eq!(
            client.get_gameserver().await.unwrap().status.state,
            "Allocated"
        );
        client.reserve(2).await.unwrap();
        assert_eq!(
            client.get_gameserver().await.unwrap().status.state,
            "Reserved"
        );
        client.shutdown().await.unwrap();
        let gs = client.get_gameserver().await.unwrap();
        assert_eq!(gs.status.state, "Shutdown");
        assert_eq!(gs.object_meta.labels["agones.dev/sdk-node"], "n1");
    };
    timeout(Duration::from_secs(20), run)
        .await
        .expect("in time");
    // Request bodies as the SDK expects them (int64 as strings).
    let calls = fake.calls();
    let body_of = |method: &str, path: &str| -> Vec<Value> {
        calls
            .iter()
            .filter(|c| c.is(method, path))
            .filter_map(|c| c.body.clone())
            .collect()
    };
    assert_eq!(body_of("POST", "/ready"), [json!({})]);
    assert_eq!(
        body_of("PATCH", "/v1beta1/counters/rooms"),
        [
            json!({"count": "5"}),
            json!({"countDiff": "-2"}),
            json!({"capacity": "16"}),
            json!({"count": "99"})
        ]
    );
    assert_eq!(body_of("POST", "/reserve"), [json!({"seconds": "2"})]);
    assert_eq!(
        body_of("PUT", "/metadata/label"),
        [json!({"key": "node", "value": "n1"})]
    );
}

fn players(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn position(calls: &[Call], pred: impl Fn(&Call) -> bool) -> usize {
    calls
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("call not found in {calls:#?}"))
}

#[tokio::test]
async fn reporter_drives_ready_reports_health_and_shutdown_in_order() {
    let fake = AgonesFake::start_with(
        FakeConfig::recorded()
            .rooms_capacity(100)
            .players_capacity(64),
    )
    .await;
    let client = AgonesClient::new(fake.port()).with_timeout(Duration::from_secs(1));
    let run = async {
        let agones = AgonesHandle::start_with(client, Duration::from_millis(100));
        agones.ready().await.unwrap();
        assert_eq!(fake.state(), "Ready");

        agones.report(3, players(&["a", "b"]));
        fake.wait_for_state("rooms 3, players a b", WAIT, |gs| {
            gs["status"]["counters"]["rooms"]["count"] == "3"
                && gs["status"]["lists"]["players"]["values"] == json!(["a", "b"])
        })
        .await;
        agones.report(1, players(&["b"]));
        fake.wait_for_state("rooms 1, players b", WAIT, |gs| {
            gs["status"]["counters"]["rooms"]["count"] == "1"
                && gs["status"]["lists"]["players"]["values"] == json!(["b"])
        })
        .await;
        fake.wait_for("two health pings", WAIT, |calls| {
            calls.iter().filter(|c| c.is("POST", "/health")).count() >= 2
        })
        .await;
        agones.shutdown().await.unwrap();
    };
    timeout(Duration::from_secs(20), run)
        .await
        .expect("in time");

    let calls = fake.calls();
    let ready = position(&calls, |c| c.is("POST", "/ready"));
    let rooms3 = position(&calls, |c| {
        c.is("PATCH", "/v1beta1/counters/rooms") && c.body == Some(json!({"count": "3"}))
    });
    let rooms1 = position(&calls, |c| {
        c.is("PATCH", "/v1beta1/counters/rooms") && c.body == Some(json!({"count": "1"}))
    });
    let add_a = position(&calls, |c| {
        c.is("POST", "/v1beta1/lists/players:addValue") && c.body == Some(json!({"value": "a"}))
    });
    let add_b = position(&calls, |c| {
        c.is("POST", "/v1beta1/lists/players:addValue") && c.body == Some(json!({"value": "b"}))
    });
    let remove_a = position(&calls, |c| {
        c.is("POST", "/v1beta1/lists/players:removeValue") && c.body == Some(json!({"value": "a"}))
    });
    assert!(ready < rooms3 && rooms3 < rooms1, "{calls:#?}");
    assert!(
        ready < add_a && add_a < add_b && add_b < remove_a,
        "{calls:#?}"
    );
    assert!(remove_a > rooms3);
    // Shutdown is the last call; no health after it; b was added once, nothing else.
    assert!(calls.last().unwrap().is("POST", "/shutdown"), "{calls:#?}");
    assert_eq!(
        calls.iter().filter(|c| c.is("POST", "/shutdown")).count(),
        1
    );
    assert!(calls.iter().filter(|c| c.is("POST", "/health")).count() >= 2);
    let list_changes = calls
        .iter()
        .filter(|c| c.path.starts_with("/v1beta1/lists/players:"))
        .count();
    assert_eq!(list_changes, 3, "{calls:#?}");
    assert_eq!(fake.counter("rooms"), Some((1, 100)));
    assert_eq!(fake.list("players"), Some((64, vec!["b".to_owned()])));
    assert_eq!(fake.state(), "Shutdown");
}

#[tokio::test]
async fn reporter_carries_on_past_a_full_list() {
    // Room for one player only: b is refused ("out of range") and retried until a leaves.
    let fake = AgonesFake::start_with(FakeConfig::recorded().players_capacity(1)).await;
    let client = AgonesClient::new(fake.port()).with_timeout(Duration::from_secs(1));
    let run = async {
        let agones = AgonesHandle::start_with(client, Duration::from_millis(50));
        agones.ready().await.unwrap();
        agones.report(2, players(&["a", "b"]));
        fake.wait_for("b refused at least twice", WAIT, |calls| {
            calls
                .iter()
                .filter(|c| {
                    c.is("POST", "/v1beta1/lists/players:addValue")
                        && c.body == Some(json!({"value": "b"}))
                })
                .count()
                >= 2
        })
        .await;
        assert_eq!(fake.list("players"), Some((1, vec!["a".to_owned()])));
        assert_eq!(fake.counter("rooms"), Some((2, 8)));
        agones.report(2, players(&["b"]));
        fake.wait_for_state("players b", WAIT, |gs| {
            gs["status"]["lists"]["players"]["values"] == json!(["b"])
        })
        .await;
        // Past the Counter's capacity (8): refused, logged, and the List still follows.
        agones.report(9, players(&[]));
        fake.wait_for_state("players empty", WAIT, |gs| {
            gs["status"]["lists"]["players"]["values"] == json!([])
        })
        .await;
        assert_eq!(fake.counter("rooms"), Some((2, 8)));
        agones.shutdown().await.unwrap();
    };
    timeout(Duration::from_secs(20), run)
        .await
        .expect("in time");
    assert_eq!(fake.state(), "Shutdown");
}

#[tokio::test]
async fn reporter_survives_an_absent_sidecar() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = AgonesClient::new(port).with_timeout(Duration::from_millis(500));
    let run = async {
        let agones = AgonesHandle::start_with(client, Duration::from_millis(50));
        agones.report(1, players(&["a"]));
        tokio::time::sleep(Duration::from_millis(300)).await;
        agones.report(2, players(&["a", "b"]));
        let err = agones.shutdown().await.unwrap_err();
        assert!(err.is_transport(), "{err}");
    };
    timeout(Duration::from_secs(10), run)
        .await
        .expect("shutdown does not stall");
}
