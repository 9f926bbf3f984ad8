//! Replaying a match log (`tickwire-server replay FILE`): build the room's game again from
//! the log's header, make every recorded call on it in the recorded order, and check after
//! each step that the world is bit for bit the recorded one ([`WorldSum`]), that every spawn
//! returned the recorded entity, and that the world matched before the first tick.
//!
//! A log is input from outside: a cut or damaged file is a [`ReplayError`] that says where,
//! never a panic, and no length in it is trusted before it is checked (see
//! [`crate::record::codec`]).
//!
//! Determinism: a game replays if its calls alone decide its world (the arena's random
//! numbers come from its seeded [`crate::rng::Rng`]; it reads no clock and iterates no hash
//! map). Floating point is bit-identical on the same build and CPU family; `sin`/`cos` come
//! from the platform's math library, so replay a log with the binary, or at least the
//! platform, that recorded it.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::game::{Game, PlayerInfo};
use crate::record::codec::{Call, LogReader, ReadError, Record, TickDecoder};
use crate::record::{ArenaSetup, EndReason, LogHeader, WorldSum};

/// A replay that matched the recording to its last tick.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    /// The log's header.
    pub header: LogHeader,
    /// Ticks replayed (and checked).
    pub ticks: u32,
    /// Players spawned (joins, not resumes).
    pub spawns: u64,
    /// Input frames applied.
    pub inputs: u64,
    /// How the log ended.
    pub end: EndReason,
}

impl std::fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "replay ok ticks={}", self.ticks)?;
        if self.end == EndReason::Stopped {
            f.write_str(
                " (recording had stopped early, see the server's log; every tick recorded matched)",
            )?;
        }
        Ok(())
    }
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be opened or read.
    #[error("cannot read the log: {0}")]
    Io(#[from] io::Error),
    /// Not a match log, or one of another format version.
    #[error("{0}")]
    Format(ReadError),
    /// The file ends before its end record: cut short (a server killed while recording, a
    /// partial copy).
    #[error("log truncated at tick {tick} (ticks before it replayed ok): {why}")]
    Truncated {
        /// The first tick that is not (wholly) there.
        tick: u32,
        /// Where and how.
        why: ReadError,
    },
    /// A record is damaged or makes no sense.
    #[error("log corrupt at tick {tick} (ticks before it replayed ok): {why}")]
    Corrupt {
        /// The tick whose record is bad.
        tick: u32,
        /// What is wrong.
        why: String,
    },
    /// The game could not be built again from the header.
    #[error("cannot rebuild the room's game: {0}")]
    Setup(String),
    /// The replayed world differs from the recorded one.
    #[error("replay diverged at tick {tick}: {why}")]
    Diverged {
        /// The first tick that differs (0: before the first tick).
        tick: u32,
        /// What differs.
        why: String,
    },
}

impl ReplayError {
    fn from_read(e: ReadError, tick: u32) -> ReplayError {
        match e {
            ReadError::Io(e) => ReplayError::Io(e),
            e @ (ReadError::NotALog | ReadError::Version { .. }) => ReplayError::Format(e),
            e @ ReadError::Truncated { .. } => ReplayError::Truncated { tick, why: e },
            e @ ReadError::Corrupt { .. } => ReplayError::Corrupt {
                tick,
                why: e.to_string(),
            },
        }
    }
}

/// Builds a room's game again from its log's header.
pub type ReplayFactory<'a> = &'a dyn Fn(&LogHeader) -> Result<Box<dyn Game>, String>;

/// The games `tickwire-server` itself runs: the `arena` kind (every room of it, and the
/// built-in default room). A log of another kind, or of a game instance given to
/// [`crate::Server::with_game`] (kind empty), needs the factory of the program that ran it.
pub fn builtin_game(header: &LogHeader) -> Result<Box<dyn Game>, String> {
    match header.kind.as_str() {
        "arena" => {
            let setup = ArenaSetup::decode(&header.setup).map_err(|e| e.to_string())?;
            Ok(Box::new(setup.build(header.seed)))
        }
        "" => Err(
            "the room ran a game instance given to Server::with_game; replay it with \
             tickwire_server::replay::replay_file and a factory that builds that game"
                .into(),
        ),
        k => Err(format!(
            "game kind {k:?} is not built into tickwire-server; replay it with \
             tickwire_server::replay::replay_file and the kind's factory"
        )),
    }
}

/// Replays the log at `path` on the game `factory` builds from its header.
pub fn replay_file(path: &Path, factory: ReplayFactory<'_>) -> Result<ReplayReport, ReplayError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    replay(BufReader::with_capacity(256 * 1024, file), len, factory)
}

/// Replays a log of `len` bytes read from `input`.
pub fn replay(
    input: impl Read,
    len: u64,
    factory: ReplayFactory<'_>,
) -> Result<ReplayReport, ReplayError> {
    let mut log = LogReader::new(input, len).map_err(|e| ReplayError::from_read(e, 0))?;
    let header = log.header().clone();
    let mut game = factory(&header).map_err(ReplayError::Setup)?;
    let initial = WorldSum::of(game.entities());
    if initial != header.initial {
        return Err(ReplayError::Diverged {
            tick: 0,
            why: format!(
                "the rebuilt game's world differs before the first tick ({})",
                differ(header.initial, initial)
            ),
        });
    }
    let mut decoder = TickDecoder::new();
    let mut ticks = 0u32;
    let (mut spawns, mut inputs) = (0u64, 0u64);
    loop {
        let next = ticks.saturating_add(1);
        let payload = match log.next_record() {
            Ok(Record::Tick(p)) => p,
            Ok(Record::End { reason, ticks: n }) => {
                if n != ticks {
                    return Err(ReplayError::Corrupt {
                        tick: next,
                        why: format!("the end record counts {n} ticks, the log has {ticks}"),
                    });
                }
                return Ok(ReplayReport {
                    header,
                    ticks,
                    spawns,
                    inputs,
                    end: reason,
                });
            }
            Err(e) => return Err(ReplayError::from_read(e, next)),
        };
        let corrupt = |why: String| ReplayError::Corrupt { tick: next, why };
        let (tick, mut calls) = decoder.begin(payload).map_err(|e| corrupt(e.to_string()))?;
        while let Some(call) = calls.next_call().map_err(|e| corrupt(e.to_string()))? {
            match call {
                Call::Spawn {
                    client,
                    player_id,
                    entity,
                } => {
                    spawns += 1;
                    let got = game.spawn_player(PlayerInfo {
                        client,
                        player_id: player_id.as_deref(),
                    });
                    if got != entity {
                        return Err(ReplayError::Diverged {
                            tick,
                            why: format!(
                                "spawn_player for client {client} returned entity {got}, the \
                                 recording has entity {entity}"
                            ),
                        });
                    }
                }
                Call::Despawn(e) => game.despawn_player(e),
                Call::Detach(e) => game.detach_player(e),
                Call::Attach(e) => game.attach_player(e),
                Call::Input(e, f) => {
                    inputs += 1;
                    game.apply_input(e, &f);
                }
                Call::Step { dt, sum } => {
                    game.step(dt);
                    let got = WorldSum::of(game.entities());
                    if got != sum {
                        return Err(ReplayError::Diverged {
                            tick,
                            why: format!("the world after the step differs ({})", differ(sum, got)),
                        });
                    }
                }
            }
        }
        ticks = tick;
    }
}

fn differ(recorded: WorldSum, replayed: WorldSum) -> String {
    format!(
        "checksum {:016x} recorded, {:016x} replayed; {} entities recorded, {} replayed",
        recorded.checksum, replayed.checksum, recorded.entities, replayed.entities
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::sync::Arc;

    use tickwire_shared::{ClientId, InputFrame, InputSeq, Tick};

    use crate::config::SimConfig;
    use crate::game::ArenaRules;
    use crate::metrics::Metrics;
    use crate::record::codec::{LogWriter, TickEncoder};
    use crate::record::{Recorder, Recording};
    use crate::registry::RoomSpec;
    use crate::room::{Control, InputMsg, Outbound, Room};
    use crate::world::World;

    fn temp_dir(name: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "tickwire-replay-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn setup() -> ArenaSetup {
        ArenaSetup {
            world: World::arena(),
            rules: ArenaRules::default(),
            npcs: 20,
        }
    }

    fn spec() -> RoomSpec {
        RoomSpec {
            room_id: "room/1".into(),
            kind: "arena".into(),
            max_clients: 8,
            seed: 5,
        }
    }

    fn sim() -> SimConfig {
        SimConfig {
            tick_rate: 30,
            snapshot_every: 1,
            view_radius: 150.0,
            baseline_ring: 8,
            ack_timeout_ticks: 100_000,
            max_behind_ticks: 100_000,
            resume_grace_ticks: 300,
            max_inputs_per_tick: 1000,
            max_frames_per_tick: 2,
            max_detached: Some(8),
            max_snapshot_bytes: None,
        }
    }

    fn join(room: &mut Room<Recording<crate::game::Arena>>, c: u32, resume: Option<u64>) -> u64 {
        let out = Arc::new(Outbound::default());
        room.control(Control::Join {
            client: ClientId(c),
            resume,
            // Client 5 is client 3 coming back.
            player_id: Some(format!("player-{}", if c == 5 { 3 } else { c })),
            out: out.clone(),
        });
        out.take().welcome.map_or(0, |w| w.resume_token)
    }

    /// A match through a real room and the writer thread: joins, inputs (bursts, firing),
    /// a drop and a resume, a leave. Returns the log's path.
    fn record_match(dir: &Path, ticks: u32, stop_writer_at: Option<u32>) -> PathBuf {
        let rec = Recorder::start(dir.to_owned(), BTreeMap::new()).unwrap();
        let s = setup();
        let game = rec.record(s.build(5), &spec(), 30, &s.encode().unwrap());
        let mut room = Room::new(game, sim(), Arc::new(Metrics::default())).unwrap();
        let mut tokens = BTreeMap::new();
        for c in 1..=4 {
            tokens.insert(c, join(&mut room, c, None));
        }
        let mut seqs = [0u32; 8];
        let mut rng = crate::rng::Rng::new(3);
        for t in 0..ticks {
            if t == 50 {
                room.control(Control::Leave {
                    client: ClientId(3),
                    graceful: false,
                });
            }
            if t == 70 {
                join(&mut room, 5, tokens.get(&3).copied());
                assert_eq!(room.detached_count(), 0, "client 3 resumed as client 5");
            }
            if t == 120 {
                room.control(Control::Leave {
                    client: ClientId(4),
                    graceful: true,
                });
            }
            if Some(t) == stop_writer_at {
                rec.shutdown();
            }
            for c in [1u32, 2, 4, 5] {
                // Client 5 is client 3 resumed; its sequence starts again at 1.
                let n = if t % 17 == 0 { 3 } else { 1 };
                let frames = (0..n)
                    .map(|_| {
                        seqs[c as usize] += 1;
                        InputFrame {
                            seq: InputSeq(seqs[c as usize]),
                            move_x: (rng.unit() * 254.0 - 127.0) as i8,
                            move_y: if t % 40 < 20 { 100 } else { -100 },
                            aim_yaw: (rng.next_u64() >> 48) as u16,
                            buttons: u8::from(t % 9 == 0),
                            view_tick: Tick(t.saturating_sub(2)),
                            interp_ms: 100,
                        }
                    })
                    .collect();
                room.input(InputMsg {
                    client: ClientId(c),
                    ack: Tick(0),
                    frames,
                });
            }
            room.tick();
        }
        drop(room);
        rec.shutdown();
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let path = files.remove(0);
        assert!(
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("room_1-"),
            "{path:?}"
        );
        path
    }

    #[test]
    fn a_recorded_room_replays_tick_for_tick() {
        let dir = temp_dir("room");
        let path = record_match(&dir, 200, None);
        let r = replay_file(&path, &builtin_game).unwrap();
        assert_eq!(r.ticks, 200);
        assert_eq!(r.end, EndReason::RoomEnded);
        assert_eq!(r.to_string(), "replay ok ticks=200");
        assert_eq!(r.header.room_id, "room/1");
        assert_eq!(r.header.seed, 5);

        // Cut short anywhere after the header: truncated, at the tick it was cut in.
        let bytes = std::fs::read(&path).unwrap();
        let cut = &bytes[..bytes.len() * 2 / 3];
        let e = replay(cut, cut.len() as u64, &builtin_game).unwrap_err();
        let ReplayError::Truncated { tick, .. } = e else {
            panic!("{e}")
        };
        assert!(tick > 100 && tick < 200, "{tick}");
        // A damaged byte in the middle: corrupt, not a panic and not a divergence.
        let mut bad = bytes.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x10;
        let e = replay(&bad[..], bad.len() as u64, &builtin_game).unwrap_err();
        assert!(matches!(e, ReplayError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("log corrupt at tick"), "{e}");
        // Another seed: a different world before the first tick.
        let other = |h: &LogHeader| {
            builtin_game(&LogHeader {
                seed: h.seed + 1,
                ..h.clone()
            })
        };
        let e = replay_file(&path, &other).unwrap_err();
        assert!(matches!(e, ReplayError::Diverged { tick: 0, .. }), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_log_whose_writer_stopped_replays_what_it_has() {
        let dir = temp_dir("stopped");
        let path = record_match(&dir, 100, Some(60));
        let r = replay_file(&path, &builtin_game).unwrap();
        assert_eq!(r.end, EndReason::Stopped);
        // The writer took what was queued before it stopped: at most the 60 ticks stepped.
        assert!(r.ticks <= 60, "{}", r.ticks);
        assert!(
            r.to_string()
                .starts_with(&format!("replay ok ticks={}", r.ticks))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The payloads of a small arena match, recorded as [`Recording`] does, with one input
    /// frame of tick `tamper_input` changed, and the checksum of tick `tamper_sum` flipped.
    fn arena_log(tamper_input: Option<u32>, tamper_sum: Option<u32>) -> Vec<u8> {
        let s = setup();
        let mut arena = s.build(9);
        let mut enc = TickEncoder::new();
        let header = LogHeader {
            server_version: String::new(),
            room_id: "r".into(),
            kind: "arena".into(),
            max_clients: 4,
            seed: 9,
            tick_rate: 30,
            started_unix_ms: 0,
            setup: s.encode().unwrap(),
            initial: WorldSum::of(arena.entities()),
        };
        let mut w = LogWriter::new(Vec::new(), &header.encode().unwrap()).unwrap();
        let players: Vec<_> = (0..3)
            .map(|c| {
                let p = PlayerInfo::anonymous(ClientId(c));
                let e = arena.spawn_player(p);
                enc.spawn(p.client, None, e);
                e
            })
            .collect();
        for t in 1..=90u32 {
            for (i, &e) in players.iter().enumerate() {
                let f = InputFrame {
                    seq: InputSeq(t),
                    move_x: 127,
                    move_y: (i as i8) * 40,
                    aim_yaw: (t * 1000) as u16,
                    buttons: u8::from(t % 10 == 0),
                    view_tick: Tick(t - 1),
                    interp_ms: 100,
                };
                arena.apply_input(e, &f);
                // What the log says was applied.
                let logged = if Some(t) == tamper_input && i == 1 {
                    InputFrame { move_x: -127, ..f }
                } else {
                    f
                };
                enc.input(e, &logged);
            }
            arena.step(1.0 / 30.0);
            let mut sum = WorldSum::of(arena.entities());
            if Some(t) == tamper_sum {
                sum.checksum ^= 1;
            }
            let mut p = Vec::new();
            enc.step(1.0 / 30.0, sum, &mut p);
            w.tick(&p).unwrap();
        }
        w.end(EndReason::RoomEnded).unwrap()
    }

    fn replay_bytes(b: &[u8]) -> Result<ReplayReport, ReplayError> {
        replay(b, b.len() as u64, &builtin_game)
    }

    #[test]
    fn divergence_is_reported_at_its_first_tick() {
        assert_eq!(replay_bytes(&arena_log(None, None)).unwrap().ticks, 90);
        let e = replay_bytes(&arena_log(Some(40), None)).unwrap_err();
        let ReplayError::Diverged { tick, why } = &e else {
            panic!("{e}")
        };
        assert_eq!(*tick, 40, "{e}");
        assert!(why.contains("checksum"), "{why}");
        let e = replay_bytes(&arena_log(None, Some(25))).unwrap_err();
        assert!(matches!(e, ReplayError::Diverged { tick: 25, .. }), "{e}");
        assert!(
            e.to_string().starts_with("replay diverged at tick 25:"),
            "{e}"
        );
    }

    #[test]
    fn logs_of_other_games_say_what_replays_them() {
        let mut h = LogHeader::decode(&{
            let b = arena_log(None, None);
            // The header record's payload, after the prologue and its 7 framing bytes.
            let len = u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as usize;
            b[19..19 + len].to_vec()
        })
        .unwrap();
        h.kind = "tanks".into();
        let e = builtin_game(&h).err().unwrap();
        assert!(e.contains("\"tanks\"") && e.contains("replay_file"), "{e}");
        h.kind = String::new();
        assert!(builtin_game(&h).err().unwrap().contains("with_game"));
        h.kind = "arena".into();
        h.setup = vec![1, 2, 3];
        assert!(builtin_game(&h).is_err());
    }
}
