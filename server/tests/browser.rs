//! End-to-end: the browser client (assets/web/, served from the binary) in real headless
//! Chromium, against an in-process server with 20 bots playing.
//!
//! Chromium is driven over the Chrome DevTools Protocol (a WebSocket; tokio-tungstenite is
//! the CDP client): it opens the page, waits for 60 verified snapshots, holds a movement key
//! for a second and checks that the server moved the player, clicks to fire, and saves a
//! screenshot to `target/browser-e2e.png`.
//!
//! Where no Chromium is installed the test prints why it was skipped and passes, unless
//! `TICKWIRE_REQUIRE_BROWSER=1` (as in CI). `TICKWIRE_CHROMIUM` names a browser binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tickwire_bot_client::{Client, Event};
use tickwire_server::world::World;
use tickwire_shared::ReceiveError;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tungstenite::Message;

// A browser starting up needs longer than the shared support's WAIT.
const WAIT: Duration = Duration::from_secs(10);

mod support;
use support::TestServer;
use support::tls::TestPki;
const BOTS: u64 = 20;
const VIEWPORT: (u32, u32) = (1280, 800);

fn env_is_1(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server/ has a parent")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
        Some(d) => workspace().join(d),
        None => workspace().join("target"),
    }
}

// ---- a minimal JSON reader and writer (CDP speaks JSON; no serde in this crate) ----------

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn at(&self, path: &[&str]) -> Option<&Json> {
        path.iter().try_fold(self, |v, k| v.get(k))
    }

    fn num(&self, key: &str) -> f64 {
        match self.get(key) {
            Some(Json::Num(n)) => *n,
            other => panic!("{key} is not a number: {other:?} in {self:?}"),
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
}

fn parse_json(text: &str) -> Result<Json, String> {
    let mut p = JsonParser {
        s: text.as_bytes(),
        i: 0,
    };
    let v = p.value()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("trailing characters at {}", p.i));
    }
    Ok(v)
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> Result<(), String> {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(format!("expected {lit} at {}", self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i).copied() {
            Some(b'n') => self.eat("null").map(|_| Json::Null),
            Some(b't') => self.eat("true").map(|_| Json::Bool(true)),
            Some(b'f') => self.eat("false").map(|_| Json::Bool(false)),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("bad array at {}", self.i)),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(fields));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    self.eat(":")?;
                    fields.push((k, self.value()?));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(fields));
                        }
                        _ => return Err(format!("bad object at {}", self.i)),
                    }
                }
            }
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len() && b"+-0123456789.eE".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
                t.parse()
                    .map(Json::Num)
                    .map_err(|_| format!("bad number {t:?}"))
            }
            None => Err("unexpected end".into()),
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self.s.get(self.i..self.i + 4).ok_or("short \\u escape")?;
        self.i += 4;
        u32::from_str_radix(std::str::from_utf8(h).map_err(|e| e.to_string())?, 16)
            .map_err(|e| e.to_string())
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat("\"")?;
        let mut out = String::new();
        loop {
            let start = self.i;
            while self.i < self.s.len() && self.s[self.i] != b'"' && self.s[self.i] != b'\\' {
                self.i += 1;
            }
            out.push_str(std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?);
            match self.s.get(self.i) {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let c = *self.s.get(self.i + 1).ok_or("bad escape")?;
                    self.i += 2;
                    match c {
                        b'n' => out.push('\n'),
                        b't' => out.push('\t'),
                        b'r' => out.push('\r'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xd800..0xdc00).contains(&cp)
                                && self.s[self.i..].starts_with(b"\\u")
                            {
                                self.i += 2;
                                let lo = self.hex4()?;
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo.wrapping_sub(0xdc00));
                            }
                            out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                        }
                        other => out.push(char::from(other)),
                    }
                }
                _ => return Err("unterminated string".into()),
            }
        }
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for chunk in clean.chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= if c == b'=' { 0 } else { val(c) } << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    out
}

// ---- the browser ------------------------------------------------------------------------

fn find_chromium() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("TICKWIRE_CHROMIUM") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("TICKWIRE_CHROMIUM={} is not a file", p.display()))
        };
    }
    let names = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ];
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
        for name in names {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(format!(
        "no Chromium found (looked for {} on PATH and in /usr/bin; on Debian: apt-get install chromium)",
        names.join(", ")
    ))
}

/// A running headless Chromium; killed (by its Child handle) and its profile removed on drop,
/// so a failing test leaves nothing behind.
struct Chromium {
    child: Child,
    profile: PathBuf,
    stderr: Arc<Mutex<Vec<String>>>,
    devtools_url: String,
}

impl Chromium {
    fn launch(binary: &Path, extra: &[&str]) -> Chromium {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let profile =
            std::env::temp_dir().join(format!("tickwire-chromium-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&profile).unwrap();
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--mute-audio",
                "--remote-debugging-port=0",
            ])
            .args(extra)
            .arg(format!("--window-size={},{}", VIEWPORT.0, VIEWPORT.1))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let lines = stderr.clone();
        // Reads stderr to the end (so Chromium never blocks on a full pipe), passing on the
        // DevTools address and keeping the last lines for diagnostics.
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("DevTools listening on ").nth(1) {
                    let _ = tx.send(rest.trim().to_owned());
                }
                let mut l = lines.lock().unwrap();
                if l.len() >= 200 {
                    l.remove(0);
                }
                l.push(line);
            }
        });
        let mut browser = Chromium {
            child,
            profile,
            stderr,
            devtools_url: String::new(),
        };
        match rx.recv_timeout(WAIT) {
            Ok(url) => browser.devtools_url = url,
            Err(_) => panic!(
                "Chromium printed no DevTools address within {WAIT:?}; stderr:\n{}",
                browser.stderr_tail()
            ),
        }
        browser
    }

    /// Waits up to `limit` for Chromium to exit by itself.
    fn wait_exit(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr_tail(&self) -> String {
        self.stderr.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Chromium's helper processes may still be writing to the profile for a moment.
        for _ in 0..20 {
            if std::fs::remove_dir_all(&self.profile).is_ok() || !self.profile.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// ---- the DevTools protocol client ------------------------------------------------------

struct Cdp {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    session: Option<String>,
    /// Console messages and exceptions of the page, for failure messages.
    console: Vec<String>,
}

impl Cdp {
    async fn connect(url: &str) -> Cdp {
        let (ws, _) = timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("DevTools WebSocket connects in time")
            .expect("DevTools WebSocket connects");
        Cdp {
            ws,
            next_id: 1,
            session: None,
            console: Vec::new(),
        }
    }

    /// Sends one command (to the attached page, if any) and waits for its result.
    async fn call(&mut self, method: &str, params: &str) -> Json {
        let id = self.next_id;
        self.next_id += 1;
        let session = self
            .session
            .as_deref()
            .map(|s| format!(",\"sessionId\":{}", json_str(s)))
            .unwrap_or_default();
        let msg = format!(r#"{{"id":{id},"method":"{method}","params":{params}{session}}}"#);
        self.ws.send(Message::Text(msg.into())).await.unwrap();
        let reply = timeout(WAIT, async {
            loop {
                let frame = self
                    .ws
                    .next()
                    .await
                    .expect("DevTools connection open")
                    .expect("DevTools frame");
                let Message::Text(text) = frame else { continue };
                let v = parse_json(text.as_str()).unwrap_or_else(|e| panic!("{e}: {text}"));
                if v.get("id") == Some(&Json::Num(id as f64)) {
                    return v;
                }
                self.note_event(&v);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {method} within {WAIT:?}"));
        if let Some(err) = reply.get("error") {
            panic!("{method} failed: {err:?}");
        }
        reply.get("result").cloned().unwrap_or(Json::Null)
    }

    fn note_event(&mut self, v: &Json) {
        let method = v.get("method").and_then(Json::str).unwrap_or_default();
        let line = match method {
            "Runtime.consoleAPICalled" => {
                let kind = v.at(&["params", "type"]).and_then(Json::str);
                let args = match v.at(&["params", "args"]) {
                    Some(Json::Arr(args)) => args
                        .iter()
                        .map(|a| {
                            a.get("value")
                                .or(a.get("description"))
                                .map(|x| format!("{x:?}"))
                                .unwrap_or_default()
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => String::new(),
                };
                format!("console.{}: {args}", kind.unwrap_or("?"))
            }
            "Runtime.exceptionThrown" => format!("exception: {:?}", v.get("params")),
            _ => return,
        };
        if self.console.len() < 100 {
            self.console.push(line);
        }
    }

    /// Evaluates a JavaScript expression in the page and returns its value.
    async fn eval(&mut self, expr: &str) -> Json {
        let r = self
            .call(
                "Runtime.evaluate",
                &format!(
                    r#"{{"expression":{},"returnByValue":true}}"#,
                    json_str(expr)
                ),
            )
            .await;
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("{expr} threw: {ex:?}");
        }
        r.at(&["result", "value"]).cloned().unwrap_or(Json::Null)
    }

    async fn stats(&mut self) -> Json {
        self.eval("window.tickwireStats ?? null").await
    }

    async fn key(&mut self, kind: &str, key: &str, code: &str, vk: u32) {
        let params = format!(
            r#"{{"type":"{kind}","key":"{key}","code":"{code}","windowsVirtualKeyCode":{vk},"nativeVirtualKeyCode":{vk}}}"#
        );
        self.call("Input.dispatchKeyEvent", &params).await;
    }

    async fn mouse(&mut self, kind: &str, x: u32, y: u32) {
        let params = format!(
            r#"{{"type":"{kind}","x":{x},"y":{y},"button":"left","buttons":{},"clickCount":1}}"#,
            u8::from(kind == "mousePressed")
        );
        self.call("Input.dispatchMouseEvent", &params).await;
    }
}

// ---- the server and the bots -----------------------------------------------------------

#[derive(Debug, Default)]
struct BotReport {
    snapshots: u64,
    desyncs: u64,
}

/// A bot: random-walk input at the tick rate, reading (and verifying) every snapshot.
async fn bot(url: String, n: u64, mut stop: watch::Receiver<bool>) -> BotReport {
    let mut c = Client::connect(&url, &format!("bot-{n}"), None, WAIT)
        .await
        .expect("bot connects");
    let period = Duration::from_secs_f64(1.0 / f64::from(c.welcome.tick_rate));
    let mut ticker = tokio::time::interval(period);
    let mut rng = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut rand = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut heading = rand() * std::f64::consts::TAU;
    let mut report = BotReport::default();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = ticker.tick() => {
                heading += (rand() - 0.5) * 0.5;
                let (x, y) = ((heading.cos() * 127.0) as i8, (heading.sin() * 127.0) as i8);
                let yaw = (heading.rem_euclid(std::f64::consts::TAU) / std::f64::consts::TAU
                    * 65536.0) as u16;
                if c.send_input(x, y, yaw, 0).await.is_err() {
                    break;
                }
            }
            ev = c.next_event() => match ev {
                Ok(Event::Snapshot { outcome, .. }) => match outcome {
                    Ok(_) => report.snapshots += 1,
                    Err(ReceiveError::MissingBaseline { .. }) => {}
                    Err(_) => report.desyncs += 1,
                },
                Ok(Event::Pong { .. } | Event::Welcome(_)) => {}
                Ok(Event::Closed { .. }) | Err(_) => break,
            },
        }
    }
    c.close().await;
    report
}

// ---- the test ----------------------------------------------------------------------------

/// A direction (key, code, virtual key code, unit vector) whose next 12 units are free of
/// walls and obstacles, so holding its key must move the player.
fn free_direction(x: f64, y: f64) -> (&'static str, &'static str, u32, (f64, f64)) {
    let world = World::arena();
    let dirs = [
        ("d", "KeyD", 68, (1.0, 0.0)),
        ("a", "KeyA", 65, (-1.0, 0.0)),
        ("w", "KeyW", 87, (0.0, 1.0)),
        ("s", "KeyS", 83, (0.0, -1.0)),
    ];
    let b = world.bounds;
    let clear = |px: f64, py: f64| {
        px > f64::from(b.min.x) + 1.0
            && px < f64::from(b.max.x) - 1.0
            && py > f64::from(b.min.y) + 1.0
            && py < f64::from(b.max.y) - 1.0
            && world.obstacles.iter().all(|o| {
                px < f64::from(o.min.x) - 1.0
                    || px > f64::from(o.max.x) + 1.0
                    || py < f64::from(o.min.y) - 1.0
                    || py > f64::from(o.max.y) + 1.0
            })
    };
    *dirs
        .iter()
        .find(|(_, _, _, (dx, dy))| {
            (0..=12).all(|i| clear(x + dx * f64::from(i), y + dy * f64::from(i)))
        })
        .expect("some direction is free")
}

fn self_pos(stats: &Json) -> (f64, f64) {
    let s = stats.get("self").expect("stats.self");
    (s.num("x"), s.num("y"))
}

async fn wait_for(
    cdp: &mut Cdp,
    what: &str,
    limit: Duration,
    mut done: impl FnMut(&Json) -> bool,
) -> Json {
    let deadline = Instant::now() + limit;
    loop {
        let stats = cdp.stats().await;
        if done(&stats) {
            return stats;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {limit:?} waiting for {what}; tickwireStats = {stats:?}; page \
                 console: {:#?}",
                cdp.console
            );
        }
        sleep(Duration::from_millis(100)).await;
    }
}

/// The Chromium binary, or `None` (the test passes, saying why on stderr) where there is none
/// and `TICKWIRE_REQUIRE_BROWSER` is not 1.
fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    match find_chromium() {
        Ok(b) => Some(b),
        Err(why) => {
            assert!(
                !env_is_1("TICKWIRE_REQUIRE_BROWSER"),
                "TICKWIRE_REQUIRE_BROWSER=1 but {why}"
            );
            // Straight to stderr: libtest would capture eprintln! of a passing test.
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
            None
        }
    }
}

/// Opens `page_url` in a new page of the browser, with the test's viewport and focus.
async fn open_page(cdp: &mut Cdp, page_url: &str) {
    let target = cdp
        .call(
            "Target.createTarget",
            r#"{"url":"about:blank","newWindow":false}"#,
        )
        .await;
    let target_id = target
        .get("targetId")
        .and_then(Json::str)
        .unwrap()
        .to_owned();
    let attached = cdp
        .call(
            "Target.attachToTarget",
            &format!(r#"{{"targetId":{},"flatten":true}}"#, json_str(&target_id)),
        )
        .await;
    cdp.session = Some(
        attached
            .get("sessionId")
            .and_then(Json::str)
            .unwrap()
            .to_owned(),
    );
    cdp.call("Runtime.enable", "{}").await;
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        &format!(
            r#"{{"width":{},"height":{},"deviceScaleFactor":1,"mobile":false}}"#,
            VIEWPORT.0, VIEWPORT.1
        ),
    )
    .await;
    cdp.call("Emulation.setFocusEmulationEnabled", r#"{"enabled":true}"#)
        .await;
    cdp.call(
        "Page.navigate",
        &format!(r#"{{"url":{}}}"#, json_str(page_url)),
    )
    .await;
}

/// Asks Chromium to quit (it takes its helper processes along); then the guard kills
/// whatever is left and removes the profile.
async fn quit(mut cdp: Cdp, mut browser: Chromium) {
    let _ = timeout(
        Duration::from_secs(2),
        cdp.ws.send(Message::Text(
            r#"{"id":999999,"method":"Browser.close","params":{}}"#.into(),
        )),
    )
    .await;
    drop(cdp);
    browser.wait_exit(Duration::from_secs(2));
    drop(browser);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn browser_client_plays_in_headless_chromium() {
    let Some(binary) = chromium_or_skip("browser_client_plays_in_headless_chromium") else {
        return;
    };
    let started = Instant::now();
    let srv = TestServer::start(|c| {
        c.npcs = 40;
        // Wider than the default so the page has company to draw.
        c.sim.view_radius = 300.0;
        c.web_root = None; // serve the files built into the binary
    })
    .await;
    let ws_url = format!("ws://{}/ws", srv.addr);
    let (stop_bots, bots_stop) = watch::channel(false);
    let bots: Vec<JoinHandle<BotReport>> = (0..BOTS)
        .map(|n| tokio::spawn(bot(ws_url.clone(), n, bots_stop.clone())))
        .collect();

    let browser = Chromium::launch(&binary, &[]);
    let mut cdp = Cdp::connect(&browser.devtools_url).await;
    open_page(&mut cdp, &format!("http://{}/?name=e2e", srv.addr)).await;

    // 60 verified snapshots (2 s at 30 Hz), none of them a desync.
    let stats = wait_for(&mut cdp, "60 snapshots", Duration::from_secs(15), |s| {
        s.get("snapshots")
            .is_some_and(|n| matches!(n, Json::Num(n) if *n >= 60.0))
    })
    .await;
    eprintln!("after {:?}: {stats:?}", started.elapsed());
    assert_eq!(stats.get("connected"), Some(&Json::Bool(true)));
    assert_eq!(stats.num("desyncs"), 0.0, "{stats:?}");
    assert_eq!(stats.num("malformed"), 0.0, "{stats:?}");
    assert!(stats.num("entities") > 0.0, "{stats:?}");

    // Hold a movement key for a second: the server-confirmed position must follow.
    let (x0, y0) = self_pos(&stats);
    let (key, code, vk, (dx, dy)) = free_direction(x0, y0);
    cdp.key("keyDown", key, code, vk).await;
    let held = Instant::now();
    sleep(Duration::from_millis(1000)).await;
    cdp.key("keyUp", key, code, vk).await;
    let held = held.elapsed().as_secs_f64();
    let moved = |s: &Json| {
        let (x, y) = self_pos(s);
        ((x - x0) * dx + (y - y0) * dy, (x - x0) * dy - (y - y0) * dx)
    };
    // Wait until the server has applied the release (the position stops changing).
    let mut last = (f64::NAN, f64::NAN);
    let stats = wait_for(
        &mut cdp,
        "the player to stop",
        Duration::from_secs(5),
        |s| {
            let p = self_pos(s);
            let still = p == last;
            last = p;
            still && moved(s).0 > 0.5
        },
    )
    .await;
    let (along, across) = moved(&stats);
    eprintln!("held {key} for {held:.2} s: moved {along:.2} units along, {across:.2} across");
    let speed = 8.0; // ArenaRules::default().player_speed
    assert!(
        along > speed * 0.5,
        "moved only {along} units in {held} s: {stats:?}"
    );
    assert!(
        along < speed * (held + 0.5),
        "faster than the speed limit: {along}"
    );
    assert!(across.abs() < 0.1, "moved sideways: {across}");
    // Prediction has reconciled with the server: both agree once the player stands still.
    let stats = wait_for(
        &mut cdp,
        "prediction to settle",
        Duration::from_secs(2),
        |s| {
            let (sx, sy) = self_pos(s);
            let p = s.get("predicted").expect("stats.predicted");
            (p.num("x") - sx).hypot(p.num("y") - sy) < 0.1
        },
    )
    .await;
    eprintln!(
        "predicted {:?} = server {:?}",
        stats.get("predicted"),
        stats.get("self")
    );

    // Aim up and to the right and click: a projectile (kind 3) appears in view. (The bots
    // never fire, so it is ours.) Two more shots, a fire cooldown apart, for the screenshot.
    let (cx, cy) = (VIEWPORT.0 / 2, VIEWPORT.1 / 2);
    let (mx, my) = (cx + 240, cy - 80);
    cdp.mouse("mouseMoved", mx, my).await;
    cdp.mouse("mousePressed", mx, my).await;
    cdp.mouse("mouseReleased", mx, my).await;
    let stats = wait_for(&mut cdp, "a projectile", Duration::from_secs(3), |s| {
        s.at(&["kinds", "3"]).is_some_and(|n| *n != Json::Num(0.0))
    })
    .await;
    for _ in 0..2 {
        sleep(Duration::from_millis(300)).await;
        cdp.mouse("mousePressed", mx, my).await;
        cdp.mouse("mouseReleased", mx, my).await;
    }
    sleep(Duration::from_millis(150)).await;

    let shot = cdp
        .call("Page.captureScreenshot", r#"{"format":"png"}"#)
        .await;
    let png = base64_decode(shot.get("data").and_then(Json::str).unwrap());
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let path = target_dir().join("browser-e2e.png");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {} ({} bytes)", path.display(), png.len());

    let end = cdp.stats().await;
    assert_eq!(end.num("desyncs"), 0.0, "{end:?}");
    assert_eq!(end.num("malformed"), 0.0, "{end:?}");
    assert!(end.num("snapshots") > stats.num("snapshots") - 1.0);
    assert_eq!(end.get("connected"), Some(&Json::Bool(true)));
    assert!(
        !cdp.console.iter().any(|l| l.starts_with("exception")),
        "page threw: {:#?}",
        cdp.console
    );

    quit(cdp, browser).await;
    let _ = stop_bots.send(true);
    for b in bots {
        let report = timeout(WAIT, b).await.expect("bot stops").unwrap();
        assert!(report.snapshots > 30, "bot got {report:?}");
        assert_eq!(report.desyncs, 0, "bot {report:?}");
    }
    srv.shutdown().await;
    eprintln!("browser e2e took {:?}", started.elapsed());
}

/// The page served over https (TLS on the game port, a certificate from a test CA the
/// browser is told to accept) connects with wss: (a ws: socket from an https page would be
/// blocked as mixed content) and plays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn browser_client_plays_over_https() {
    let Some(binary) = chromium_or_skip("browser_client_plays_over_https") else {
        return;
    };
    let identity = TestPki::new().identity;
    let srv = TestServer::start(|c| {
        c.npcs = 40;
        c.sim.view_radius = 300.0;
        c.web_root = None;
        c.tls = Some(identity);
    })
    .await;
    // The test CA is not in Chromium's store; in this test only, certificate errors pass.
    let browser = Chromium::launch(&binary, &["--ignore-certificate-errors"]);
    let mut cdp = Cdp::connect(&browser.devtools_url).await;
    open_page(&mut cdp, &format!("https://{}/?name=tls", srv.addr)).await;
    let stats = wait_for(&mut cdp, "30 snapshots", Duration::from_secs(15), |s| {
        s.get("snapshots")
            .is_some_and(|n| matches!(n, Json::Num(n) if *n >= 30.0))
    })
    .await;
    assert_eq!(stats.get("connected"), Some(&Json::Bool(true)));
    assert_eq!(stats.num("desyncs"), 0.0, "{stats:?}");
    assert_eq!(
        cdp.eval("location.protocol").await,
        Json::Str("https:".into())
    );
    assert!(
        !cdp.console.iter().any(|l| l.starts_with("exception")),
        "page threw: {:#?}",
        cdp.console
    );
    quit(cdp, browser).await;
    srv.shutdown().await;
}

#[test]
fn json_and_base64_helpers() {
    let v =
        parse_json(r#"{"a":[1,-2.5e1,"x\"\u00e9\ud83d\ude00"],"b":{"c":null,"d":true}}"#).unwrap();
    assert_eq!(
        v.get("a"),
        Some(&Json::Arr(vec![
            Json::Num(1.0),
            Json::Num(-25.0),
            Json::Str("x\"é😀".into())
        ]))
    );
    assert_eq!(v.at(&["b", "d"]), Some(&Json::Bool(true)));
    assert!(parse_json("{} x").is_err());
    assert_eq!(json_str("a\"b\\\n"), r#""a\"b\\\u000a""#);
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("aGV5"), b"hey");
}
