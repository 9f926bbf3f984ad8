//! `tickwire-server`: parse the command line, set up logging, run until Ctrl-C or SIGTERM
//! (the steps are [`tickwire_server::launch`]'s, which a binary with its own game reuses).

use anyhow::Context as _;
use clap::Parser;
use tickwire_server::{Cli, Command, Server, launch};

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
    launch::init(cli.log_format);
    let mut config = cli.into_config()?;
    launch::apply_environment(&mut config)?;
    launch::serve(config, Server::new)?;
    Ok(())
}
