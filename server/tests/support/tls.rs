//! A throwaway PKI for TLS tests: a CA made with rcgen, a leaf for `localhost` and
//! `127.0.0.1` signed by it (the server's identity), and clients that trust only that CA.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};
use tickwire_server::TlsIdentity;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub(crate) struct TestPki {
    /// The CA certificate clients trust.
    pub(crate) ca: CertificateDer<'static>,
    /// The leaf chain (leaf, then CA), PEM, as `--tls-cert` takes it.
    pub(crate) chain_pem: String,
    /// The leaf's key, PEM, as `--tls-key` takes it.
    pub(crate) key_pem: String,
    /// The same, loaded.
    pub(crate) identity: TlsIdentity,
}

impl TestPki {
    pub(crate) fn new() -> TestPki {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "tickwire test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let chain_pem = format!("{}{}", leaf.pem(), ca.pem());
        let key_pem = leaf_key.serialize_pem();
        let identity = TlsIdentity::from_pem(chain_pem.as_bytes(), key_pem.as_bytes()).unwrap();
        TestPki {
            ca: ca.der().clone(),
            chain_pem,
            key_pem,
            identity,
        }
    }

    /// A client config that trusts only this CA (ring, ALPN http/1.1).
    pub(crate) fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }

    /// A TLS connection to `addr`, checking the server is `localhost`.
    pub(crate) async fn connect(&self, addr: SocketAddr) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        TlsConnector::from(self.client_config())
            .connect(name, tcp)
            .await
            .unwrap()
    }
}
