//! The fleet directory on one Redis (standalone, 6.2 or later).
//!
//! Every operation is one Lua script (loaded once, then run by EVALSHA; redis-rs reloads it
//! after a Redis restart), so each check-and-reserve is atomic across the fleet. All times
//! are Redis's own clock (`TIME` inside the scripts, milliseconds): nodes' clocks never
//! matter. The scripts build key names from the prefix (`tw:`) themselves, so this needs a
//! standalone Redis (not Redis Cluster). Nothing needs a cleanup process: everything has a
//! TTL or an expiry score, and the scripts prune what they meet.
//!
//! # Schema (prefix `tw:`)
//!
//! | key | type | content |
//! |---|---|---|
//! | `tw:nodes` | zset | node id → lease expiry (ms). Live ⇔ score > now. |
//! | `tw:node:{node}` | string | the node's [`NodeInfo`] as JSON, `PX` lease |
//! | `tw:node:{node}:rooms` | zset | room id → until when the room counts for this node (heartbeat: now + lease + slack; reservation: seat expiry + slack). Its live size is the node's load. |
//! | `tw:room:{room}` | hash | `kind`, `max`, `owner`, `locked` (0/1), `mm` (matchmaking 0/1), `clients` (as reported), `claims` (claims since the owner's last report that includes them), `ce`/`cs` (the epoch of the owner process and the number of its last claim here; see [`directory`](super)), `created` (ms). `PEXPIRE` lease + slack, or seat expiry + slack for a room not instantiated yet. |
//! | `tw:room:{room}:seats` | zset | seat secret → seat expiry (ms): the reserved seats |
//! | `tw:seat:{secret}` | string | room id, `PX` seat TTL + slack: tells a valid seat whose room is gone from a bad token |
//! | `tw:open:{kind}` | zset | room id → created (ms): rooms of that kind open for matchmaking, oldest first. Rooms that turned full, locked or dead are dropped when a join meets them; heartbeats put a room back when it has seats again. |
//!
//! A room is live when its hash exists and its owner is live; occupancy is
//! `clients + claims + ZCOUNT(seats, (now, +inf))`.
//!
//! # Scripts
//!
//! * `heartbeat(node json, lease, rooms…)`: renews the lease and the node record, writes each
//!   reported room (skipping one that a different live node owns), clears the claim counts the report covers,
//!   puts the room into or out of its open set, prunes the node's room zset.
//! * `join_or_create(kind, max, secret, new id)`: walks `tw:open:{kind}` oldest first,
//!   dropping rooms it cannot use, and reserves in the first room with a free seat; else
//!   creates as below. Each entry dropped was added once, so this is amortised O(1).
//! * `create(kind, max, secret, new id)`: the live node with the fewest live rooms (pending
//!   ones included, so a burst spreads) gets a new room, with the first seat.
//! * `join(room, secret)`, `claim(room, secret, expiry in the token, lease)`,
//!   `remove(room)`, `rooms()`, `deregister()`.
//!
//! Each call is bounded by [`TIMEOUT`]; when Redis is unreachable the call fails with
//! `Unavailable` and the [`ConnectionManager`] reconnects by itself (the next heartbeat then
//! republishes the node and its rooms).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Script};
use tracing::{debug, warn};

use super::{
    ClaimError, Claimed, Entropy, LocalRoom, MatchError, NodeInfo, Reservation, RoomInfo, SLACK,
    Token, millis, valid_room_id,
};

/// Longest any directory call waits for Redis.
pub const TIMEOUT: Duration = Duration::from_millis(500);

/// The key prefix.
pub const PREFIX: &str = "tw:";

/// Shared by every script: `P` (prefix), `now` (ms, Redis clock) and helpers.
const PRELUDE: &str = r#"
local P = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function fmt(n) return string.format('%.0f', n) end
local function live(node)
  local s = redis.call('ZSCORE', P .. 'nodes', node)
  return s and tonumber(s) > now
end
local function extend(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
local function occupancy(r)
  local seats = r .. ':seats'
  redis.call('ZREMRANGEBYSCORE', seats, '-inf', now)
  local f = redis.call('HMGET', r, 'clients', 'claims')
  return (tonumber(f[1]) or 0) + (tonumber(f[2]) or 0) + redis.call('ZCARD', seats)
end
-- a seat in room rid (hash key r) owned by owner; returns its expiry
local function reserve(rid, r, owner, secret, ttl, slack)
  local exp = now + ttl
  local keep = ttl + slack
  redis.call('ZADD', r .. ':seats', exp, secret)
  redis.call('SET', P .. 'seat:' .. secret, rid, 'PX', keep)
  extend(r, keep)
  extend(r .. ':seats', keep)
  local nr = P .. 'node:' .. owner .. ':rooms'
  redis.call('ZADD', nr, 'GT', now + keep, rid)
  extend(nr, keep)
  return exp
end
local function create(kind, max, rid, secret, ttl, slack)
  if max < 1 then return {'full'} end
  local r = P .. 'room:' .. rid
  if redis.call('EXISTS', r) == 1 then return {'collision'} end
  redis.call('ZREMRANGEBYSCORE', P .. 'nodes', '-inf', now)
  local best, bestn, info = nil, nil, nil
  for _, n in ipairs(redis.call('ZRANGE', P .. 'nodes', 0, -1)) do
    local i = redis.call('GET', P .. 'node:' .. n)
    if i then
      local nr = P .. 'node:' .. n .. ':rooms'
      redis.call('ZREMRANGEBYSCORE', nr, '-inf', now)
      local c = redis.call('ZCARD', nr)
      if not best or c < bestn then best, bestn, info = n, c, i end
    end
  end
  if not best then return {'nonode'} end
  redis.call('HSET', r, 'kind', kind, 'max', max, 'owner', best, 'locked', '0', 'mm', '1',
    'clients', '0', 'claims', '0', 'created', fmt(now))
  local exp = reserve(rid, r, best, secret, ttl, slack)
  if max > 1 then redis.call('ZADD', P .. 'open:' .. kind, now, rid) end
  return {'ok', rid, fmt(exp), info}
end
"#;

/// ARGV: P, me, node json, lease, slack, epoch, last claim, then (id, kind, max, clients,
/// locked, mm)…
const HEARTBEAT: &str = r#"
local me, lease, slack = ARGV[2], tonumber(ARGV[4]), tonumber(ARGV[5])
local epoch, last = ARGV[6], tonumber(ARGV[7])
redis.call('ZADD', P .. 'nodes', now + lease, me)
redis.call('SET', P .. 'node:' .. me, ARGV[3], 'PX', lease)
local nr = P .. 'node:' .. me .. ':rooms'
local keep = lease + slack
local conflicts = {}
for i = 8, #ARGV, 6 do
  local rid, kind, max, clients, locked, mm =
    ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local r = P .. 'room:' .. rid
  local f = redis.call('HMGET', r, 'owner', 'ce', 'created', 'kind', 'cs')
  if f[1] and f[1] ~= me and live(f[1]) then
    table.insert(conflicts, rid)
  else
    local created = f[3] or fmt(now)
    if f[4] and f[4] ~= kind then redis.call('ZREM', P .. 'open:' .. f[4], rid) end
    redis.call('HSET', r, 'kind', kind, 'max', max, 'owner', me, 'locked', locked, 'mm', mm,
      'created', created)
    -- A report that predates one of this process's claims here (it was delayed past its
    -- caller's timeout) must not overwrite the count: the claim is not in it.
    if not (f[2] == epoch and tonumber(f[5] or '0') > last) then
      redis.call('HSET', r, 'clients', clients, 'claims', '0')
    end
    extend(r, keep)
    extend(r .. ':seats', keep)
    redis.call('ZADD', nr, 'GT', now + keep, rid)
    local open = P .. 'open:' .. kind
    if mm == '1' and locked == '0' and occupancy(r) < max then
      redis.call('ZADD', open, 'NX', created, rid)
    else
      redis.call('ZREM', open, rid)
    end
  end
end
redis.call('ZREMRANGEBYSCORE', nr, '-inf', now)
extend(nr, keep)
return conflicts
"#;

/// ARGV: P, me, kind, max, secret, ttl, slack, new room id
const JOIN_OR_CREATE: &str = r#"
local kind, max, secret = ARGV[3], tonumber(ARGV[4]), ARGV[5]
local ttl, slack = tonumber(ARGV[6]), tonumber(ARGV[7])
local open = P .. 'open:' .. kind
while true do
  local ids = redis.call('ZRANGE', open, 0, 15)
  if #ids == 0 then break end
  for _, rid in ipairs(ids) do
    local r = P .. 'room:' .. rid
    local f = redis.call('HMGET', r, 'owner', 'max', 'locked', 'mm')
    local info = f[1] and live(f[1]) and redis.call('GET', P .. 'node:' .. f[1])
    if info and f[3] == '0' and f[4] == '1' then
      local m = tonumber(f[2])
      local occ = occupancy(r)
      if occ < m then
        local exp = reserve(rid, r, f[1], secret, ttl, slack)
        if occ + 1 >= m then redis.call('ZREM', open, rid) end
        return {'ok', rid, fmt(exp), info}
      end
    end
    redis.call('ZREM', open, rid)
  end
end
return create(kind, max, ARGV[8], secret, ttl, slack)
"#;

/// ARGV: P, me, kind, max, secret, ttl, slack, new room id
const CREATE: &str = r#"
return create(ARGV[3], tonumber(ARGV[4]), ARGV[8], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]))
"#;

/// ARGV: P, me, room id, secret, ttl, slack
const JOIN: &str = r#"
local rid = ARGV[3]
local r = P .. 'room:' .. rid
local f = redis.call('HMGET', r, 'owner', 'max', 'locked', 'kind')
local info = f[1] and live(f[1]) and redis.call('GET', P .. 'node:' .. f[1])
if not info then return {'nosuch'} end
if f[3] == '1' then return {'locked'} end
local m = tonumber(f[2])
local occ = occupancy(r)
if occ >= m then return {'full'} end
local exp = reserve(rid, r, f[1], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]))
if occ + 1 >= m then redis.call('ZREM', P .. 'open:' .. f[4], rid) end
return {'ok', rid, fmt(exp), info}
"#;

/// ARGV: P, me, room id, secret, expiry in the token, lease, slack, epoch, claim number
const CLAIM: &str = r#"
local me, rid, secret, texp = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local sk = P .. 'seat:' .. secret
local srid = redis.call('GET', sk)
if not srid then
  if texp <= now then return {'expired'} end
  return {'invalid'}
end
if srid ~= rid then return {'invalid'} end
local r = P .. 'room:' .. rid
local f = redis.call('HMGET', r, 'owner', 'kind', 'max')
if not f[1] then
  redis.call('DEL', sk)
  return {'gone'}
end
if f[1] ~= me then return {'foreign'} end
local seats = r .. ':seats'
local score = redis.call('ZSCORE', seats, secret)
redis.call('DEL', sk)
redis.call('ZREM', seats, secret)
-- a seat missing from the zset with its key still there was pruned: expired
if not score or tonumber(score) <= now then return {'expired'} end
redis.call('HINCRBY', r, 'claims', 1)
redis.call('HSET', r, 'ce', ARGV[8], 'cs', ARGV[9])
local keep = tonumber(ARGV[6]) + tonumber(ARGV[7])
extend(r, keep)
local nr = P .. 'node:' .. me .. ':rooms'
redis.call('ZADD', nr, 'GT', now + keep, rid)
extend(nr, keep)
return {'ok', f[2], f[3]}
"#;

/// ARGV: P, me, room id
const REMOVE: &str = r#"
local me, rid = ARGV[2], ARGV[3]
local r = P .. 'room:' .. rid
local nr = P .. 'node:' .. me .. ':rooms'
local f = redis.call('HMGET', r, 'owner', 'kind')
if not f[1] then
  redis.call('ZREM', nr, rid)
  return 1
end
if f[1] ~= me then return 1 end
local seats = r .. ':seats'
redis.call('ZREMRANGEBYSCORE', seats, '-inf', now)
if redis.call('ZCARD', seats) > 0 then return 0 end
redis.call('DEL', r, seats)
redis.call('ZREM', nr, rid)
redis.call('ZREM', P .. 'open:' .. f[2], rid)
return 1
"#;

/// ARGV: P. Flat: (id, kind, max, occupancy, node, locked)…
const ROOMS: &str = r#"
redis.call('ZREMRANGEBYSCORE', P .. 'nodes', '-inf', now)
local out = {}
for _, n in ipairs(redis.call('ZRANGE', P .. 'nodes', 0, -1)) do
  local nr = P .. 'node:' .. n .. ':rooms'
  for _, rid in ipairs(redis.call('ZRANGEBYSCORE', nr, '(' .. fmt(now), '+inf')) do
    local r = P .. 'room:' .. rid
    local f = redis.call('HMGET', r, 'owner', 'kind', 'max', 'locked')
    if f[1] == n then
      local occ = occupancy(r)
      for _, v in ipairs({rid, f[2], f[3], fmt(occ), n, f[4]}) do table.insert(out, v) end
    end
  end
end
return out
"#;

/// ARGV: P, me
const DEREGISTER: &str = r#"
local me = ARGV[2]
redis.call('ZREM', P .. 'nodes', me)
redis.call('DEL', P .. 'node:' .. me)
local nr = P .. 'node:' .. me .. ':rooms'
for _, rid in ipairs(redis.call('ZRANGE', nr, 0, -1)) do
  local r = P .. 'room:' .. rid
  local f = redis.call('HMGET', r, 'owner', 'kind')
  if f[1] == me then
    redis.call('DEL', r, r .. ':seats')
    redis.call('ZREM', P .. 'open:' .. f[2], rid)
  end
end
redis.call('DEL', nr)
return 1
"#;

#[derive(Debug)]
struct Scripts {
    heartbeat: Script,
    join_or_create: Script,
    create: Script,
    join: Script,
    claim: Script,
    remove: Script,
    rooms: Script,
    deregister: Script,
}

impl Scripts {
    fn new() -> Self {
        let s = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Self {
            heartbeat: s(HEARTBEAT),
            join_or_create: s(JOIN_OR_CREATE),
            create: s(CREATE),
            join: s(JOIN),
            claim: s(CLAIM),
            remove: s(REMOVE),
            rooms: s(ROOMS),
            deregister: s(DEREGISTER),
        }
    }
}

/// The directory of a node in a fleet sharing one Redis (see the module docs).
#[derive(Debug)]
pub struct RedisDirectory {
    node: NodeInfo,
    node_json: String,
    lease: Duration,
    seat_ttl: Duration,
    conn: ConnectionManager,
    scripts: Box<Scripts>,
    entropy: Entropy,
    /// Tells this process's claims from an earlier process's with the same node id.
    epoch: String,
}

/// An argument list for a script (ARGV[1] is always the prefix, ARGV[2] this node).
type Args = Vec<String>;

impl RedisDirectory {
    /// Connects lazily to `url`: succeeds while Redis is down; fails only on a bad URL.
    pub fn new(
        url: &str,
        node: NodeInfo,
        lease: Duration,
        seat_ttl: Duration,
    ) -> Result<Self, MatchError> {
        let unavailable = |e: RedisError| MatchError::Unavailable(e.to_string());
        let client = Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(100));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(unavailable)?;
        let node_json = serde_json::to_string(&node)
            .map_err(|e| MatchError::Unavailable(format!("node info: {e}")))?;
        Ok(Self {
            node,
            node_json,
            lease,
            seat_ttl,
            conn,
            scripts: Box::new(Scripts::new()),
            epoch: Entropy::new().secret(),
            entropy: Entropy::new(),
        })
    }

    fn args(&self) -> Args {
        vec![PREFIX.to_owned(), self.node.node_id.clone()]
    }

    /// Runs `script` with `args`, within [`TIMEOUT`] in all (one retry on a dropped
    /// connection, which the connection manager is already replacing).
    async fn run<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        args: &[String],
    ) -> Result<T, String> {
        let attempt = || async {
            let mut inv = script.prepare_invoke();
            for a in args {
                inv.arg(a);
            }
            let mut conn = self.conn.clone();
            inv.invoke_async::<T>(&mut conn).await
        };
        let both = async {
            match attempt().await {
                Err(e) if e.is_io_error() || e.is_connection_dropped() => {
                    debug!(error = %e, "redis: retrying once");
                    attempt().await
                }
                other => other,
            }
        };
        match tokio::time::timeout(TIMEOUT, both).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer from redis within {TIMEOUT:?}")),
        }
    }

    fn reservation(&self, reply: &[String], secret: &str) -> Result<Reservation, MatchError> {
        match reply {
            [ok, room_id, exp, info] if ok == "ok" => {
                let node: NodeInfo = serde_json::from_str(info)
                    .map_err(|e| MatchError::Unavailable(format!("bad node record: {e}")))?;
                let exp: u64 = exp
                    .parse()
                    .map_err(|_| MatchError::Unavailable("bad expiry".to_owned()))?;
                Ok(Reservation {
                    seat_token: Token::format(room_id, exp, secret),
                    room_id: room_id.clone(),
                    node,
                    expires_in_s: self.seat_ttl.as_secs_f64(),
                })
            }
            [s] if s == "full" => Err(MatchError::RoomFull),
            [s] if s == "locked" => Err(MatchError::RoomLocked),
            [s] if s == "nosuch" => Err(MatchError::NoSuchRoom),
            [s] if s == "nonode" => Err(MatchError::NoNode),
            other => Err(MatchError::Unavailable(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// A reservation through `script` (`create` or `join_or_create`).
    async fn reserve_new(
        &self,
        script: &Script,
        kind: &str,
        max_clients: u32,
    ) -> Result<Reservation, MatchError> {
        for _ in 0..4 {
            let secret = self.entropy.secret();
            let mut args = self.args();
            args.extend([
                kind.to_owned(),
                max_clients.to_string(),
                secret.clone(),
                millis(self.seat_ttl).to_string(),
                millis(SLACK).to_string(),
                self.entropy.room_id(),
            ]);
            let reply: Vec<String> = self
                .run(script, &args)
                .await
                .map_err(MatchError::Unavailable)?;
            if reply.first().is_some_and(|s| s == "collision") {
                continue;
            }
            return self.reservation(&reply, &secret);
        }
        Err(MatchError::Unavailable("room id collisions".to_owned()))
    }

    /// See [`Directory::join_or_create`](super::Directory::join_or_create).
    pub async fn join_or_create(
        &self,
        kind: &str,
        max_clients: u32,
    ) -> Result<Reservation, MatchError> {
        self.reserve_new(&self.scripts.join_or_create, kind, max_clients)
            .await
    }

    /// See [`Directory::create`](super::Directory::create).
    pub async fn create(&self, kind: &str, max_clients: u32) -> Result<Reservation, MatchError> {
        self.reserve_new(&self.scripts.create, kind, max_clients)
            .await
    }

    /// See [`Directory::join`](super::Directory::join).
    pub async fn join(&self, room_id: &str) -> Result<Reservation, MatchError> {
        if !valid_room_id(room_id) {
            return Err(MatchError::NoSuchRoom);
        }
        let secret = self.entropy.secret();
        let mut args = self.args();
        args.extend([
            room_id.to_owned(),
            secret.clone(),
            millis(self.seat_ttl).to_string(),
            millis(SLACK).to_string(),
        ]);
        let reply: Vec<String> = self
            .run(&self.scripts.join, &args)
            .await
            .map_err(MatchError::Unavailable)?;
        self.reservation(&reply, &secret)
    }

    /// See [`Directory::claim`](super::Directory::claim).
    pub async fn claim(&self, seat_token: &str, seq: u64) -> Result<Claimed, ClaimError> {
        let token = Token::parse(seat_token).ok_or(ClaimError::Invalid)?;
        let mut args = self.args();
        args.extend([
            token.room_id.to_owned(),
            token.secret.to_owned(),
            token.expires_ms.to_string(),
            millis(self.lease).to_string(),
            millis(SLACK).to_string(),
            self.epoch.clone(),
            seq.to_string(),
        ]);
        let reply: Vec<String> = self
            .run(&self.scripts.claim, &args)
            .await
            .map_err(ClaimError::Unavailable)?;
        match reply.as_slice() {
            [ok, kind, max] if ok == "ok" => Ok(Claimed {
                room_id: token.room_id.to_owned(),
                kind: kind.clone(),
                max_clients: max
                    .parse()
                    .map_err(|_| ClaimError::Unavailable("bad max".to_owned()))?,
            }),
            [s] if s == "expired" => Err(ClaimError::Expired),
            [s] if s == "invalid" => Err(ClaimError::Invalid),
            [s] if s == "foreign" => Err(ClaimError::Foreign),
            [s] if s == "gone" => Err(ClaimError::RoomGone),
            other => Err(ClaimError::Unavailable(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// See [`Directory::heartbeat`](super::Directory::heartbeat).
    pub async fn heartbeat(&self, rooms: &[LocalRoom], last_claim: u64) -> Result<(), MatchError> {
        let mut args = self.args();
        args.reserve(5 + rooms.len() * 6);
        args.extend([
            self.node_json.clone(),
            millis(self.lease).to_string(),
            millis(SLACK).to_string(),
            self.epoch.clone(),
            last_claim.to_string(),
        ]);
        for r in rooms {
            if !valid_room_id(&r.room_id) || r.kind.is_empty() {
                warn!(room_id = %r.room_id, kind = %r.kind, "heartbeat: room not accepted");
                continue;
            }
            args.extend([
                r.room_id.clone(),
                r.kind.clone(),
                r.max_clients.to_string(),
                r.clients.to_string(),
                u8::from(r.locked).to_string(),
                u8::from(r.matchmaking).to_string(),
            ]);
        }
        let conflicts: Vec<String> = self
            .run(&self.scripts.heartbeat, &args)
            .await
            .map_err(MatchError::Unavailable)?;
        if !conflicts.is_empty() {
            warn!(
                ?conflicts,
                "heartbeat: rooms with these ids belong to another live node; not published"
            );
        }
        Ok(())
    }

    /// See [`Directory::try_remove_room`](super::Directory::try_remove_room).
    pub async fn try_remove_room(&self, room_id: &str) -> Result<bool, MatchError> {
        if !valid_room_id(room_id) {
            return Ok(true);
        }
        let mut args = self.args();
        args.push(room_id.to_owned());
        let removed: i64 = self
            .run(&self.scripts.remove, &args)
            .await
            .map_err(MatchError::Unavailable)?;
        Ok(removed == 1)
    }

    /// See [`Directory::rooms`](super::Directory::rooms).
    pub async fn rooms(&self) -> Result<Vec<RoomInfo>, MatchError> {
        let flat: Vec<String> = self
            .run(&self.scripts.rooms, &self.args())
            .await
            .map_err(MatchError::Unavailable)?;
        let num = |s: &str| s.parse::<u32>().unwrap_or(0);
        let mut out: Vec<RoomInfo> = flat
            .chunks_exact(6)
            .map(|c| {
                let max_clients = num(&c[2]);
                RoomInfo {
                    room_id: c[0].clone(),
                    kind: c[1].clone(),
                    clients: num(&c[3]).min(max_clients),
                    max_clients,
                    node: c[4].clone(),
                    locked: c[5] == "1",
                }
            })
            .collect();
        out.sort_by(|a, b| a.room_id.cmp(&b.room_id));
        Ok(out)
    }

    /// See [`Directory::deregister`](super::Directory::deregister).
    pub async fn deregister(&self) {
        if let Err(e) = self
            .run::<i64>(&self.scripts.deregister, &self.args())
            .await
        {
            warn!(error = %e, "deregister failed; the lease will expire by itself");
        }
    }

    /// This node.
    pub fn node(&self) -> &NodeInfo {
        &self.node
    }
}
