//! The in-process directory: the same semantics as the Redis one for a node that is alone.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{
    ClaimError, Claimed, DEFAULT_LEASE, Entropy, LocalRoom, MatchError, NodeInfo, Reservation,
    RoomInfo, SLACK, Token, millis, valid_room_id,
};

/// The directory of a node that is the whole fleet: a std mutex over plain maps. Time is
/// milliseconds since the directory was created. Reported rooms stay listed for a lease
/// ([`DEFAULT_LEASE`]) after the heartbeat that last reported them; rooms reserved but not
/// instantiated yet for as long as a seat in them can be claimed.
#[derive(Debug)]
pub struct LocalDirectory {
    node: NodeInfo,
    seat_ttl: Duration,
    epoch: Instant,
    entropy: Entropy,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// False after `deregister`, until the next heartbeat.
    down: bool,
    rooms: HashMap<String, Room>,
    /// Kind → (created, room id): rooms open for matchmaking, oldest first. May hold rooms
    /// that have since become full, locked or gone; those are dropped when met.
    open: HashMap<String, BTreeSet<(u64, String)>>,
    /// Secret → (room id, forget at): every seat issued and not claimed, remembered
    /// [`SLACK`] past its expiry.
    seats: HashMap<String, (String, u64)>,
    /// Prune `seats` when it grows past this.
    prune_at: usize,
}

#[derive(Debug)]
struct Room {
    kind: String,
    max: u32,
    locked: bool,
    matchmaking: bool,
    clients: u32,
    /// Claims since the owner's last report that includes them (see the module docs of
    /// `directory`).
    claims: u32,
    /// The number of the last claim here.
    last_claim: u64,
    created: u64,
    /// Gone after this (renewed by heartbeats and reservations).
    until: u64,
    /// Secret → expiry.
    seats: HashMap<String, u64>,
}

impl Room {
    fn occupancy(&mut self, now: u64) -> u32 {
        self.seats.retain(|_, exp| *exp > now);
        let seats = u32::try_from(self.seats.len()).unwrap_or(u32::MAX);
        self.clients
            .saturating_add(self.claims)
            .saturating_add(seats)
    }

    fn joinable(&mut self, now: u64) -> bool {
        self.matchmaking && !self.locked && self.until > now && self.occupancy(now) < self.max
    }
}

impl LocalDirectory {
    /// A directory for `node` alone; seats last `seat_ttl`.
    pub fn new(node: NodeInfo, seat_ttl: Duration) -> Self {
        Self {
            node,
            seat_ttl,
            epoch: Instant::now(),
            entropy: Entropy::new(),
            state: Mutex::new(State {
                prune_at: 1024,
                ..State::default()
            }),
        }
    }

    fn now(&self) -> u64 {
        millis(self.epoch.elapsed())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves a seat in `room_id` (which exists and has room).
    fn reserve(&self, st: &mut State, room_id: &str, now: u64) -> Reservation {
        let ttl = millis(self.seat_ttl);
        let exp = now + ttl;
        let secret = self.entropy.secret();
        st.seats
            .insert(secret.clone(), (room_id.to_owned(), exp + millis(SLACK)));
        if st.seats.len() > st.prune_at {
            st.seats.retain(|_, (_, forget)| *forget > now);
            st.prune_at = (st.seats.len() * 2).max(1024);
        }
        if let Some(room) = st.rooms.get_mut(room_id) {
            room.seats.insert(secret.clone(), exp);
            room.until = room.until.max(exp + millis(SLACK));
            if room.occupancy(now) >= room.max
                && let Some(open) = st.open.get_mut(&room.kind)
            {
                open.remove(&(room.created, room_id.to_owned()));
            }
        }
        Reservation {
            room_id: room_id.to_owned(),
            node: self.node.clone(),
            seat_token: Token::format(room_id, exp, &secret),
            expires_in_s: self.seat_ttl.as_secs_f64(),
        }
    }

    fn create_in(
        &self,
        st: &mut State,
        kind: &str,
        max: u32,
        now: u64,
    ) -> Result<Reservation, MatchError> {
        if st.down {
            return Err(MatchError::NoNode);
        }
        if max == 0 {
            return Err(MatchError::RoomFull);
        }
        let mut room_id = self.entropy.room_id();
        while st.rooms.contains_key(&room_id) {
            room_id = self.entropy.room_id();
        }
        st.rooms.insert(
            room_id.clone(),
            Room {
                kind: kind.to_owned(),
                max,
                locked: false,
                matchmaking: true,
                clients: 0,
                claims: 0,
                last_claim: 0,
                created: now,
                until: now,
                seats: HashMap::new(),
            },
        );
        st.open
            .entry(kind.to_owned())
            .or_default()
            .insert((now, room_id.clone()));
        Ok(self.reserve(st, &room_id, now))
    }

    /// See [`Directory::join_or_create`](super::Directory::join_or_create).
    pub async fn join_or_create(
        &self,
        kind: &str,
        max_clients: u32,
    ) -> Result<Reservation, MatchError> {
        let now = self.now();
        let mut st = self.lock();
        let st = &mut *st;
        if let Some(open) = st.open.get_mut(kind) {
            // Every room met and not chosen leaves the set: amortised O(1).
            while let Some((created, id)) = open.first().cloned() {
                let joinable = st.rooms.get_mut(&id).is_some_and(|r| r.joinable(now));
                if joinable {
                    return Ok(self.reserve(st, &id, now));
                }
                open.remove(&(created, id));
            }
        }
        self.create_in(st, kind, max_clients, now)
    }

    /// See [`Directory::create`](super::Directory::create).
    pub async fn create(&self, kind: &str, max_clients: u32) -> Result<Reservation, MatchError> {
        let now = self.now();
        self.create_in(&mut self.lock(), kind, max_clients, now)
    }

    /// See [`Directory::join`](super::Directory::join).
    pub async fn join(&self, room_id: &str) -> Result<Reservation, MatchError> {
        let now = self.now();
        let mut st = self.lock();
        if st.down {
            return Err(MatchError::NoSuchRoom);
        }
        let room = match st.rooms.get_mut(room_id) {
            Some(r) if r.until > now => r,
            _ => return Err(MatchError::NoSuchRoom),
        };
        if room.locked {
            return Err(MatchError::RoomLocked);
        }
        if room.occupancy(now) >= room.max {
            return Err(MatchError::RoomFull);
        }
        Ok(self.reserve(&mut st, room_id, now))
    }

    /// See [`Directory::claim`](super::Directory::claim).
    pub async fn claim(&self, seat_token: &str, seq: u64) -> Result<Claimed, ClaimError> {
        let token = Token::parse(seat_token).ok_or(ClaimError::Invalid)?;
        let now = self.now();
        let mut st = self.lock();
        match st.seats.get(token.secret) {
            None if token.expires_ms <= now => return Err(ClaimError::Expired),
            None => return Err(ClaimError::Invalid),
            Some((room_id, _)) if room_id != token.room_id => return Err(ClaimError::Invalid),
            Some(_) => {}
        }
        st.seats.remove(token.secret);
        let room_id = token.room_id.to_owned();
        let Some(room) = st.rooms.get_mut(&room_id).filter(|r| r.until > now) else {
            return Err(ClaimError::RoomGone);
        };
        match room.seats.remove(token.secret) {
            Some(exp) if exp > now => {}
            _ => return Err(ClaimError::Expired),
        }
        room.claims += 1;
        room.last_claim = seq;
        room.until = room.until.max(now + millis(DEFAULT_LEASE + SLACK));
        Ok(Claimed {
            room_id,
            kind: room.kind.clone(),
            max_clients: room.max,
        })
    }

    /// See [`Directory::heartbeat`](super::Directory::heartbeat).
    pub async fn heartbeat(&self, rooms: &[LocalRoom], last_claim: u64) -> Result<(), MatchError> {
        let now = self.now();
        let until = now + millis(DEFAULT_LEASE);
        let mut st = self.lock();
        let st = &mut *st;
        st.down = false;
        for lr in rooms {
            if !valid_room_id(&lr.room_id) {
                tracing::warn!(room_id = %lr.room_id, "heartbeat: room id not accepted");
                continue;
            }
            let room = st.rooms.entry(lr.room_id.clone()).or_insert_with(|| Room {
                kind: lr.kind.clone(),
                max: lr.max_clients,
                locked: lr.locked,
                matchmaking: lr.matchmaking,
                clients: 0,
                claims: 0,
                last_claim: 0,
                created: now,
                until,
                seats: HashMap::new(),
            });
            if room.kind != lr.kind
                && let Some(open) = st.open.get_mut(&room.kind)
            {
                open.remove(&(room.created, lr.room_id.clone()));
            }
            room.kind.clone_from(&lr.kind);
            room.max = lr.max_clients;
            room.locked = lr.locked;
            room.matchmaking = lr.matchmaking;
            // A report older than a claim here does not include it: keep counting the claim.
            if room.last_claim <= last_claim {
                room.clients = lr.clients;
                room.claims = 0;
            }
            room.until = room.until.max(until);
            let key = (room.created, lr.room_id.clone());
            let open = st.open.entry(lr.kind.clone()).or_default();
            if room.joinable(now) {
                open.insert(key);
            } else {
                open.remove(&key);
            }
        }
        st.rooms.retain(|_, r| r.until > now);
        Ok(())
    }

    /// See [`Directory::try_remove_room`](super::Directory::try_remove_room).
    pub async fn try_remove_room(&self, room_id: &str) -> Result<bool, MatchError> {
        let now = self.now();
        let mut st = self.lock();
        let Some(room) = st.rooms.get_mut(room_id) else {
            return Ok(true);
        };
        room.seats.retain(|_, exp| *exp > now);
        if !room.seats.is_empty() {
            return Ok(false);
        }
        if let Some(room) = st.rooms.remove(room_id)
            && let Some(open) = st.open.get_mut(&room.kind)
        {
            open.remove(&(room.created, room_id.to_owned()));
        }
        Ok(true)
    }

    /// See [`Directory::rooms`](super::Directory::rooms).
    pub async fn rooms(&self) -> Result<Vec<RoomInfo>, MatchError> {
        let now = self.now();
        let mut st = self.lock();
        if st.down {
            return Ok(Vec::new());
        }
        st.rooms.retain(|_, r| r.until > now);
        let mut out: Vec<RoomInfo> = st
            .rooms
            .iter_mut()
            .map(|(id, r)| RoomInfo {
                room_id: id.clone(),
                kind: r.kind.clone(),
                clients: r.occupancy(now).min(r.max),
                max_clients: r.max,
                node: self.node.node_id.clone(),
                locked: r.locked,
            })
            .collect();
        out.sort_by(|a, b| a.room_id.cmp(&b.room_id));
        Ok(out)
    }

    /// See [`Directory::deregister`](super::Directory::deregister).
    pub async fn deregister(&self) {
        let mut st = self.lock();
        st.down = true;
        st.rooms.clear();
        st.open.clear();
        st.seats.clear();
    }

    /// This node.
    pub fn node(&self) -> &NodeInfo {
        &self.node
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::directory::{Directory, ROOM_ID_LEN};

    fn node() -> NodeInfo {
        NodeInfo {
            node_id: "n1".into(),
            ws_url: "ws://127.0.0.1:1/ws".into(),
            quic_url: None,
        }
    }

    fn local_room(id: &str, clients: u32, max: u32) -> LocalRoom {
        LocalRoom {
            room_id: id.into(),
            kind: "arena".into(),
            max_clients: max,
            clients,
            locked: false,
            matchmaking: true,
        }
    }

    #[tokio::test]
    async fn directory_local_reserve_claim_single_use() {
        let d = Directory::local(node(), Duration::from_secs(15));
        let r = d.create("arena", 4).await.unwrap();
        assert_eq!(r.room_id.len(), ROOM_ID_LEN);
        assert_eq!(r.node, node());
        assert!(r.seat_token.len() <= 128 && r.seat_token.is_ascii());
        let c = d.claim(&r.seat_token, 1).await.unwrap();
        assert_eq!(
            (c.room_id.as_str(), c.kind.as_str(), c.max_clients),
            (r.room_id.as_str(), "arena", 4)
        );
        assert_eq!(d.claim(&r.seat_token, 2).await, Err(ClaimError::Invalid));
        assert_eq!(d.claim("garbage", 3).await, Err(ClaimError::Invalid));
        // join_or_create fills the same room; a full room is refused; then a new room
        let mut ids = vec![];
        for _ in 0..3 {
            ids.push(d.join_or_create("arena", 4).await.unwrap().room_id);
        }
        assert!(ids.iter().all(|i| *i == r.room_id));
        assert_eq!(d.join(&r.room_id).await.unwrap_err(), MatchError::RoomFull);
        let other = d.join_or_create("arena", 4).await.unwrap();
        assert_ne!(other.room_id, r.room_id);
        assert_eq!(d.join("nope").await.unwrap_err(), MatchError::NoSuchRoom);
        let rooms = d.rooms().await.unwrap();
        assert_eq!(rooms.len(), 2);
        assert!(
            rooms
                .iter()
                .any(|x| x.room_id == r.room_id && x.clients == 4 && x.node == "n1")
        );
    }

    #[tokio::test]
    async fn directory_local_expiry_and_remove() {
        let d = Directory::local(node(), Duration::from_millis(150));
        let r = d.create("arena", 2).await.unwrap();
        assert!(
            !d.try_remove_room(&r.room_id).await.unwrap(),
            "a seat is pending"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(d.claim(&r.seat_token, 4).await, Err(ClaimError::Expired));
        assert!(d.try_remove_room(&r.room_id).await.unwrap());
        assert_eq!(
            d.join(&r.room_id).await.unwrap_err(),
            MatchError::NoSuchRoom
        );
        // a forged token with an expiry in the future and an unknown secret
        let forged = Token::format(&r.room_id, u64::MAX / 4096, &"a".repeat(26));
        assert_eq!(d.claim(&forged, 5).await, Err(ClaimError::Invalid));
    }

    #[tokio::test]
    async fn directory_local_heartbeat_locked_default_and_guard() {
        let d = Directory::local(node(), Duration::from_secs(15));
        let mut lobby = local_room("lobby", 0, 100);
        lobby.matchmaking = false;
        d.heartbeat(&[lobby.clone()], 0).await.unwrap();
        // the default room is listed and joinable by id, never chosen by join_or_create
        assert!(
            d.rooms()
                .await
                .unwrap()
                .iter()
                .any(|r| r.room_id == "lobby")
        );
        assert_ne!(d.join_or_create("arena", 4).await.unwrap().room_id, "lobby");
        assert_eq!(d.join("lobby").await.unwrap().room_id, "lobby");

        let mut locked = local_room("locked", 0, 4);
        locked.locked = true;
        d.heartbeat(&[lobby.clone(), locked], 0).await.unwrap();
        assert_eq!(d.join("locked").await.unwrap_err(), MatchError::RoomLocked);

        // claims: a late report from before a claim never empties the room, and a report
        // that includes the claim counts it once
        d.heartbeat(&[local_room("g", 1, 3)], 5).await.unwrap();
        let seat = d.join("g").await.unwrap();
        d.claim(&seat.seat_token, 6).await.unwrap();
        // late: read before claim 6
        d.heartbeat(&[local_room("g", 1, 3)], 5).await.unwrap();
        let extra = d.join("g").await.unwrap(); // 1 + claim + this seat = 3
        assert_eq!(d.join("g").await.unwrap_err(), MatchError::RoomFull);
        d.claim(&extra.seat_token, 7).await.unwrap();
        // includes both claims: counted once each, so exactly full
        d.heartbeat(&[local_room("g", 3, 3)], 7).await.unwrap();
        assert_eq!(d.join("g").await.unwrap_err(), MatchError::RoomFull);
        d.heartbeat(&[local_room("g", 2, 3)], 7).await.unwrap(); // a player left
        assert_eq!(d.join("g").await.unwrap().room_id, "g");
        assert_eq!(d.join("g").await.unwrap_err(), MatchError::RoomFull);

        d.deregister().await;
        assert!(d.rooms().await.unwrap().is_empty());
        assert_eq!(d.create("arena", 4).await.unwrap_err(), MatchError::NoNode);
    }
}
