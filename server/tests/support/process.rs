//! The real `tickwire-server` binary as a child process, for tests that need a separate
//! process (signals, `kill -9`, a fleet of nodes).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// A running server, killed (by its handle, so only our own child) when dropped.
pub(crate) struct ServerProcess {
    pub(crate) child: Child,
    /// Its stderr lines, drained by a thread for the whole run (so the server never blocks on
    /// a full pipe, and a silent server fails the test instead of hanging it).
    lines: Receiver<String>,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// Starts the binary with `args` (`RUST_LOG=info`).
    pub(crate) fn start(args: &[&str]) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tickwire-server"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ServerProcess { child, lines }
    }

    /// The values of `keys` (`key=value` words) from the log, waiting up to 20 s for all.
    pub(crate) fn wait_for_fields<const N: usize>(&self, keys: [&str; N]) -> [String; N] {
        let mut found: [Option<String>; N] = std::array::from_fn(|_| None);
        while found.iter().any(Option::is_none) {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .expect("the server logs its addresses");
            for (key, slot) in keys.iter().zip(&mut found) {
                if slot.is_none() {
                    *slot = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                        .map(str::to_owned);
                }
            }
        }
        found.map(Option::unwrap)
    }

    /// Kills it now (SIGKILL) and waits for it.
    pub(crate) fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}
