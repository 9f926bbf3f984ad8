//! Recording a live match and replaying it, as an operator does: the real binary with
//! `--record DIR`, 50 real bots for 10 s, a graceful stop (SIGTERM), then
//! `tickwire-server replay FILE` on the log, a truncated copy and a damaged copy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::process::ServerProcess;
use tickwire_bot_client::{LoadConfig, run};

fn temp_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("tickwire-record-{}-{nanos}", std::process::id()))
}

fn replay(file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tickwire-server"))
        .arg("replay")
        .arg(file)
        .output()
        .unwrap()
}

/// Stops the server with SIGTERM (as an orchestrator does) and waits for it to exit.
fn stop(proc: &mut ServerProcess) {
    let status = Command::new("kill")
        .args(["-TERM", &proc.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Bounded: a server that does not exit fails the test instead of hanging it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(s) = proc.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the server did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_match_of_50_bots_replays_and_damaged_logs_are_clear_errors() {
    let dir = temp_dir();
    let dir_arg = dir.to_string_lossy().into_owned();
    let mut proc = ServerProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--no-quic",
        "--npcs",
        "50",
        "--record",
        &dir_arg,
    ]);
    let [addr] = proc.wait_for_fields(["addr"]);
    let report = run(
        LoadConfig {
            url: format!("ws://{addr}/ws"),
            bots: 50,
            duration: Duration::from_secs(10),
            ramp_per_s: 200.0,
            input_hz: 30.0,
            verify_fraction: 0.2,
            ..LoadConfig::default()
        },
        |_| {},
    )
    .await;
    assert_eq!(report.connected, 50, "{report:?}");
    assert!(report.is_clean(), "{report:?}");
    let [path] = proc.wait_for_fields(["path"]);
    stop(&mut proc);
    // The writer's last word on the log, after the room's last tick.
    let [ticks, bytes] = proc.wait_for_fields(["ticks", "bytes"]);
    let ticks: u32 = ticks.parse().unwrap();
    let path = PathBuf::from(path);
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        files,
        std::slice::from_ref(&path),
        "one log, of the default room"
    );
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(
        size,
        bytes.parse::<u64>().unwrap(),
        "the whole log is on disk"
    );
    // 10 s of bots at 30 Hz; the room ticked from start to stop.
    assert!(ticks >= 5 * 30, "{ticks}");

    let out = replay(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        format!("replay ok ticks={ticks}"),
        "{stderr}"
    );
    // What was replayed: all 50 players and their inputs (30 frames a second each).
    assert!(stderr.contains("players=50 "), "{stderr}");
    let inputs: u64 = stderr
        .split_whitespace()
        .find_map(|w| w.strip_prefix("inputs="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(inputs > 50 * 30 * 5, "{stderr}");
    eprintln!(
        "log: {size} bytes for {ticks} ticks, {inputs} input frames ({:.2} bytes a frame)",
        size as f64 / inputs as f64
    );

    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.join("cut.twrec");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = replay(&cut);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("log truncated at tick"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let mut damaged = bytes.clone();
    let mid = damaged.len() / 2;
    for b in &mut damaged[mid..mid + 8] {
        *b ^= 0xa5;
    }
    let bad = dir.join("damaged.twrec");
    std::fs::write(&bad, &damaged).unwrap();
    let out = replay(&bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("log corrupt at tick"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let out = replay(&dir.join("missing.twrec"));
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).unwrap();
}
