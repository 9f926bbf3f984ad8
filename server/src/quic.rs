//! The QUIC transport (quinn, rustls with the ring provider): for native clients, snapshots
//! travel as unreliable datagrams (RFC 9221), so one lost packet delays only itself; the
//! delta-against-acknowledged-baseline design absorbs the loss.
//!
//! Mapping (shared/PROTOCOL.md, "QUIC mapping"): ALPN `tickwire/1`; the client opens one
//! bidirectional *control stream* and sends `Hello` on it; control envelopes (`Hello`,
//! `Welcome`, `Ping`, `Pong`, `Leave`, `Disconnect`) travel on it, each behind a 4-byte
//! little-endian length. Snapshots go as datagrams when they fit the connection's current
//! datagram size, otherwise each on a new server-opened unidirectional stream (one
//! length-prefixed envelope, then FIN). Inputs come as datagrams. The session rules are the
//! WebSocket's, from [`crate::session`]; close codes become QUIC application error codes.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tickwire_shared::CloseCode;

use bytes::Bytes;
use quinn::crypto::rustls::{HandshakeData, QuicServerConfig};
use quinn::{
    Connection, ConnectionError, Endpoint, EndpointConfig, IdleTimeout, Incoming, ReadError,
    RecvStream, SendDatagramError, SendStream, TransportConfig, VarInt, WriteError,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tickwire_shared::ClientId;
pub use tickwire_shared::quic::{ALPN, LENGTH_PREFIX_BYTES};
use tickwire_shared::quic::{FrameDecoder, write_frame};
use tokio::time::{Instant, timeout, timeout_at};
use tracing::{debug, warn};

use crate::Shared;
use crate::metrics::Metrics;
use crate::replication::SnapshotFrame;
use crate::session::{self, Channel, End, Inbound, SessionSlot, Transport};

/// A connection that receives no packet at all for this long is gone (keep-alives, snapshots
/// and acknowledgements keep a live one busy).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Keep-alive interval, well inside [`IDLE_TIMEOUT`].
pub const KEEP_ALIVE: Duration = Duration::from_secs(3);

/// Largest chunk read from the control stream at once; with one envelope of at most
/// [`tickwire_shared::codec::MAX_CLIENT_MESSAGE_BYTES`] parsed before the next read, a session buffers at most this
/// plus one envelope.
const READ_CHUNK: usize = 4096;

/// Kernel buffer asked for on the UDP socket, each way. Every client's snapshots leave in one
/// burst per tick and every input is its own packet: the 208 KiB Linux default overflows at a
/// thousand clients, and each overflow is a QUIC loss. The kernel caps it at
/// `net.core.rmem_max`/`wmem_max`.
pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// How long a close waits for the `Disconnect` on the control stream to be acknowledged before
/// it closes the connection anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Why the QUIC endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// A PEM file does not hold what it should.
    #[error("PEM: {0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
    /// The certificate file holds no certificate.
    #[error("the certificate file holds no certificate")]
    NoCertificate,
    /// rcgen could not make the self-signed certificate.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate, key or settings.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The TLS configuration lacks the cipher suite QUIC's initial packets need.
    #[error("TLS: no QUIC initial cipher suite")]
    NoInitialCipherSuite,
    /// The UDP socket could not be bound.
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A certificate chain and its private key: the server's QUIC identity.
pub struct TlsIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    self_signed: bool,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            self_signed: self.self_signed,
        }
    }
}

impl fmt::Debug for TlsIdentity {
    // Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("cert_sha256", &self.cert_sha256())
            .field("chain_len", &self.chain.len())
            .field("self_signed", &self.self_signed)
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// From PEM text: a certificate chain (leaf first) and a private key (PKCS#8, PKCS#1 or
    /// SEC1).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, QuicError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>()?;
        if chain.is_empty() {
            return Err(QuicError::NoCertificate);
        }
        Ok(Self {
            chain,
            key: PrivateKeyDer::from_pem_slice(key_pem)?,
            self_signed: false,
        })
    }

    /// A fresh self-signed certificate (rcgen) for `localhost`, `127.0.0.1` and `::1`. Clients
    /// pin it by [`TlsIdentity::cert_sha256`].
    pub fn self_signed() -> Result<Self, QuicError> {
        let names = ["localhost", "127.0.0.1", "::1"].map(String::from);
        let ck = rcgen::generate_simple_self_signed(names.to_vec())?;
        Ok(Self {
            chain: vec![ck.cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()).into(),
            self_signed: true,
        })
    }

    /// The certificate chain, leaf first.
    pub(crate) fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The private key.
    pub(crate) fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// Whether this identity was generated at start rather than loaded.
    pub fn is_self_signed(&self) -> bool {
        self.self_signed
    }

    /// The leaf certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        self.chain.first().map_or(&[], |c| c.as_ref())
    }

    /// SHA-256 of the leaf certificate's DER, lowercase hex: what clients pin.
    pub fn cert_sha256(&self) -> String {
        sha256_hex(self.certificate_der())
    }
}

/// SHA-256 of `data` as lowercase hex, computed with the ring provider's hash.
pub fn sha256_hex(data: &[u8]) -> String {
    // TLS13_AES_128_GCM_SHA256 is a TLS 1.3 suite, so `tls13()` is always `Some`.
    rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .map_or_else(String::new, |s| {
            s.common
                .hash_provider
                .hash(data)
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
}

/// The transport settings of every server connection: every limit explicit.
pub fn server_transport_config() -> TransportConfig {
    let mut t = TransportConfig::default();
    t.max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(
        IDLE_TIMEOUT.as_millis() as u32,
    ))))
    .keep_alive_interval(Some(KEEP_ALIVE))
    // The client's control stream, and nothing else: clients open no unidirectional streams.
    .max_concurrent_bidi_streams(VarInt::from_u32(1))
    .max_concurrent_uni_streams(VarInt::from_u32(0))
    // Clients send small envelopes on the control stream (at most 512 bytes each).
    .stream_receive_window(VarInt::from_u32(8 * 1024))
    .receive_window(VarInt::from_u32(16 * 1024))
    // Unacknowledged stream data per connection (oversized snapshots, control replies).
    .send_window(256 * 1024)
    // About 40 inputs (about a second at 30 Hz). Kept small on purpose: when the session falls
    // behind, quinn drops the oldest, so the newest input (which repeats the last 8 frames and
    // carries the newest ack) is never stuck behind a backlog. This is also the largest
    // datagram a client may send (its max_datagram_frame_size); an Input is at most 95 bytes.
    .datagram_receive_buffer_size(Some(4 * 1024))
    // About ten full-size snapshot datagrams waiting for congestion window; the oldest go first.
    .datagram_send_buffer_size(16 * 1024);
    t
}

/// A bound QUIC endpoint ready to accept Tickwire clients.
#[derive(Debug)]
pub struct QuicListener {
    endpoint: Endpoint,
    local: SocketAddr,
    cert_sha256: String,
    self_signed: bool,
}

impl QuicListener {
    /// Binds UDP `addr` (port 0 picks a free port) and serves `identity` with ALPN
    /// `tickwire/1`, TLS 1.3, ring. Must be called inside a tokio runtime.
    pub fn bind(addr: SocketAddr, identity: &TlsIdentity) -> Result<QuicListener, QuicError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto =
            QuicServerConfig::try_from(tls).map_err(|_| QuicError::NoInitialCipherSuite)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server
            .transport_config(Arc::new(server_transport_config()))
            // Connection attempts waiting to be accepted or refused.
            .max_incoming(4096);
        let bind_err = |source| QuicError::Bind { addr, source };
        let socket = std::net::UdpSocket::bind(addr).map_err(bind_err)?;
        enlarge_buffers(&socket);
        let endpoint = Endpoint::new(
            EndpointConfig::default(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_err)?;
        let local = endpoint.local_addr().map_err(bind_err)?;
        Ok(QuicListener {
            endpoint,
            local,
            cert_sha256: identity.cert_sha256(),
            self_signed: identity.is_self_signed(),
        })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// SHA-256 of the served certificate (lowercase hex).
    pub fn cert_sha256(&self) -> &str {
        &self.cert_sha256
    }

    pub(crate) fn is_self_signed(&self) -> bool {
        self.self_signed
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// Asks for [`SOCKET_BUFFER_BYTES`] each way; warns when the kernel grants less.
fn enlarge_buffers(socket: &std::net::UdpSocket) {
    let state = match quinn::udp::UdpSocketState::new(socket.into()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot configure the QUIC socket");
            return;
        }
    };
    let _ = state.set_recv_buffer_size(socket.into(), SOCKET_BUFFER_BYTES);
    let _ = state.set_send_buffer_size(socket.into(), SOCKET_BUFFER_BYTES);
    // Linux reports twice what it grants (the other half is its bookkeeping).
    let granted = state.recv_buffer_size(socket.into()).unwrap_or(0) / 2;
    if granted < SOCKET_BUFFER_BYTES {
        warn!(
            granted,
            wanted = SOCKET_BUFFER_BYTES,
            "small UDP receive buffer: raise net.core.rmem_max for many QUIC clients"
        );
    }
}

/// Runs one incoming QUIC connection to its end: the `--max-clients` check, the QUIC
/// handshake, the ALPN check, then the shared session.
pub(crate) async fn handle(incoming: Incoming, sh: Arc<Shared>, client: ClientId) {
    let deadline = Instant::now() + sh.cfg.handshake_timeout;
    if !incoming.remote_address_validated() && incoming.may_retry() {
        // Stateless retry: the client must echo a token to its real address before the server
        // keeps any state or a --max-clients slot for it, so forged Initials cost nothing.
        let _ = incoming.retry();
        return;
    }
    let Some(_slot) = SessionSlot::acquire(&sh) else {
        debug!("refused: server full");
        incoming.refuse();
        return;
    };
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => {
            debug!(error = %e, "QUIC accept failed");
            return;
        }
    };
    let mut shutdown = sh.shutdown.clone();
    if *shutdown.borrow() {
        return;
    }
    let conn = tokio::select! {
        c = timeout_at(deadline, connecting) => match c {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                debug!(error = %e, "QUIC handshake failed");
                return;
            }
            Err(_) => {
                debug!("QUIC handshake timed out");
                return;
            }
        },
        _ = shutdown.changed() => return,
    };
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<HandshakeData>().ok())
        .and_then(|d| d.protocol);
    if alpn.as_deref() != Some(ALPN) {
        conn.close(
            VarInt::from_u32(CloseCode::ProtocolError.into()),
            b"ALPN tickwire/1 required",
        );
        return;
    }
    debug!("QUIC connected");
    let t = QuicTransport {
        conn,
        control: None,
        reader: FrameDecoder::client_envelopes(),
        write_timeout: sh.cfg.write_timeout,
        metrics: sh.metrics.clone(),
        out: Vec::with_capacity(256),
    };
    // QUIC flooders are not penalized at the TCP accept: their connections are cheap to refuse
    // in quinn already (--max-clients), and a QUIC source may be a shared NAT.
    let out = Arc::new(crate::room::Outbound::default());
    session::run(t, sh, client, out, deadline, None).await;
}

/// Writes `frame` behind its length prefix into `out` (cleared first).
fn length_prefixed(out: &mut Vec<u8>, frame: &[u8]) {
    out.clear();
    write_frame(out, frame);
}

/// How a QUIC connection error ends the session.
fn connection_end(e: &ConnectionError) -> End {
    match e {
        // The client closed (with any code): like a WebSocket close frame without `Leave`.
        ConnectionError::ApplicationClosed(_) | ConnectionError::ConnectionClosed(_) => {
            End::peer_closed()
        }
        _ => End::dropped(),
    }
}

fn read_end(e: &ReadError) -> End {
    match e {
        ReadError::ConnectionLost(e) => connection_end(e),
        ReadError::Reset(_) => End::peer_closed(),
        _ => End::dropped(),
    }
}

fn write_end(e: &WriteError) -> End {
    match e {
        WriteError::ConnectionLost(e) => connection_end(e),
        WriteError::Stopped(_) => End::peer_closed(),
        _ => End::dropped(),
    }
}

/// One QUIC connection, as the session sees it.
struct QuicTransport {
    conn: Connection,
    /// The client's control stream, once it has opened it.
    control: Option<(SendStream, RecvStream)>,
    reader: FrameDecoder,
    write_timeout: Duration,
    metrics: Arc<Metrics>,
    out: Vec<u8>,
}

impl QuicTransport {
    fn datagram(d: Result<impl AsRef<[u8]>, ConnectionError>) -> Inbound<Vec<u8>> {
        match d {
            Ok(b) => Inbound::Frame(b.as_ref().to_vec(), Channel::Datagram),
            Err(e) => Inbound::End(connection_end(&e)),
        }
    }

    /// A snapshot too large for a datagram: a new unidirectional stream holding it alone.
    async fn send_on_stream(&mut self, frame: &[u8]) -> Result<u64, End> {
        length_prefixed(&mut self.out, frame);
        let (conn, out) = (&self.conn, &self.out);
        let work = async {
            let mut s = conn.open_uni().await.map_err(|e| connection_end(&e))?;
            s.write_all(out).await.map_err(|e| write_end(&e))?;
            // Finishing a stream we just wrote cannot fail; if it did, dropping it finishes it.
            let _ = s.finish();
            Ok(out.len() as u64)
        };
        let n = timeout(self.write_timeout, work)
            .await
            .map_err(|_| End::slow())??;
        self.metrics.snapshots_on_stream.fetch_add(1, Relaxed);
        Ok(n)
    }
}

impl Transport for QuicTransport {
    type Frame = Vec<u8>;

    async fn recv(&mut self) -> Inbound<Vec<u8>> {
        match self.reader.next_frame() {
            Ok(Some(frame)) => return Inbound::Frame(frame, Channel::Reliable),
            Ok(None) => {}
            Err(_) => return Inbound::End(End::too_big()),
        }
        let Self {
            conn,
            control,
            reader,
            ..
        } = self;
        match control {
            None => tokio::select! {
                bi = conn.accept_bi() => match bi {
                    Ok(streams) => {
                        *control = Some(streams);
                        Inbound::Nothing
                    }
                    Err(e) => Inbound::End(connection_end(&e)),
                },
                d = conn.read_datagram() => Self::datagram(d),
            },
            Some((_, recv)) => tokio::select! {
                chunk = recv.read_chunk(READ_CHUNK, true) => match chunk {
                    Ok(Some(chunk)) => {
                        reader.push(&chunk.bytes);
                        Inbound::Nothing
                    }
                    // The client finished its control stream: it is going away.
                    Ok(None) => Inbound::End(End::peer_closed()),
                    Err(e) => Inbound::End(read_end(&e)),
                },
                d = conn.read_datagram() => Self::datagram(d),
            },
        }
    }

    async fn send_reliable(&mut self, frame: &[u8]) -> Result<u64, End> {
        let Some((send, _)) = self.control.as_mut() else {
            // Replies only follow a message on the control stream, so it exists.
            return Err(End::dropped());
        };
        length_prefixed(&mut self.out, frame);
        match timeout(self.write_timeout, send.write_all(&self.out)).await {
            Ok(Ok(())) => Ok(self.out.len() as u64),
            Ok(Err(e)) => Err(write_end(&e)),
            Err(_) => Err(End::slow()),
        }
    }

    fn reliable(&self) -> bool {
        // Datagrams may be lost or reordered.
        false
    }

    fn snapshot_limit(&self) -> Option<usize> {
        self.conn.max_datagram_size()
    }

    async fn send_snapshot(&mut self, frame: SnapshotFrame) -> Result<u64, End> {
        let fits = self
            .conn
            .max_datagram_size()
            .is_some_and(|max| frame.len() <= max);
        if !fits {
            return self.send_on_stream(&frame.to_vec()).await;
        }
        // A datagram is one buffer: the one copy of the shared body (see ws.rs for why not a
        // reclaimed BytesMut).
        let frame = Bytes::from(frame.to_vec());
        let len = frame.len() as u64;
        // `send_datagram` never waits: under congestion quinn drops the oldest queued
        // datagram, which is what a latest-wins snapshot stream wants.
        match self.conn.send_datagram(frame.clone()) {
            Ok(()) => Ok(len),
            Err(SendDatagramError::ConnectionLost(e)) => Err(connection_end(&e)),
            // The path MTU shrank since the check, or datagrams went away: use a stream.
            Err(_) => self.send_on_stream(&frame).await,
        }
    }

    async fn close(mut self, code: CloseCode, reason: &str, disconnect: Option<&[u8]>) {
        if let (Some((send, _)), Some(frame)) = (self.control.as_mut(), disconnect) {
            length_prefixed(&mut self.out, frame);
            let out = &self.out;
            let work = async {
                if send.write_all(out).await.is_ok() {
                    let _ = send.finish();
                    // Acknowledged by the client's QUIC stack: the close below cannot
                    // overtake it.
                    let _ = send.stopped().await;
                }
            };
            let _ = timeout(CLOSE_WAIT, work).await;
        }
        self.conn
            .close(VarInt::from_u32(code.into()), reason.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_identity_has_a_stable_fingerprint() {
        let id = TlsIdentity::self_signed().unwrap();
        let fp = id.cert_sha256();
        assert_eq!(fp.len(), 64);
        assert!(
            fp.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(id.clone().cert_sha256(), fp);
        assert!(!format!("{id:?}").contains("PRIVATE"));
        // The empty string's SHA-256, a known vector.
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn identity_from_pem() {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let id = TlsIdentity::from_pem(
            ck.cert.pem().as_bytes(),
            ck.signing_key.serialize_pem().as_bytes(),
        )
        .unwrap();
        assert_eq!(id.certificate_der(), ck.cert.der().as_ref());
        assert!(!id.is_self_signed());
        assert!(matches!(
            TlsIdentity::from_pem(b"", ck.signing_key.serialize_pem().as_bytes()),
            Err(QuicError::NoCertificate)
        ));
    }
}
