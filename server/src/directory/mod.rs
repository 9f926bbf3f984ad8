//! The room directory: seat reservations, the fleet-wide room listing and node leases.
//!
//! The HTTP matchmaking handlers call [`Directory::join_or_create`], [`Directory::create`],
//! [`Directory::join`] and [`Directory::rooms`]; the node that owns a room calls
//! [`Directory::claim`] when a client's Hello carries a seat token,
//! [`Directory::heartbeat`] about once a second (and right after a change),
//! [`Directory::try_remove_room`] before disposing a room and [`Directory::deregister`] on a
//! graceful shutdown. Two implementations: [`LocalDirectory`] (one node, in process, a std
//! mutex) and [`RedisDirectory`] (a fleet sharing one Redis; every operation is one Lua
//! script, so check-and-reserve is atomic across nodes). The Redis schema is documented in
//! [`redis`](self::redis).
//!
//! # Occupancy
//!
//! A room's occupancy is the sum of what its owner last reported (`clients`: its sessions in
//! the room), the claims the directory processed since that report, and the live (unexpired)
//! reserved seats. A seat is reserved only if occupancy < `max_clients`. Nothing is counted twice and nothing
//! is missed, so rooms fill exactly to `max_clients`.
//!
//! ## Why a report never makes a room look emptier (or fuller) than it is
//!
//! The owner numbers its claims 1, 2, 3, … and passes the number to [`Directory::claim`]. It
//! never claims while it reads its rooms for a heartbeat and sends them (the server's claim
//! gate: claims hold it shared, from the claim until the session is counted locally; a
//! heartbeat holds it exclusively), and passes the number of its last claim with the report.
//! So a report includes every claim up to that number and none after it. On a report the
//! directory sets `clients` and clears the room's claim count, unless the room has a claim
//! numbered after the report (a report delayed past its caller's timeout and applied late):
//! then it leaves both alone, and the next report sets them. A claim increments the count and
//! records its number. In Redis the numbers are kept per owner process (an epoch drawn at
//! start), so a restarted node with the same id is not mistaken for a delayed report.
//!
//! # Seat tokens
//!
//! `ROOM.EXPIRY.SECRET`: the room id, the expiry in the directory's clock (milliseconds:
//! Redis `TIME` for the Redis directory, time since creation for the local one) and 26
//! base32 characters (130 bits) of secret. ASCII, at most 92 bytes. The authoritative record
//! is in the directory (keyed by the secret); the embedded expiry only tells an unknown
//! token that has expired ([`ClaimError::Expired`]) from one that never existed or was used
//! ([`ClaimError::Invalid`]), so a forged expiry can only change which refusal the forger
//! gets.
//!
//! Randomness: the server has no direct dependency on an OS random source, so secrets and
//! room ids come from `std::hash::RandomState` (SipHash keyed with 128 bits the standard
//! library draws from the OS once per thread), hashing a process-wide counter and the time,
//! as the resume tokens in [`sim`](crate::sim) do. Two independently keyed hashers give 128
//! bits per draw; nobody without the keys can predict them.

mod local;
pub mod redis;

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub use local::LocalDirectory;
pub use redis::RedisDirectory;

/// Default seat lifetime.
pub const DEFAULT_SEAT_TTL: Duration = Duration::from_secs(15);
/// Default node lease.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3);
/// How long past its expiry a seat (and a pending room) is remembered, so a late claim is
/// told [`ClaimError::Expired`] rather than [`ClaimError::Invalid`] and a room is not
/// forgotten while its last seat can still be claimed.
pub(crate) const SLACK: Duration = Duration::from_secs(5);
/// Longest room id accepted from the caller (rooms the owner names itself, e.g. a default
/// room); generated ids are [`ROOM_ID_LEN`] characters.
pub const MAX_ROOM_ID_LEN: usize = 48;
/// Length of generated room ids (base32, 50 random bits).
pub const ROOM_ID_LEN: usize = 10;
const SECRET_LEN: usize = 26;

/// How to reach a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Unique in the fleet.
    pub node_id: String,
    /// `ws://host:port/ws` (or `wss://`).
    pub ws_url: String,
    /// `quic://host:port`, when the node serves QUIC.
    pub quic_url: Option<String>,
}

/// A room as its owner reports it in [`Directory::heartbeat`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRoom {
    /// The room id.
    pub room_id: String,
    /// The game kind ("arena").
    pub kind: String,
    /// Seats in the room.
    pub max_clients: u32,
    /// Connected players plus claims in flight.
    pub clients: u32,
    /// A locked room takes nobody new.
    pub locked: bool,
    /// `false` for rooms (the permanent default room) that are listed but never chosen by
    /// [`Directory::join_or_create`].
    pub matchmaking: bool,
}

/// One entry of `GET /rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomInfo {
    /// The room id.
    pub room_id: String,
    /// The game kind.
    pub kind: String,
    /// Seats taken: connected, being claimed or reserved (the occupancy matchmaking uses,
    /// at most `max_clients`).
    pub clients: u32,
    /// Seats in the room.
    pub max_clients: u32,
    /// The owner's node id.
    pub node: String,
    /// Whether the room is locked.
    pub locked: bool,
}

/// A reserved seat.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    /// The room.
    pub room_id: String,
    /// The node to connect to.
    pub node: NodeInfo,
    /// What the client presents in its Hello.
    pub seat_token: String,
    /// Seconds the seat stays reserved.
    pub expires_in_s: f64,
}

/// What the owner needs to instantiate a reserved room it does not have yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The room.
    pub room_id: String,
    /// The game kind.
    pub kind: String,
    /// Seats in the room.
    pub max_clients: u32,
}

/// Why no seat was reserved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    /// The directory cannot be reached (HTTP 503).
    #[error("directory unavailable: {0}")]
    Unavailable(String),
    /// No live room has that id.
    #[error("no such room")]
    NoSuchRoom,
    /// Every seat is taken.
    #[error("room full")]
    RoomFull,
    /// The room takes nobody new.
    #[error("room locked")]
    RoomLocked,
    /// No live node to create the room on.
    #[error("no live node")]
    NoNode,
}

/// Why a seat token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// The seat was reserved but has expired.
    #[error("seat expired")]
    Expired,
    /// Unknown, already used or malformed.
    #[error("invalid seat token")]
    Invalid,
    /// The room belongs to another node.
    #[error("seat for a room on another node")]
    Foreign,
    /// The seat was valid but its room no longer exists.
    #[error("room gone")]
    RoomGone,
    /// The directory cannot be reached.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
}

/// The room directory, in process or on Redis.
#[derive(Debug)]
pub enum Directory {
    /// One node, no Redis.
    Local(LocalDirectory),
    /// A fleet sharing one Redis.
    Redis(RedisDirectory),
}

macro_rules! each {
    ($self:ident, $d:ident => $e:expr) => {
        match $self {
            Directory::Local($d) => $e,
            Directory::Redis($d) => $e,
        }
    };
}

impl Directory {
    /// The in-process directory: this node is the only node.
    pub fn local(node: NodeInfo, seat_ttl: Duration) -> Self {
        Directory::Local(LocalDirectory::new(node, seat_ttl))
    }

    /// The Redis directory at `url` (`redis://127.0.0.1:6379`). Succeeds even if Redis is
    /// down (it connects lazily and reconnects by itself); fails only on a malformed URL.
    pub async fn redis(
        url: &str,
        node: NodeInfo,
        lease: Duration,
        seat_ttl: Duration,
    ) -> Result<Self, MatchError> {
        RedisDirectory::new(url, node, lease, seat_ttl).map(Directory::Redis)
    }

    /// A seat in an open matchmaking room of `kind` anywhere in the fleet (oldest first),
    /// else in a new room of `max_clients` seats on the least-loaded live node.
    pub async fn join_or_create(
        &self,
        kind: &str,
        max_clients: u32,
    ) -> Result<Reservation, MatchError> {
        each!(self, d => d.join_or_create(kind, max_clients).await)
    }

    /// A seat in a new room on the least-loaded live node.
    pub async fn create(&self, kind: &str, max_clients: u32) -> Result<Reservation, MatchError> {
        each!(self, d => d.create(kind, max_clients).await)
    }

    /// A seat in the room `room_id`.
    pub async fn join(&self, room_id: &str) -> Result<Reservation, MatchError> {
        each!(self, d => d.join(room_id).await)
    }

    /// Called by the owning node when a client's Hello carries `seat_token`: single use;
    /// the seat stops being reserved and starts counting as a claim in one step. `seq` numbers
    /// this node's claims (1, 2, …; see "Occupancy" above).
    pub async fn claim(&self, seat_token: &str, seq: u64) -> Result<Claimed, ClaimError> {
        each!(self, d => d.claim(seat_token, seq).await)
    }

    /// Renews this node's lease and publishes every local room. Call it about once a second,
    /// with no claim running between reading `rooms` and the call returning; `last_claim` is
    /// the number of the node's last claim (0 before any; see "Occupancy" above). After a
    /// Redis restart this alone re-registers the node and its rooms.
    pub async fn heartbeat(&self, rooms: &[LocalRoom], last_claim: u64) -> Result<(), MatchError> {
        each!(self, d => d.heartbeat(rooms, last_claim).await)
    }

    /// Removes the room unless it has live reserved seats (then `false`, and the owner keeps
    /// the room). A room that is already gone, or is not this node's, counts as removed.
    pub async fn try_remove_room(&self, room_id: &str) -> Result<bool, MatchError> {
        each!(self, d => d.try_remove_room(room_id).await)
    }

    /// Every live room in the fleet, reserved-but-not-yet-instantiated ones included.
    pub async fn rooms(&self) -> Result<Vec<RoomInfo>, MatchError> {
        each!(self, d => d.rooms().await)
    }

    /// Graceful shutdown: drops this node's lease and rooms (errors are logged).
    pub async fn deregister(&self) {
        each!(self, d => d.deregister().await)
    }

    /// This node.
    pub fn node(&self) -> &NodeInfo {
        each!(self, d => d.node())
    }
}

/// A parsed seat token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub(crate) room_id: &'a str,
    pub(crate) expires_ms: u64,
    pub(crate) secret: &'a str,
}

impl Token<'_> {
    pub(crate) fn format(room_id: &str, expires_ms: u64, secret: &str) -> String {
        format!("{room_id}.{expires_ms}.{secret}")
    }

    /// `None` for anything that is not a token this directory could have issued.
    pub(crate) fn parse(s: &str) -> Option<Token<'_>> {
        if s.len() > 128 {
            return None;
        }
        let mut parts = s.split('.');
        let (room_id, exp, secret) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some()
            || !valid_room_id(room_id)
            || exp.is_empty()
            || exp.len() > 15
            || !exp.bytes().all(|b| b.is_ascii_digit())
            || secret.len() != SECRET_LEN
            || !secret.bytes().all(|b| B32.contains(&b))
        {
            return None;
        }
        Some(Token {
            room_id,
            expires_ms: exp.parse().ok()?,
            secret,
        })
    }
}

/// Room ids the directory accepts: 1 to [`MAX_ROOM_ID_LEN`] of `[A-Za-z0-9_-]`.
pub fn valid_room_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ROOM_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

const B32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn base32(mut v: u128, len: usize) -> String {
    (0..len)
        .map(|_| {
            let c = B32[(v & 31) as usize] as char;
            v >>= 5;
            c
        })
        .collect()
}

/// Unpredictable bits for secrets and room ids (see the module docs).
pub(crate) struct Entropy {
    a: RandomState,
    b: RandomState,
    n: AtomicU64,
}

impl fmt::Debug for Entropy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Entropy")
    }
}

impl Entropy {
    pub(crate) fn new() -> Self {
        Self {
            a: RandomState::new(),
            b: RandomState::new(),
            n: AtomicU64::new(0),
        }
    }

    fn bits(&self) -> u128 {
        let n = self.n.fetch_add(1, Relaxed);
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let hi = self.a.hash_one((n, t));
        let lo = self.b.hash_one((t, n));
        (u128::from(hi) << 64) | u128::from(lo)
    }

    /// 26 base32 characters (128 random bits).
    pub(crate) fn secret(&self) -> String {
        base32(self.bits(), SECRET_LEN)
    }

    /// [`ROOM_ID_LEN`] base32 characters (50 random bits).
    pub(crate) fn room_id(&self) -> String {
        base32(self.bits(), ROOM_ID_LEN)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_junk() {
        let e = Entropy::new();
        let (rid, secret) = (e.room_id(), e.secret());
        assert_eq!(rid.len(), ROOM_ID_LEN);
        assert_ne!(e.secret(), secret);
        let t = Token::format(&rid, 1_700_000_000_123, &secret);
        assert!(t.len() <= 128 && t.is_ascii());
        let p = Token::parse(&t).unwrap();
        assert_eq!(
            (p.room_id, p.expires_ms, p.secret),
            (rid.as_str(), 1_700_000_000_123, secret.as_str())
        );
        for junk in [
            "",
            "x",
            "a.b.c",
            "room.12.short",
            &format!("{rid}.12.{secret}.x"),
            &format!("{rid}..{secret}"),
            &format!("r/x.12.{secret}"),
            &format!("{rid}.12.{}", secret.to_uppercase()),
        ] {
            assert!(Token::parse(junk).is_none(), "{junk}");
        }
    }
}
