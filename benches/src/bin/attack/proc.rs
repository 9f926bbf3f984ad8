//! The server under attack as a child process, and what can be read about it from outside:
//! its log (the address it bound), `/proc` (CPU time, RSS, open-file limit, the kernel's TCP
//! memory) and its HTTP endpoints (`/healthz`, `/metrics`) over plain loopback TCP.
//!
//! `loadtest` has its own `ServerProc`; this one is smaller (no QUIC, no status-line parsing)
//! and counts log lines, since an attack that makes the server log per connection costs it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::procfs::field;
pub(crate) use crate::procfs::{cpu_ticks, rss_kb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// Largest HTTP answer read (`/metrics` is a few kB).
const MAX_ANSWER: usize = 1 << 20;

/// A server child process, killed (by its handle, nothing else) when dropped.
#[derive(Debug)]
pub(crate) struct ServerProc {
    child: Child,
    pub(crate) pid: u32,
    addr: std::sync::mpsc::Receiver<String>,
    /// Lines it logged so far, and of them `WARN` or `ERROR` lines.
    pub(crate) log_lines: Arc<AtomicU64>,
    pub(crate) warn_lines: Arc<AtomicU64>,
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProc {
    /// Starts `bin` with `args` (`RUST_LOG=info`), with a thread reading its log for the
    /// whole run so that it never blocks on a full pipe.
    pub(crate) fn spawn(bin: &Path, args: &[String]) -> anyhow::Result<ServerProc> {
        let mut child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let pid = child.id();
        let stderr = child.stderr.take().context("no stderr")?;
        let (tx, addr) = std::sync::mpsc::channel();
        let log_lines: Arc<AtomicU64> = Arc::default();
        let warn_lines: Arc<AtomicU64> = Arc::default();
        let (lines, warns) = (log_lines.clone(), warn_lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.fetch_add(1, Relaxed);
                if line.contains(" WARN ") || line.contains(" ERROR ") {
                    warns.fetch_add(1, Relaxed);
                }
                if let Some(v) = field(&line, "addr") {
                    let _ = tx.send(v.to_owned());
                }
            }
        });
        Ok(ServerProc {
            child,
            pid,
            addr,
            log_lines,
            warn_lines,
        })
    }

    /// The WebSocket address it logged, waiting up to `within`.
    pub(crate) fn addr(&self, within: Duration) -> anyhow::Result<SocketAddr> {
        let addr = self
            .addr
            .recv_timeout(within)
            .context("the server did not log its address")?;
        addr.parse()
            .with_context(|| format!("the server logged addr={addr}"))
    }
}

/// The soft open-file limit of a process, from /proc/PID/limits.
pub(crate) fn nofile_soft(pid: u32) -> anyhow::Result<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .context("no open-file limit")?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()
        .context("no soft limit")?;
    Ok(soft.parse()?)
}

/// Pages of memory the kernel's TCP sockets hold, all of them: the `mem` of the `TCP:` line
/// of /proc/net/sockstat.
pub(crate) fn tcp_mem_pages() -> anyhow::Result<u64> {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat")?;
    sockstat_tcp_mem(&sockstat).context("no TCP mem in /proc/net/sockstat")
}

fn sockstat_tcp_mem(sockstat: &str) -> Option<u64> {
    let line = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == "mem")?;
    words.next()?.parse().ok()
}

/// One HTTP/1.1 GET over a fresh connection from the default source address: the status,
/// the body and how long the whole answer took. `Err` says why there was none in `within`.
pub(crate) async fn http_get(
    server: SocketAddr,
    path: &str,
    within: Duration,
) -> Result<(u16, String, Duration), String> {
    let t0 = Instant::now();
    let exchange = async {
        let mut s = TcpStream::connect(server)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut answer = Vec::new();
        (&mut s)
            .take(MAX_ANSWER as u64)
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                if text.is_empty() {
                    "closed with no answer".to_owned()
                } else {
                    format!("odd answer {:?}", text.chars().take(40).collect::<String>())
                }
            })?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    };
    match timeout(within, exchange).await {
        Ok(Ok((status, body))) => Ok((status, body, t0.elapsed())),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no answer in {:.1} s", within.as_secs_f64())),
    }
}

/// What the sampler reads from `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct Gauges {
    /// `tickwire_connected_clients`: players in rooms.
    pub(crate) connected_clients: u64,
    /// `tickwire_room_sessions`, all kinds: sessions joined or joining.
    pub(crate) room_sessions: u64,
}

/// `/metrics` once: the gauges and the disconnect counters by reason.
pub(crate) async fn scrape(
    server: SocketAddr,
    within: Duration,
) -> anyhow::Result<(Gauges, BTreeMap<String, u64>)> {
    let (status, body, _) = http_get(server, "/metrics", within)
        .await
        .map_err(anyhow::Error::msg)?;
    if status != 200 {
        bail!("/metrics answered {status}");
    }
    Ok(parse_metrics(&body))
}

fn parse_metrics(body: &str) -> (Gauges, BTreeMap<String, u64>) {
    let mut g = Gauges::default();
    let mut disconnects = BTreeMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let v = value.max(0.0) as u64;
        if name == "tickwire_connected_clients" {
            g.connected_clients = v;
        } else if name.starts_with("tickwire_room_sessions{") {
            g.room_sessions += v;
        } else if let Some(reason) = name
            .strip_prefix("tickwire_disconnects_total{reason=\"")
            .and_then(|r| r.strip_suffix("\"}"))
        {
            disconnects.insert(reason.to_owned(), v);
        }
    }
    (g, disconnects)
}

/// `after - before` per reason, the reasons that moved only.
pub(crate) fn counter_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sockstat_and_metrics() {
        let s =
            "sockets: used 153\nTCP: inuse 12 orphan 0 tw 3 alloc 14 mem 7\nUDP: inuse 1 mem 2\n";
        assert_eq!(sockstat_tcp_mem(s), Some(7));
        assert_eq!(sockstat_tcp_mem("TCP: inuse 1\n"), None);
        let m = "# HELP x y\ntickwire_connected_clients 501\n\
                 tickwire_room_sessions{kind=\"arena\"} 500\ntickwire_room_sessions{kind=\"duel\"} 2\n\
                 tickwire_disconnects_total{reason=\"normal\"} 4\n\
                 tickwire_disconnects_total{reason=\"dropped\"} 0\n";
        let (g, d) = parse_metrics(m);
        assert_eq!((g.connected_clients, g.room_sessions), (501, 502));
        assert_eq!(d["normal"], 4);
        let later: BTreeMap<String, u64> =
            [("normal".to_owned(), 9), ("dropped".to_owned(), 0)].into();
        assert_eq!(counter_delta(&d, &later), [("normal".to_owned(), 5)].into());
    }

    #[test]
    fn reads_log_fields_whole_words() {
        let line = "INFO tickwire_server: listening addr=127.0.0.1:4000 quic_addr=x";
        assert_eq!(field(line, "addr"), Some("127.0.0.1:4000"));
        assert_eq!(field("quic_addr=1", "addr"), None);
    }

    #[test]
    fn reads_this_process_from_proc() {
        let me = std::process::id();
        assert!(rss_kb(me).unwrap() > 0);
        assert!(nofile_soft(me).unwrap() > 0);
        cpu_ticks(me).unwrap();
        tcp_mem_pages().unwrap();
    }
}
