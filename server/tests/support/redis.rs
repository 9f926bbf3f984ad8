//! A throwaway `redis-server` for tests: a free 127.0.0.1 port, no persistence, killed by
//! PID on drop; it can be stopped and started again on the same port (outage tests).
//!
//! Where no `redis-server` can be run, [`RedisServer::start`] prints why and returns
//! `None` (the test then passes as skipped), unless `TICKWIRE_REQUIRE_REDIS=1` (as in CI),
//! where it panics. `TICKWIRE_REDIS_SERVER` names the binary (default: `redis-server` on
//! the PATH).

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting redis-server gets to answer PING.
const START_WAIT: Duration = Duration::from_secs(10);

pub(crate) struct RedisServer {
    binary: String,
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// A running redis-server, or `None` (after saying why on stderr) when there is none
    /// to run and `TICKWIRE_REQUIRE_REDIS` is not `1`.
    pub(crate) fn start(test: &str) -> Option<RedisServer> {
        let binary =
            std::env::var("TICKWIRE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
        let runs = Command::new(&binary)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !runs {
            let why = format!("cannot run `{binary} --version` (install redis-server)");
            assert!(
                std::env::var("TICKWIRE_REQUIRE_REDIS").as_deref() != Ok("1"),
                "TICKWIRE_REQUIRE_REDIS=1 but {why}"
            );
            // Straight to stderr: libtest would capture eprintln! of a passing test.
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
            return None;
        }
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
            l.local_addr().expect("local addr").port()
        };
        let mut server = RedisServer {
            binary,
            port,
            child: None,
        };
        server.restart();
        Some(server)
    }

    /// `redis://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL, by PID) and waits for it to exit.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again, empty) on the same port and waits until it answers PING.
    pub(crate) fn restart(&mut self) {
        self.stop();
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + START_WAIT;
        while !self.pings() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("redis-server on port {} exited: {status}", self.port);
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within {START_WAIT:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pings(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
