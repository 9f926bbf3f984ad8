//! The transport-agnostic half of a client session: the handshake rules, what each decoded
//! [`ClientMessage`] does, the close codes, the metrics, and the loop that ties a transport's
//! inbound messages to the simulation's [`Outbound`] slot.
//!
//! A transport ([`crate::ws`], [`crate::quic`]) only moves bytes: it implements [`Transport`]
//! (receive the next client envelope, send a reliable envelope, send a snapshot, close with a
//! code) and calls [`run`]. So WebSocket and QUIC clients produce the same simulation events
//! and see the same protocol behaviour, and the simulation never knows which one a client uses.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Poll;
use tickwire_shared::CloseCode;

use std::time::Duration;
use tickwire_shared::codec::{DecodeError, decode_client, encode_server, peek_hello_version};
use tickwire_shared::message::MAX_REASON_BYTES;
use tickwire_shared::token::{PlayerClaims, TokenError};
use tickwire_shared::{ClientId, ClientMessage, PROTOCOL_VERSION, ServerMessage, Tick};

use tokio::time::{Instant, sleep_until};
use tracing::debug;

use crate::Shared;
use crate::directory::ClaimError;
use crate::metrics::DisconnectReason;
use crate::registry::{Place, RoomError};
use crate::replication::SnapshotFrame;
use crate::room::{Closing, Control, InputMsg, Outbound};

/// How a session ended.
#[derive(Debug)]
pub(crate) struct End {
    /// The metrics label.
    pub(crate) why: DisconnectReason,
    /// Close code and reason to send, if the connection can still take them. `None` drops the
    /// connection without a code.
    pub(crate) close: Option<Closing>,
    /// The player is gone for good (no resume).
    pub(crate) graceful: bool,
}

impl End {
    /// Close with a code (after a `Disconnect` with the same code).
    pub(crate) fn close(why: DisconnectReason, code: CloseCode, reason: &'static str) -> Self {
        Self {
            why,
            close: Some(Closing::new(code, reason)),
            graceful: true,
        }
    }

    /// The connection is gone (or unusable): no close code, the player may resume.
    pub(crate) fn dropped() -> Self {
        Self {
            why: DisconnectReason::Dropped,
            close: None,
            graceful: false,
        }
    }

    /// The peer closed the connection itself (without `Leave`): the player may resume.
    pub(crate) fn peer_closed() -> Self {
        Self {
            why: DisconnectReason::Normal,
            close: None,
            graceful: false,
        }
    }

    /// A write stalled past the write timeout.
    pub(crate) fn slow() -> Self {
        Self {
            why: DisconnectReason::SlowClient,
            close: None,
            graceful: false,
        }
    }

    /// The server is shutting down.
    pub(crate) fn shutdown() -> Self {
        Self::close(
            DisconnectReason::Shutdown,
            CloseCode::GoingAway,
            "server shutting down",
        )
    }

    /// An envelope that breaks the protocol.
    pub(crate) fn protocol(reason: &'static str) -> Self {
        Self::close(
            DisconnectReason::ProtocolError,
            CloseCode::ProtocolError,
            reason,
        )
    }

    /// `Hello` with a protocol version this server does not speak.
    pub(crate) fn bad_version() -> Self {
        Self::close(
            DisconnectReason::BadVersion,
            CloseCode::BadVersion,
            "unsupported protocol version",
        )
    }

    /// A message over the size limit.
    pub(crate) fn too_big() -> Self {
        Self::close(
            DisconnectReason::TooBig,
            CloseCode::TooBig,
            "message too big",
        )
    }
}

/// Which kind of channel an envelope arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channel {
    /// Reliable and ordered (a WebSocket, the QUIC control stream).
    Reliable,
    /// Unreliable and unordered (a QUIC datagram): only `Input` may come this way, and an
    /// `Input` that overtakes the `Hello` is dropped instead of being an error.
    Datagram,
}

/// What a transport received.
#[derive(Debug)]
pub(crate) enum Inbound<F> {
    /// One client envelope, not yet decoded.
    Frame(F, Channel),
    /// Something the transport handled itself (a stream being opened, a chunk of a stream).
    Nothing,
    /// A transport control message the transport answered itself (a WebSocket ping or pong):
    /// it counts against the message budget like an envelope.
    Control,
    /// The connection ended or broke the transport's rules.
    End(End),
}

/// The byte-moving half of a session.
pub(crate) trait Transport {
    /// One received envelope.
    type Frame: AsRef<[u8]>;

    /// The next thing the client sent. Must be cancel-safe: [`run`] races it against the
    /// outbound slot and the timers.
    async fn recv(&mut self) -> Inbound<Self::Frame>;

    /// Sends one envelope reliably and in order (`Welcome`, `Pong`). Returns the bytes written.
    async fn send_reliable(&mut self, frame: &[u8]) -> Result<u64, End>;

    /// Sends one snapshot envelope (this client's header, then the shared body) by whatever
    /// path suits it. Returns the bytes written.
    async fn send_snapshot(&mut self, frame: SnapshotFrame) -> Result<u64, End>;

    /// Whether a snapshot [`Transport::send_snapshot`] took is sure to reach the client, in
    /// order (TCP): then a bandwidth budget may delta against it before it is acknowledged.
    fn reliable(&self) -> bool {
        true
    }

    /// The largest snapshot envelope that goes in one packet (a QUIC datagram), if any: a
    /// bandwidth budget is capped to it.
    fn snapshot_limit(&self) -> Option<usize> {
        None
    }

    /// Writes out whatever the transport has queued for the socket (the tail of a snapshot
    /// the simulation wrote directly, see [`crate::wire`]), within the write timeout.
    async fn drain(&mut self) -> Result<(), End> {
        Ok(())
    }

    /// Best effort, bounded in time: `disconnect` (the encoded `Disconnect` envelope, when it
    /// could be encoded) reliably, then the transport's own close with `code` and `reason`.
    async fn close(self, code: CloseCode, reason: &str, disconnect: Option<&[u8]>);
}

/// The close for a refused player token.
fn token_end(e: TokenError) -> End {
    let (code, reason) = match e {
        TokenError::Expired => (CloseCode::TokenExpired, "player token expired"),
        TokenError::WrongRoom => (
            CloseCode::TokenWrongRoom,
            "player token is for another room",
        ),
        _ => (CloseCode::TokenInvalid, "player token invalid"),
    };
    End::close(DisconnectReason::TokenRefused, code, reason)
}

/// The close for a room that cannot take the session.
fn room_end(e: RoomError) -> End {
    let reason = match e {
        RoomError::Full => "room full",
        RoomError::Gone => "room gone",
        RoomError::UnknownKind(_) => "no such game kind here",
        RoomError::World(_) => "room could not start",
    };
    End::close(
        DisconnectReason::RoomUnavailable,
        CloseCode::RoomUnavailable,
        reason,
    )
}

/// Counts one session against `--max-clients` for as long as it lives (both transports).
#[derive(Debug)]
pub(crate) struct SessionSlot(Arc<Shared>);

impl SessionSlot {
    /// A slot, or `None` (counted as refused) when the server is full.
    pub(crate) fn acquire(sh: &Arc<Shared>) -> Option<SessionSlot> {
        let open = sh.metrics.open_sessions.fetch_add(1, Relaxed);
        if open >= sh.cfg.max_clients as u64 {
            sh.metrics.open_sessions.fetch_sub(1, Relaxed);
            sh.metrics.refused_full.fetch_add(1, Relaxed);
            return None;
        }
        Some(SessionSlot(sh.clone()))
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.metrics.open_sessions.fetch_sub(1, Relaxed);
    }
}

struct Session<T> {
    t: T,
    sh: Arc<Shared>,
    client: ClientId,
    out: Arc<Outbound>,
    /// The room, once `Hello` found it; `joined` says whether the room still has this client.
    place: Option<Place>,
    joined: bool,
    welcomed: bool,
    resume_token: Option<u64>,
    buf: Vec<u8>,
}

/// Per-session message budget (a token bucket): a client may send about two messages per tick
/// plus a small burst; `Input`, `Ping` and WebSocket control frames (ping, pong) all count.
/// Messages over it are dropped and counted, so one flooding client cannot fill the
/// simulation's shared input queue and crowd out everyone else's inputs and
/// acknowledgements. Legitimate clients lose nothing: each Input repeats the last 8 frames.
///
/// A client that keeps sending far over it is closed with 4013: more than [`FLOOD_FACTOR`]
/// times its per-second budget dropped within one second (280 at 30 Hz: it sent at five times
/// the budget for a whole second). A client whose messages were held up by the network and
/// arrive in one burst stays well under that: a 5 s stall at 30 inputs a second is 150
/// messages, of which the burst lets 32 through.
#[derive(Debug)]
pub(crate) struct RateLimit {
    tokens: f64,
    per_sec: f64,
    burst: f64,
    last: Instant,
    /// Start of the current one-second window of dropped messages, and how many it has.
    window: Instant,
    dropped: u32,
    flood: u32,
}

/// A client is flooding when it has more than this many times its per-second budget dropped
/// within one second.
pub(crate) const FLOOD_FACTOR: f64 = 4.0;

/// What the budget says about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    /// Within budget: handle it.
    Take,
    /// Over budget: drop it (and count it).
    Drop,
    /// Far over budget for a second: close the client with 4013.
    Flooding,
}

impl RateLimit {
    pub(crate) fn new(tick_rate: u32, now: Instant) -> Self {
        let per_sec = 2.0 * f64::from(tick_rate) + 10.0;
        let burst = 32.0;
        Self {
            tokens: burst,
            per_sec,
            burst,
            last: now,
            window: now,
            dropped: 0,
            flood: (FLOOD_FACTOR * per_sec) as u32,
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> Budget {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Budget::Take;
        }
        if now.saturating_duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.dropped = 0;
        }
        self.dropped += 1;
        if self.dropped > self.flood {
            Budget::Flooding
        } else {
            Budget::Drop
        }
    }
}

impl End {
    /// Far over the message budget.
    fn flooding() -> Self {
        Self::close(
            DisconnectReason::Flooding,
            CloseCode::Flooding,
            "too many messages",
        )
    }
}

/// Runs one session to its end: Hello within `hello_deadline`, then messages both ways until
/// `Leave`, a protocol error, the simulation closing it, the peer going away or shutdown. Then
/// tells the simulation, counts the disconnect and closes the transport with the code.
pub(crate) async fn run<T: Transport>(
    t: T,
    sh: Arc<Shared>,
    client: ClientId,
    out: Arc<Outbound>,
    hello_deadline: Instant,
    peer: Option<std::net::IpAddr>,
) {
    let mut s = Session {
        t,
        sh,
        client,
        out,
        place: None,
        joined: false,
        welcomed: false,
        resume_token: None,
        buf: Vec::with_capacity(256),
    };
    // Each future a connection awaits is boxed, here and by its callers (`ws::serve`,
    // `ws::serve_tcp`, `http::upgrade`): an async fn that awaits another inline holds room
    // for it about twice over, so one connection's nested futures came to 26.9 KB (the
    // spawned task; this loop 1.7 KB of it, the close 5 KB), and 2,000 connections to some
    // 50 MB. Boxed, a connection holds 6 KB of futures while it runs; the close's box lives
    // only while it closes.
    let end = Box::pin(s.serve(hello_deadline)).await;
    // From here on only the session writes: `Disconnect` and the close frame go behind
    // everything already on its way, and nothing after them.
    s.out.stop_wire();
    if let Some(place) = s.place.take() {
        if s.joined {
            // The control channel is unbounded and outlives every session; a send error means
            // the room is already gone, when there is nothing left to leave.
            let _ = place.room.control.send(Control::Leave {
                client,
                graceful: end.graceful,
            });
        }
        if let Some(token) = s.resume_token {
            let grace = (!end.graceful).then(|| s.sh.cfg.resume_grace());
            s.sh.registry.end_resume(token, grace);
        }
        drop(place);
    }
    s.sh.metrics.disconnect(end.why);
    debug!(why = end.why.label(), "session ended");
    if let Some(Closing { code, reason }) = end.close {
        let reason = &reason[..reason.len().min(MAX_REASON_BYTES)];
        s.buf.clear();
        let msg = ServerMessage::Disconnect {
            code: code.code(),
            reason: reason.to_owned(),
        };
        let disconnect = encode_server(&msg, &mut s.buf)
            .is_ok()
            .then_some(&s.buf[..]);
        // A flooder's source is refused at accept for --flood-penalty, from now on: a
        // flooder that reconnects at once costs a refused accept, not a handshake, an upgrade
        // and another second of flood.
        if let Some(ip) = peer
            && end.why == DisconnectReason::Flooding
            && !s.sh.cfg.flood_penalty.is_zero()
        {
            s.sh.pending
                .penalize(ip, std::time::Instant::now() + s.sh.cfg.flood_penalty);
        }
        Box::pin(s.t.close(code, reason, disconnect)).await;
    }
}

impl<T: Transport> Session<T> {
    async fn serve(&mut self, hello_deadline: Instant) -> End {
        let mut shutdown = self.sh.shutdown.clone();
        if *shutdown.borrow() {
            return End::shutdown();
        }
        // The futures that outlive one turn of the loop are made once: re-creating a watch
        // wait, a timer and a Notify wait on every message or snapshot was a measurable share
        // of a connection's CPU at 2,000 clients.
        let out = self.out.clone();
        let shutdown = shutdown.changed();
        let hello = sleep_until(hello_deadline);
        let notified = out.notify.notified();
        tokio::pin!(shutdown, hello, notified);
        loop {
            // Unbiased: a client whose writes are slow still gets its acks and inputs read.
            tokio::select! {
                _ = &mut shutdown => return End::shutdown(),
                _ = &mut hello, if !self.welcomed => {
                    return End::close(
                        DisconnectReason::HandshakeTimeout,
                        CloseCode::PolicyViolation,
                        "no Hello in time",
                    );
                }
                _ = notified.as_mut() => {
                    notified.set(out.notify.notified());
                    if let Some(end) = self.flush_outbound().await {
                        return end;
                    }
                    // Nothing in hand: the simulation may write snapshots to the socket
                    // itself again (only `flush_outbound` takes from the slot).
                    out.idle();
                }
                inbound = self.t.recv() => {
                    let end = match inbound {
                        Inbound::Frame(bytes, channel) => self.on_frame(bytes.as_ref(), channel).await,
                        Inbound::Nothing => None,
                        Inbound::Control => {
                            (self.charge() == Budget::Flooding).then(End::flooding)
                        }
                        Inbound::End(end) => Some(end),
                    };
                    if let Some(end) = end {
                        return end;
                    }
                }
            }
        }
    }

    /// Charges one message to the budget, counting a dropped one.
    fn charge(&mut self) -> Budget {
        // The connection's one budget, which the simulation's direct reads charge too.
        let b = self.out.charge(self.sh.cfg.sim.tick_rate, Instant::now());
        if b != Budget::Take {
            self.sh.metrics.inputs_rate_limited.fetch_add(1, Relaxed);
        }
        b
    }

    async fn flush_outbound(&mut self) -> Option<End> {
        let st = self.out.take();
        if let Some(w) = st.welcome {
            self.welcomed = true;
            if let Some(place) = &self.place {
                self.resume_token = Some(w.resume_token);
                self.sh
                    .registry
                    .route_resume(w.resume_token, &place.room.id);
            }
            if let Err(end) = self.send(&ServerMessage::Welcome(w)).await {
                return Some(end);
            }
        }
        // Closing: no more snapshots, so the Disconnect and the close frame queue right behind
        // what the socket already holds for the client.
        let mut close = st.close;
        // A snapshot from the slot, or else the tail of one the simulation wrote itself
        // (only ever after the `Welcome`: the wait must not take the `Welcome` from the slot).
        if close.is_none() && (st.snapshot.is_some() || self.welcomed) {
            match self.send_snapshots(st.snapshot).await {
                Ok(c) => close = c,
                Err(end) => return Some(end),
            }
        }
        if let Some(closing) = close {
            // The simulation already dropped this client.
            self.joined = false;
            let why = match closing.code {
                CloseCode::AckTimeout => DisconnectReason::AckTimeout,
                CloseCode::TooFarBehind => DisconnectReason::TooFarBehind,
                _ => DisconnectReason::Replaced,
            };
            return Some(End {
                why,
                close: Some(closing),
                graceful: true,
            });
        }
        None
    }

    /// Sends `frame` (with `None`: writes out what the transport has queued, see
    /// [`Transport::drain`]). While the socket makes it wait (a client that is not reading),
    /// keeps taking what the room puts in the slot meanwhile: a newer snapshot waits its turn
    /// (latest wins), and a close stops the wait at once and is returned, so a lagging
    /// client is closed with its code instead of being dropped as slow when the write
    /// times out. A newer snapshot goes back into the slot once the write is done, so the
    /// session loop reads the client's acks and inputs before it sends that one: a client
    /// on a slow link, whose every write waits, must not go unread (and ack-time out).
    async fn send_snapshots(
        &mut self,
        frame: Option<SnapshotFrame>,
    ) -> Result<Option<Closing>, End> {
        let out = self.out.clone();
        let metrics = self.sh.metrics.clone();
        let mut newer = None;
        let tick = frame.as_ref().map(SnapshotFrame::tick);
        let (reliable, limit) = (self.t.reliable(), self.t.snapshot_limit());
        let t = &mut self.t;
        let send = async move {
            match frame {
                Some(frame) => t.send_snapshot(frame).await,
                None => t.drain().await.map(|()| 0),
            }
        };
        tokio::pin!(send);
        // Nearly every write completes at once; only one that waits arms the Notify wait
        // (re-made per snapshot, it would cost every connection measurable CPU).
        let sent = match std::future::poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await {
            Poll::Ready(r) => r,
            Poll::Pending => loop {
                tokio::select! {
                    biased;
                    r = &mut send => break r,
                    _ = out.notify.notified() => {
                        let st = out.take();
                        if st.close.is_some() {
                            // What the transport already took of the frame (all of a
                            // queued tail) goes out ahead of the close, whole frames only.
                            return Ok(st.close);
                        }
                        if let Some(s) = st.snapshot
                            && newer.replace(s).is_some()
                        {
                            metrics.snapshots_superseded.fetch_add(1, Relaxed);
                        }
                    }
                }
            },
        };
        let n = sent?;
        if let Some(tick) = tick {
            if reliable {
                out.set_delivered(tick);
            }
            out.set_snapshot_limit(limit);
            metrics.bytes_sent.fetch_add(n, Relaxed);
            metrics.snapshots_sent.fetch_add(1, Relaxed);
        }
        if let Some(f) = newer {
            out.put_back_snapshot(f, &metrics);
        }
        Ok(None)
    }

    async fn on_frame(&mut self, bytes: &[u8], channel: Channel) -> Option<End> {
        let msg = match decode_client(bytes) {
            Ok(m) => m,
            Err(DecodeError::TooLarge { .. }) => return Some(End::too_big()),
            // An older client's Hello does not decode: tell it the version is the problem.
            Err(_)
                if !self.joined
                    && peek_hello_version(bytes).is_some_and(|v| v != PROTOCOL_VERSION) =>
            {
                return Some(End::bad_version());
            }
            Err(_) => return Some(End::protocol("undecodable message")),
        };
        // Counted here only: the session sees every message, the room only the Inputs that
        // passed the rate limit and the queue.
        self.sh.metrics.inbound_messages.fetch_add(1, Relaxed);
        if channel == Channel::Datagram && !matches!(msg, ClientMessage::Input { .. }) {
            return Some(End::protocol("only Input may be sent as a datagram"));
        }
        if !self.joined && matches!(msg, ClientMessage::Ping { .. } | ClientMessage::Leave) {
            return Some(End::protocol("message before Hello"));
        }
        if matches!(
            msg,
            ClientMessage::Input { .. } | ClientMessage::Ping { .. }
        ) {
            match self.charge() {
                Budget::Take => {}
                Budget::Drop => return None,
                Budget::Flooding => return Some(End::flooding()),
            }
        }
        match msg {
            ClientMessage::Hello {
                protocol_version,
                resume_token,
                seat,
                auth,
                ..
            } => {
                if self.place.is_some() {
                    return Some(End::protocol("second Hello"));
                }
                if protocol_version != PROTOCOL_VERSION {
                    return Some(End::bad_version());
                }
                // The token before the seat: a refused token must not use up a seat.
                let claims = match self.check_token(auth.as_deref()) {
                    Ok(c) => c,
                    Err(end) => return Some(end),
                };
                // A seat names its room: a token for another room is refused before the seat
                // is claimed (a claim is single-use).
                if let (Some(c), Some(t)) = (
                    &claims,
                    seat.as_deref().and_then(crate::directory::Token::parse),
                ) && c.check_room(t.room_id).is_err()
                {
                    return Some(token_end(TokenError::WrongRoom));
                }
                let place = match self.enter(seat.as_deref(), resume_token).await {
                    Ok(p) => p,
                    Err(end) => return Some(end),
                };
                if let Some(c) = &claims
                    && c.check_room(&place.room.id).is_err()
                {
                    return Some(token_end(TokenError::WrongRoom));
                }
                // A bandwidth budget fits even the first snapshots to one packet.
                self.out.set_snapshot_limit(self.t.snapshot_limit());
                let join = Control::Join {
                    client: self.client,
                    resume: resume_token,
                    player_id: claims.map(|c| c.player_id),
                    out: self.out.clone(),
                };
                if place.room.control.send(join).is_err() {
                    return Some(End::shutdown());
                }
                self.place = Some(place);
                self.joined = true;
                // tungstenite has returned the Hello and holds nothing after it: on plain TCP
                // the simulation reads the client's inputs from here on (`crate::wire`).
                if self.sh.cfg.direct_reads {
                    self.out.start_reads(self.sh.cfg.sim.tick_rate);
                }
                None
            }
            ClientMessage::Input { ack_tick, frames } => {
                if !self.joined {
                    // A datagram may overtake the Hello on its stream: not the client's fault.
                    return match channel {
                        Channel::Datagram => None,
                        Channel::Reliable => Some(End::protocol("Input before Hello")),
                    };
                }
                // Full queue: drop this message. The next one repeats its frames.
                let msg = InputMsg {
                    client: self.client,
                    ack: ack_tick,
                    frames,
                };
                let sent = self.place.as_ref().is_some_and(|p| p.room.send_input(msg));
                if !sent {
                    self.sh.metrics.inputs_dropped.fetch_add(1, Relaxed);
                }
                None
            }
            ClientMessage::Ping { client_time } => {
                let server_tick =
                    Tick(self.place.as_ref().map_or(0, |p| p.room.tick.load(Relaxed)));
                self.send(&ServerMessage::Pong {
                    client_time,
                    server_tick,
                })
                .await
                .err()
            }
            ClientMessage::Leave => Some(End::close(
                DisconnectReason::Normal,
                CloseCode::Normal,
                "bye",
            )),
        }
    }

    /// The claims of the `Hello`'s player token, when the server checks tokens
    /// (`--auth-secret-file`); `Ok(None)` when it does not.
    fn check_token(&self, auth: Option<&str>) -> Result<Option<PlayerClaims>, End> {
        let Some(key) = &self.sh.cfg.auth else {
            return Ok(None);
        };
        let Some(text) = auth else {
            return Err(End::close(
                DisconnectReason::TokenRefused,
                CloseCode::TokenRequired,
                "this server needs a player token",
            ));
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        key.verify(text, now).map(Some).map_err(token_end)
    }

    /// Finds the room a `Hello` goes to and takes a place in it: the seat's room (claimed in
    /// the directory, and made here if this is its first player), else the room a resume
    /// token leads back to, else the default room.
    async fn enter(&self, seat: Option<&str>, resume: Option<u64>) -> Result<Place, End> {
        let sh = &self.sh;
        let Some(token) = seat else {
            let room = resume
                .and_then(|t| sh.registry.resume_room(t))
                .or_else(|| sh.default_room.clone());
            let Some(room) = room else {
                return Err(End::close(
                    DisconnectReason::SeatMissing,
                    CloseCode::SeatRequired,
                    "this server needs a seat from matchmaking",
                ));
            };
            return sh.registry.enter(&room, self.client).map_err(room_end);
        };
        let _gate = sh.claim_gate.read().await;
        let seq = sh.claims.fetch_add(1, Relaxed) + 1;
        let claimed = sh.directory.claim(token, seq).await.map_err(|e| match e {
            ClaimError::Expired => End::close(
                DisconnectReason::SeatExpired,
                CloseCode::SeatExpired,
                "seat expired",
            ),
            ClaimError::Invalid => End::close(
                DisconnectReason::SeatInvalid,
                CloseCode::SeatInvalid,
                "seat unknown or used",
            ),
            ClaimError::Foreign => End::close(
                DisconnectReason::SeatForeign,
                CloseCode::SeatForeign,
                "seat for a room on another node",
            ),
            ClaimError::RoomGone => room_end(RoomError::Gone),
            ClaimError::Unavailable(_) => End::close(
                DisconnectReason::DirectoryUnavailable,
                CloseCode::TryAgainLater,
                "room directory unreachable",
            ),
        })?;
        sh.registry
            .get_or_create(&claimed.room_id, &claimed.kind, claimed.max_clients, true)
            .and_then(|_| sh.registry.enter(&claimed.room_id, self.client))
            .map_err(room_end)
    }

    /// Encodes and sends one envelope reliably.
    async fn send(&mut self, msg: &ServerMessage) -> Result<(), End> {
        self.buf.clear();
        if encode_server(msg, &mut self.buf).is_err() {
            return Err(End::close(
                DisconnectReason::ProtocolError,
                CloseCode::InternalError,
                "encode failed",
            ));
        }
        let n = self.t.send_reliable(&self.buf).await?;
        self.sh.metrics.bytes_sent.fetch_add(n, Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_drops_then_calls_a_second_far_over_it_flooding() {
        let t0 = Instant::now();
        let mut b = RateLimit::new(30, t0);
        // The burst, then drops.
        for _ in 0..32 {
            assert_eq!(b.take(t0), Budget::Take);
        }
        for _ in 0..280 {
            assert_eq!(b.take(t0), Budget::Drop);
        }
        assert_eq!(b.take(t0), Budget::Flooding);

        // At the budget's rate (70/s at 30 Hz) nothing is dropped.
        let mut b = RateLimit::new(30, t0);
        let mut now = t0;
        for _ in 0..700 {
            now += Duration::from_millis(15);
            assert_eq!(b.take(now), Budget::Take);
        }
        // Twice the rate for ten seconds: half dropped, never flooding (each one-second
        // window drops about 70).
        for _ in 0..1400 {
            now += Duration::from_micros(7143);
            assert_ne!(b.take(now), Budget::Flooding);
        }
    }
}
