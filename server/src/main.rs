//! `tickwire-server`: parse the command line, set up logging, run until Ctrl-C or SIGTERM.

use anyhow::Context as _;
use clap::Parser;
use tickwire_server::{Cli, Command, LogFormat, QuicListener, Server, TlsIdentity};
use tickwire_shared::rlimit;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Token(t)) => {
            println!("{}", t.mint()?);
            return Ok(());
        }
        Some(Command::Replay(r)) => {
            let report = tickwire_server::replay::replay_file(
                &r.file,
                &tickwire_server::replay::builtin_game,
            )
            .with_context(|| format!("replay {}", r.file.display()))?;
            println!("{report}");
            let h = &report.header;
            eprintln!(
                "room={} kind={} seed={} players={} inputs={} server_version={}",
                h.room_id, h.kind, h.seed, report.spawns, report.inputs, h.server_version
            );
            return Ok(());
        }
        None => {}
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr (stdout stays free for tools); colours only on a terminal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => fmt.with_ansi(ansi).init(),
        LogFormat::Json => fmt.json().init(),
    }
    // Exactly one rustls crypto provider for the process: ring.
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        tracing::warn!("a rustls crypto provider was already installed");
    }
    let mut config = cli.into_config()?;
    // Under Agones the sidecar's port comes in the environment (nothing below main reads it).
    if let Ok(port) = std::env::var("AGONES_SDK_HTTP_PORT") {
        let port = port
            .trim()
            .parse::<u16>()
            .with_context(|| format!("AGONES_SDK_HTTP_PORT={port:?} is not a port"))?;
        config.rooms.agones_port = Some(port);
    }
    let want = config.max_clients as u64 + 256;
    match rlimit::raise_nofile(want) {
        Ok(l) if l.soft < want => tracing::warn!(
            soft = l.soft,
            hard = l.hard,
            wanted = want,
            "open-file limit is below --max-clients; raise the hard limit (ulimit -Hn) to serve them all"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tickwire_server::http::bind_listener(config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
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
        Server::new(config)
            .run_with_quic(listener, quic, shutdown_signal())
            .await?;
        anyhow::Ok(())
    })
}

async fn shutdown_signal() {
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
