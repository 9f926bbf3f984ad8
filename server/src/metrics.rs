//! Server counters, shared by the simulation thread, the connection tasks and `/metrics`.
//!
//! Everything is a relaxed atomic: writers never wait, and `/metrics` reads a slightly torn but
//! always monotonic picture, which is what Prometheus expects.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

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
    /// Messages (WebSocket pings and pongs included) far over the message budget.
    Flooding,
}

impl DisconnectReason {
    const ALL: [DisconnectReason; 18] = [
        Self::Normal,
        Self::Dropped,
        Self::Shutdown,
        Self::ProtocolError,
        Self::TextFrame,
        Self::TooBig,
        Self::AckTimeout,
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
    /// Full (non-delta) snapshots encoded.
    pub full_snapshots: AtomicU64,
    /// Bytes of every binary message written.
    pub bytes_sent: AtomicU64,
    /// Client messages decoded.
    pub inbound_messages: AtomicU64,
    /// Snapshots replaced in a slot before the socket took them.
    pub snapshots_superseded: AtomicU64,
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

    /// The Prometheus text exposition; `kinds` are the rooms and their sessions by game kind.
    pub fn render(&self, tick_budget: Duration, kinds: &[KindCount]) -> String {
        let mut o = String::with_capacity(4096);
        let counter = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            &mut o,
            "tickwire_ticks_total",
            "Simulation ticks run.",
            self.ticks.load(Relaxed),
        );
        counter(
            &mut o,
            "tickwire_tick_overruns_total",
            "Ticks that started a whole tick period or more after their deadline.",
            self.tick_overruns.load(Relaxed),
        );
        counter(
            &mut o,
            "tickwire_snapshots_sent_total",
            "Snapshots written to client sockets.",
            self.snapshots_sent.load(Relaxed),
        );
        counter(
            &mut o,
            "tickwire_full_snapshots_total",
            "Snapshots encoded without a baseline.",
            self.full_snapshots.load(Relaxed),
        );
        counter(
            &mut o,
            "tickwire_snapshots_superseded_total",
            "Snapshots replaced by a newer one before a slow socket took them.",
            self.snapshots_superseded.load(Relaxed),
        );
        counter(
            &mut o,
            "tickwire_bytes_sent_total",
            "Bytes of binary messages written to clients.",
            self.bytes_sent.load(Relaxed),
        );
        counter(
            &mut o,
            "tickwire_inbound_messages_total",
            "Client messages decoded.",
            self.inbound_messages.load(Relaxed),
        );
        counter(
            &mut o,
            "tickwire_inputs_dropped_total",
            "Input messages dropped because the simulation queue was full.",
            self.inputs_dropped.load(Relaxed),
        );
        counter(
            &mut o,
            "tickwire_inputs_rate_limited_total",
            "Input and Ping messages dropped because their client exceeded its message rate.",
            self.inputs_rate_limited.load(Relaxed),
        );
        counter(
            &mut o,
            "tickwire_refused_full_total",
            "Sessions refused at --max-clients (WebSocket upgrades with 503, QUIC connections with CONNECTION_REFUSED).",
            self.refused_full.load(Relaxed),
        );
        counter(
            &mut o,
            "tickwire_http_evicted_total",
            "Connections still in HTTP closed to make room for a newer one at --max-pending-http.",
            self.http_evicted.load(Relaxed),
        );
        counter(
            &mut o,
            "tickwire_http_refused_source_total",
            "Connections closed at accept because their source held --max-pending-per-ip already.",
            self.http_refused_source.load(Relaxed),
        );
        counter(
            &mut o,
            "tickwire_quic_snapshots_on_stream_total",
            "QUIC snapshots sent on a stream because they did not fit the connection's datagram size.",
            self.snapshots_on_stream.load(Relaxed),
        );
        counter(
            &mut o,
            "tickwire_seats_reserved_total",
            "Seats reserved through this node's matchmaking endpoints.",
            self.seats_reserved.load(Relaxed),
        );
        let _ = writeln!(
            o,
            "# HELP tickwire_connected_clients Clients in rooms, all rooms added up.\n\
             # TYPE tickwire_connected_clients gauge\ntickwire_connected_clients {}",
            self.connected_clients.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP tickwire_node_rooms Rooms alive on this node.\n\
             # TYPE tickwire_node_rooms gauge\ntickwire_node_rooms {}",
            self.rooms.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP tickwire_rooms Rooms alive on this node, by game kind.\n\
             # TYPE tickwire_rooms gauge"
        );
        for k in kinds {
            let _ = writeln!(o, "tickwire_rooms{{kind=\"{}\"}} {}", k.kind, k.rooms);
        }
        let _ = writeln!(
            o,
            "# HELP tickwire_room_sessions Sessions in rooms (joined or joining), by game kind.\n\
             # TYPE tickwire_room_sessions gauge"
        );
        for k in kinds {
            let _ = writeln!(
                o,
                "tickwire_room_sessions{{kind=\"{}\"}} {}",
                k.kind, k.sessions
            );
        }
        let _ = writeln!(
            o,
            "# HELP tickwire_tick_budget_seconds The tick period.\n\
             # TYPE tickwire_tick_budget_seconds gauge\ntickwire_tick_budget_seconds {}",
            tick_budget.as_secs_f64()
        );
        let _ = writeln!(
            o,
            "# HELP tickwire_tick_duration_seconds Time spent in one tick (inputs, step, replication).\n\
             # TYPE tickwire_tick_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (b, c) in TICK_BUCKETS.iter().zip(&self.tick_buckets) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(
                o,
                "tickwire_tick_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        let count = self.ticks.load(Relaxed);
        let _ = writeln!(
            o,
            "tickwire_tick_duration_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             tickwire_tick_duration_seconds_sum {}\ntickwire_tick_duration_seconds_count {count}",
            self.tick_sum_ns.load(Relaxed) as f64 / 1e9
        );
        let _ = writeln!(
            o,
            "# HELP tickwire_disconnects_total Connections ended, by reason.\n\
             # TYPE tickwire_disconnects_total counter"
        );
        for (r, c) in DisconnectReason::ALL.iter().zip(&self.disconnects) {
            let _ = writeln!(
                o,
                "tickwire_disconnects_total{{reason=\"{}\"}} {}",
                r.label(),
                c.load(Relaxed)
            );
        }
        o
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
