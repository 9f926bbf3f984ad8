//! The client session, sans-IO: everything a Tickwire client does besides moving bytes. Both
//! bot transports (WebSocket and QUIC) and any native client drive one [`ClientSession`].
//!
//! It holds the handshake (the `Hello` it sends, the `Welcome` it expects first, the
//! [`Quantizer`] and [`SnapshotReceiver`] built from it), the [`InputHistory`], the snapshot
//! bookkeeping (verifying, or trusting headers: [`Trusted`]), the acknowledgement and pings.
//!
//! # Driving it
//!
//! In quinn-proto's manner, inputs go in through `handle_*` and the session's own calls,
//! outputs come out through `poll_*`, and time is always an argument (no clock is read here):
//!
//! 1. [`ClientSession::new`] queues the `Hello`. Send every [`ClientSession::poll_transmit`]
//!    envelope, in order, after every call that may queue one (all `handle_*` calls,
//!    [`ClientSession::send_input`], [`ClientSession::ping`], [`ClientSession::leave`]).
//! 2. Hand every received envelope to [`ClientSession::handle_envelope`] (or, already decoded,
//!    to [`ClientSession::handle_message`]), and a transport close to
//!    [`ClientSession::handle_close`]. Then take the [`Event`]s with
//!    [`ClientSession::poll_event`]: [`Event::Welcome`] first, then snapshots and pongs, and
//!    [`Event::Closed`] once, last.
//! 3. Sleep until [`ClientSession::poll_timeout`] (if any), then call
//!    [`ClientSession::handle_timeout`]: it sends the periodic `Ping` and the `Input` that
//!    acknowledges a snapshot when no input carried the ack in time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::baseline::DEFAULT_RING;
use crate::codec::{DecodeError, EncodeError, decode_server, encode_client};
use crate::ids::{InputSeq, Tick};
use crate::input::InputHistory;
use crate::message::{ClientMessage, InputFrame, ServerMessage, SnapshotMessage, Welcome};
use crate::quant::{BoundsError, Quantizer, WorldBounds};
use crate::receiver::{ReceiveError, Received, SnapshotReceiver};
use crate::{CloseCode, PROTOCOL_VERSION};

/// What a client says in its `Hello`, besides the protocol version: its name, the resume
/// token of an earlier `Welcome`, the seat token matchmaking gave it, and a signed player
/// token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HelloArgs {
    /// Display name, at most [`crate::message::MAX_NAME_BYTES`] bytes.
    pub name: String,
    /// The token of an earlier `Welcome`, to take the same player back.
    pub resume_token: Option<u64>,
    /// The `seat_token` of a matchmaking answer, at most
    /// [`crate::message::MAX_SEAT_BYTES`] bytes; `None` joins the default room.
    pub seat: Option<String>,
    /// A signed player token (`--auth-secret-file`), at most
    /// [`crate::message::MAX_AUTH_BYTES`] bytes.
    pub auth: Option<String>,
}

impl HelloArgs {
    /// A first connection as `name`, with no seat (the server's default room).
    pub fn new(name: &str) -> HelloArgs {
        HelloArgs {
            name: name.to_owned(),
            ..HelloArgs::default()
        }
    }

    /// The same, offering `resume_token`.
    pub fn with_resume_token(mut self, resume_token: Option<u64>) -> HelloArgs {
        self.resume_token = resume_token;
        self
    }

    /// The same, presenting `seat`.
    pub fn with_seat(mut self, seat: Option<String>) -> HelloArgs {
        self.seat = seat;
        self
    }

    /// The same, presenting the signed player token `auth`.
    pub fn with_auth(mut self, auth: Option<String>) -> HelloArgs {
        self.auth = auth;
        self
    }

    /// The `Hello` message, for this crate's protocol version.
    pub fn message(&self) -> ClientMessage {
        ClientMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            name: self.name.clone(),
            resume_token: self.resume_token,
            seat: self.seat.clone(),
            auth: self.auth.clone(),
        }
    }
}

/// How a session behaves. Every knob has a default that suits a test client: verify every
/// snapshot, and send nothing the caller did not ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Decode and verify every snapshot (default), or only trust its header ([`Trusted`]):
    /// much cheaper, for load generators, but a desync goes unseen.
    pub verify: bool,
    /// Send a `Ping` this often from the `Welcome` on, the first at once (default `None`:
    /// only when [`ClientSession::ping`] is called). Each costs 2 bytes up and about 5 down.
    pub ping_interval: Option<Duration>,
    /// When a snapshot moves the acknowledgement forward and no `Input` has carried it this
    /// long after, send an `Input` repeating the newest frames (PROTOCOL.md 5.3: a client
    /// with no new input still acknowledges). Default `None`: acknowledgements ride only on
    /// the caller's inputs; a client that never sends input is then closed with 4000.
    pub ack_delay: Option<Duration>,
    /// Verified snapshots kept as possible baselines; at least the server's
    /// `--baseline-ring` (default [`DEFAULT_RING`], the server's default).
    pub history: usize,
    /// The interpolation delay [`ClientSession::send_input`] reports in each frame's
    /// `interp_ms` (PROTOCOL.md 5.3): how far behind the newest snapshot the client draws
    /// other entities. Default [`DEFAULT_INTERP_MS`]. A client that computes it per frame uses
    /// [`ClientSession::send_input_viewing`].
    pub interp_ms: u16,
}

/// The default [`SessionConfig::interp_ms`]: 100 ms, three snapshots at 30 a second, which is
/// what a client interpolating between snapshots typically draws behind (Source's
/// `cl_interp` default is 100 ms too).
pub const DEFAULT_INTERP_MS: u16 = 100;

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            verify: true,
            ping_interval: None,
            ack_delay: None,
            history: DEFAULT_RING,
            interp_ms: DEFAULT_INTERP_MS,
        }
    }
}

/// Which way a transport should carry an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// `Hello`, `Ping`, `Leave`: in order, reliably (QUIC: the control stream).
    Reliable,
    /// `Input`: may be lost, as the next one repeats it (QUIC: a datagram when it fits).
    Unreliable,
}

/// One envelope to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// How to carry it.
    pub channel: Channel,
    /// The encoded envelope (PROTOCOL.md section 2), without any transport framing.
    pub envelope: Vec<u8>,
}

/// Where a handshake stands, after [`ClientSession::handshake_receive`].
#[derive(Debug)]
pub enum HandshakeStep {
    /// No `Welcome` yet: receive more.
    Waiting,
    /// The server's `Welcome`: the session is open.
    Welcomed(Welcome),
    /// The server refused or closed the connection before its `Welcome`.
    Closed {
        /// The close code (or `Disconnect.code`); 1006 when the connection just dropped.
        code: u16,
        /// The reason.
        reason: String,
    },
}

/// What the server sent, after decoding and (for snapshots) verification.
#[derive(Debug)]
pub enum Event {
    /// The handshake is done; the session is open.
    Welcome(Welcome),
    /// A snapshot: what the receiver made of it, its size on the wire, and the message.
    Snapshot {
        /// Outcome (an `Err` is a missing baseline, a bad body or a desync). A session that
        /// does not verify reports what [`Trusted::accept`] made of the header: never an `Err`.
        outcome: Result<Received, ReceiveError>,
        /// Envelope bytes.
        bytes: usize,
        /// The decoded message (header fields like `last_input`).
        message: SnapshotMessage,
    },
    /// An answer to a ping.
    Pong {
        /// Round-trip time: `now` at the `Pong` less `now` at its `Ping`.
        rtt: Duration,
        /// The server's tick when it answered.
        server_tick: Tick,
    },
    /// The session ended: `code` is `Disconnect`'s or the transport's close code (see
    /// [`CloseCode::from_code`]; [`CloseCode::Abnormal`] when the connection just dropped).
    /// Always the last event, and there is only one.
    Closed {
        /// The close code, raw: a server may send one this crate does not know.
        code: u16,
        /// Reason text.
        reason: String,
    },
}

/// Why the session refused what it was handed or asked to do.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The server sent an envelope that does not decode.
    #[error("server sent an undecodable frame: {0}")]
    Decode(#[from] DecodeError),
    /// A message could not be encoded (a `Hello` field over its limit).
    #[error("cannot encode: {0}")]
    Encode(#[from] EncodeError),
    /// The server's `Welcome` carried unusable world bounds.
    #[error("welcome: {0}")]
    Bounds(#[from] BoundsError),
    /// The server broke the protocol: its first message was not `Welcome`, or it sent a
    /// second one.
    #[error("protocol: {0}")]
    Protocol(&'static str),
    /// An `Input` before the `Welcome`, which the server would close with 1002.
    #[error("no Welcome yet")]
    NotWelcomed,
    /// The input sequence numbers are used up: reconnect.
    #[error("input sequence exhausted")]
    InputExhausted,
}

/// The snapshot bookkeeping of a client that does not verify: it trusts every snapshot it
/// receives, by its header alone, and acknowledges the newest tick it received. A verifying
/// client acknowledges the newest snapshot it decoded, which on a correct server is the same
/// tick, so the server picks the same baselines for both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trusted {
    newest: Option<Tick>,
}

impl Trusted {
    /// Accepts `msg` without decoding its body: [`Received::Current`] when it is newer than
    /// every snapshot before it, [`Received::Duplicate`] for the newest tick again, and
    /// [`Received::Stale`] when older (a reordered datagram).
    pub fn accept(&mut self, msg: &SnapshotMessage) -> Received {
        let tick = msg.tick;
        match self.newest {
            Some(newest) if tick == newest => Received::Duplicate { tick },
            Some(newest) if tick < newest => Received::Stale { tick },
            _ => {
                self.newest = Some(tick);
                Received::Current {
                    tick,
                    full: msg.baseline_age == 0,
                }
            }
        }
    }

    /// The tick to acknowledge: the newest snapshot received, if any.
    pub fn ack_tick(&self) -> Option<Tick> {
        self.newest
    }
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `Hello` queued or sent; waiting for `Welcome`.
    Handshake,
    /// Welcomed.
    Open,
    /// `Closed` has been reported; nothing more happens.
    Closed,
}

/// One client connection's protocol state; see the [module documentation](self) for how to
/// drive it.
#[derive(Debug)]
pub struct ClientSession {
    config: SessionConfig,
    phase: Phase,
    /// The `now` of [`ClientSession::new`]: `Ping.client_time` is microseconds since.
    epoch: Instant,
    welcome: Option<Welcome>,
    /// Built from the `Welcome`; empty (never fed) while trusting.
    receiver: Option<SnapshotReceiver>,
    /// `Some` while trusting headers instead of verifying.
    trusted: Option<Trusted>,
    inputs: InputHistory,
    /// The ack the last `Input` carried.
    acked: Option<Tick>,
    ack_due: Option<Instant>,
    next_ping: Option<Instant>,
    closed: Option<(u16, String)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl ClientSession {
    /// A session at `now` that says `hello`; the `Hello` is the first transmit.
    pub fn new(
        hello: &HelloArgs,
        config: SessionConfig,
        now: Instant,
    ) -> Result<ClientSession, SessionError> {
        let mut s = ClientSession {
            config,
            phase: Phase::Handshake,
            epoch: now,
            welcome: None,
            receiver: None,
            trusted: (!config.verify).then(Trusted::default),
            inputs: InputHistory::new(),
            acked: None,
            ack_due: None,
            next_ping: None,
            closed: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        s.queue(&hello.message(), Channel::Reliable)?;
        Ok(s)
    }

    /// The server's `Welcome`, once received.
    pub fn welcome(&self) -> Option<&Welcome> {
        self.welcome.as_ref()
    }

    /// Snapshot history and the current verified view, from the `Welcome` on (kept after the
    /// close). Empty while trusting headers.
    pub fn receiver(&self) -> Option<&SnapshotReceiver> {
        self.receiver.as_ref()
    }

    /// Whether the `Welcome` came and the session has not closed.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// How the session ended (code and reason), once [`Event::Closed`] has been queued.
    pub fn close_reason(&self) -> Option<(u16, &str)> {
        self.closed.as_ref().map(|(c, r)| (*c, r.as_str()))
    }

    /// Whether snapshots are decoded and verified.
    pub fn verifies(&self) -> bool {
        self.trusted.is_none()
    }

    /// Verify snapshots, or only trust their headers ([`Trusted`]). Switching starts the new
    /// mode with no history (a verifying session then waits for a usable snapshot), so call
    /// it before the first snapshot.
    pub fn set_verify(&mut self, verify: bool) {
        if verify == self.verifies() {
            return;
        }
        self.config.verify = verify;
        self.trusted = (!verify).then(Trusted::default);
        if let Some(r) = &mut self.receiver {
            *r = SnapshotReceiver::new(*r.quantizer(), self.config.history);
        }
    }

    /// Sets [`SessionConfig::ping_interval`]; once open, the next ping is due at `now`.
    pub fn set_ping_interval(&mut self, interval: Option<Duration>, now: Instant) {
        self.config.ping_interval = interval;
        self.next_ping = interval.filter(|_| self.is_open()).map(|_| now);
    }

    /// How many ticks the least recently refreshed entry of the newest verified view is
    /// behind it (see [`SnapshotReceiver::staleness`]); `None` while trusting headers.
    pub fn staleness(&self) -> Option<u32> {
        match (&self.trusted, &self.receiver) {
            (None, Some(r)) => Some(r.staleness()),
            _ => None,
        }
    }

    /// The tick the next `Input` acknowledges: the newest verified snapshot, or, when not
    /// verifying, the newest snapshot received.
    pub fn ack_tick(&self) -> Option<Tick> {
        match (&self.trusted, &self.receiver) {
            (Some(t), _) => t.ack_tick(),
            (None, Some(r)) => r.ack_tick(),
            (None, None) => None,
        }
    }

    /// Handles one envelope received at `now` (any channel). An `Err` leaves the session as
    /// it was; the caller usually gives the connection up.
    pub fn handle_envelope(&mut self, now: Instant, envelope: &[u8]) -> Result<(), SessionError> {
        let msg = decode_server(envelope)?;
        self.handle_message(now, msg, envelope.len())
    }

    /// Handles one message received at `now`, decoded already from `bytes` bytes.
    pub fn handle_message(
        &mut self,
        now: Instant,
        msg: ServerMessage,
        bytes: usize,
    ) -> Result<(), SessionError> {
        match (self.phase, msg) {
            (Phase::Closed, _) => {}
            (_, ServerMessage::Disconnect { code, reason }) => self.close(code, reason),
            (Phase::Handshake, ServerMessage::Welcome(welcome)) => {
                let quantizer = Quantizer::new(WorldBounds {
                    min: welcome.world_min.into(),
                    max: welcome.world_max.into(),
                })?;
                self.receiver = Some(SnapshotReceiver::new(quantizer, self.config.history));
                self.welcome = Some(welcome.clone());
                self.phase = Phase::Open;
                self.next_ping = self.config.ping_interval.map(|_| now);
                self.events.push_back(Event::Welcome(welcome));
            }
            (Phase::Handshake, _) => {
                return Err(SessionError::Protocol("first message was not Welcome"));
            }
            (Phase::Open, ServerMessage::Welcome(_)) => {
                return Err(SessionError::Protocol("second Welcome"));
            }
            (Phase::Open, ServerMessage::Snapshot(message)) => {
                let outcome = match (&mut self.trusted, &mut self.receiver) {
                    (Some(t), _) => Ok(t.accept(&message)),
                    (None, Some(r)) => r.receive(&message),
                    // Open implies a receiver (made with the Welcome).
                    (None, None) => return Err(SessionError::NotWelcomed),
                };
                if let (Some(delay), None) = (self.config.ack_delay, self.ack_due)
                    && self.ack_tick() != self.acked
                {
                    self.ack_due = Some(now + delay);
                }
                self.events.push_back(Event::Snapshot {
                    outcome,
                    bytes,
                    message,
                });
            }
            (
                Phase::Open,
                ServerMessage::Pong {
                    client_time,
                    server_tick,
                },
            ) => {
                let sent = self.epoch + Duration::from_micros(client_time);
                self.events.push_back(Event::Pong {
                    rtt: now.saturating_duration_since(sent),
                    server_tick,
                });
            }
        }
        Ok(())
    }

    /// The transport closed with `code` (a WebSocket close frame's, a QUIC application close
    /// code, or [`CloseCode::Abnormal`] when it just dropped). After a `Disconnect` it changes
    /// nothing: that code is already reported.
    pub fn handle_close(&mut self, code: u16, reason: &str) {
        if self.phase != Phase::Closed {
            self.close(code, reason.to_owned());
        }
    }

    /// The connection dropped with no close code: [`CloseCode::Abnormal`].
    pub fn handle_drop(&mut self) {
        self.handle_close(CloseCode::Abnormal.code(), "");
    }

    /// When [`ClientSession::handle_timeout`] should next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.ack_due, self.next_ping) {
            (Some(a), Some(p)) => Some(a.min(p)),
            (a, p) => a.or(p),
        }
    }

    /// Runs the timers due at `now`: the periodic `Ping`, and the `Input` that carries an
    /// acknowledgement no input carried within [`SessionConfig::ack_delay`].
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        if !self.is_open() {
            self.ack_due = None;
            self.next_ping = None;
            return Ok(());
        }
        if self.ack_due.is_some_and(|t| t <= now) {
            self.queue_input()?;
        }
        if let (Some(at), Some(every)) = (self.next_ping, self.config.ping_interval)
            && at <= now
        {
            self.ping(now)?;
            // The next one is `every` after this one was due, without drift; a late call
            // skips the missed ones rather than sending a burst.
            let mut next = at + every;
            if next <= now {
                next = now + every;
            }
            self.next_ping = Some(next);
        }
        Ok(())
    }

    /// Records a new input frame and queues an `Input` with it, the newest older frames (for
    /// redundancy) and the acknowledgement ([`ClientSession::ack_tick`]). The frame says the
    /// client was viewing the acknowledged tick, `config.interp_ms` behind it. Returns the new
    /// frame's sequence number.
    pub fn send_input(
        &mut self,
        move_x: i8,
        move_y: i8,
        aim_yaw: u16,
        buttons: u8,
    ) -> Result<InputSeq, SessionError> {
        let view_tick = self.ack_tick().unwrap_or(Tick(0));
        self.send_input_viewing(InputFrame {
            move_x,
            move_y,
            aim_yaw,
            buttons,
            view_tick,
            interp_ms: self.config.interp_ms,
            ..InputFrame::default()
        })
    }

    /// As [`ClientSession::send_input`], with the frame's `view_tick` and `interp_ms` as the
    /// caller says (a client that knows exactly what it drew); `frame.seq` is ignored.
    pub fn send_input_viewing(&mut self, frame: InputFrame) -> Result<InputSeq, SessionError> {
        if self.phase == Phase::Handshake {
            return Err(SessionError::NotWelcomed);
        }
        let seq = self
            .inputs
            .push(frame)
            .ok_or(SessionError::InputExhausted)?;
        self.queue_input()?;
        Ok(seq)
    }

    /// Queues a `Ping` whose `client_time` stands for `now` (microseconds since the session
    /// began); its `Pong` becomes [`Event::Pong`] with the round trip.
    pub fn ping(&mut self, now: Instant) -> Result<(), SessionError> {
        let client_time = now.saturating_duration_since(self.epoch).as_micros() as u64;
        self.queue(&ClientMessage::Ping { client_time }, Channel::Reliable)
    }

    /// Queues `Leave`; the server answers with `Disconnect` 1000 and closes.
    pub fn leave(&mut self) -> Result<(), SessionError> {
        self.queue(&ClientMessage::Leave, Channel::Reliable)
    }

    /// Queues any message, unchecked (tests send what a real client would not): `Input`
    /// unreliably, the others reliably.
    pub fn send_message(&mut self, msg: &ClientMessage) -> Result<(), SessionError> {
        let channel = match msg {
            ClientMessage::Input { .. } => Channel::Unreliable,
            _ => Channel::Reliable,
        };
        self.queue(msg, channel)
    }

    /// The next envelope to send, oldest first.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Feeds what a transport received while waiting for the `Welcome` (an envelope, or the
    /// connection's close code and reason) and says where the handshake stands. The driver of
    /// either transport loops on it until it is no longer [`HandshakeStep::Waiting`].
    pub fn handshake_receive(
        &mut self,
        now: Instant,
        received: Result<impl AsRef<[u8]>, (u16, String)>,
    ) -> Result<HandshakeStep, SessionError> {
        match received {
            Ok(envelope) => self.handle_envelope(now, envelope.as_ref())?,
            Err((code, reason)) => self.handle_close(code, &reason),
        }
        Ok(match self.poll_event() {
            Some(Event::Welcome(w)) => HandshakeStep::Welcomed(w),
            Some(Event::Closed { code, reason }) => HandshakeStep::Closed { code, reason },
            // Before the Welcome the session yields nothing else.
            Some(_) | None => HandshakeStep::Waiting,
        })
    }

    fn queue_input(&mut self) -> Result<(), SessionError> {
        let ack = self.ack_tick();
        self.queue(&self.inputs.message(ack), Channel::Unreliable)?;
        self.acked = ack;
        self.ack_due = None;
        Ok(())
    }

    fn queue(&mut self, msg: &ClientMessage, channel: Channel) -> Result<(), SessionError> {
        // The largest Input is 95 bytes; a Hello with a seat and a token fits 512.
        let mut envelope = Vec::with_capacity(match channel {
            Channel::Unreliable => 96,
            Channel::Reliable => 16,
        });
        encode_client(msg, &mut envelope)?;
        self.transmits.push_back(Transmit { channel, envelope });
        Ok(())
    }

    fn close(&mut self, code: u16, reason: String) {
        self.phase = Phase::Closed;
        self.ack_due = None;
        self.next_ping = None;
        self.closed = Some((code, reason.clone()));
        self.events.push_back(Event::Closed { code, reason });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::baseline::BaselineTracker;
    use crate::codec::{decode_client, encode_server};
    use crate::ids::{ClientId, EntityId};
    use crate::quant::QuantizedState;
    use crate::snapshot::ViewEntry;

    const MS: Duration = Duration::from_millis(1);

    fn welcome() -> Welcome {
        Welcome {
            protocol_version: PROTOCOL_VERSION,
            client_id: ClientId(7),
            entity_id: EntityId(3),
            tick_rate: 30,
            snapshot_every: 1,
            world_min: [0.0; 3],
            world_max: [100.0; 3],
            resume_token: 42,
        }
    }

    fn quantizer() -> Quantizer {
        Quantizer::new(WorldBounds {
            min: glam::Vec3::ZERO,
            max: glam::Vec3::splat(100.0),
        })
        .unwrap()
    }

    fn view(x: u32) -> Vec<ViewEntry> {
        vec![(
            EntityId(3),
            QuantizedState {
                pos: [x, 0, 0],
                ..Default::default()
            },
        )]
    }

    fn envelope(msg: &ServerMessage) -> Vec<u8> {
        let mut out = Vec::new();
        encode_server(msg, &mut out).unwrap();
        out
    }

    fn sent(s: &mut ClientSession) -> Vec<(Channel, ClientMessage)> {
        std::iter::from_fn(|| s.poll_transmit())
            .map(|t| (t.channel, decode_client(&t.envelope).unwrap()))
            .collect()
    }

    fn events(s: &mut ClientSession) -> Vec<Event> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    /// A session past its handshake, at virtual time `t0`, with its Hello taken.
    fn open(config: SessionConfig, t0: Instant) -> ClientSession {
        let mut s = ClientSession::new(&HelloArgs::new("ada"), config, t0).unwrap();
        sent(&mut s);
        let w = envelope(&ServerMessage::Welcome(welcome()));
        s.handle_envelope(t0, &w).unwrap();
        assert!(matches!(events(&mut s)[..], [Event::Welcome(_)]));
        s
    }

    #[test]
    fn the_handshake_sends_hello_and_opens_on_welcome() {
        let t0 = Instant::now();
        let hello = HelloArgs::new("ada")
            .with_resume_token(Some(9))
            .with_seat(Some("seat".into()))
            .with_auth(Some("tok".into()));
        let mut s = ClientSession::new(&hello, SessionConfig::default(), t0).unwrap();
        assert_eq!(sent(&mut s), [(Channel::Reliable, hello.message())]);
        assert!(!s.is_open() && s.receiver().is_none() && s.poll_timeout().is_none());
        // No input before the Welcome: the server would close with 1002.
        assert!(matches!(
            s.send_input(1, 0, 0, 0),
            Err(SessionError::NotWelcomed)
        ));
        let w = envelope(&ServerMessage::Welcome(welcome()));
        s.handle_envelope(t0 + 5 * MS, &w).unwrap();
        match &events(&mut s)[..] {
            [Event::Welcome(w)] => assert_eq!(*w, welcome()),
            other => panic!("{other:?}"),
        }
        assert!(s.is_open());
        assert_eq!(s.welcome(), Some(&welcome()));
        assert_eq!(s.receiver().unwrap().quantizer(), &quantizer());
        assert_eq!(s.ack_tick(), None);
        // A second Welcome is a protocol error.
        assert!(matches!(
            s.handle_envelope(t0, &w),
            Err(SessionError::Protocol("second Welcome"))
        ));
    }

    #[test]
    fn a_disconnect_or_close_before_welcome_ends_the_handshake() {
        let t0 = Instant::now();
        let mut s = ClientSession::new(&HelloArgs::new("x"), SessionConfig::default(), t0).unwrap();
        let d = envelope(&ServerMessage::Disconnect {
            code: CloseCode::TokenRequired.code(),
            reason: "token required".into(),
        });
        s.handle_envelope(t0, &d).unwrap();
        // The transport's close that follows changes nothing.
        s.handle_close(1000, "");
        match &events(&mut s)[..] {
            [Event::Closed { code, reason }] => {
                assert_eq!(CloseCode::from_code(*code), Some(CloseCode::TokenRequired));
                assert_eq!(reason, "token required");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.close_reason(), Some((4008, "token required")));
        assert!(!s.is_open() && s.welcome().is_none());

        // A dropped socket before the Welcome.
        let mut s = ClientSession::new(&HelloArgs::new("x"), SessionConfig::default(), t0).unwrap();
        s.handle_drop();
        assert!(matches!(
            &events(&mut s)[..],
            [Event::Closed { code: 1006, .. }]
        ));

        // Anything else first is a protocol error.
        let mut s = ClientSession::new(&HelloArgs::new("x"), SessionConfig::default(), t0).unwrap();
        let pong = envelope(&ServerMessage::Pong {
            client_time: 0,
            server_tick: Tick(1),
        });
        assert!(matches!(
            s.handle_envelope(t0, &pong),
            Err(SessionError::Protocol(_))
        ));
        assert!(matches!(
            s.handle_envelope(t0, &[0xff, 0xff]),
            Err(SessionError::Decode(_))
        ));
    }

    #[test]
    fn snapshots_are_verified_and_acknowledged_in_the_next_input() {
        let t0 = Instant::now();
        let mut s = open(SessionConfig::default(), t0);
        let mut server = BaselineTracker::new(quantizer(), DEFAULT_RING);
        let s1 = server.encode(Tick(1), InputSeq(0), &view(1)).message;
        let e1 = envelope(&ServerMessage::Snapshot(s1));
        s.handle_envelope(t0, &e1).unwrap();
        match &events(&mut s)[..] {
            [Event::Snapshot { outcome, bytes, .. }] => {
                assert_eq!(
                    *outcome,
                    Ok(Received::Current {
                        tick: Tick(1),
                        full: true
                    })
                );
                assert_eq!(*bytes, e1.len());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.ack_tick(), Some(Tick(1)));
        assert_eq!(s.receiver().unwrap().view(), view(1).as_slice());

        // The ack goes out in the next Input, with the frames so far.
        assert_eq!(s.send_input(1, 2, 3, 0).unwrap(), InputSeq(1));
        assert_eq!(s.send_input(4, 5, 6, 1).unwrap(), InputSeq(2));
        let out = sent(&mut s);
        match &out[..] {
            [
                (Channel::Unreliable, ClientMessage::Input { ack_tick: a1, .. }),
                (Channel::Unreliable, ClientMessage::Input { ack_tick, frames }),
            ] => {
                assert_eq!((*a1, *ack_tick), (Tick(1), Tick(1)));
                let seqs: Vec<u32> = frames.iter().map(|f| f.seq.0).collect();
                assert_eq!(seqs, [1, 2]);
            }
            other => panic!("{other:?}"),
        }

        // The server deltas against the ack; the session follows.
        server.on_ack(Tick(1));
        let s2 = server.encode(Tick(2), InputSeq(2), &view(2)).message;
        assert_eq!(s2.baseline_age, 1);
        s.handle_message(t0, ServerMessage::Snapshot(s2.clone()), 0)
            .unwrap();
        s.handle_message(t0, ServerMessage::Snapshot(s2), 0)
            .unwrap();
        let outcomes: Vec<_> = events(&mut s)
            .into_iter()
            .map(|e| match e {
                Event::Snapshot { outcome, .. } => outcome,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            outcomes,
            [
                Ok(Received::Current {
                    tick: Tick(2),
                    full: false
                }),
                Ok(Received::Duplicate { tick: Tick(2) })
            ]
        );
        assert_eq!(s.receiver().unwrap().last_input(), InputSeq(2));
        s.send_input(0, 0, 0, 0).unwrap();
        assert!(matches!(
            &sent(&mut s)[..],
            [(
                _,
                ClientMessage::Input {
                    ack_tick: Tick(2),
                    ..
                }
            )]
        ));
    }

    #[test]
    fn a_desync_is_reported_and_changes_nothing() {
        let t0 = Instant::now();
        let mut s = open(SessionConfig::default(), t0);
        let mut server = BaselineTracker::new(quantizer(), DEFAULT_RING);
        let s1 = server.encode(Tick(1), InputSeq(0), &view(1)).message;
        s.handle_message(t0, ServerMessage::Snapshot(s1), 0)
            .unwrap();
        server.on_ack(Tick(1));
        let mut bad = server.encode(Tick(2), InputSeq(0), &view(2)).message;
        bad.checksum ^= 1;
        s.handle_message(t0, ServerMessage::Snapshot(bad), 0)
            .unwrap();
        let ev = events(&mut s);
        assert!(matches!(
            ev.last(),
            Some(Event::Snapshot {
                outcome: Err(ReceiveError::ChecksumMismatch { tick: Tick(2), .. }),
                ..
            })
        ));
        assert_eq!(s.ack_tick(), Some(Tick(1)));
        assert_eq!(s.receiver().unwrap().view(), view(1).as_slice());
    }

    #[test]
    fn a_trusting_session_acks_headers_and_never_decodes() {
        let t0 = Instant::now();
        let config = SessionConfig {
            verify: false,
            ..SessionConfig::default()
        };
        let mut s = open(config, t0);
        assert!(!s.verifies());
        let mut server = BaselineTracker::new(quantizer(), DEFAULT_RING);
        let mut s1 = server.encode(Tick(5), InputSeq(0), &view(1)).message;
        // A body that would not verify: trusted anyway.
        s1.checksum ^= 1;
        let mut s0 = s1.clone();
        s0.tick = Tick(4);
        for m in [s1.clone(), s1, s0] {
            s.handle_message(t0, ServerMessage::Snapshot(m), 0).unwrap();
        }
        let outcomes: Vec<_> = events(&mut s)
            .into_iter()
            .filter_map(|e| match e {
                Event::Snapshot { outcome, .. } => Some(outcome),
                _ => None,
            })
            .collect();
        assert_eq!(
            outcomes,
            [
                Ok(Received::Current {
                    tick: Tick(5),
                    full: true
                }),
                Ok(Received::Duplicate { tick: Tick(5) }),
                Ok(Received::Stale { tick: Tick(4) }),
            ]
        );
        assert_eq!(s.ack_tick(), Some(Tick(5)));
        assert!(s.receiver().unwrap().view().is_empty());
        s.set_verify(true);
        assert_eq!(s.ack_tick(), None);
    }

    #[test]
    fn ping_and_pong_measure_the_round_trip_on_the_virtual_clock() {
        let t0 = Instant::now();
        let mut s = open(SessionConfig::default(), t0);
        s.ping(t0 + 250 * MS).unwrap();
        let [(Channel::Reliable, ClientMessage::Ping { client_time })] = sent(&mut s)[..] else {
            panic!("one ping");
        };
        assert_eq!(client_time, 250_000);
        let pong = envelope(&ServerMessage::Pong {
            client_time,
            server_tick: Tick(77),
        });
        s.handle_envelope(t0 + 290 * MS, &pong).unwrap();
        match &events(&mut s)[..] {
            [Event::Pong { rtt, server_tick }] => {
                assert_eq!((*rtt, *server_tick), (40 * MS, Tick(77)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timers_send_pings_and_acks_when_due() {
        let t0 = Instant::now();
        let config = SessionConfig {
            ping_interval: Some(1000 * MS),
            ack_delay: Some(20 * MS),
            ..SessionConfig::default()
        };
        let mut s = open(config, t0);
        // The first ping is due at the Welcome.
        assert_eq!(s.poll_timeout(), Some(t0));
        s.handle_timeout(t0).unwrap();
        assert!(matches!(
            &sent(&mut s)[..],
            [(_, ClientMessage::Ping { .. })]
        ));
        assert_eq!(s.poll_timeout(), Some(t0 + 1000 * MS));
        // Early: nothing.
        s.handle_timeout(t0 + 999 * MS).unwrap();
        assert!(sent(&mut s).is_empty());

        // A snapshot moves the ack: an Input carrying it is due 20 ms later...
        let mut server = BaselineTracker::new(quantizer(), DEFAULT_RING);
        let s1 = server.encode(Tick(1), InputSeq(0), &view(1)).message;
        s.handle_message(t0 + 100 * MS, ServerMessage::Snapshot(s1), 0)
            .unwrap();
        assert_eq!(s.poll_timeout(), Some(t0 + 120 * MS));
        s.handle_timeout(t0 + 120 * MS).unwrap();
        assert!(matches!(
            &sent(&mut s)[..],
            [(Channel::Unreliable, ClientMessage::Input { ack_tick: Tick(1), frames })]
                if frames.is_empty()
        ));
        // ...unless an input carried it first.
        server.on_ack(Tick(1));
        let s2 = server.encode(Tick(2), InputSeq(0), &view(2)).message;
        s.handle_message(t0 + 200 * MS, ServerMessage::Snapshot(s2), 0)
            .unwrap();
        assert_eq!(s.poll_timeout(), Some(t0 + 220 * MS));
        s.send_input(1, 1, 0, 0).unwrap();
        assert_eq!(s.poll_timeout(), Some(t0 + 1000 * MS));
        sent(&mut s);
        // A late call sends one ping, not a burst, and moves on.
        s.handle_timeout(t0 + 3500 * MS).unwrap();
        assert_eq!(sent(&mut s).len(), 1);
        assert_eq!(s.poll_timeout(), Some(t0 + 4500 * MS));
        // After the close, no timers.
        s.handle_drop();
        assert_eq!(s.poll_timeout(), None);
        assert!(matches!(
            events(&mut s).last(),
            Some(Event::Closed { code: 1006, .. })
        ));
    }
}
