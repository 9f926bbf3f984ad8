//! Server counters, shared by the simulation thread, the connection tasks and `/metrics`.
//!
//! Everything is a relaxed atomic: writers never wait, and `/metrics` reads a slightly torn but
//! always monotonic picture, which is what Prometheus expects. prometheus-client writes the
//! text at scrape time from those atomics (a [`Collector`]); its own `Family` would take a
//! lock on every labelled bump, which the disconnect counters must not pay.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::render`]'s text: Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the tick-duration histogram buckets.
pub const TICK_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.033, 0.05, 0.1, 0.25,
];

/// Why a connection ended, for `tickwire_disconnects_total{reason=…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent `Leave` or closed normally.
    Normal,
    /// The socket dropped without a close.
    Dropped,
    /// Server shutdown.
    Shutdown,
    /// Undecodable or out-of-protocol message.
    ProtocolError,
    /// A text frame.
    TextFrame,
    /// A frame over the size limit.
    TooBig,
    /// No acknowledgement within the ack timeout.
    AckTimeout,
    /// Acknowledgements stayed older than the snapshot history for too long (4012).
    TooFarBehind,
    /// Wrong protocol version in `Hello`.
    BadVersion,
    /// No `Hello` within the handshake timeout.
    HandshakeTimeout,
    /// A write to the client stalled past the write timeout.
    SlowClient,
    /// Another connection resumed the player.
    Replaced,
    /// `Hello` had no seat token and there is no default room.
    SeatMissing,
    /// The seat token had expired.
    SeatExpired,
    /// The seat token was unknown, used already, or malformed.
    SeatInvalid,
    /// The seat belongs to a room on another node.
    SeatForeign,
    /// The room is full, locked or gone.
    RoomUnavailable,
    /// The room directory (Redis) could not be reached to check the seat.
    DirectoryUnavailable,
    /// The signed player token was missing, expired, invalid or for another room.
    TokenRefused,
    /// Messages (WebSocket pings and pongs included) far over the message budget.
    Flooding,
}

impl DisconnectReason {
    const ALL: [DisconnectReason; 20] = [
        Self::Normal,
        Self::Dropped,
        Self::Shutdown,
        Self::ProtocolError,
        Self::TextFrame,
        Self::TooBig,
        Self::AckTimeout,
        Self::TooFarBehind,
        Self::BadVersion,
        Self::HandshakeTimeout,
        Self::SlowClient,
        Self::Replaced,
        Self::SeatMissing,
        Self::SeatExpired,
        Self::SeatInvalid,
        Self::SeatForeign,
        Self::RoomUnavailable,
        Self::DirectoryUnavailable,
        Self::TokenRefused,
        Self::Flooding,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Dropped => "dropped",
            Self::Shutdown => "shutdown",
            Self::ProtocolError => "protocol_error",
            Self::TextFrame => "text_frame",
            Self::TooBig => "too_big",
            Self::AckTimeout => "ack_timeout",
            Self::TooFarBehind => "too_far_behind",
            Self::BadVersion => "bad_version",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::SlowClient => "slow_client",
            Self::Replaced => "replaced",
            Self::SeatMissing => "seat_missing",
            Self::SeatExpired => "seat_expired",
            Self::SeatInvalid => "seat_invalid",
            Self::SeatForeign => "seat_foreign",
            Self::RoomUnavailable => "room_unavailable",
            Self::DirectoryUnavailable => "directory_unavailable",
            Self::TokenRefused => "token_refused",
            Self::Flooding => "flooding",
        }
    }
}

/// Rooms and sessions of one game kind, for the `kind`-labelled gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindCount {
    /// The registered kind's name.
    pub kind: String,
    /// Rooms of that kind alive.
    pub rooms: u64,
    /// Sessions in them.
    pub sessions: u64,
}

/// All server counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Ticks run.
    pub ticks: AtomicU64,
    /// Ticks that started a period or more late.
    pub tick_overruns: AtomicU64,
    tick_buckets: [AtomicU64; TICK_BUCKETS.len()],
    tick_sum_ns: AtomicU64,
    /// Clients in rooms (every room's players added up).
    pub connected_clients: AtomicU64,
    /// Rooms alive on this node.
    pub rooms: AtomicU64,
    /// Sessions open, WebSocket and QUIC together (including ones still in the handshake).
    pub open_sessions: AtomicU64,
    /// Snapshots written to sockets.
    pub snapshots_sent: AtomicU64,
    /// Of those, snapshots the simulation wrote to the socket itself ([`crate::wire`]).
    pub snapshots_direct: AtomicU64,
    /// Of those, snapshots the socket took only in part: the connection task wrote the rest.
    pub snapshots_direct_partial: AtomicU64,
    /// Full (non-delta) snapshots encoded.
    pub full_snapshots: AtomicU64,
    /// Bytes of every binary message written.
    pub bytes_sent: AtomicU64,
    /// Client messages decoded.
    pub inbound_messages: AtomicU64,
    /// Of those, inputs the simulation read from a socket itself ([`crate::wire`]).
    pub inbound_direct: AtomicU64,
    /// Snapshots replaced in a slot before the socket took them.
    pub snapshots_superseded: AtomicU64,
    /// Budgeted snapshots not encoded, because the socket had not yet taken the one before.
    pub snapshots_deferred: AtomicU64,
    /// Input messages dropped because the simulation's queue was full.
    pub inputs_dropped: AtomicU64,
    /// Input and Ping messages dropped because their client exceeded its message rate.
    pub inputs_rate_limited: AtomicU64,
    /// TCP connections still in their HTTP request or answer.
    pub http_pending: AtomicU64,
    /// Connections in HTTP closed to make room for a newer one (`--max-pending-http`).
    pub http_evicted: AtomicU64,
    /// Connections closed at accept: their source held `--max-pending-per-ip` already.
    pub http_refused_source: AtomicU64,
    /// Upgrades refused with 503 (and QUIC connections refused) at `--max-clients`.
    pub refused_full: AtomicU64,
    /// Snapshots sent on a QUIC stream because they did not fit a datagram.
    pub snapshots_on_stream: AtomicU64,
    /// Seats matchmaking reserved on this node's HTTP endpoint.
    pub seats_reserved: AtomicU64,
    disconnects: [AtomicU64; DisconnectReason::ALL.len()],
}

impl Metrics {
    /// Records one tick's duration.
    pub fn record_tick(&self, d: Duration) {
        self.ticks.fetch_add(1, Relaxed);
        self.tick_sum_ns.fetch_add(d.as_nanos() as u64, Relaxed);
        let s = d.as_secs_f64();
        if let Some(i) = TICK_BUCKETS.iter().position(|b| s <= *b) {
            self.tick_buckets[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts a disconnect.
    pub fn disconnect(&self, why: DisconnectReason) {
        if let Some(i) = DisconnectReason::ALL.iter().position(|r| *r == why) {
            self.disconnects[i].fetch_add(1, Relaxed);
        }
    }

    /// Disconnects so far for one reason.
    pub fn disconnects(&self, why: DisconnectReason) -> u64 {
        DisconnectReason::ALL
            .iter()
            .position(|r| *r == why)
            .map_or(0, |i| self.disconnects[i].load(Relaxed))
    }

    /// The Prometheus text exposition (format 0.0.4, served as [`CONTENT_TYPE`]); `kinds` are
    /// the rooms and their sessions by game kind.
    pub fn render(&self, tick_budget: Duration, kinds: &[KindCount]) -> String {
        // A registry per scrape: the kind counts and the tick budget are the caller's, and a
        // collector must own what it encodes. A scrape every few seconds pays a few small
        // allocations; the hot path pays nothing.
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape::read(self, tick_budget, kinds)));
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail, and `Scrape::encode` fails only when the writer does.
        let _ = prometheus_text::encode(&mut out, &registry);
        out
    }
}

/// The unlabelled counters, in exposition order: the name without `_total` (the encoder
/// appends it to counters), the help, and the atomic behind it.
type CounterField = (&'static str, &'static str, fn(&Metrics) -> &AtomicU64);
const COUNTERS: [CounterField; 18] = [
    ("tickwire_ticks", "Simulation ticks run.", |m| &m.ticks),
    (
        "tickwire_tick_overruns",
        "Ticks that started a whole tick period or more after their deadline.",
        |m| &m.tick_overruns,
    ),
    (
        "tickwire_snapshots_sent",
        "Snapshots written to client sockets.",
        |m| &m.snapshots_sent,
    ),
    (
        "tickwire_snapshots_direct",
        "Snapshots the simulation wrote to a plain-TCP WebSocket itself, without waking its connection task.",
        |m| &m.snapshots_direct,
    ),
    (
        "tickwire_snapshots_direct_partial",
        "Direct snapshots the socket took only in part (a client reading slowly); its connection task wrote the rest.",
        |m| &m.snapshots_direct_partial,
    ),
    (
        "tickwire_full_snapshots",
        "Snapshots encoded without a baseline.",
        |m| &m.full_snapshots,
    ),
    (
        "tickwire_snapshots_superseded",
        "Snapshots replaced by a newer one before a slow socket took them.",
        |m| &m.snapshots_superseded,
    ),
    (
        "tickwire_snapshots_deferred",
        "Budgeted snapshots not encoded because a slow socket had not taken the one before.",
        |m| &m.snapshots_deferred,
    ),
    (
        "tickwire_bytes_sent",
        "Bytes of binary messages written to clients.",
        |m| &m.bytes_sent,
    ),
    (
        "tickwire_inbound_messages",
        "Client messages decoded.",
        |m| &m.inbound_messages,
    ),
    (
        "tickwire_inbound_direct",
        "Input messages the simulation read from a plain-TCP WebSocket itself, without waking its connection task.",
        |m| &m.inbound_direct,
    ),
    (
        "tickwire_inputs_dropped",
        "Input messages dropped because the simulation queue was full.",
        |m| &m.inputs_dropped,
    ),
    (
        "tickwire_inputs_rate_limited",
        "Input and Ping messages dropped because their client exceeded its message rate.",
        |m| &m.inputs_rate_limited,
    ),
    (
        "tickwire_refused_full",
        "Sessions refused at --max-clients (WebSocket upgrades with 503, QUIC connections with CONNECTION_REFUSED).",
        |m| &m.refused_full,
    ),
    (
        "tickwire_http_evicted",
        "Connections still in HTTP closed to make room for a newer one at --max-pending-http.",
        |m| &m.http_evicted,
    ),
    (
        "tickwire_http_refused_source",
        "Connections closed at accept because their source held --max-pending-per-ip already.",
        |m| &m.http_refused_source,
    ),
    (
        "tickwire_quic_snapshots_on_stream",
        "QUIC snapshots sent on a stream because they did not fit the connection's datagram size.",
        |m| &m.snapshots_on_stream,
    ),
    (
        "tickwire_seats_reserved",
        "Seats reserved through this node's matchmaking endpoints.",
        |m| &m.seats_reserved,
    ),
];

/// One scrape's values, read from the atomics once and then encoded by prometheus-client.
#[derive(Debug)]
struct Scrape {
    counters: [u64; COUNTERS.len()],
    connected_clients: u64,
    node_rooms: u64,
    kinds: Vec<KindCount>,
    tick_budget_secs: f64,
    /// Per bucket, not cumulative: the encoder adds them up.
    tick_buckets: [(f64, u64); TICK_BUCKETS.len()],
    tick_sum_secs: f64,
    tick_count: u64,
    disconnects: [u64; DisconnectReason::ALL.len()],
}

impl Scrape {
    fn read(m: &Metrics, tick_budget: Duration, kinds: &[KindCount]) -> Self {
        let tick_buckets =
            std::array::from_fn(|i| (TICK_BUCKETS[i], m.tick_buckets[i].load(Relaxed)));
        let in_buckets: u64 = tick_buckets.iter().map(|(_, c)| c).sum();
        Self {
            counters: COUNTERS.map(|(_, _, field)| field(m).load(Relaxed)),
            connected_clients: m.connected_clients.load(Relaxed),
            node_rooms: m.rooms.load(Relaxed),
            kinds: kinds.to_vec(),
            tick_budget_secs: tick_budget.as_secs_f64(),
            tick_buckets,
            tick_sum_secs: m.tick_sum_ns.load(Relaxed) as f64 / 1e9,
            // `record_tick` bumps `ticks` before the bucket, but relaxed loads may still see
            // the bucket first: never let `le="+Inf"` fall below a finite bucket.
            tick_count: m.ticks.load(Relaxed).max(in_buckets),
            disconnects: std::array::from_fn(|i| m.disconnects[i].load(Relaxed)),
        }
    }
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        for ((name, help, _), v) in COUNTERS.iter().zip(self.counters) {
            let m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(v).encode(m)?;
        }
        let m = e.encode_descriptor(
            "tickwire_connected_clients",
            "Clients in rooms, all rooms added up.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.connected_clients).encode(m)?;
        let m = e.encode_descriptor(
            "tickwire_node_rooms",
            "Rooms alive on this node.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.node_rooms).encode(m)?;
        let mut m = e.encode_descriptor(
            "tickwire_rooms",
            "Rooms alive on this node, by game kind.",
            None,
            MetricType::Gauge,
        )?;
        for k in &self.kinds {
            ConstGauge::new(k.rooms).encode(m.encode_family(&[("kind", k.kind.as_str())])?)?;
        }
        let mut m = e.encode_descriptor(
            "tickwire_room_sessions",
            "Sessions in rooms (joined or joining), by game kind.",
            None,
            MetricType::Gauge,
        )?;
        for k in &self.kinds {
            ConstGauge::new(k.sessions).encode(m.encode_family(&[("kind", k.kind.as_str())])?)?;
        }
        let m = e.encode_descriptor(
            "tickwire_tick_budget",
            "The tick period.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.tick_budget_secs).encode(m)?;
        let mut m = e.encode_descriptor(
            "tickwire_tick_duration",
            "Time spent in one tick (inputs, step, replication).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        m.encode_histogram::<NoLabelSet>(
            self.tick_sum_secs,
            self.tick_count,
            &self.tick_buckets,
            None,
        )?;
        let mut m = e.encode_descriptor(
            "tickwire_disconnects",
            "Connections ended, by reason.",
            None,
            MetricType::Counter,
        )?;
        for (r, v) in DisconnectReason::ALL.iter().zip(self.disconnects) {
            ConstCounter::new(v).encode(m.encode_family(&[("reason", r.label())])?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.record_tick(Duration::from_micros(700));
        m.record_tick(Duration::from_millis(40));
        m.disconnect(DisconnectReason::TooBig);
        let kinds = [KindCount {
            kind: "arena".into(),
            rooms: 3,
            sessions: 17,
        }];
        let text = m.render(Duration::from_millis(33), &kinds);
        assert!(text.contains("tickwire_rooms{kind=\"arena\"} 3"));
        assert!(text.contains("tickwire_room_sessions{kind=\"arena\"} 17"));
        assert!(text.contains("tickwire_tick_duration_seconds_bucket{le=\"0.001\"} 1"));
        assert!(text.contains("tickwire_tick_duration_seconds_bucket{le=\"0.05\"} 2"));
        assert!(text.contains("tickwire_tick_duration_seconds_count 2"));
        assert!(text.contains("tickwire_disconnects_total{reason=\"too_big\"} 1"));
        assert_eq!(m.disconnects(DisconnectReason::TooBig), 1);
    }
}
