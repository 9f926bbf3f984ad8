//! One real Tickwire client over QUIC (quinn, rustls with ring), as in PROTOCOL.md's "QUIC
//! mapping": ALPN `tickwire/1`; a bidirectional control stream opened by the client carries
//! `Hello`, `Welcome`, `Ping`, `Pong`, `Leave` and `Disconnect`, each behind a 4-byte
//! little-endian length; inputs go out as datagrams; snapshots come as datagrams, or, when too
//! large for one, each on its own server-opened unidirectional stream.
//!
//! It moves bytes between quinn and a [`ClientSession`], as the WebSocket [`crate::Client`]
//! does, and yields the same [`Event`]s, so the bots and the tests drive both alike. Datagram
//! snapshots may be lost, reordered or duplicated; the [`SnapshotReceiver`] reports those as
//! `Stale`/`Duplicate`/`MissingBaseline`, never as a desync.
//!
//! The server is authenticated by pinning the SHA-256 of its certificate (what the server logs
//! as `cert_sha256=`), or not at all with [`ServerCert::Insecure`] (local tests only).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{
    Connection, ConnectionError, Endpoint, IdleTimeout, RecvStream, SendStream, TransportConfig,
    VarInt,
};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tickwire_shared::codec::{DecodeError, MAX_SERVER_MESSAGE_BYTES, decode_server};
use tickwire_shared::quant::BoundsError;
pub use tickwire_shared::quic::{ALPN, LENGTH_PREFIX_BYTES};
use tickwire_shared::quic::{FrameDecoder, single_frame, write_frame};
use tickwire_shared::session::{
    Channel, ClientSession, HandshakeStep, SessionConfig, SessionError,
};
use tickwire_shared::{
    ClientMessage, CloseCode, InputSeq, ServerMessage, SnapshotReceiver, Tick, Welcome,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::client::{Closed, Event, HelloArgs};

/// Oversized snapshots the server may have in flight to one client at once.
const MAX_SNAPSHOT_STREAMS: u32 = 16;

/// How a client checks the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerCert {
    /// Accept only the certificate whose DER has this SHA-256 (the server logs it as
    /// `cert_sha256=`); its handshake signature is verified as usual.
    Pinned([u8; 32]),
    /// Accept any certificate: no authentication. For local tests only.
    Insecure,
}

/// Why a QUIC client failed.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// The URL is not `quic://host:port`.
    #[error("bad url {0:?}: expected quic://host:port")]
    BadUrl(String),
    /// The pinned fingerprint is not 64 hex digits.
    #[error("bad certificate SHA-256 {0:?}: expected 64 hex digits")]
    BadFingerprint(String),
    /// The TLS configuration was refused.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The TLS configuration lacks QUIC's initial cipher suite.
    #[error("TLS: no QUIC initial cipher suite")]
    NoInitialCipherSuite,
    /// The UDP socket could not be bound.
    #[error("bind: {0}")]
    Io(#[from] std::io::Error),
    /// quinn refused to start the connection.
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The QUIC connection failed (handshake, certificate, refused because full, timeout).
    #[error("connection: {0}")]
    Connection(#[from] ConnectionError),
    /// Writing to the control stream failed.
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
    /// The server sent an undecodable envelope.
    #[error("server sent an undecodable frame: {0}")]
    Decode(#[from] DecodeError),
    /// The server's Welcome carried unusable world bounds.
    #[error("welcome: {0}")]
    Bounds(#[from] BoundsError),
    /// The server did not follow the protocol (e.g. no Welcome first, bad framing).
    #[error("protocol: {0}")]
    Protocol(&'static str),
    /// The server closed the connection.
    #[error("closed by server: {code} {reason}")]
    Closed {
        /// Close code.
        code: u16,
        /// Reason text.
        reason: String,
    },
    /// No answer in time.
    #[error("timed out")]
    Timeout,
}

impl From<SessionError> for QuicError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Decode(e) => QuicError::Decode(e),
            SessionError::Bounds(e) => QuicError::Bounds(e),
            SessionError::Protocol(what) => QuicError::Protocol(what),
            SessionError::Encode(_) => QuicError::Protocol("a Hello field over its limit"),
            SessionError::NotWelcomed => QuicError::Protocol("no Welcome yet"),
            SessionError::InputExhausted => QuicError::Protocol("input sequence exhausted"),
        }
    }
}

/// Parses a certificate SHA-256 written as 64 hex digits (colons allowed, any case).
pub fn parse_sha256(text: &str) -> Result<[u8; 32], QuicError> {
    let bad = || QuicError::BadFingerprint(text.to_owned());
    let digits: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
    if digits.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let s = std::str::from_utf8(pair).map_err(|_| bad())?;
        *o = u8::from_str_radix(s, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// SHA-256 of `data`, with the ring provider's hash.
fn sha256(data: &[u8]) -> Option<[u8; 32]> {
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256.tls13()?;
    suite
        .common
        .hash_provider
        .hash(data)
        .as_ref()
        .try_into()
        .ok()
}

/// Accepts the pinned certificate (or any, when insecure) and verifies handshake signatures
/// with ring's algorithms either way.
#[derive(Debug)]
pub(crate) struct PinnedCert {
    pub(crate) pin: Option<[u8; 32]>,
    pub(crate) algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.pin {
            None => Ok(ServerCertVerified::assertion()),
            Some(pin) if sha256(end_entity.as_ref()) == Some(pin) => {
                Ok(ServerCertVerified::assertion())
            }
            Some(_) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The transport settings of a client connection: every limit explicit.
pub fn client_transport_config() -> TransportConfig {
    let mut t = TransportConfig::default();
    t.max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(10_000))))
        .keep_alive_interval(Some(Duration::from_secs(3)))
        // The server opens no bidirectional stream, and one unidirectional stream per
        // oversized snapshot.
        .max_concurrent_bidi_streams(VarInt::from_u32(0))
        .max_concurrent_uni_streams(VarInt::from_u32(MAX_SNAPSHOT_STREAMS))
        // Room for the largest envelope the protocol allows on one stream.
        .stream_receive_window(VarInt::from_u32(
            (MAX_SERVER_MESSAGE_BYTES + LENGTH_PREFIX_BYTES) as u32,
        ))
        .receive_window(VarInt::from_u32(2 * MAX_SERVER_MESSAGE_BYTES as u32))
        // Control messages are small.
        .send_window(64 * 1024)
        // Snapshots not read yet. Small on purpose: a client that falls behind should skip to
        // the newest snapshots (quinn drops the oldest), not work through seconds of stale
        // ones. It also caps the server's datagrams at this size (the path MTU is smaller).
        .datagram_receive_buffer_size(Some(8 * 1024))
        .datagram_send_buffer_size(16 * 1024);
    t
}

/// The quinn client configuration: TLS 1.3 with ring, ALPN `tickwire/1`, `cert` checking.
pub fn client_config(cert: ServerCert) -> Result<quinn::ClientConfig, QuicError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = PinnedCert {
        pin: match cert {
            ServerCert::Pinned(p) => Some(p),
            ServerCert::Insecure => None,
        },
        algorithms: provider.signature_verification_algorithms,
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(|_| QuicError::NoInitialCipherSuite)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(client_transport_config()));
    Ok(config)
}

/// Splits `quic://host:port` into the address to dial and the host name for TLS.
pub async fn resolve(url: &str) -> Result<(SocketAddr, String), QuicError> {
    let bad = || QuicError::BadUrl(url.to_owned());
    let rest = url.strip_prefix("quic://").ok_or_else(bad)?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => return Err(bad()),
    };
    let addr = tokio::net::lookup_host(authority)
        .await
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)?;
    Ok((addr, host.to_owned()))
}

/// Where client endpoints bind: the given address, else loopback for a loopback server (so
/// local runs never bind beyond it), else the unspecified address of the server's family.
fn bind_addr(server: SocketAddr, bind: Option<IpAddr>) -> SocketAddr {
    let ip = match (bind, server.ip()) {
        (Some(ip), _) => ip,
        (None, ip) if ip.is_loopback() => ip,
        (None, IpAddr::V4(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (None, IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// Kernel buffer asked for on each client UDP socket, each way: a socket shared by many bots
/// receives all their snapshots in one burst per server tick (capped by
/// `net.core.rmem_max`/`wmem_max`).
pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// A client endpoint on `addr` with enlarged socket buffers (best effort).
fn client_endpoint(addr: SocketAddr) -> Result<Endpoint, QuicError> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    let _ = state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER_BYTES);
    let _ = state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER_BYTES);
    Ok(Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )?)
}

/// Dials one server from a pool of client endpoints (UDP sockets): many bots share a few
/// sockets, as quinn demultiplexes connections by connection id.
#[derive(Debug)]
pub struct QuicConnector {
    config: quinn::ClientConfig,
    endpoints: Vec<Endpoint>,
    addr: SocketAddr,
    server_name: String,
}

impl QuicConnector {
    /// Resolves `url` and binds `endpoints` UDP sockets (at least one), round-robin over
    /// `bind_ips` (none: see [`QuicConnector`]'s rules). Must be called inside a tokio runtime.
    pub async fn new(
        url: &str,
        cert: ServerCert,
        endpoints: usize,
        bind_ips: &[IpAddr],
    ) -> Result<QuicConnector, QuicError> {
        let (addr, server_name) = resolve(url).await?;
        let config = client_config(cert)?;
        let endpoints = (0..endpoints.max(1))
            .map(|i| {
                let bind = (!bind_ips.is_empty()).then(|| bind_ips[i % bind_ips.len()]);
                client_endpoint(bind_addr(addr, bind))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(QuicConnector {
            config,
            endpoints,
            addr,
            server_name,
        })
    }

    /// Completes the QUIC handshake and opens the control stream; no `Hello` yet. `index`
    /// picks the endpoint. For tests that send arbitrary envelopes.
    pub async fn open(&self, index: usize) -> Result<QuicConn, QuicError> {
        let endpoint = &self.endpoints[index % self.endpoints.len()];
        let conn = endpoint
            .connect_with(self.config.clone(), self.addr, &self.server_name)?
            .await?;
        let (send, recv) = conn.open_bi().await?;
        Ok(QuicConn::new(conn, send, recv))
    }

    /// Connects, says `Hello` and waits (up to `wait`) for the `Welcome`.
    pub async fn connect(
        &self,
        index: usize,
        hello: &HelloArgs,
        wait: Duration,
    ) -> Result<QuicClient, QuicError> {
        let mut session = ClientSession::new(hello, SessionConfig::default(), Instant::now())?;
        let handshake = async {
            let mut raw = self.open(index).await?;
            let sent = raw.flush(&mut session).await?;
            // A snapshot datagram may overtake the Welcome on its stream; it waits in quinn's
            // datagram buffer until the Welcome has been read.
            let welcome = loop {
                let received = raw.next_control_envelope().await?;
                match session.handshake_receive(Instant::now(), received)? {
                    HandshakeStep::Welcomed(w) => break w,
                    HandshakeStep::Closed { code, reason } => {
                        return Err(QuicError::Closed { code, reason });
                    }
                    HandshakeStep::Waiting => {}
                }
            };
            Ok((raw, welcome, sent))
        };
        let (raw, welcome, sent) = timeout(wait, handshake)
            .await
            .map_err(|_| QuicError::Timeout)??;
        Ok(QuicClient {
            raw,
            session,
            welcome,
            bytes_out: sent,
            left: false,
            _connector: None,
        })
    }
}

/// An item from the task that reads the server's snapshot streams: an envelope, or framing
/// that broke the protocol.
type StreamFrame = Result<Vec<u8>, &'static str>;

/// A QUIC connection with its control stream: raw envelopes in and out. [`QuicClient`] is
/// built on it.
#[derive(Debug)]
pub struct QuicConn {
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
    /// Control-stream bytes not yet split into envelopes.
    pending: FrameDecoder,
    streams: mpsc::Receiver<StreamFrame>,
    stream_reader: JoinHandle<()>,
    out: Vec<u8>,
}

impl Drop for QuicConn {
    fn drop(&mut self) {
        // Dropped without a close: like a dropped socket, no close code (code 0; the server
        // keeps the player for a resume). Explicit, because the stream reader tasks hold
        // connection handles too.
        self.conn.close(VarInt::from_u32(0), b"");
        self.stream_reader.abort();
    }
}

impl QuicConn {
    fn new(conn: Connection, send: SendStream, recv: RecvStream) -> Self {
        let (tx, streams) = mpsc::channel(MAX_SNAPSHOT_STREAMS as usize);
        let stream_reader = tokio::spawn(read_snapshot_streams(conn.clone(), tx));
        Self {
            conn,
            send,
            recv,
            pending: FrameDecoder::server_envelopes(),
            streams,
            stream_reader,
            out: Vec::with_capacity(128),
        }
    }

    /// The QUIC connection (for datagram sizes, stats, raw datagrams).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Sends one envelope on the control stream, behind its length prefix. Returns the bytes
    /// written.
    pub async fn send_control(&mut self, envelope: &[u8]) -> Result<u64, QuicError> {
        self.out.clear();
        write_frame(&mut self.out, envelope);
        self.send.write_all(&self.out).await?;
        Ok(self.out.len() as u64)
    }

    /// Sends one envelope as a datagram if it fits the connection's datagram size, else on the
    /// control stream. Returns the bytes written.
    pub async fn send_unreliable(&mut self, envelope: &[u8]) -> Result<u64, QuicError> {
        self.send_datagram(Bytes::copy_from_slice(envelope)).await
    }

    async fn send_datagram(&mut self, envelope: Bytes) -> Result<u64, QuicError> {
        let fits = self
            .conn
            .max_datagram_size()
            .is_some_and(|max| envelope.len() <= max);
        let len = envelope.len() as u64;
        if fits && self.conn.send_datagram(envelope.clone()).is_ok() {
            return Ok(len);
        }
        self.send_control(&envelope).await
    }

    /// Sends every envelope `session` has queued: inputs as datagrams, the rest on the
    /// control stream. Returns the bytes written.
    async fn flush(&mut self, session: &mut ClientSession) -> Result<u64, QuicError> {
        let mut sent = 0;
        while let Some(t) = session.poll_transmit() {
            sent += match t.channel {
                // The session's buffer becomes the datagram's: no copy.
                Channel::Unreliable => self.send_datagram(t.envelope.into()).await?,
                Channel::Reliable => self.send_control(&t.envelope).await?,
            };
        }
        Ok(sent)
    }

    /// The next whole envelope already received on the control stream.
    fn take_control_frame(&mut self) -> Result<Option<Vec<u8>>, QuicError> {
        self.pending
            .next_frame()
            .map_err(|_| QuicError::Protocol("control envelope over the size limit"))
    }

    /// Reads the next envelope from the control stream only, undecoded, or how the
    /// connection closed. Cancel-safe.
    pub async fn next_control_envelope(&mut self) -> Result<Result<Bytes, Closed>, QuicError> {
        // Bounded: each turn either returns or consumes received bytes, and the control
        // stream ends with the connection.
        loop {
            if let Some(frame) = self.take_control_frame()? {
                return Ok(Ok(frame.into()));
            }
            if let Err(closed) = read_control(&mut self.recv, &mut self.pending, &self.conn).await {
                return Ok(Err(closed));
            }
        }
    }

    /// Reads the next envelope from the control stream only, or how the connection closed.
    /// Cancel-safe.
    pub async fn next_control_message(
        &mut self,
    ) -> Result<Result<(ServerMessage, usize), Closed>, QuicError> {
        Ok(match self.next_control_envelope().await? {
            Ok(b) => Ok((decode_server(&b)?, b.len())),
            Err(closed) => Err(closed),
        })
    }

    /// Reads the next server message from any channel, or how the connection closed.
    /// Cancel-safe.
    pub async fn next_message(
        &mut self,
    ) -> Result<Result<(ServerMessage, usize), Closed>, QuicError> {
        Ok(match self.next_envelope().await? {
            Ok(b) => Ok((decode_server(&b)?, b.len())),
            Err(closed) => Err(closed),
        })
    }

    /// Reads the next server envelope, undecoded, from any channel (control stream,
    /// datagram, snapshot stream), or how the connection closed. Cancel-safe.
    pub async fn next_envelope(&mut self) -> Result<Result<Bytes, Closed>, QuicError> {
        // Bounded: each turn either returns or consumes received bytes, and the control
        // stream ends with the connection.
        loop {
            if let Some(frame) = self.take_control_frame()? {
                return Ok(Ok(frame.into()));
            }
            let Self {
                conn,
                recv,
                pending,
                streams,
                ..
            } = self;
            tokio::select! {
                read = read_control(recv, pending, conn) => if let Err(closed) = read {
                    return Ok(Err(closed));
                },
                datagram = conn.read_datagram() => match datagram {
                    Ok(d) => return Ok(Ok(d)),
                    Err(e) => return Ok(Err(close_code(&e))),
                },
                Some(frame) = streams.recv() => {
                    return Ok(Ok(frame.map_err(QuicError::Protocol)?.into()));
                }
            }
        }
    }
}

/// Reads more of the control stream into `pending`; `Err` with the close code and reason
/// when the stream or the connection ended. Cancel-safe.
async fn read_control(
    recv: &mut RecvStream,
    pending: &mut FrameDecoder,
    conn: &Connection,
) -> Result<(), Closed> {
    match recv.read_chunk(64 * 1024, true).await {
        Ok(Some(chunk)) => {
            pending.push(&chunk.bytes);
            Ok(())
        }
        // The server finished the control stream: its close follows.
        Ok(None) => {
            let closed = timeout(Duration::from_secs(1), conn.closed()).await;
            Err(closed.map_or_else(|_| dropped(), |e| close_code(&e)))
        }
        Err(quinn::ReadError::ConnectionLost(e)) => Err(close_code(&e)),
        Err(_) => Err(dropped()),
    }
}

fn dropped() -> Closed {
    (CloseCode::Abnormal.code(), String::new())
}

/// The close code and reason a connection error stands for: the application close code the
/// server sent, or [`CloseCode::Abnormal`] for anything else (timeouts, resets, code 0).
pub fn close_code(e: &ConnectionError) -> Closed {
    match e {
        ConnectionError::ApplicationClosed(c) => match u16::try_from(c.error_code.into_inner()) {
            Ok(code) if code != 0 => (code, String::from_utf8_lossy(&c.reason).into_owned()),
            _ => dropped(),
        },
        _ => dropped(),
    }
}

/// Accepts the server's snapshot streams and reads each (one length-prefixed envelope, then
/// FIN) in its own task. Ends with the connection.
async fn read_snapshot_streams(conn: Connection, tx: mpsc::Sender<StreamFrame>) {
    while let Ok(mut stream) = conn.accept_uni().await {
        let tx = tx.clone();
        tokio::spawn(async move {
            let Ok(data) = stream
                .read_to_end(LENGTH_PREFIX_BYTES + MAX_SERVER_MESSAGE_BYTES)
                .await
            else {
                // Reset, or the connection went: nothing to deliver.
                return;
            };
            let frame = single_frame(&data)
                .map(<[u8]>::to_vec)
                .ok_or("a snapshot stream is not one length-prefixed envelope");
            let _ = tx.send(frame).await;
        });
    }
}

/// A connected, welcomed QUIC client: the QUIC twin of [`crate::Client`].
#[derive(Debug)]
pub struct QuicClient {
    raw: QuicConn,
    session: ClientSession,
    /// The server's Welcome.
    pub welcome: Welcome,
    /// Bytes sent so far (envelopes, plus length prefixes on the control stream).
    pub bytes_out: u64,
    left: bool,
    /// The connector of a client made by [`QuicClient::connect`], kept alive with it.
    _connector: Option<QuicConnector>,
}

impl QuicClient {
    /// Connects from its own UDP socket, says Hello and waits (up to `wait`) for the Welcome.
    pub async fn connect(
        url: &str,
        name: &str,
        cert: ServerCert,
        wait: Duration,
    ) -> Result<QuicClient, QuicError> {
        Self::connect_resuming(url, name, None, cert, wait).await
    }

    /// As [`QuicClient::connect`], offering a resume token from an earlier Welcome.
    pub async fn connect_resuming(
        url: &str,
        name: &str,
        resume_token: Option<u64>,
        cert: ServerCert,
        wait: Duration,
    ) -> Result<QuicClient, QuicError> {
        let hello = HelloArgs::new(name).with_resume_token(resume_token);
        Self::connect_with(url, &hello, cert, wait).await
    }

    /// As [`QuicClient::connect`], saying `hello` (a name, and optionally a resume token, a
    /// matchmaking seat and a signed player token).
    pub async fn connect_with(
        url: &str,
        hello: &HelloArgs,
        cert: ServerCert,
        wait: Duration,
    ) -> Result<QuicClient, QuicError> {
        let connector = QuicConnector::new(url, cert, 1, &[]).await?;
        let mut client = connector.connect(0, hello, wait).await?;
        client._connector = Some(connector);
        Ok(client)
    }

    /// Snapshot history and the current verified view (empty when not verifying).
    pub fn receiver(&self) -> &SnapshotReceiver {
        // A `QuicClient` exists only once its session has the Welcome, which made the
        // receiver.
        #[allow(clippy::expect_used)]
        self.session
            .receiver()
            .expect("a welcomed session has a receiver")
    }

    /// The session, for what this type does not forward.
    pub fn session(&self) -> &ClientSession {
        &self.session
    }

    /// Whether snapshots are decoded and verified (the default) or only their headers trusted
    /// (see [`crate::client::Trusted`]). Call it before reading the first snapshot, as
    /// [`crate::Client::set_verify`].
    pub fn set_verify(&mut self, verify: bool) {
        self.session.set_verify(verify);
    }

    /// Whether snapshots are decoded and verified.
    pub fn verifies(&self) -> bool {
        self.session.verifies()
    }

    /// Pings every `interval` from now on ([`QuicClient::handle_timeout`] sends them), or
    /// only on [`QuicClient::ping`].
    pub fn set_ping_interval(&mut self, interval: Option<Duration>) {
        self.session.set_ping_interval(interval, Instant::now());
    }

    /// The tick the next `Input` acknowledges: the newest verified snapshot, or, when not
    /// verifying, the newest snapshot received.
    pub fn ack_tick(&self) -> Option<Tick> {
        self.session.ack_tick()
    }

    /// When [`QuicClient::handle_timeout`] is next due (a ping, an acknowledgement), if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    /// Runs the session's timers due at `now` and sends what they produce.
    pub async fn handle_timeout(&mut self, now: Instant) -> Result<(), QuicError> {
        self.session.handle_timeout(now)?;
        self.flush().await
    }

    /// Sends one new input frame (plus the previous ones, for redundancy) and the ack of the
    /// newest verified snapshot ([`QuicClient::ack_tick`]), as a datagram. Returns the new
    /// frame's sequence number.
    pub async fn send_input(
        &mut self,
        move_x: i8,
        move_y: i8,
        aim_yaw: u16,
        buttons: u8,
    ) -> Result<InputSeq, QuicError> {
        let seq = self.session.send_input(move_x, move_y, aim_yaw, buttons)?;
        self.flush().await?;
        Ok(seq)
    }

    /// Sends a ping; its answer is an [`Event::Pong`] with the round trip.
    pub async fn ping(&mut self) -> Result<(), QuicError> {
        self.session.ping(Instant::now())?;
        self.flush().await
    }

    /// Says goodbye; the server closes with 1000.
    pub async fn leave(&mut self) -> Result<(), QuicError> {
        self.left = true;
        self.session.leave()?;
        self.flush().await
    }

    /// Sends any client message: `Input` as a datagram, the others on the control stream.
    pub async fn send(&mut self, msg: &ClientMessage) -> Result<(), QuicError> {
        self.session.send_message(msg)?;
        self.flush().await
    }

    async fn flush(&mut self) -> Result<(), QuicError> {
        self.bytes_out += self.raw.flush(&mut self.session).await?;
        Ok(())
    }

    /// The connection and control stream, for tests that send malformed envelopes.
    pub fn raw_mut(&mut self) -> &mut QuicConn {
        &mut self.raw
    }

    /// Waits for the next event. Snapshots are fed to the receiver (or, when not verifying,
    /// trusted) before they are returned. Once closed, every call returns the same
    /// [`Event::Closed`]. Cancel-safe.
    pub async fn next_event(&mut self) -> Result<Event, QuicError> {
        loop {
            if let Some(ev) = self.session.poll_event() {
                return Ok(ev);
            }
            if let Some((code, reason)) = self.session.close_reason() {
                return Ok(Event::Closed {
                    code,
                    reason: reason.to_owned(),
                });
            }
            match self.raw.next_envelope().await? {
                Ok(b) => self.session.handle_envelope(Instant::now(), &b)?,
                Err((code, reason)) => self.session.handle_close(code, &reason),
            }
        }
    }

    /// Closes the connection with 1000. After [`QuicClient::leave`] it first waits (up to a
    /// second) for the server's own close, so the `Leave` is not cut off.
    pub async fn close(self) {
        let conn = &self.raw.conn;
        if self.left {
            let _ = timeout(Duration::from_secs(1), conn.closed()).await;
        }
        conn.close(VarInt::from_u32(CloseCode::Normal.into()), b"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_any_usual_spelling() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let want = sha256(b"").unwrap();
        assert_eq!(parse_sha256(hex).unwrap(), want);
        assert_eq!(parse_sha256(&hex.to_uppercase()).unwrap(), want);
        let colons: Vec<String> = hex
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        assert_eq!(parse_sha256(&colons.join(":")).unwrap(), want);
        for bad in ["", "abc", &hex[1..], &format!("{}zz", &hex[2..])] {
            assert!(parse_sha256(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn close_codes_from_connection_errors() {
        let app = |code: u64, reason: &'static [u8]| {
            ConnectionError::ApplicationClosed(quinn::ApplicationClose {
                error_code: VarInt::from_u64(code).unwrap(),
                reason: reason.into(),
            })
        };
        assert_eq!(close_code(&app(1001, b"bye")), (1001, "bye".into()));
        let abnormal = CloseCode::Abnormal.code();
        assert_eq!(close_code(&app(0, b"")).0, abnormal);
        assert_eq!(close_code(&app(70_000, b"")).0, abnormal);
        assert_eq!(close_code(&ConnectionError::TimedOut).0, abnormal);
    }

    #[tokio::test]
    async fn urls() {
        let (addr, host) = resolve("quic://127.0.0.1:4433").await.unwrap();
        assert_eq!((addr.port(), host.as_str()), (4433, "127.0.0.1"));
        let (addr, host) = resolve("quic://[::1]:9/x").await.unwrap();
        assert_eq!((addr.port(), host.as_str()), (9, "::1"));
        for bad in ["ws://127.0.0.1:1/ws", "quic://127.0.0.1", "quic://"] {
            assert!(resolve(bad).await.is_err(), "{bad}");
        }
    }
}
