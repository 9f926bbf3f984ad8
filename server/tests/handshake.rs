//! The WebSocket opening and closing handshakes at the front door, over raw TCP: each way an
//! upgrade request can fail gets its own HTTP status (RFC 6455 section 4.2.1), only real
//! upgrades take a client id, the `Origin` allowlist refuses foreign pages with 403, and every
//! close frame is answered (section 7.4).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tickwire_server::http::MAX_BODY_BYTES;
use tickwire_server::origin::{Origin, OriginPolicy};
use tokio::io::AsyncWriteExt;

mod support;
use support::TestServer;
use support::raw::{client_frame, exchange, raw_websocket, read_close_code, upgrade_request};

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broken_handshake_gets_its_status_and_no_client_id() {
    let srv = TestServer::start(|_| {}).await;
    let first = srv.ws_client("first").await.welcome.client_id;

    // The RFC 6455 example key: 101 with its accept value.
    let ok = exchange(srv.addr, &upgrade_request(None)).await;
    assert_eq!(ok.status, 101);
    assert_eq!(
        ok.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    drop(ok);

    // A plain GET: 426 naming the protocol (RFC 9110 15.5.22 requires the Upgrade header).
    let plain = exchange(srv.addr, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(plain.status, 426);
    assert_eq!(plain.header("upgrade"), Some("websocket"));

    // Another version: 426 with the one this server speaks.
    let v8 = exchange(
        srv.addr,
        &upgrade_request(Some(&format!(
            "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{KEY}Sec-WebSocket-Version: 8\r\n"
        ))),
    )
    .await;
    assert_eq!(v8.status, 426);
    assert_eq!(v8.header("sec-websocket-version"), Some("13"));

    // Claims to be an upgrade, breaks a rule: 400.
    let v13 = "Sec-WebSocket-Version: 13\r\n";
    let bad = [
        (
            "no Connection",
            format!("Host: x\r\nUpgrade: websocket\r\n{KEY}{v13}"),
        ),
        (
            "Connection without upgrade",
            format!("Host: x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n{KEY}{v13}"),
        ),
        (
            "no Upgrade",
            format!("Host: x\r\nConnection: Upgrade\r\n{KEY}{v13}"),
        ),
        (
            "no key",
            format!("Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{v13}"),
        ),
        (
            "15-byte key",
            format!(
                "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n{v13}"
            ),
        ),
        (
            "key not base64",
            format!(
                "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: hello\r\n{v13}"
            ),
        ),
        (
            "two keys",
            format!("Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{KEY}{KEY}{v13}"),
        ),
        (
            "no version",
            format!("Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{KEY}"),
        ),
        (
            "no Host",
            format!("Upgrade: websocket\r\nConnection: Upgrade\r\n{KEY}{v13}"),
        ),
    ];
    for (what, headers) in &bad {
        let r = exchange(srv.addr, &upgrade_request(Some(headers))).await;
        assert_eq!(r.status, 400, "{what}");
    }
    let http10 = upgrade_request(None).replacen("HTTP/1.1", "HTTP/1.0", 1);
    assert_eq!(exchange(srv.addr, &http10).await.status, 400, "HTTP/1.0");

    // Not a GET: 405, Allow: GET.
    for method in ["POST", "HEAD", "PUT"] {
        let req = upgrade_request(None).replacen("GET", method, 1);
        let r = exchange(srv.addr, &req).await;
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET"), "{method}");
    }

    // Plain HTTP takes no client id either.
    for _ in 0..5 {
        let r = exchange(srv.addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(r.status, 200);
    }
    let big = format!(
        "POST /matchmake/create/arena HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{}",
        MAX_BODY_BYTES + 1,
        "x".repeat(MAX_BODY_BYTES + 1)
    );
    assert_eq!(exchange(srv.addr, &big).await.status, 413);

    // Only the two real upgrades (`first` and the raw 101) took ids.
    let next = srv.ws_client("next").await.welcome.client_id;
    assert_eq!(next.0, first.0 + 2, "ids {first:?} then {next:?}");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_frame_with_an_invalid_code_is_answered_with_1002() {
    let srv = TestServer::start(|_| {}).await;
    // RFC 6455 7.4.1/7.4.2: never on the wire (1005, 1006, 1015), unassigned (0-999, 1004,
    // 1014, 1016-2999), or out of range (5000 and up).
    for code in [
        0u16, 999, 1004, 1005, 1006, 1014, 1015, 1016, 2999, 5000, 65535,
    ] {
        let mut ws = raw_websocket(srv.addr).await;
        ws.write_all(&client_frame(0x8, &code.to_be_bytes()))
            .await
            .unwrap();
        assert_eq!(
            read_close_code(&mut ws).await,
            Ok(Some(1002)),
            "code {code}"
        );
    }
    // Valid codes are echoed, as the closing handshake says.
    for code in [1000u16, 1001, 3000, 4999] {
        let mut ws = raw_websocket(srv.addr).await;
        ws.write_all(&client_frame(0x8, &code.to_be_bytes()))
            .await
            .unwrap();
        assert_eq!(
            read_close_code(&mut ws).await,
            Ok(Some(code)),
            "code {code}"
        );
    }
    // A one-byte close payload cannot hold a code: 1002 too.
    let mut ws = raw_websocket(srv.addr).await;
    ws.write_all(&client_frame(0x8, &[3])).await.unwrap();
    assert_eq!(read_close_code(&mut ws).await, Ok(Some(1002)));
    srv.shutdown().await;
}

/// The status of a standard upgrade carrying `origin` (no header when `None`).
async fn upgrade_status(srv: &TestServer, origin: Option<&str>) -> u16 {
    let std = upgrade_request(None);
    let req = match origin {
        None => std,
        Some(o) => std.replacen("Host: x\r\n", &format!("Host: x\r\nOrigin: {o}\r\n"), 1),
    };
    exchange(srv.addr, &req).await.status
}

fn allow(origins: &[&str], require: bool) -> OriginPolicy {
    OriginPolicy::new(
        origins.iter().map(|o| Origin::parse(o).unwrap()).collect(),
        require,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_allowlist_refuses_foreign_pages_with_403() {
    let listed = ["https://game.example.com", "http://127.0.0.1:8080"];
    let srv = TestServer::start(|c| c.origins = allow(&listed, false)).await;
    assert_eq!(
        upgrade_status(&srv, Some("https://evil.example")).await,
        403
    );
    assert_eq!(
        upgrade_status(&srv, Some("http://game.example.com")).await,
        403
    );
    assert_eq!(upgrade_status(&srv, Some("null")).await, 403);
    assert_eq!(
        upgrade_status(&srv, Some("https://game.example.com")).await,
        101
    );
    assert_eq!(
        upgrade_status(&srv, Some("https://GAME.Example.com:443")).await,
        101
    );
    assert_eq!(
        upgrade_status(&srv, Some("http://127.0.0.1:8080")).await,
        101
    );
    // Non-browser clients (the bot) send no Origin: let in unless --require-origin.
    assert_eq!(upgrade_status(&srv, None).await, 101);
    srv.ws_client("bot").await;
    srv.shutdown().await;

    let srv = TestServer::start(|c| c.origins = allow(&listed, true)).await;
    assert_eq!(upgrade_status(&srv, None).await, 403);
    assert_eq!(
        upgrade_status(&srv, Some("https://evil.example")).await,
        403
    );
    assert_eq!(
        upgrade_status(&srv, Some("https://game.example.com")).await,
        101
    );
    srv.shutdown().await;
}
