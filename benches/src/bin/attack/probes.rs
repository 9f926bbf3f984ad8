//! What a newcomer and a load balancer see while an attack runs (and, for comparison, while
//! none does): fresh players joining from the players' address, `/healthz` once a second,
//! and the once-a-second sampler of the server's RSS, the kernel's TCP memory and the
//! server's gauges.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tickwire_bot_client::Client;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, sleep_until, timeout};

use super::modes::{Spread, spread};
use super::proc::{Gauges, http_get, rss_kb, scrape, tcp_mem_pages};

/// A fresh player joining within this is "in".
pub(crate) const JOIN_TARGET: Duration = Duration::from_secs(2);

/// How long one `/healthz` may take.
const HEALTHZ_WAIT: Duration = Duration::from_secs(2);

/// One fresh player's attempt.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Join {
    /// Seconds into the phase's measured part when it started.
    pub(crate) at_s: f64,
    /// Connect to Welcome, ms (`None`: no Welcome).
    pub(crate) join_ms: Option<f64>,
    /// Why not.
    pub(crate) error: Option<String>,
}

/// Fresh players and health probes of one phase.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct Probes {
    pub(crate) fresh_tried: usize,
    pub(crate) fresh_joined: usize,
    /// Joined within [`JOIN_TARGET`].
    pub(crate) fresh_joined_in_2s: usize,
    pub(crate) fresh: Vec<Join>,
    pub(crate) healthz_tried: usize,
    pub(crate) healthz_answered: usize,
    /// Latency of the answered ones, ms.
    pub(crate) healthz_ms: Spread,
    /// The first failure's reason.
    pub(crate) healthz_error: Option<String>,
}

/// `fresh` players spaced evenly over `[start, end - wait]` (each waits up to `wait` for its
/// Welcome, then leaves), and `/healthz` once a second until `end`.
pub(crate) async fn run(
    url: &str,
    server: SocketAddr,
    from: IpAddr,
    fresh: usize,
    wait: Duration,
    start: Instant,
    end: Instant,
) -> Probes {
    let window = (end - start).saturating_sub(wait).max((end - start) / 2);
    let mut joins = JoinSet::new();
    for i in 0..fresh {
        let at = start + window.mul_f64((i as f64 + 0.5) / fresh as f64);
        let url = url.to_owned();
        joins.spawn(async move {
            sleep_until(at).await;
            let t0 = Instant::now();
            let r = Client::connect(&url, &format!("fresh{i}"), Some(from), wait).await;
            let mut j = Join {
                at_s: (at - start).as_secs_f64(),
                join_ms: None,
                error: None,
            };
            match r {
                Ok(mut c) => {
                    j.join_ms = Some(t0.elapsed().as_secs_f64() * 1000.0);
                    let _ = timeout(Duration::from_secs(1), async {
                        let _ = c.leave().await;
                        c.close().await;
                    })
                    .await;
                }
                Err(e) => j.error = Some(e.to_string()),
            }
            j
        });
    }
    let health = async {
        let mut answered = Vec::new();
        let (mut tried, mut first_error) = (0, None);
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = sleep_until(end) => break,
                _ = every.tick() => {}
            }
            if Instant::now() + HEALTHZ_WAIT > end + Duration::from_secs(1) {
                break;
            }
            tried += 1;
            match http_get(server, "/healthz", HEALTHZ_WAIT).await {
                Ok((200, _, d)) => answered.push(d.as_secs_f64() * 1000.0),
                Ok((status, _, _)) => {
                    first_error.get_or_insert(format!("answered {status}"));
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        (tried, answered, first_error)
    };
    let joined = async {
        let mut v = Vec::new();
        while let Some(r) = joins.join_next().await {
            if let Ok(j) = r {
                v.push(j);
            }
        }
        v.sort_by(|a: &Join, b: &Join| a.at_s.total_cmp(&b.at_s));
        v
    };
    let ((tried, answered, healthz_error), fresh_joins) = tokio::join!(health, joined);
    let ok: Vec<f64> = fresh_joins.iter().filter_map(|j| j.join_ms).collect();
    Probes {
        fresh_tried: fresh_joins.len(),
        fresh_joined: ok.len(),
        fresh_joined_in_2s: ok
            .iter()
            .filter(|&&ms| ms <= JOIN_TARGET.as_secs_f64() * 1000.0)
            .count(),
        fresh: fresh_joins,
        healthz_tried: tried,
        healthz_answered: answered.len(),
        healthz_ms: spread(answered),
        healthz_error,
    }
}

/// One sample of the server from outside.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Sample {
    /// Seconds since the first sample.
    pub(crate) t_s: f64,
    /// `baseline`, `attack`, `settle` (after the attack, no bystanders) or `between`.
    pub(crate) phase: &'static str,
    pub(crate) rss_mb: f64,
    pub(crate) tcp_mem_pages: u64,
    /// `None`: `/metrics` did not answer within a second.
    pub(crate) gauges: Option<Gauges>,
}

/// Samples once a second, labelled with whatever phase is current, until stopped.
#[derive(Debug)]
pub(crate) struct Sampler {
    phase: Arc<Mutex<&'static str>>,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    pub(crate) fn start(pid: u32, server: SocketAddr) -> Sampler {
        let phase = Arc::new(Mutex::new("between"));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (ph, out) = (phase.clone(), samples.clone());
        let task = tokio::spawn(async move {
            let t0 = Instant::now();
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = every.tick() => {}
                }
                let phase = *ph.lock().unwrap_or_else(PoisonError::into_inner);
                let gauges = scrape(server, Duration::from_secs(1))
                    .await
                    .ok()
                    .map(|g| g.0);
                let s = Sample {
                    t_s: t0.elapsed().as_secs_f64(),
                    phase,
                    rss_mb: rss_kb(pid).unwrap_or(0) as f64 / 1024.0,
                    tcp_mem_pages: tcp_mem_pages().unwrap_or(0),
                    gauges,
                };
                out.lock().unwrap_or_else(PoisonError::into_inner).push(s);
            }
        });
        Sampler {
            phase,
            samples,
            stop,
            task,
        }
    }

    /// Labels the samples from now on.
    pub(crate) fn phase(&self, phase: &'static str) {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase;
    }

    /// Stops and returns every sample.
    pub(crate) async fn finish(self) -> Vec<Sample> {
        let _ = self.stop.send(true);
        let _ = timeout(Duration::from_secs(5), self.task).await;
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The samples so far of `phase`.
    pub(crate) fn of(&self, phase: &str) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|s| s.phase == phase)
            .cloned()
            .collect()
    }
}
