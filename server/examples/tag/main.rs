//! Tag on Tickwire: `cargo run --release -p tickwire-server --example tag`, then open
//! <http://127.0.0.1:8080> and catch the orange runners (or be caught).
//!
//! Every flag of `tickwire-server` works here too (`--listen`, `--tick-rate`, `--redis`, …).
//! Two mean something else: `--npcs` is the number of runners in the default room and
//! `--room-npcs` in each matchmade tag room (both 3 unless given), and `--world` replaces the
//! 40 × 40 court. Matchmaking makes rooms of kind "tag" (`POST /matchmake/create/tag`); the
//! built-in "arena" kind is still there. `tag replay FILE` replays a log written with
//! `--record DIR` (a tag room's, or the arena's).

mod game;

use anyhow::Context as _;
use clap::parser::ValueSource;
use clap::{CommandFactory as _, FromArgMatches as _};
use tickwire_server::record::LogHeader;
use tickwire_server::replay::{builtin_game, replay_file};
use tickwire_server::{Cli, Command, Game, launch};

use crate::game::{Tag, TagRules, court, tag_server};

/// Runners when `--npcs` is not given (the arena's 200 would fill the court).
const DEFAULT_RUNNERS: usize = 3;

fn main() -> anyhow::Result<()> {
    // The server's own command line; `matches` tells a flag given from one left at its default.
    let matches = Cli::command().get_matches();
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let (npcs_given, room_npcs_given, world_given) =
        (given("npcs"), given("room_npcs"), given("world"));
    let cli = Cli::from_arg_matches(&matches)?;
    match &cli.command {
        Some(Command::Token(t)) => {
            println!("{}", t.mint()?);
            return Ok(());
        }
        Some(Command::Replay(r)) => {
            let report = replay_file(&r.file, &replay_game)
                .with_context(|| format!("replay {}", r.file.display()))?;
            println!("{report}");
            return Ok(());
        }
        None => {}
    }
    launch::init(cli.log_format);
    let mut config = cli.into_config()?;
    launch::apply_environment(&mut config)?;

    let world = if world_given {
        config.world.clone()
    } else {
        court(20.0)
    };
    // Runners: --npcs in the default room and --room-npcs in each matchmade one, if given.
    let runners = |given: bool, n: usize| TagRules {
        runners: if given { n } else { DEFAULT_RUNNERS },
        ..TagRules::default()
    };
    let default_room = runners(npcs_given, config.npcs);
    let rooms = runners(room_npcs_given, config.rooms.room_npcs);
    tracing::info!(world = %world.name, runners = default_room.runners, "playing tag in the default room");

    launch::serve(config, |config| {
        tag_server(config, world, default_room, rooms)
    })?;
    Ok(())
}

/// The game of a recorded room (`--record`), for `tag replay FILE`. Tag games are built as
/// this binary builds them without flags: the court and 3 runners. A match played with
/// `--world`, `--npcs` or `--room-npcs` differs from tick 0, and the replay says so.
fn replay_game(h: &LogHeader) -> Result<Box<dyn Game>, String> {
    match h.kind.as_str() {
        // The default room (`Server::with_game`, no kind) and matchmade tag rooms.
        "" | "tag" => {
            let rules = TagRules {
                runners: DEFAULT_RUNNERS,
                ..TagRules::default()
            };
            Ok(Box::new(Tag::new(court(20.0), rules, h.seed)))
        }
        _ => builtin_game(h),
    }
}
