//! What `tickwire-server` does around a [`Server`] once its command line is parsed, for any
//! binary that ships a game of its own (`server/examples/tag` is one): logging, the TLS crypto
//! provider, the environment Agones sets, the open-file limit, the async runtime, the
//! listeners, and stopping on Ctrl-C or SIGTERM.
//!
//! ```no_run
//! # fn main() -> Result<(), tickwire_server::launch::LaunchError> {
//! use clap::Parser as _;
//! let cli = tickwire_server::Cli::parse();
//! tickwire_server::launch::init(cli.log_format);
//! let mut config = cli.into_config()?;
//! tickwire_server::launch::apply_environment(&mut config)?;
//! tickwire_server::launch::serve(config, tickwire_server::Server::new)
//! # }
//! ```

use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, LogFormat, ServerConfig};
use crate::quic::{QuicError, QuicListener, TlsIdentity};
use crate::{Server, ServerError};

/// Why a server binary could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The command line does not make a configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `AGONES_SDK_HTTP_PORT` is set but is not a port.
    #[error("AGONES_SDK_HTTP_PORT={0:?} is not a port")]
    AgonesPort(String),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The HTTP and WebSocket port could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The QUIC endpoint could not start.
    #[error("QUIC: {0}")]
    Quic(#[from] QuicError),
    /// The server stopped with an error.
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// Logs to stderr (stdout stays free for tools), in `format`, at the level of `RUST_LOG`
/// (default `info`), with colours only on a terminal; and installs the process's one rustls
/// crypto provider, ring.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt.with_ansi(ansi).init(),
        LogFormat::Json => fmt.json().init(),
    }
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        tracing::warn!("a rustls crypto provider was already installed");
    }
}

/// What the environment adds to `config` (nothing below a binary's `main` reads it): under
/// Agones the SDK sidecar's port, `AGONES_SDK_HTTP_PORT`. Also raises the open-file limit to
/// fit `--max-clients` (a warning when the hard limit is lower).
pub fn apply_environment(config: &mut ServerConfig) -> Result<(), LaunchError> {
    if let Ok(port) = std::env::var("AGONES_SDK_HTTP_PORT") {
        let parsed = port
            .trim()
            .parse::<u16>()
            .map_err(|_| LaunchError::AgonesPort(port.clone()))?;
        config.rooms.agones_port = Some(parsed);
    }
    // Two descriptors per plain-TCP WebSocket (the connection's, and the simulation's
    // duplicate for its direct writes, `crate::wire`), and room for listeners and files.
    let want = 2 * config.max_clients as u64 + 256;
    match tickwire_shared::rlimit::raise_nofile(want) {
        Ok(l) if l.soft < want => tracing::warn!(
            soft = l.soft,
            hard = l.hard,
            wanted = want,
            "open-file limit is below --max-clients; raise the hard limit (ulimit -Hn) to serve them all"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    Ok(())
}

/// Runs the server `make` builds from `config` until Ctrl-C or SIGTERM: on its own
/// multi-threaded runtime, with the HTTP and WebSocket listener on `config.listen` and, with
/// `--quic`, the QUIC endpoint (with the `--tls-cert` identity, else a self-signed one).
pub fn serve(
    config: ServerConfig,
    make: impl FnOnce(ServerConfig) -> Server,
) -> Result<(), LaunchError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.io_threads.max(1))
        .enable_all()
        .build()
        .map_err(LaunchError::Runtime)?;
    runtime.block_on(async {
        let listener =
            crate::http::bind_listener(config.listen).map_err(|error| LaunchError::Listen {
                addr: config.listen,
                error,
            })?;
        let quic = match config.quic {
            None => None,
            Some(addr) => {
                let identity = match &config.tls {
                    Some(id) => id.clone(),
                    None => TlsIdentity::self_signed()?,
                };
                Some(QuicListener::bind(addr, &identity)?)
            }
        };
        make(config)
            .run_with_quic(listener, quic, shutdown_signal())
            .await?;
        Ok(())
    })
}

/// Resolves on Ctrl-C or SIGTERM (Kubernetes' stop).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "no SIGTERM handler; Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
