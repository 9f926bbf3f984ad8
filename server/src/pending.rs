//! Connections still in HTTP (accepted, not yet a WebSocket session): the table that bounds
//! them, the way nginx and HAProxy bound theirs.
//!
//! A slowloris client opens many sockets and trickles each request head a byte at a time, so
//! that every connection slot is held by a socket that will never finish. Three limits keep
//! such sockets from locking players and health checks out:
//!
//! - the whole head has one deadline (`--handshake-timeout`, not per byte);
//! - each source address (an IPv4 address, an IPv6 /64) may hold at most
//!   `--max-pending-per-ip` connections in HTTP; past that a new one is closed at once;
//! - when the table holds `--max-pending-http` connections, a newcomer is never refused:
//!   the oldest connection that has sent part of a request head and not the rest (or sits
//!   idle between keep-alive requests) is closed instead; failing that the oldest one that
//!   has sent nothing yet, and only when every one is busy with a request, the oldest of
//!   those. A trickling socket is the oldest sooner or later; a player's connection sends its
//!   head in one packet and is busy with it from its first read.
//!
//! The accept path is not hot at game-tick scale: one short lock per accept and per request.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// Default for `--max-pending-http`.
pub const DEFAULT_MAX_PENDING: usize = 1024;

/// Default for `--max-pending-per-ip`.
pub const DEFAULT_MAX_PENDING_PER_SOURCE: usize = 64;

/// Where a connection comes from, for the per-source cap: an IPv4 address, or the /64 of an
/// IPv6 one (one subscriber's network; an IPv4-mapped IPv6 address counts as the IPv4 one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// An IPv4 address.
    V4(u32),
    /// The top 64 bits of an IPv6 address.
    V6(u64),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(a) => Source::V4(a.into()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.into()),
                None => Source::V6((u128::from(a) >> 64) as u64),
            },
        }
    }
}

/// The table of connections still in HTTP.
#[derive(Debug)]
pub struct PendingTable {
    inner: Mutex<Inner>,
    max: usize,
    max_per_source: usize,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    /// Every pending connection by id; ids grow with accept order, so the first is the oldest.
    conns: BTreeMap<u64, Entry>,
    /// The ids of those that have sent part of a request head and not the rest, or are idle
    /// between keep-alive requests (evicted first).
    waiting: BTreeSet<u64>,
    /// The ids of those that have sent nothing yet (evicted next: most were accepted a moment
    /// ago, and their head is on its way).
    fresh: BTreeSet<u64>,
    per_source: HashMap<Source, usize>,
    /// Sources closed for flooding, and until when their new connections are refused.
    penalized: HashMap<Source, Instant>,
}

#[derive(Debug)]
struct Entry {
    source: Source,
    /// Sending on it closes the connection.
    evict: oneshot::Sender<()>,
}

/// A new connection was let in, or why not.
#[derive(Debug)]
pub enum Admission {
    /// In the table: `evicted` completes (with `Ok`) if the table closes it to make room.
    Admitted {
        /// The connection's place; leaving the table when dropped.
        guard: PendingGuard,
        /// Fires when this connection is evicted.
        evicted: oneshot::Receiver<()>,
    },
    /// Its source already holds its share: close it.
    SourceFull,
    /// Its source was closed for flooding a moment ago (`--flood-penalty`): close it.
    Penalized,
}

/// Most sources remembered as penalized at once; past it the oldest penalty is forgotten
/// early (so an attacker with many addresses costs this table a bounded size).
pub const MAX_PENALIZED: usize = 4096;

impl PendingTable {
    /// A table of at most `max` connections, `max_per_source` per source (0: no such cap).
    pub fn new(max: usize, max_per_source: usize, metrics: Arc<Metrics>) -> PendingTable {
        PendingTable {
            inner: Mutex::new(Inner::default()),
            max: max.max(1),
            max_per_source,
            metrics,
        }
    }

    /// Refuses new connections from `ip`'s source until `until` (it was closed for flooding).
    pub fn penalize(&self, ip: IpAddr, until: Instant) {
        let mut t = self.lock();
        if t.penalized.len() >= MAX_PENALIZED {
            let now = Instant::now();
            t.penalized.retain(|_, u| *u > now);
            if t.penalized.len() >= MAX_PENALIZED
                && let Some(first) = t.penalized.iter().min_by_key(|(_, u)| **u).map(|(s, _)| *s)
            {
                t.penalized.remove(&first);
            }
        }
        t.penalized.insert(Source::from(ip), until);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing under the lock panics; a poisoned table is still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a place for a connection from `ip`, closing the oldest waiting connection when
    /// the table is full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Admission {
        let source = Source::from(ip);
        let mut t = self.lock();
        if let Some(&until) = t.penalized.get(&source) {
            if Instant::now() < until {
                return Admission::Penalized;
            }
            t.penalized.remove(&source);
        }
        let held = t.per_source.get(&source).copied().unwrap_or(0);
        if self.max_per_source > 0 && held >= self.max_per_source {
            return Admission::SourceFull;
        }
        while t.conns.len() >= self.max {
            let oldest = t.waiting.first().or(t.fresh.first());
            let Some(&victim) = oldest.or(t.conns.keys().next()) else {
                break;
            };
            if let Some(e) = t.remove(victim) {
                // The connection may be finishing on its own already; then nobody listens.
                let _ = e.evict.send(());
                self.metrics.http_evicted.fetch_add(1, Relaxed);
            }
        }
        let id = t.next;
        t.next += 1;
        let (tx, evicted) = oneshot::channel();
        t.conns.insert(id, Entry { source, evict: tx });
        t.fresh.insert(id);
        *t.per_source.entry(source).or_insert(0) += 1;
        self.metrics
            .http_pending
            .store(t.conns.len() as u64, Relaxed);
        drop(t);
        Admission::Admitted {
            guard: PendingGuard {
                table: self.clone(),
                id,
                ip,
            },
            evicted,
        }
    }

    /// Whether admitting a connection now would close one that has sent nothing yet (the
    /// table is full and nobody in it is known to be slow): the accept loop then lets the
    /// connection tasks run first, so that a burst of accepts cannot push out a player's
    /// connection before its head, already in the socket, was read.
    pub fn would_evict_unserved(&self) -> bool {
        let t = self.lock();
        t.conns.len() >= self.max && t.waiting.is_empty() && !t.fresh.is_empty()
    }

    /// Connections in the table now.
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn set_waiting(&self, id: u64, waiting: bool) {
        let mut t = self.lock();
        if !t.conns.contains_key(&id) {
            return;
        }
        t.fresh.remove(&id);
        if waiting {
            t.waiting.insert(id);
        } else {
            t.waiting.remove(&id);
        }
    }

    fn leave(&self, id: u64) {
        let mut t = self.lock();
        // Dropping the entry's sender tells its receiver "not evicted".
        drop(t.remove(id));
        self.metrics
            .http_pending
            .store(t.conns.len() as u64, Relaxed);
    }
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.conns.remove(&id)?;
        self.waiting.remove(&id);
        self.fresh.remove(&id);
        if let Some(n) = self.per_source.get_mut(&e.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&e.source);
            }
        }
        Some(e)
    }
}

/// One connection's place in the [`PendingTable`]; it leaves the table when dropped.
#[derive(Debug)]
pub struct PendingGuard {
    table: Arc<PendingTable>,
    id: u64,
    ip: IpAddr,
}

impl PendingGuard {
    /// The connection's peer address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Part of a request head has come, not the rest (or the TLS handshake is done and the
    /// head has not come): evicted first.
    pub fn waiting(&self) {
        self.table.set_waiting(self.id, true);
    }

    /// A whole request head is in hand and being answered: evicted only after every
    /// connection still waiting for one.
    pub fn busy(&self) {
        self.table.set_waiting(self.id, false);
    }

    /// Waiting for the next request head (keep-alive): evicted first again.
    pub fn idle(&self) {
        self.table.set_waiting(self.id, true);
    }

    /// Leaves the table now (the connection became a WebSocket session).
    pub fn leave(&self) {
        self.table.leave(self.id);
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.table.leave(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max: usize, per_source: usize) -> Arc<PendingTable> {
        Arc::new(PendingTable::new(
            max,
            per_source,
            Arc::new(Metrics::default()),
        ))
    }

    fn admit(t: &Arc<PendingTable>, ip: &str) -> (PendingGuard, oneshot::Receiver<()>) {
        match t.admit(ip.parse().unwrap()) {
            Admission::Admitted { guard, evicted } => (guard, evicted),
            Admission::SourceFull | Admission::Penalized => panic!("{ip} refused"),
        }
    }

    #[test]
    fn a_penalized_source_is_refused_until_its_penalty_ends() {
        let t = table(8, 0);
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        t.penalize(ip, Instant::now() + std::time::Duration::from_millis(200));
        assert!(matches!(t.admit(ip), Admission::Penalized));
        // Another source is not.
        let (_g, _) = admit(&t, "10.0.0.10");
        std::thread::sleep(std::time::Duration::from_millis(250));
        let (_h, _) = admit(&t, "10.0.0.9");
        // The table of penalties stays bounded.
        for i in 0..(MAX_PENALIZED as u32 + 10) {
            t.penalize(
                IpAddr::from(i.to_be_bytes()),
                Instant::now() + std::time::Duration::from_secs(60),
            );
        }
        assert!(t.lock().penalized.len() <= MAX_PENALIZED);
    }

    #[test]
    fn a_full_table_evicts_the_oldest_waiting_connection() {
        let t = table(3, 0);
        let (a, mut a_ev) = admit(&t, "10.0.0.1");
        let (b, mut b_ev) = admit(&t, "10.0.0.2");
        let (c, mut c_ev) = admit(&t, "10.0.0.3");
        // `a` has its head and is being answered, `b` and `c` wait for theirs: `b` goes.
        a.busy();
        b.waiting();
        c.waiting();
        let (d, mut d_ev) = admit(&t, "10.0.0.4");
        assert_eq!(b_ev.try_recv(), Ok(()));
        assert!(a_ev.try_recv().is_err());
        assert!(c_ev.try_recv().is_err());
        assert_eq!(t.len(), 3);
        drop(b);
        assert_eq!(t.len(), 3);
        // A served slow one goes before one not served yet (`d`).
        let (_e, _) = admit(&t, "10.0.0.5");
        assert_eq!(c_ev.try_recv(), Ok(()));
        assert!(d_ev.try_recv().is_err());
        // Then the oldest not served yet.
        let (_f, _) = admit(&t, "10.0.0.6");
        assert_eq!(d_ev.try_recv(), Ok(()));
        drop(d);
        // Nobody waiting: the oldest busy one goes.
        let t = table(1, 0);
        let (x, mut x_ev) = admit(&t, "10.0.0.1");
        x.busy();
        let _y = admit(&t, "10.0.0.1");
        assert_eq!(x_ev.try_recv(), Ok(()));
    }

    #[test]
    fn leaving_is_not_an_eviction_and_frees_the_place() {
        let t = table(2, 0);
        let (a, mut a_ev) = admit(&t, "10.0.0.1");
        a.leave();
        assert_eq!(t.len(), 0);
        assert!(matches!(
            a_ev.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
        a.busy();
        a.idle();
        drop(a);
        assert!(t.is_empty());
    }

    #[test]
    fn each_source_has_a_cap_and_ipv6_counts_by_64() {
        let t = table(100, 2);
        let _a = admit(&t, "10.0.0.1");
        let b = admit(&t, "::ffff:10.0.0.1");
        assert!(matches!(
            t.admit("10.0.0.1".parse().unwrap()),
            Admission::SourceFull
        ));
        let _c = admit(&t, "10.0.0.2");
        drop(b);
        let _d = admit(&t, "10.0.0.1");
        let _e = admit(&t, "2001:db8:0:1::1");
        let _f = admit(&t, "2001:db8:0:1:ffff::2");
        assert!(matches!(
            t.admit("2001:db8:0:1::3".parse().unwrap()),
            Admission::SourceFull
        ));
        let _g = admit(&t, "2001:db8:0:2::1");
    }
}
