//! One bot client over either transport: [`BotClient`] wraps the WebSocket [`Client`] or the
//! [`QuicClient`] behind the same calls and the same [`Event`]s, and [`Connector`] makes them
//! from a [`LoadConfig`], so the bot loop in [`crate::load`] does not care which it drives.
//! With matchmaking ([`LoadConfig::matchmake`]) every bot first gets a seat over HTTP and
//! then dials the URL the matchmaker gave, with the seat in its `Hello`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tickwire_shared::token::{PlayerClaims, TokenError, TokenKey};
use tickwire_shared::{CloseCode, InputSeq, Welcome};

use crate::client::{Client, ClientError, Event, HelloArgs, WsUrl};
use crate::load::LoadConfig;
use crate::matchmake::{MatchmakeError, MatchmakerUrl, Mode, request_seat};
use crate::quic::{QuicClient, QuicConnector, QuicError, ServerCert};
use crate::tls::{TlsError, TlsTrust};

/// UDP sockets the QUIC bots of one run share at most (quinn demultiplexes by connection id).
const MAX_QUIC_ENDPOINTS: usize = 32;
/// Seats a matchmade bot asks for at most (the first try and the retries).
pub const MATCHMAKE_ATTEMPTS: u32 = 4;
/// The wait before the first retry; it doubles for each further one.
const MATCHMAKE_BACKOFF: Duration = Duration::from_millis(200);
/// How long a bot's player token outlives the run's end (clock skew, a slow ramp).
const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// Which transport the bots use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TransportKind {
    /// Binary WebSocket over TCP (`ws://host:port/ws`).
    #[default]
    Ws,
    /// QUIC with datagram snapshots (`quic://host:port`).
    Quic,
}

/// Why a bot client failed, on either transport.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// A WebSocket client error.
    #[error(transparent)]
    Ws(#[from] ClientError),
    /// A QUIC client error.
    #[error(transparent)]
    Quic(#[from] QuicError),
    /// QUIC needs a certificate check: a pinned SHA-256 or, explicitly, none.
    #[error("QUIC needs --cert-sha256 HEX (the server logs cert_sha256=) or --insecure")]
    NoCertCheck,
    /// No seat from the matchmaker (after the retries).
    #[error(transparent)]
    Matchmake(#[from] MatchmakeError),
    /// A QUIC bot got a seat on a node without a `quic_url`.
    #[error("the matchmaker's answer for room {0} has no quic_url")]
    NoQuicUrl(String),
    /// The `wss://` TLS configuration was refused.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A bot's player token could not be signed.
    #[error("player token: {0}")]
    Token(#[from] TokenError),
}

impl BotError {
    /// The close code of a `Hello` the server refused, if that is what happened.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            BotError::Ws(ClientError::Closed { code, .. })
            | BotError::Quic(QuicError::Closed { code, .. }) => Some(*code),
            _ => None,
        }
    }

    /// Whether a matchmade bot should ask for a new seat after this: its `Hello` was refused
    /// because the directory was unreachable (1013), the seat expired or was refused (4004,
    /// 4005) or the room filled or went away (4007).
    pub fn wants_new_seat(&self) -> bool {
        self.close_code()
            .and_then(CloseCode::from_code)
            .is_some_and(CloseCode::wants_new_seat)
    }

    /// Whether the server broke the protocol (an undecodable frame, a message out of order),
    /// as opposed to a connection failing.
    pub fn is_protocol(&self) -> bool {
        matches!(
            self,
            BotError::Ws(ClientError::Decode(_) | ClientError::Protocol(_))
                | BotError::Quic(QuicError::Decode(_) | QuicError::Protocol(_))
        )
    }
}

/// Signs each bot's player token (`--auth-secret-file`).
#[derive(Debug, Clone)]
pub struct TokenMinter {
    key: Arc<TokenKey>,
    expires_at: u64,
}

impl TokenMinter {
    /// Tokens signed with `key`, valid until `expires_at` (Unix seconds).
    pub fn new(key: Arc<TokenKey>, expires_at: u64) -> Self {
        Self { key, expires_at }
    }

    /// Tokens valid from now for `run` plus a margin ([`TOKEN_MARGIN`]).
    pub fn for_run(key: Arc<TokenKey>, run: Duration) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self::new(key, (now + run + TOKEN_MARGIN).as_secs())
    }

    /// Bot `index`'s token: player id `bot-INDEX`, for any room.
    pub fn token(&self, index: usize) -> Result<String, TokenError> {
        self.key.sign(&PlayerClaims {
            player_id: format!("bot-{index}"),
            expires_at: self.expires_at,
            room: None,
        })
    }
}

/// Makes bot clients for one run: how they reach the server, and their player tokens.
#[derive(Debug)]
pub struct Connector {
    /// Where and how the bots connect.
    pub route: Route,
    /// Signs each bot's token, when the server wants one.
    pub tokens: Option<TokenMinter>,
}

/// How a run's bots reach the server.
#[derive(Debug)]
pub enum Route {
    /// WebSocket: every bot dials the URL.
    Ws {
        /// `ws://host:port/ws` or `wss://host:port/ws`.
        url: String,
        /// For `wss://`.
        tls: Option<Arc<rustls::ClientConfig>>,
    },
    /// QUIC: bots share a pool of client endpoints.
    Quic(QuicConnector),
    /// Matchmaking: every bot asks for a seat, then connects where the answer says.
    Matchmade(Matchmade),
}

/// The matchmaking connector: where to ask for seats, and (QUIC) one endpoint pool per node.
#[derive(Debug)]
pub struct Matchmade {
    url: MatchmakerUrl,
    kind: String,
    room_size: Option<u32>,
    transport: TransportKind,
    cert: Option<ServerCert>,
    /// For `wss://` answers.
    tls: Option<Arc<rustls::ClientConfig>>,
    endpoints: usize,
    bind_ips: Vec<IpAddr>,
    quic: tokio::sync::Mutex<HashMap<String, Arc<QuicConnector>>>,
}

impl Matchmade {
    /// The QUIC connector for `url`, made (and kept) on first use.
    async fn quic(&self, url: &str) -> Result<Arc<QuicConnector>, BotError> {
        let cert = self.cert.ok_or(BotError::NoCertCheck)?;
        let mut pools = self.quic.lock().await;
        if let Some(c) = pools.get(url) {
            return Ok(c.clone());
        }
        let c = Arc::new(QuicConnector::new(url, cert, self.endpoints, &self.bind_ips).await?);
        pools.insert(url.to_owned(), c.clone());
        Ok(c)
    }

    /// Gets a seat and connects with it, asking again (with backoff) when the matchmaker fails
    /// in a way a retry may fix or the seat is refused at `Hello` ([`BotError::wants_new_seat`]).
    /// Returns the client and its room id.
    async fn connect(
        &self,
        index: usize,
        hello: &HelloArgs,
        bind: Option<IpAddr>,
        wait: Duration,
    ) -> Result<(BotClient, String), BotError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= MATCHMAKE_ATTEMPTS;
            let result = self.try_once(index, hello, bind, wait).await;
            match result {
                Ok(joined) => return Ok(joined),
                Err(BotError::Matchmake(e)) if e.is_retryable() && !last => {}
                Err(e) if e.wants_new_seat() && !last => {}
                Err(e) => return Err(e),
            }
            // 200 ms, 400 ms, 800 ms, ..., spread over bots so that retries do not march together.
            let base = MATCHMAKE_BACKOFF * 2u32.pow(attempt - 1);
            let jitter = base.mul_f64((index % 16) as f64 / 16.0);
            tokio::time::sleep(base + jitter).await;
        }
    }

    async fn try_once(
        &self,
        index: usize,
        hello: &HelloArgs,
        bind: Option<IpAddr>,
        wait: Duration,
    ) -> Result<(BotClient, String), BotError> {
        let seat = request_seat(
            &self.url,
            Mode::JoinOrCreate,
            &self.kind,
            self.room_size,
            bind,
            wait,
        )
        .await?;
        let hello = hello.clone().with_seat(Some(seat.seat_token));
        let client = match self.transport {
            TransportKind::Ws => BotClient::Ws(
                Client::connect_with_tls(&seat.ws_url, &hello, self.tls.as_ref(), bind, wait)
                    .await?,
            ),
            TransportKind::Quic => {
                let url = seat
                    .quic_url
                    .ok_or_else(|| BotError::NoQuicUrl(seat.room_id.clone()))?;
                let q = self.quic(&url).await?;
                // The pool stays in `self.quic` for the run (the connector outlives the bots).
                BotClient::Quic(q.connect(index, &hello, wait).await?)
            }
        };
        Ok((client, seat.room_id))
    }
}

impl Connector {
    /// A connector for `cfg` (for QUIC: resolves the URL and binds the client sockets).
    pub async fn new(cfg: &LoadConfig) -> Result<Connector, BotError> {
        let cert = match (cfg.cert_sha256, cfg.insecure) {
            (Some(pin), _) => Some(ServerCert::Pinned(pin)),
            (None, true) => Some(ServerCert::Insecure),
            (None, false) => None,
        };
        let tokens = cfg
            .auth
            .as_ref()
            .map(|key| TokenMinter::for_run(key.clone(), cfg.duration + cfg.connect_timeout));
        let route = Self::route(cfg, cert).await?;
        Ok(Connector { route, tokens })
    }

    async fn route(cfg: &LoadConfig, cert: Option<ServerCert>) -> Result<Route, BotError> {
        let trust = match (&cfg.ws_tls, cfg.insecure) {
            (Some(t), _) => Some(t.clone()),
            (None, true) => Some(TlsTrust::Insecure),
            (None, false) => None,
        };
        let tls = trust.map(|t| t.client_config()).transpose()?;
        if let Some(mm) = &cfg.matchmake {
            if cfg.transport == TransportKind::Quic && cert.is_none() {
                return Err(BotError::NoCertCheck);
            }
            return Ok(Route::Matchmade(Matchmade {
                url: MatchmakerUrl::parse(&mm.url)?,
                kind: mm.kind.clone(),
                room_size: mm.room_size,
                transport: cfg.transport,
                cert,
                tls,
                endpoints: cfg.bots.clamp(1, MAX_QUIC_ENDPOINTS),
                bind_ips: cfg.bind_ips.clone(),
                quic: tokio::sync::Mutex::new(HashMap::new()),
            }));
        }
        match cfg.transport {
            TransportKind::Ws => {
                // Refused now, not once per bot.
                if WsUrl::parse(&cfg.url)?.tls && tls.is_none() {
                    return Err(ClientError::NoTls(cfg.url.clone()).into());
                }
                Ok(Route::Ws {
                    url: cfg.url.clone(),
                    tls,
                })
            }
            TransportKind::Quic => {
                let cert = cert.ok_or(BotError::NoCertCheck)?;
                let endpoints = cfg.bots.clamp(1, MAX_QUIC_ENDPOINTS);
                let c = QuicConnector::new(&cfg.url, cert, endpoints, &cfg.bind_ips).await?;
                Ok(Route::Quic(c))
            }
        }
    }

    /// Connects bot `index` (from `bind`, for WebSocket; QUIC bots use the endpoint pool),
    /// says Hello (with its player token, if the run has a secret) and waits up to `wait` for
    /// the Welcome. With matchmaking, first gets a seat
    /// (each request and each connection waits up to `wait`; see [`MATCHMAKE_ATTEMPTS`]).
    /// Returns the client and, when matchmade, the id of its room.
    pub async fn connect(
        &self,
        index: usize,
        name: &str,
        bind: Option<IpAddr>,
        wait: Duration,
    ) -> Result<(BotClient, Option<String>), BotError> {
        let auth = self.tokens.as_ref().map(|t| t.token(index)).transpose()?;
        let hello = HelloArgs::new(name).with_auth(auth);
        Ok(match &self.route {
            Route::Ws { url, tls } => (
                BotClient::Ws(
                    Client::connect_with_tls(url, &hello, tls.as_ref(), bind, wait).await?,
                ),
                None,
            ),
            Route::Quic(q) => (BotClient::Quic(q.connect(index, &hello, wait).await?), None),
            Route::Matchmade(m) => {
                let (client, room) = m.connect(index, &hello, bind, wait).await?;
                (client, Some(room))
            }
        })
    }
}

/// A connected, welcomed client on either transport.
#[derive(Debug)]
pub enum BotClient {
    /// Over WebSocket.
    Ws(Client),
    /// Over QUIC.
    Quic(QuicClient),
}

impl BotClient {
    /// The server's Welcome.
    pub fn welcome(&self) -> &Welcome {
        match self {
            BotClient::Ws(c) => &c.welcome,
            BotClient::Quic(c) => &c.welcome,
        }
    }

    /// Verify every snapshot (the default), or only read and decode the envelope, trust the
    /// header and acknowledge its tick (see [`crate::client::Trusted`]). Call it before the
    /// first [`BotClient::next_event`].
    pub fn set_verify(&mut self, verify: bool) {
        match self {
            BotClient::Ws(c) => c.set_verify(verify),
            BotClient::Quic(c) => c.set_verify(verify),
        }
    }

    /// See [`tickwire_shared::ClientSession::staleness`]: how far behind the newest verified view its least
    /// recently refreshed entry is, in ticks (`None` when not verifying).
    pub fn staleness(&self) -> Option<u32> {
        match self {
            BotClient::Ws(c) => c.session().staleness(),
            BotClient::Quic(c) => c.session().staleness(),
        }
    }

    /// Bytes sent so far.
    pub fn bytes_out(&self) -> u64 {
        match self {
            BotClient::Ws(c) => c.bytes_out,
            BotClient::Quic(c) => c.bytes_out,
        }
    }

    /// Sends one new input frame with the redundant older ones and the newest ack.
    pub async fn send_input(
        &mut self,
        move_x: i8,
        move_y: i8,
        aim_yaw: u16,
        buttons: u8,
    ) -> Result<InputSeq, BotError> {
        Ok(match self {
            BotClient::Ws(c) => c.send_input(move_x, move_y, aim_yaw, buttons).await?,
            BotClient::Quic(c) => c.send_input(move_x, move_y, aim_yaw, buttons).await?,
        })
    }

    /// Sends a ping; its answer is an [`Event::Pong`] with the round trip.
    pub async fn ping(&mut self) -> Result<(), BotError> {
        match self {
            BotClient::Ws(c) => c.ping().await?,
            BotClient::Quic(c) => c.ping().await?,
        }
        Ok(())
    }

    /// Pings every `interval` from now on (sent by [`BotClient::handle_timeout`]).
    pub fn set_ping_interval(&mut self, interval: Option<Duration>) {
        match self {
            BotClient::Ws(c) => c.set_ping_interval(interval),
            BotClient::Quic(c) => c.set_ping_interval(interval),
        }
    }

    /// When [`BotClient::handle_timeout`] is next due, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self {
            BotClient::Ws(c) => c.poll_timeout(),
            BotClient::Quic(c) => c.poll_timeout(),
        }
    }

    /// Runs the session's timers due at `now` (pings, acknowledgements) and sends what they
    /// produce.
    pub async fn handle_timeout(&mut self, now: Instant) -> Result<(), BotError> {
        match self {
            BotClient::Ws(c) => c.handle_timeout(now).await?,
            BotClient::Quic(c) => c.handle_timeout(now).await?,
        }
        Ok(())
    }

    /// Says goodbye.
    pub async fn leave(&mut self) -> Result<(), BotError> {
        match self {
            BotClient::Ws(c) => c.leave().await?,
            BotClient::Quic(c) => c.leave().await?,
        }
        Ok(())
    }

    /// The next event (cancel-safe on both transports).
    pub async fn next_event(&mut self) -> Result<Event, BotError> {
        Ok(match self {
            BotClient::Ws(c) => c.next_event().await?,
            BotClient::Quic(c) => c.next_event().await?,
        })
    }

    /// Closes the connection.
    pub async fn close(self) {
        match self {
            BotClient::Ws(c) => c.close().await,
            BotClient::Quic(c) => c.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::load::MatchmakeConfig;

    #[test]
    fn refused_seats_are_asked_for_again_other_closes_are_not() {
        let closed = |code| {
            BotError::Ws(ClientError::Closed {
                code,
                reason: String::new(),
            })
        };
        for code in [1013, 4004, 4005, 4007] {
            assert!(closed(code).wants_new_seat(), "{code}");
        }
        for code in [1002, 4001, 4003, 4006, 1006] {
            assert!(!closed(code).wants_new_seat(), "{code}");
        }
        assert_eq!(closed(4007).close_code(), Some(4007));
        assert!(!BotError::NoCertCheck.wants_new_seat());
    }

    #[tokio::test]
    async fn matchmaking_needs_an_http_url_and_for_quic_a_cert_check() {
        let mut cfg = LoadConfig {
            matchmake: Some(MatchmakeConfig {
                url: "http://127.0.0.1:8080".into(),
                kind: "arena".into(),
                room_size: Some(8),
            }),
            ..LoadConfig::default()
        };
        match Connector::new(&cfg).await.unwrap().route {
            Route::Matchmade(m) => {
                assert_eq!(m.url.port, 8080);
                assert_eq!((m.kind.as_str(), m.room_size), ("arena", Some(8)));
            }
            other => panic!("not matchmade: {other:?}"),
        }
        cfg.transport = TransportKind::Quic;
        assert!(matches!(
            Connector::new(&cfg).await,
            Err(BotError::NoCertCheck)
        ));
        cfg.transport = TransportKind::Ws;
        if let Some(m) = cfg.matchmake.as_mut() {
            m.url = "ws://127.0.0.1:8080/ws".into();
        }
        assert!(matches!(
            Connector::new(&cfg).await,
            Err(BotError::Matchmake(MatchmakeError::BadUrl(_)))
        ));
    }
}
