//! The JavaScript client's own tests, run from `cargo test`:
//! - `node --test assets/web/test/`: tickwire.js against every protocol vector. Skipped (with a
//!   message) where `node` is missing, unless `TICKWIRE_REQUIRE_NODE=1`.
//! - `assets/web/test/live-client.mjs`: tickwire.js against an in-process server (needs a
//!   Node with a global WebSocket: 22+, or 20 with `--experimental-websocket`; skipped with a
//!   message otherwise).
//! - `assets/web/world.js` holds the same world as `assets/worlds/arena.toml`, as the server
//!   parses it. `TICKWIRE_BLESS=1` rewrites world.js from arena.toml.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tickwire_server::world::World;

mod support;
use support::TestServer;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server/ has a parent")
        .to_path_buf()
}

fn env_is_1(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

/// world.js as generated from a parsed world.
fn world_js(world: &World) -> String {
    let mut s = String::new();
    s.push_str(
        "// The built-in arena (assets/worlds/arena.toml): bounds and obstacles, for drawing and for\n\
         // client-side prediction. Generated from arena.toml; server/tests/js_client.rs checks that\n\
         // the two match (TICKWIRE_BLESS=1 cargo test -p tickwire-server --test js_client rewrites\n\
         // this file after an edit of arena.toml).\n",
    );
    let b = world.bounds;
    let name = world.name.replace('\\', "\\\\").replace('"', "\\\"");
    writeln!(s, "export const WORLD = {{").unwrap();
    writeln!(s, "  name: \"{name}\",").unwrap();
    writeln!(s, "  min: [{}, {}, {}],", b.min.x, b.min.y, b.min.z).unwrap();
    writeln!(s, "  max: [{}, {}, {}],", b.max.x, b.max.y, b.max.z).unwrap();
    writeln!(s, "  obstacles: [").unwrap();
    for o in &world.obstacles {
        writeln!(
            s,
            "    {{ min: [{}, {}], max: [{}, {}] }},",
            o.min.x, o.min.y, o.max.x, o.max.y
        )
        .unwrap();
    }
    writeln!(s, "  ],").unwrap();
    writeln!(s, "}};").unwrap();
    s
}

#[test]
fn world_js_matches_arena_toml() {
    let root = workspace();
    let toml = std::fs::read_to_string(root.join("assets/worlds/arena.toml")).unwrap();
    let world = World::parse(&toml).unwrap();
    assert!(!world.obstacles.is_empty());
    let expected = world_js(&world);
    let path = root.join("assets/web/world.js");
    if env_is_1("TICKWIRE_BLESS") {
        std::fs::write(&path, &expected).unwrap();
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap();
    assert!(
        actual == expected,
        "assets/web/world.js does not match assets/worlds/arena.toml; rerun with \
         TICKWIRE_BLESS=1 to regenerate it. Expected:\n{expected}"
    );
}

/// Waits for a child up to `limit`, killing it if it takes longer.
fn wait_with_timeout(
    mut child: std::process::Child,
    limit: Duration,
) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + limit;
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).unwrap_or_default();
        s
    });
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, reader.join().unwrap_or_default());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("node did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `node` to run, or `None` (after printing why) when the test should be skipped.
fn node_or_skip(test: &str) -> Option<String> {
    let node = std::env::var("TICKWIRE_NODE").unwrap_or_else(|_| "node".to_owned());
    match Command::new(&node).arg("--version").output() {
        Ok(o) if o.status.success() => {
            eprintln!("using {node} {}", String::from_utf8_lossy(&o.stdout).trim());
            Some(node)
        }
        other => {
            let why = match other {
                Ok(o) => format!("`{node} --version` failed: {}", o.status),
                Err(e) => format!("`{node}` not found: {e}"),
            };
            assert!(
                !env_is_1("TICKWIRE_REQUIRE_NODE"),
                "TICKWIRE_REQUIRE_NODE=1 but {why}"
            );
            skipped(test, &format!("{why} (install Node.js >= 18)"));
            None
        }
    }
}

fn skipped(test: &str, why: &str) {
    // Straight to stderr: libtest would capture eprintln! of a passing test.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

#[test]
fn tickwire_js_passes_its_node_tests() {
    let root = workspace();
    let Some(node) = node_or_skip("tickwire_js_passes_its_node_tests") else {
        return;
    };
    // Name the files: `node --test DIR` means different things across Node versions.
    let dir = root.join("assets/web/test");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".test.mjs"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.test.mjs in {}", dir.display());
    let child = Command::new(&node)
        .arg("--test")
        .args(&files)
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (status, out) = wait_with_timeout(child, Duration::from_secs(120));
    let summary: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("# ") || l.starts_with("not ok"))
        .collect();
    eprintln!("{}", summary.join("\n"));
    assert!(status.success(), "node --test failed ({status}):\n{out}");
    assert!(
        out.lines().any(|l| l.trim() == "# fail 0"),
        "no `# fail 0` in node's output:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickwire_js_plays_against_a_live_server() {
    const TEST: &str = "tickwire_js_plays_against_a_live_server";
    let Some(node) = node_or_skip(TEST) else {
        return;
    };
    // A global WebSocket: built in from Node 22, behind a flag in Node 20.
    let check = "process.exit(typeof WebSocket === 'function' ? 0 : 1)";
    let flags = [vec![], vec!["--experimental-websocket"]]
        .into_iter()
        .find(|flags| {
            Command::new(&node)
                .args(flags)
                .args(["-e", check])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    let Some(flags) = flags else {
        let why = "this Node has no WebSocket (Node 22+, or 20 with --experimental-websocket)";
        assert!(
            !env_is_1("TICKWIRE_REQUIRE_NODE"),
            "TICKWIRE_REQUIRE_NODE=1 but {why}"
        );
        skipped(TEST, why);
        return;
    };

    let srv = TestServer::start(|_| {}).await;

    let root = workspace();
    let child = Command::new(&node)
        .args(&flags)
        .arg(root.join("assets/web/test/live-client.mjs"))
        .env("TICKWIRE_URL", &srv.url)
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (status, out) =
        tokio::task::spawn_blocking(move || wait_with_timeout(child, Duration::from_secs(30)))
            .await
            .unwrap();
    eprintln!("{out}");
    assert!(status.success(), "live-client.mjs failed ({status}): {out}");
    assert!(out.contains("\"desyncs\":0"), "{out}");

    srv.shutdown().await;
}
