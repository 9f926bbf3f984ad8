//! TLS for `wss://` (tokio-rustls, ring): the stream a WebSocket client runs over, plain or
//! TLS, and the client configuration that says which server certificates to trust.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::quic::PinnedCert;

/// Which server certificates a `wss://` client accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsTrust {
    /// Certificates that chain to one of these (a CA, or the server's own self-signed
    /// certificate), for the URL's host name, as usual (`--ca-cert PEM`).
    Roots(Vec<CertificateDer<'static>>),
    /// Any certificate: no authentication, only encryption. For local tests (`--insecure`).
    Insecure,
}

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The PEM holds no certificate, or one that does not parse.
    #[error("no usable certificate in the PEM")]
    NoCertificate,
    /// rustls refused the configuration or a certificate.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsTrust {
    /// Trust the certificates of a PEM file's contents (`--ca-cert`).
    pub fn from_pem(pem: &[u8]) -> Result<TlsTrust, TlsError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| TlsError::NoCertificate)?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        Ok(TlsTrust::Roots(certs))
    }

    /// The client configuration for this trust: TLS with the ring provider, ALPN `http/1.1`
    /// (the WebSocket upgrade is HTTP/1.1). Made once per run and shared by every bot.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let mut config = match self {
            TlsTrust::Roots(certs) => {
                let mut roots = RootCertStore::empty();
                for cert in certs {
                    roots.add(cert.clone())?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            TlsTrust::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedCert {
                    pin: None,
                    algorithms: provider.signature_verification_algorithms,
                }))
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The byte stream under a client's WebSocket: TCP, or TLS over TCP for `wss://`.
#[derive(Debug)]
pub enum WsStream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://` (boxed: the TLS state is large, and most bots run without it).
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for WsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WsStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            WsStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WsStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            WsStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WsStream::Plain(s) => Pin::new(s).poll_flush(cx),
            WsStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WsStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            WsStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WsStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            WsStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            WsStream::Plain(s) => s.is_write_vectored(),
            WsStream::Tls(s) => s.is_write_vectored(),
        }
    }
}
