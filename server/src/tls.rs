//! TLS on the game port (`--tls-cert`, `--tls-key`): `https://` and `wss://` through rustls
//! with the ring provider, on the same certificate QUIC serves. The handshake runs in the
//! front door ([`crate::http`]) before hyper sees a byte, under the handshake timeout and
//! counted as a connection still in HTTP.

use std::sync::Arc;

use crate::quic::TlsIdentity;

/// ALPN for the game port: HTTP/1.1 only (the WebSocket upgrade is an HTTP/1.1 request, and
/// hyper is set up for HTTP/1.1 alone).
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The game port's TLS settings for `identity`: TLS 1.3 and 1.2 (older WebSocket clients;
/// QUIC is 1.3 only), ring's cipher suites, no client certificates, ALPN `http/1.1`.
pub fn server_config(identity: &TlsIdentity) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(identity.chain().to_vec(), identity.key().clone_key())?;
    cfg.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_identity_makes_a_config() {
        let id = TlsIdentity::self_signed().unwrap();
        let cfg = server_config(&id).unwrap();
        assert_eq!(cfg.alpn_protocols, [ALPN_HTTP11]);
    }
}
