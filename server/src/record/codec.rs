//! The match log's bytes: the file framing, the header, and the compact encoding of one
//! tick's [`Game`](crate::game::Game) calls. Both the recorder and the replayer use it; the
//! replayer reads files it must not trust, so every length is checked against a limit
//! before anything is allocated, and nothing here panics on any input.
//!
//! A file is [`MAGIC`], the format version (`u16` LE) and two reserved zero bytes, then
//! records: `len: u32 LE, kind: u8, head_check: u16 LE, payload (len bytes), check: u32 LE`.
//! `head_check` is the low half of FNV-1a (32-bit) over the length and kind bytes, so a
//! damaged length is caught before it is used; `check` is FNV-1a over the kind byte and the
//! payload. The first record is the [`LogHeader`], then one tick record per step, then an
//! end record. A file without its end record was cut short.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Read, Write};
use tickwire_shared::snapshot::{FNV_OFFSET, fnv1a};

use tickwire_shared::bits::{BitError, BitReader, BitWriter};
use tickwire_shared::{ClientId, EntityId, InputFrame, InputSeq, Tick};
use wincode::config::{Config, Configuration};
use wincode::{SchemaRead, SchemaWrite};

use crate::game::Replicated;

/// The first eight bytes of every match log.
pub const MAGIC: [u8; 8] = *b"TICKWREC";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes before the first record: magic, version, reserved.
pub const PROLOGUE_BYTES: usize = 12;
/// Bytes of a record's framing: length, kind and head check before, check after.
pub const FRAMING_BYTES: usize = 11;
/// Bytes of the end record's payload: the reason and the tick count.
pub const END_BYTES: usize = 5;
/// Largest header record (the world and the game's setup; the built-in arena's is ~1 KiB).
pub const MAX_HEADER_BYTES: usize = 4 << 20;
/// Largest tick record. A tick of 10,000 players each applying 8 frames is ~1 MB; the
/// recorder stops recording a room rather than write more.
pub const MAX_TICK_BYTES: usize = 64 << 20;
/// Most players a log may track at once (the recorder stops past it; the replayer refuses
/// it), so a crafted log cannot make the replayer's game spawn without bound.
pub const MAX_LOG_PLAYERS: usize = 1 << 20;
/// Longest player id recorded with a spawn (tokens carry at most 64 bytes).
pub const MAX_PLAYER_ID_BYTES: usize = 255;

/// Record kind: the header.
pub(crate) const KIND_HEADER: u8 = 1;
/// Record kind: one tick's calls.
pub(crate) const KIND_TICK: u8 = 2;
/// Record kind: the end of the log.
pub(crate) const KIND_END: u8 = 3;

fn header_config() -> impl Config {
    Configuration::default()
        .with_varint_encoding()
        .with_preallocation_size_limit::<MAX_HEADER_BYTES>()
        .with_deserialization_size_limit::<MAX_HEADER_BYTES>()
}

/// The checksum of a world at full precision, and its entity count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, SchemaWrite, SchemaRead)]
pub struct WorldSum {
    /// 64-bit FNV-1a over 32-bit words: per entity its id, kind and health, flags, and the
    /// bit patterns of its position, velocity and yaw. Any one changed word changes it.
    pub checksum: u64,
    /// Entities in the world.
    pub entities: u32,
}

impl WorldSum {
    /// The sum of `entities` (in the game's order, which is by id).
    pub fn of(entities: &[Replicated]) -> WorldSum {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut h = OFFSET;
        let mut mix = |w: u32| h = (h ^ u64::from(w)).wrapping_mul(PRIME);
        for r in entities {
            let s = &r.state;
            mix(r.id.0);
            mix(u32::from(s.kind) | u32::from(s.health) << 16);
            mix(u32::from(s.flags));
            for v in [s.pos.x, s.pos.y, s.pos.z, s.vel.x, s.vel.y, s.vel.z, s.yaw] {
                mix(v.to_bits());
            }
        }
        WorldSum {
            checksum: h,
            entities: u32::try_from(entities.len()).unwrap_or(u32::MAX),
        }
    }
}

/// What a log says about the room it recorded: enough to build the same game again.
#[derive(Debug, Clone, PartialEq, SchemaWrite, SchemaRead)]
pub struct LogHeader {
    /// The `tickwire-server` version that wrote it.
    pub server_version: String,
    /// The room id.
    pub room_id: String,
    /// The registered game kind the room was made from (`arena`), or empty for a game
    /// instance given to [`crate::Server::with_game`].
    pub kind: String,
    /// The room's seats.
    pub max_clients: u32,
    /// The room's seed ([`crate::RoomSpec::seed`]).
    pub seed: u64,
    /// Ticks per second (each step's `dt` is recorded too).
    pub tick_rate: u32,
    /// When recording started, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// The game's setup as its kind registered it
    /// ([`crate::Server::register_game_with_setup`]; the arena's is an
    /// [`crate::record::ArenaSetup`]). Empty for kinds registered without one.
    pub setup: Vec<u8>,
    /// The world before the first call.
    pub initial: WorldSum,
}

impl LogHeader {
    /// The [`crate::RoomSpec`] the room's game was made for.
    pub fn spec(&self) -> crate::RoomSpec {
        crate::RoomSpec {
            room_id: self.room_id.clone(),
            kind: self.kind.clone(),
            max_clients: self.max_clients,
            seed: self.seed,
        }
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, wincode::WriteError> {
        wincode::config::serialize(self, header_config())
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<LogHeader, wincode::ReadError> {
        wincode::config::deserialize_exact(bytes, header_config())
    }
}

/// Why a log stopped where it did (the end record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The room ended (disposed of, or the server shut down): the whole match is there.
    RoomEnded,
    /// Recording stopped early: the writer fell behind, a tick was too large, or the disk
    /// failed. The ticks before are complete.
    Stopped,
}

impl EndReason {
    fn byte(self) -> u8 {
        match self {
            EndReason::RoomEnded => 0,
            EndReason::Stopped => 1,
        }
    }
}

/// Writes a log's records to `W` (a buffered file, or a `Vec` in tests).
#[derive(Debug)]
pub struct LogWriter<W: Write> {
    out: W,
    ticks: u32,
}

impl<W: Write> LogWriter<W> {
    /// Writes the prologue and the header record.
    pub fn new(mut out: W, header: &[u8]) -> io::Result<Self> {
        let mut prologue = [0u8; PROLOGUE_BYTES];
        prologue[..8].copy_from_slice(&MAGIC);
        prologue[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.write_all(&prologue)?;
        let mut w = LogWriter { out, ticks: 0 };
        w.record(KIND_HEADER, header)?;
        Ok(w)
    }

    /// Writes one tick record (as [`TickEncoder::step`] made it).
    pub fn tick(&mut self, payload: &[u8]) -> io::Result<()> {
        self.record(KIND_TICK, payload)?;
        self.ticks = self.ticks.saturating_add(1);
        Ok(())
    }

    /// Writes the end record and flushes; returns the writer.
    pub fn end(mut self, reason: EndReason) -> io::Result<W> {
        let mut p = [0u8; END_BYTES];
        p[0] = reason.byte();
        p[1..].copy_from_slice(&self.ticks.to_le_bytes());
        self.record(KIND_END, &p)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Tick records written.
    pub fn ticks(&self) -> u32 {
        self.ticks
    }

    /// Flushes what is buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn record(&mut self, kind: u8, payload: &[u8]) -> io::Result<()> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&l| l as usize <= MAX_TICK_BYTES)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "record too large"))?;
        let mut head = [0u8; 7];
        head[..4].copy_from_slice(&len.to_le_bytes());
        head[4] = kind;
        let hc = fnv1a(FNV_OFFSET, &head[..5]) as u16;
        head[5..].copy_from_slice(&hc.to_le_bytes());
        let check = fnv1a(fnv1a(FNV_OFFSET, &[kind]), payload);
        self.out.write_all(&head)?;
        self.out.write_all(payload)?;
        self.out.write_all(&check.to_le_bytes())
    }
}

/// Why a log could not be read (framing; what the calls mean is the replayer's business).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The file does not start with [`MAGIC`].
    #[error("not a Tickwire match log (no TICKWREC magic)")]
    NotALog,
    /// Written by another format version.
    #[error("match log format {found}; this build reads format {FORMAT_VERSION}")]
    Version {
        /// The file's version.
        found: u16,
    },
    /// The file ends in the middle of a record, or before its end record.
    #[error("cut short at byte {offset}: {what}")]
    Truncated {
        /// Where the missing bytes start.
        offset: u64,
        /// What was missing.
        what: String,
    },
    /// A record's framing or checksum is wrong, or its payload makes no sense.
    #[error("corrupt at byte {offset}: {what}")]
    Corrupt {
        /// Where the bad record starts.
        offset: u64,
        /// What is wrong.
        what: String,
    },
}

/// One record, borrowed from the reader's buffer.
#[derive(Debug)]
pub enum Record<'a> {
    /// A tick's payload.
    Tick(&'a [u8]),
    /// The end record.
    End {
        /// Why it ended.
        reason: EndReason,
        /// Tick records the writer wrote.
        ticks: u32,
    },
}

/// Reads a log's records from `R`, checking every length against the bytes left and the
/// record kind's limit before it allocates.
#[derive(Debug)]
pub struct LogReader<R: Read> {
    input: R,
    /// Bytes of the file not read yet.
    left: u64,
    offset: u64,
    buf: Vec<u8>,
    header: LogHeader,
}

impl<R: Read> LogReader<R> {
    /// Reads the prologue and the header from `input`, which holds `len` bytes.
    pub fn new(mut input: R, len: u64) -> Result<Self, ReadError> {
        let mut prologue = [0u8; PROLOGUE_BYTES];
        if len < PROLOGUE_BYTES as u64 {
            let mut head = vec![0u8; len as usize];
            input.read_exact(&mut head)?;
            let magic = &head[..head.len().min(MAGIC.len())];
            return Err(if MAGIC.starts_with(magic) && !head.is_empty() {
                ReadError::Truncated {
                    offset: len,
                    what: "in the prologue".into(),
                }
            } else {
                ReadError::NotALog
            });
        }
        input.read_exact(&mut prologue)?;
        if prologue[..8] != MAGIC {
            return Err(ReadError::NotALog);
        }
        let found = u16::from_le_bytes([prologue[8], prologue[9]]);
        if found != FORMAT_VERSION {
            return Err(ReadError::Version { found });
        }
        if prologue[10..] != [0, 0] {
            return Err(ReadError::Corrupt {
                offset: 10,
                what: "reserved prologue bytes are not zero".into(),
            });
        }
        let mut r = LogReader {
            input,
            left: len - PROLOGUE_BYTES as u64,
            offset: PROLOGUE_BYTES as u64,
            buf: Vec::new(),
            header: LogHeader {
                server_version: String::new(),
                room_id: String::new(),
                kind: String::new(),
                max_clients: 0,
                seed: 0,
                tick_rate: 0,
                started_unix_ms: 0,
                setup: Vec::new(),
                initial: WorldSum::default(),
            },
        };
        let at = r.offset;
        let kind = r.read_record()?.ok_or_else(|| ReadError::Truncated {
            offset: at,
            what: "no header record".into(),
        })?;
        if kind != KIND_HEADER {
            return Err(ReadError::Corrupt {
                offset: at,
                what: format!("the first record is of kind {kind}, not the header"),
            });
        }
        r.header = LogHeader::decode(&r.buf).map_err(|e| ReadError::Corrupt {
            offset: at,
            what: format!("header: {e}"),
        })?;
        Ok(r)
    }

    /// The header.
    pub fn header(&self) -> &LogHeader {
        &self.header
    }

    /// The byte offset of the next record.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next record. The end of the file before the end record is
    /// [`ReadError::Truncated`].
    pub fn next_record(&mut self) -> Result<Record<'_>, ReadError> {
        let at = self.offset;
        let kind = self.read_record()?.ok_or_else(|| ReadError::Truncated {
            offset: at,
            what: "no end record".into(),
        })?;
        match kind {
            KIND_TICK => Ok(Record::Tick(&self.buf)),
            KIND_END => {
                let [reason, a, b, c, d] = self.buf[..] else {
                    return Err(ReadError::Corrupt {
                        offset: at,
                        what: format!("end record of {} bytes", self.buf.len()),
                    });
                };
                let reason = match reason {
                    0 => EndReason::RoomEnded,
                    1 => EndReason::Stopped,
                    r => {
                        return Err(ReadError::Corrupt {
                            offset: at,
                            what: format!("end reason {r}"),
                        });
                    }
                };
                Ok(Record::End {
                    reason,
                    ticks: u32::from_le_bytes([a, b, c, d]),
                })
            }
            k => Err(ReadError::Corrupt {
                offset: at,
                what: format!("record kind {k}"),
            }),
        }
    }

    /// Reads one record into `buf`; `None` at a clean end of file.
    fn read_record(&mut self) -> Result<Option<u8>, ReadError> {
        let at = self.offset;
        if self.left == 0 {
            return Ok(None);
        }
        let cut = |what: String| ReadError::Truncated { offset: at, what };
        if self.left < FRAMING_BYTES as u64 {
            return Err(cut(format!(
                "{} bytes left, a record needs at least {FRAMING_BYTES}",
                self.left
            )));
        }
        let mut head = [0u8; 7];
        self.input.read_exact(&mut head)?;
        let corrupt = |what: String| ReadError::Corrupt { offset: at, what };
        let hc = u16::from_le_bytes([head[5], head[6]]);
        if fnv1a(FNV_OFFSET, &head[..5]) as u16 != hc {
            return Err(corrupt("record framing check failed".into()));
        }
        let len = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
        let kind = head[4];
        let limit = match kind {
            KIND_HEADER => MAX_HEADER_BYTES,
            KIND_TICK => MAX_TICK_BYTES,
            KIND_END => END_BYTES,
            k => return Err(corrupt(format!("record kind {k}"))),
        };
        if len > limit as u64 {
            return Err(corrupt(format!(
                "record of {len} bytes, over its limit of {limit}"
            )));
        }
        let need = len + FRAMING_BYTES as u64;
        if need > self.left {
            return Err(cut(format!(
                "a record of {len} bytes, {} left",
                self.left - 7
            )));
        }
        // Bounded by the kind's limit and by the bytes the file really has.
        self.buf.resize(len as usize, 0);
        self.input.read_exact(&mut self.buf)?;
        let mut check = [0u8; 4];
        self.input.read_exact(&mut check)?;
        if fnv1a(fnv1a(FNV_OFFSET, &[kind]), &self.buf) != u32::from_le_bytes(check) {
            return Err(corrupt(format!(
                "checksum of a {len}-byte record does not match"
            )));
        }
        self.left -= need;
        self.offset += need;
        Ok(Some(kind))
    }
}

/// Fast, deterministic hashing of entity ids (only ever looked up, never iterated).
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = u64::from(v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// What the delta of a player's next frame is taken against.
#[derive(Debug, Clone, Copy, Default)]
struct Prev {
    frame: InputFrame,
    /// `tick - view_tick` of that frame, with `tick` the tick it was applied before.
    lag: u32,
}

/// The players the log knows, in an order both sides keep identically: a frame names its
/// player by index here, in just enough bits for the table's size.
#[derive(Debug, Default)]
struct Players {
    ids: Vec<EntityId>,
    prev: Vec<Prev>,
    index: HashMap<u32, u32, BuildHasherDefault<IdHasher>>,
}

impl Players {
    /// Bits of an index: enough for every entry and the escape value `len`.
    fn width(&self) -> u32 {
        u32::BITS - (self.ids.len() as u32).leading_zeros()
    }

    fn find(&self, e: EntityId) -> Option<usize> {
        self.index.get(&e.0).map(|&i| i as usize)
    }

    fn spawned(&mut self, e: EntityId) {
        match self.find(e) {
            Some(i) => self.prev[i] = Prev::default(),
            None => {
                self.index.insert(e.0, self.ids.len() as u32);
                self.ids.push(e);
                self.prev.push(Prev::default());
            }
        }
    }

    fn despawned(&mut self, e: EntityId) {
        let Some(i) = self.find(e) else { return };
        self.index.remove(&e.0);
        self.ids.swap_remove(i);
        self.prev.swap_remove(i);
        if let Some(moved) = self.ids.get(i) {
            self.index.insert(moved.0, i as u32);
        }
    }
}

/// A field as a delta: a 1 bit if it is as before, else a 0 bit and its `n` bits.
fn field(w: &mut BitWriter, same: bool, value: u32, n: u32) {
    w.write_bit(same);
    if !same {
        w.write_bits(value, n);
    }
}

/// Reads what [`field`] wrote, `prev` if it was unchanged.
fn read_field(r: &mut BitReader<'_>, prev: u32, n: u32) -> Result<u32, BitError> {
    if r.read_bit()? {
        Ok(prev)
    } else {
        r.read_bits(n)
    }
}

// Call codes. An input (almost every call) is a single 1 bit; the rest are a 0 bit and three
// bits of code.
const OP_STEP: u32 = 0;
const OP_SPAWN: u32 = 1;
const OP_DESPAWN: u32 = 2;
const OP_DETACH: u32 = 3;
const OP_ATTACH: u32 = 4;

/// Encodes one room's calls, tick by tick, each input frame as a delta against the same
/// player's previous one. A load bot's frame (a new random aim every time) costs 3.1 to 4
/// bytes: the aim's 16 bits, the player's index (5 bits among 16 players, 11 among 2,000)
/// and a few bits of flags; a tick adds about 27 bytes of framing, step and checksum.
#[derive(Debug, Default)]
pub struct TickEncoder {
    bits: BitWriter,
    players: Players,
    tick: u32,
    dt_bits: u32,
}

impl TickEncoder {
    /// An encoder for a room that has stepped no tick yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Players tracked now (the recorder stops past [`MAX_LOG_PLAYERS`]).
    pub fn players(&self) -> usize {
        self.players.ids.len()
    }

    fn op(&mut self, op: u32) {
        self.bits.write_bits(op << 1, 4);
    }

    fn entity(&mut self, e: EntityId) -> Option<usize> {
        let width = self.players.width();
        match self.players.find(e) {
            Some(i) => {
                self.bits.write_bits(i as u32, width);
                Some(i)
            }
            None => {
                self.bits.write_bits(self.players.ids.len() as u32, width);
                self.bits.write_bits(e.0, 32);
                None
            }
        }
    }

    /// `spawn_player` for `client` (with its token's player id) returned `entity`.
    pub fn spawn(&mut self, client: ClientId, player_id: Option<&str>, entity: EntityId) {
        self.op(OP_SPAWN);
        self.bits.write_bits(client.0, 32);
        // Longer ids (no token allows them) are cut at a character boundary.
        let id = player_id.map(|p| {
            let mut n = p.len().min(MAX_PLAYER_ID_BYTES);
            while !p.is_char_boundary(n) {
                n -= 1;
            }
            &p[..n]
        });
        self.bits.write_bit(id.is_some());
        if let Some(id) = id {
            self.bits.write_bits(id.len() as u32, 8);
            for &b in id.as_bytes() {
                self.bits.write_bits(u32::from(b), 8);
            }
        }
        self.bits.write_bits(entity.0, 32);
        self.players.spawned(entity);
    }

    /// `despawn_player(entity)`.
    pub fn despawn(&mut self, entity: EntityId) {
        self.op(OP_DESPAWN);
        self.entity(entity);
        self.players.despawned(entity);
    }

    /// `detach_player(entity)`.
    pub fn detach(&mut self, entity: EntityId) {
        self.op(OP_DETACH);
        self.entity(entity);
    }

    /// `attach_player(entity)`.
    pub fn attach(&mut self, entity: EntityId) {
        self.op(OP_ATTACH);
        self.entity(entity);
    }

    /// `apply_input(entity, f)`.
    pub fn input(&mut self, entity: EntityId, f: &InputFrame) {
        self.bits.write_bit(true);
        let slot = self.entity(entity);
        let prev = slot.map_or_else(Prev::default, |i| self.players.prev[i]);
        let lag = self.tick.wrapping_add(1).wrapping_sub(f.view_tick.0);
        let w = &mut self.bits;
        let p = &prev.frame;
        let next_seq = f.seq.0 == p.seq.0.wrapping_add(1);
        let mv = |f: &InputFrame| u32::from(f.move_x as u8) | u32::from(f.move_y as u8) << 8;
        let steady = next_seq
            && mv(f) == mv(p)
            && f.buttons == p.buttons
            && lag == prev.lag
            && f.interp_ms == p.interp_ms;
        // Most frames (82% of a bot's) differ from the previous one in their aim at most.
        w.write_bit(steady);
        if !steady {
            field(w, next_seq, f.seq.0, 32);
            field(w, mv(f) == mv(p), mv(f), 16);
            field(w, f.buttons == p.buttons, u32::from(f.buttons), 8);
            w.write_bit(lag == prev.lag);
            if lag != prev.lag {
                w.write_eg0(lag);
            }
            field(w, f.interp_ms == p.interp_ms, u32::from(f.interp_ms), 16);
        }
        field(w, f.aim_yaw == p.aim_yaw, u32::from(f.aim_yaw), 16);
        if let Some(i) = slot {
            self.players.prev[i] = Prev { frame: *f, lag };
        }
    }

    /// `step(dt)`, after which the world was `sum`: ends the tick and appends its record's
    /// payload (the tick number, then the calls) to `out`.
    pub fn step(&mut self, dt: f32, sum: WorldSum, out: &mut Vec<u8>) {
        self.tick = self.tick.wrapping_add(1);
        self.op(OP_STEP);
        let dt = dt.to_bits();
        if dt == self.dt_bits {
            self.bits.write_bit(true);
        } else {
            self.bits.write_bit(false);
            self.bits.write_bits(dt, 32);
            self.dt_bits = dt;
        }
        self.bits.write_bits(sum.checksum as u32, 32);
        self.bits.write_bits((sum.checksum >> 32) as u32, 32);
        self.bits.write_eg0(sum.entities);
        out.extend_from_slice(&self.tick.to_le_bytes());
        self.bits.finish_into(out);
    }
}

/// One recorded call, as the replayer makes it again.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `spawn_player`, and the entity it returned.
    Spawn {
        /// The client.
        client: ClientId,
        /// Its token's player id.
        player_id: Option<String>,
        /// What the game returned.
        entity: EntityId,
    },
    /// `despawn_player`.
    Despawn(EntityId),
    /// `detach_player`.
    Detach(EntityId),
    /// `attach_player`.
    Attach(EntityId),
    /// `apply_input`.
    Input(EntityId, InputFrame),
    /// `step(dt)`, and the world after it: the tick's last call.
    Step {
        /// Seconds stepped.
        dt: f32,
        /// The world after the step.
        sum: WorldSum,
    },
}

/// Why a tick record's calls did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The bits ran out, or held an overlong code.
    #[error("{0}")]
    Bits(#[from] BitError),
    /// Something no encoder writes.
    #[error("{0}")]
    Invalid(String),
}

/// Decodes a room's tick records in order; the mirror of [`TickEncoder`].
#[derive(Debug, Default)]
pub struct TickDecoder {
    players: Players,
    tick: u32,
    dt_bits: u32,
}

impl TickDecoder {
    /// A decoder for the first tick record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts on the next tick record's payload; returns its tick number and its calls.
    pub fn begin<'a>(&'a mut self, payload: &'a [u8]) -> Result<(u32, TickCalls<'a>), CallError> {
        let Some((tick, rest)) = payload.split_first_chunk::<4>() else {
            return Err(CallError::Invalid("a tick record without its tick".into()));
        };
        let tick = u32::from_le_bytes(*tick);
        let want = self.tick.wrapping_add(1);
        if tick != want {
            return Err(CallError::Invalid(format!(
                "tick record {tick} where {want} was due"
            )));
        }
        Ok((
            tick,
            TickCalls {
                d: self,
                r: BitReader::new(rest),
                done: false,
            },
        ))
    }
}

/// The calls of one tick record, read one at a time (nothing is collected, so a record's
/// size alone bounds the work and no call list grows).
#[derive(Debug)]
pub struct TickCalls<'a> {
    d: &'a mut TickDecoder,
    r: BitReader<'a>,
    done: bool,
}

impl TickCalls<'_> {
    fn entity(&mut self) -> Result<(EntityId, Option<usize>), CallError> {
        let players = &self.d.players;
        let i = self.r.read_bits(players.width())? as usize;
        match players.ids.get(i) {
            Some(&e) => Ok((e, Some(i))),
            None if i == players.ids.len() => Ok((EntityId(self.r.read_bits(32)?), None)),
            None => Err(CallError::Invalid(format!(
                "player index {i} of {}",
                players.ids.len()
            ))),
        }
    }

    /// The next call; `None` after the step that ends the tick.
    pub fn next_call(&mut self) -> Result<Option<Call>, CallError> {
        if self.done {
            return Ok(None);
        }
        if self.r.read_bit()? {
            return self.input().map(Some);
        }
        let op = self.r.read_bits(3)?;
        let call = match op {
            OP_STEP => {
                self.done = true;
                self.d.tick = self.d.tick.wrapping_add(1);
                if !self.r.read_bit()? {
                    self.d.dt_bits = self.r.read_bits(32)?;
                }
                let lo = u64::from(self.r.read_bits(32)?);
                let hi = u64::from(self.r.read_bits(32)?);
                let entities = self.r.read_eg0()?;
                if !self.r.only_padding_left() {
                    return Err(CallError::Invalid("bits after the step".into()));
                }
                // A room steps 1/tick_rate seconds, at 1 to 240 Hz.
                let dt = f32::from_bits(self.d.dt_bits);
                if !(1.0 / 240.0 * 0.999..=1.0).contains(&dt) {
                    return Err(CallError::Invalid(format!("a step of {dt} s")));
                }
                Call::Step {
                    dt,
                    sum: WorldSum {
                        checksum: lo | hi << 32,
                        entities,
                    },
                }
            }
            OP_SPAWN => {
                let client = ClientId(self.r.read_bits(32)?);
                let player_id =
                    if self.r.read_bit()? {
                        let n = self.r.read_bits(8)? as usize;
                        let mut b = Vec::with_capacity(n);
                        for _ in 0..n {
                            b.push(self.r.read_bits(8)? as u8);
                        }
                        Some(String::from_utf8(b).map_err(|_| {
                            CallError::Invalid("a player id that is not UTF-8".into())
                        })?)
                    } else {
                        None
                    };
                let entity = EntityId(self.r.read_bits(32)?);
                if self.d.players.ids.len() >= MAX_LOG_PLAYERS
                    && self.d.players.find(entity).is_none()
                {
                    return Err(CallError::Invalid(format!(
                        "more than {MAX_LOG_PLAYERS} players"
                    )));
                }
                self.d.players.spawned(entity);
                Call::Spawn {
                    client,
                    player_id,
                    entity,
                }
            }
            OP_DESPAWN => {
                let (e, _) = self.entity()?;
                self.d.players.despawned(e);
                Call::Despawn(e)
            }
            OP_DETACH => Call::Detach(self.entity()?.0),
            OP_ATTACH => Call::Attach(self.entity()?.0),
            op => return Err(CallError::Invalid(format!("call code {op}"))),
        };
        Ok(Some(call))
    }

    fn input(&mut self) -> Result<Call, CallError> {
        let (entity, slot) = self.entity()?;
        let prev = slot.map_or_else(Prev::default, |i| self.d.players.prev[i]);
        let p = prev.frame;
        let r = &mut self.r;
        let mv = u32::from(p.move_x as u8) | u32::from(p.move_y as u8) << 8;
        let next_seq = p.seq.0.wrapping_add(1);
        let (seq, mv, buttons, lag, interp_ms) = if r.read_bit()? {
            (next_seq, mv, p.buttons, prev.lag, p.interp_ms)
        } else {
            let seq = read_field(r, next_seq, 32)?;
            let mv = read_field(r, mv, 16)?;
            let buttons = read_field(r, u32::from(p.buttons), 8)? as u8;
            let lag = if r.read_bit()? {
                prev.lag
            } else {
                r.read_eg0()?
            };
            let interp = read_field(r, u32::from(p.interp_ms), 16)? as u16;
            (seq, mv, buttons, lag, interp)
        };
        let aim_yaw = read_field(r, u32::from(p.aim_yaw), 16)? as u16;
        let (move_x, move_y) = (mv as u8 as i8, (mv >> 8) as u8 as i8);
        let f = InputFrame {
            seq: InputSeq(seq),
            move_x,
            move_y,
            aim_yaw,
            buttons,
            view_tick: Tick(self.d.tick.wrapping_add(1).wrapping_sub(lag)),
            interp_ms,
        };
        if let Some(i) = slot {
            self.d.players.prev[i] = Prev { frame: f, lag };
        }
        Ok(Call::Input(entity, f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glam::Vec3;
    use tickwire_shared::EntityState;

    fn frame(seq: u32, aim: u16, view: u32) -> InputFrame {
        InputFrame {
            seq: InputSeq(seq),
            move_x: -127,
            move_y: 5,
            aim_yaw: aim,
            buttons: 1,
            view_tick: Tick(view),
            interp_ms: 100,
        }
    }

    /// Every kind of call over a few ticks, with the encoder's and decoder's tables in step.
    fn sample() -> (Vec<Vec<Call>>, Vec<Vec<u8>>) {
        let mut enc = TickEncoder::new();
        let mut ticks = Vec::new();
        let mut payloads = Vec::new();
        let s = |n: u64| WorldSum {
            checksum: 0xdead_beef_0000_0000 | n,
            entities: n as u32,
        };
        let t1 = vec![
            Call::Spawn {
                client: ClientId(7),
                player_id: Some("bot-é".into()),
                entity: EntityId(3),
            },
            Call::Spawn {
                client: ClientId(8),
                player_id: None,
                entity: EntityId(90),
            },
            Call::Input(EntityId(3), frame(1, 100, 0)),
            Call::Input(EntityId(90), frame(1, 200, 0)),
            Call::Input(EntityId(3), frame(2, 101, 0)),
            // An entity the log does not know as a player.
            Call::Input(EntityId(1234), frame(9, 9, 9)),
            Call::Step {
                dt: 1.0 / 30.0,
                sum: s(1),
            },
        ];
        let t2 = vec![
            Call::Input(EntityId(90), frame(2, 200, 1)),
            Call::Input(EntityId(90), frame(7, 65535, 4_000_000_000)),
            Call::Detach(EntityId(3)),
            Call::Step {
                dt: 1.0 / 30.0,
                sum: s(2),
            },
        ];
        let t3 = vec![
            Call::Attach(EntityId(3)),
            Call::Despawn(EntityId(3)),
            Call::Input(EntityId(90), frame(8, 0, 3)),
            Call::Despawn(EntityId(5)),
            Call::Step { dt: 0.5, sum: s(3) },
        ];
        for calls in [t1, t2, t3] {
            let mut out = Vec::new();
            for c in &calls {
                match c {
                    Call::Spawn {
                        client,
                        player_id,
                        entity,
                    } => enc.spawn(*client, player_id.as_deref(), *entity),
                    Call::Despawn(e) => enc.despawn(*e),
                    Call::Detach(e) => enc.detach(*e),
                    Call::Attach(e) => enc.attach(*e),
                    Call::Input(e, f) => enc.input(*e, f),
                    Call::Step { dt, sum } => enc.step(*dt, *sum, &mut out),
                }
            }
            ticks.push(calls);
            payloads.push(out);
        }
        (ticks, payloads)
    }

    fn decode_all(payloads: &[Vec<u8>]) -> Result<Vec<Vec<Call>>, CallError> {
        let mut dec = TickDecoder::new();
        let mut all = Vec::new();
        for (n, p) in payloads.iter().enumerate() {
            let (tick, mut calls) = dec.begin(p)?;
            assert_eq!(tick, n as u32 + 1);
            let mut got = Vec::new();
            while let Some(c) = calls.next_call()? {
                got.push(c);
            }
            all.push(got);
        }
        Ok(all)
    }

    #[test]
    fn a_step_outside_1_to_240_hz_is_corrupt() {
        let sum = WorldSum {
            checksum: 1,
            entities: 0,
        };
        for (dt, ok) in [
            (1.0 / 240.0, true),
            (1.0, true),
            (1e-30, false),
            (0.0, false),
            (-1.0, false),
            (2.0, false),
            (f32::NAN, false),
        ] {
            let mut out = Vec::new();
            TickEncoder::new().step(dt, sum, &mut out);
            assert_eq!(decode_all(&[out]).is_ok(), ok, "dt {dt}");
        }
    }

    #[test]
    fn calls_round_trip() {
        let (ticks, payloads) = sample();
        assert_eq!(decode_all(&payloads).unwrap(), ticks);
    }

    #[test]
    fn a_repeated_frame_costs_a_few_bits() {
        let mut enc = TickEncoder::new();
        let mut out = Vec::new();
        enc.spawn(ClientId(1), None, EntityId(1));
        enc.input(EntityId(1), &frame(1, 5, 0));
        enc.step(0.1, WorldSum::default(), &mut out);
        let before = enc.bits.bit_len();
        // Next tick: seq + 1, same move, buttons and lag, a new aim: the input bit, the
        // player's index, the steady bit and the aim.
        enc.input(EntityId(1), &frame(2, 6, 1));
        assert_eq!(enc.bits.bit_len() - before, 1 + 1 + 1 + 17);
        let before = enc.bits.bit_len();
        enc.input(EntityId(1), &frame(3, 6, 1));
        assert_eq!(enc.bits.bit_len() - before, 1 + 1 + 1 + 1);
    }

    #[test]
    fn every_damaged_or_cut_payload_is_an_error_or_differs() {
        let (ticks, payloads) = sample();
        // Cut anywhere: an error, never a panic.
        for (t, p) in payloads.iter().enumerate() {
            for cut in 0..p.len() {
                let mut v = payloads.clone();
                v[t].truncate(cut);
                assert!(decode_all(&v).is_err(), "tick {t} cut at {cut}");
            }
        }
        // Flip any bit: an error or different calls, never a panic.
        for (t, p) in payloads.iter().enumerate() {
            for bit in 0..p.len() * 8 {
                let mut v = payloads.clone();
                v[t][bit / 8] ^= 1 << (bit % 8);
                if let Ok(got) = decode_all(&v) {
                    assert_ne!(got, ticks, "tick {t} bit {bit}");
                }
            }
        }
    }

    #[test]
    fn the_world_sum_sees_every_field() {
        let base = Replicated {
            id: EntityId(4),
            state: EntityState {
                kind: 1,
                pos: Vec3::new(1.0, 2.0, 3.0),
                vel: Vec3::new(4.0, 5.0, 6.0),
                yaw: 0.5,
                health: 100,
                flags: 2,
            },
        };
        let s0 = WorldSum::of(&[base]);
        let mut changed = Vec::new();
        let mut push = |f: &dyn Fn(&mut Replicated)| {
            let mut r = base;
            f(&mut r);
            changed.push(WorldSum::of(&[r]));
        };
        push(&|r| r.id.0 += 1);
        push(&|r| r.state.kind += 1);
        push(&|r| r.state.pos.z = f32::from_bits(r.state.pos.z.to_bits() + 1));
        push(&|r| r.state.vel.x = -r.state.vel.x);
        push(&|r| r.state.yaw = f32::from_bits(r.state.yaw.to_bits() ^ 1));
        push(&|r| r.state.health -= 1);
        push(&|r| r.state.flags = 0);
        for c in changed {
            assert_ne!(c.checksum, s0.checksum);
        }
        assert_eq!(s0.entities, 1);
        assert_ne!(WorldSum::of(&[base, base]), s0);
    }

    fn header() -> LogHeader {
        LogHeader {
            server_version: "0.1.0".into(),
            room_id: "r1".into(),
            kind: "arena".into(),
            max_clients: 16,
            seed: 42,
            tick_rate: 30,
            started_unix_ms: 1,
            setup: vec![1, 2, 3],
            initial: WorldSum {
                checksum: 5,
                entities: 6,
            },
        }
    }

    fn log() -> Vec<u8> {
        let (_, payloads) = sample();
        let mut w = LogWriter::new(Vec::new(), &header().encode().unwrap()).unwrap();
        for p in &payloads {
            w.tick(p).unwrap();
        }
        w.end(EndReason::RoomEnded).unwrap()
    }

    fn read_all(bytes: &[u8]) -> Result<u32, ReadError> {
        let mut r = LogReader::new(bytes, bytes.len() as u64)?;
        assert_eq!(r.header(), &header());
        let mut ticks = 0;
        loop {
            match r.next_record()? {
                Record::Tick(_) => ticks += 1,
                Record::End { reason, ticks: n } => {
                    assert_eq!(reason, EndReason::RoomEnded);
                    assert_eq!(n, ticks);
                    return Ok(ticks);
                }
            }
        }
    }

    #[test]
    fn files_round_trip() {
        assert_eq!(read_all(&log()).unwrap(), 3);
    }

    #[test]
    fn cut_or_damaged_files_are_clear_errors() {
        let bytes = log();
        for cut in 0..bytes.len() {
            let e = read_all(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(e, ReadError::Truncated { .. } | ReadError::NotALog),
                "cut at {cut}: {e}"
            );
            if cut > 8 {
                assert!(
                    matches!(e, ReadError::Truncated { .. }),
                    "cut at {cut}: {e}"
                );
            }
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            let e = read_all(&b).unwrap_err();
            assert!(
                matches!(
                    e,
                    ReadError::Corrupt { .. }
                        | ReadError::NotALog
                        | ReadError::Version { .. }
                        | ReadError::Truncated { .. }
                ),
                "byte {i}: {e}"
            );
        }
        // A damaged length that still passes the framing check is bounded by the file.
        let mut b = bytes.clone();
        b[PROLOGUE_BYTES..PROLOGUE_BYTES + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_all(&b).is_err());
    }

    #[test]
    fn lengths_over_the_limits_are_refused_before_reading() {
        let mut bytes = log();
        // A header record claiming 5 MiB, with a valid framing check.
        let len = (MAX_HEADER_BYTES as u32 + 1).to_le_bytes();
        let mut head = [len[0], len[1], len[2], len[3], KIND_HEADER];
        let hc = (fnv1a(FNV_OFFSET, &head) as u16).to_le_bytes();
        bytes.splice(
            PROLOGUE_BYTES..PROLOGUE_BYTES + 7,
            head.iter().chain(&hc).copied(),
        );
        let e = read_all(&bytes).unwrap_err();
        assert!(e.to_string().contains("over its limit"), "{e}");
        // An unknown kind, equally well framed.
        head[4] = 9;
        let hc = (fnv1a(FNV_OFFSET, &head) as u16).to_le_bytes();
        bytes.splice(
            PROLOGUE_BYTES..PROLOGUE_BYTES + 7,
            head.iter().chain(&hc).copied(),
        );
        let e = read_all(&bytes).unwrap_err();
        assert!(e.to_string().contains("record kind 9"), "{e}");
    }

    #[test]
    fn other_files_and_versions_are_refused() {
        assert!(matches!(
            read_all(b"hello world, a text file"),
            Err(ReadError::NotALog)
        ));
        assert!(matches!(read_all(b""), Err(ReadError::NotALog)));
        let mut b = log();
        b[8] = 9;
        assert!(matches!(read_all(&b), Err(ReadError::Version { found: 9 })));
    }
}
