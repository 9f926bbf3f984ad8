//! Close codes: why a session ended (PROTOCOL.md section 6).
//!
//! One enum for everyone: the server closes with it, clients read it back with
//! [`CloseCode::from_code`], and the documentation lists the same values. On a WebSocket the
//! code is the close frame's status code; over QUIC it is the application error code of the
//! connection close; in both it is also `ServerMessage::Disconnect.code`, sent first when the
//! connection still takes writes.

/// Why the server closed a session (or, for [`CloseCode::Abnormal`], why a client saw it end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum CloseCode {
    /// The client sent `Leave`.
    Normal = 1000,
    /// The server is shutting down.
    GoingAway = 1001,
    /// Undecodable or out-of-protocol message (bad bytes, `Input` before `Hello`, a second
    /// `Hello`, an invalid WebSocket frame or close code).
    ProtocolError = 1002,
    /// A text frame: the protocol is binary only.
    UnsupportedData = 1003,
    /// Never sent: what a client reports when the connection ended without a close code.
    Abnormal = 1006,
    /// No `Hello` within the handshake timeout.
    PolicyViolation = 1008,
    /// A message over the size limit.
    TooBig = 1009,
    /// The server failed internally.
    InternalError = 1011,
    /// The room directory (Redis) could not be reached to check the seat: retry with backoff.
    TryAgainLater = 1013,
    /// The client acknowledged no snapshot within the ack timeout.
    AckTimeout = 4000,
    /// `Hello` carried a protocol version this server does not speak.
    BadVersion = 4001,
    /// Another connection resumed this player with its resume token.
    Replaced = 4002,
    /// `Hello` had no seat token, and the server has no default room.
    SeatRequired = 4003,
    /// The seat token expired before its `Hello`: matchmake again.
    SeatExpired = 4004,
    /// The seat token is unknown, used already, or malformed.
    SeatInvalid = 4005,
    /// The seat is for a room on another node: connect to the `ws_url` matchmaking gave.
    SeatForeign = 4006,
    /// The room is full or gone: matchmake again.
    RoomUnavailable = 4007,
    /// The server requires a signed player token and `Hello` carried none.
    TokenRequired = 4008,
    /// The player token's expiry has passed: get a new one from the game backend.
    TokenExpired = 4009,
    /// The player token is malformed or its signature does not match (tampered, or signed
    /// with another secret).
    TokenInvalid = 4010,
    /// The player token is valid but bound to another room or seat.
    TokenWrongRoom = 4011,
    /// The client kept acknowledging snapshots older than the server's history for too long:
    /// it cannot keep up with the snapshot stream.
    TooFarBehind = 4012,
    /// The client sent messages (control frames included) far over its message budget.
    Flooding = 4013,
}

impl CloseCode {
    /// Every code, in numeric order.
    pub const ALL: [CloseCode; 23] = [
        CloseCode::Normal,
        CloseCode::GoingAway,
        CloseCode::ProtocolError,
        CloseCode::UnsupportedData,
        CloseCode::Abnormal,
        CloseCode::PolicyViolation,
        CloseCode::TooBig,
        CloseCode::InternalError,
        CloseCode::TryAgainLater,
        CloseCode::AckTimeout,
        CloseCode::BadVersion,
        CloseCode::Replaced,
        CloseCode::SeatRequired,
        CloseCode::SeatExpired,
        CloseCode::SeatInvalid,
        CloseCode::SeatForeign,
        CloseCode::RoomUnavailable,
        CloseCode::TokenRequired,
        CloseCode::TokenExpired,
        CloseCode::TokenInvalid,
        CloseCode::TokenWrongRoom,
        CloseCode::TooFarBehind,
        CloseCode::Flooding,
    ];

    /// The numeric code on the wire.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The code for a number, if it is one of ours.
    pub fn from_code(code: u16) -> Option<CloseCode> {
        CloseCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// A short name, as PROTOCOL.md's table gives it.
    pub const fn name(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal",
            CloseCode::GoingAway => "going away",
            CloseCode::ProtocolError => "protocol error",
            CloseCode::UnsupportedData => "unsupported data",
            CloseCode::Abnormal => "abnormal closure",
            CloseCode::PolicyViolation => "policy violation",
            CloseCode::TooBig => "message too big",
            CloseCode::InternalError => "internal error",
            CloseCode::TryAgainLater => "try again later",
            CloseCode::AckTimeout => "ack timeout",
            CloseCode::BadVersion => "bad version",
            CloseCode::Replaced => "replaced",
            CloseCode::SeatRequired => "seat required",
            CloseCode::SeatExpired => "seat expired",
            CloseCode::SeatInvalid => "seat invalid",
            CloseCode::SeatForeign => "seat foreign",
            CloseCode::RoomUnavailable => "room unavailable",
            CloseCode::TokenRequired => "token required",
            CloseCode::TokenExpired => "token expired",
            CloseCode::TokenInvalid => "token invalid",
            CloseCode::TokenWrongRoom => "token wrong room",
            CloseCode::TooFarBehind => "too far behind",
            CloseCode::Flooding => "flooding",
        }
    }

    /// Whether a matchmade client should ask for a new seat after its `Hello` was refused
    /// with this code: the directory was unreachable (1013), the seat expired or was refused
    /// (4004, 4005), or the room filled or went away (4007).
    pub const fn wants_new_seat(self) -> bool {
        matches!(
            self,
            CloseCode::TryAgainLater
                | CloseCode::SeatExpired
                | CloseCode::SeatInvalid
                | CloseCode::RoomUnavailable
        )
    }

    /// Whether retrying the same connection unchanged can never succeed (a client should stop
    /// reconnecting and tell the player): a bad version, a missing seat or a token problem.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            CloseCode::BadVersion
                | CloseCode::SeatRequired
                | CloseCode::SeatForeign
                | CloseCode::TokenRequired
                | CloseCode::TokenExpired
                | CloseCode::TokenInvalid
                | CloseCode::TokenWrongRoom
                | CloseCode::Replaced
                | CloseCode::Normal
        )
    }
}

impl From<CloseCode> for u16 {
    fn from(c: CloseCode) -> u16 {
        c.code()
    }
}

impl From<CloseCode> for u32 {
    fn from(c: CloseCode) -> u32 {
        u32::from(c.code())
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.code(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::CloseCode;

    #[test]
    fn codes_round_trip_and_are_sorted_and_unique() {
        let mut last = 0;
        for c in CloseCode::ALL {
            assert!(c.code() > last, "{c} out of order");
            last = c.code();
            assert_eq!(CloseCode::from_code(c.code()), Some(c));
        }
        assert_eq!(CloseCode::from_code(999), None);
        assert_eq!(CloseCode::from_code(4999), None);
    }

    #[test]
    fn only_seat_problems_want_a_new_seat() {
        let wants: Vec<u16> = CloseCode::ALL
            .into_iter()
            .filter(|c| c.wants_new_seat())
            .map(u16::from)
            .collect();
        assert_eq!(wants, [1013, 4004, 4005, 4007]);
    }
}
