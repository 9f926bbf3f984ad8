//! The node's side of the fleet, as one background task: a heartbeat to the directory about
//! once a second (the lease, and every local room's kind, seats, sessions and lock), the
//! disposal of matchmade rooms that stayed empty for `--room-idle`, and the sweep of
//! expired resume routes.
//!
//! A heartbeat and the claims never interleave: claims hold [`Shared::claim_gate`] shared,
//! from the claim until the session is counted in its room; a heartbeat holds it exclusively
//! from reading the rooms' counts until the directory has them, and says which claims they
//! include (`Shared::claims`). So the directory counts every seated player exactly once (see
//! "Occupancy" in [`crate::directory`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::time::{MissedTickBehavior, timeout};
use tracing::{debug, info, warn};

use crate::Shared;
use crate::agones::AgonesHandle;
use crate::directory::LocalRoom;

/// Longest a directory call may take before it counts as failed.
const DIRECTORY_CALL: Duration = Duration::from_secs(2);

/// How often the node heartbeats: a third of the lease, at most a second.
pub(crate) fn heartbeat_every(lease: Duration) -> Duration {
    (lease / 3).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// What this node reports of its rooms.
pub(crate) fn local_rooms(sh: &Shared) -> Vec<LocalRoom> {
    sh.registry
        .rooms()
        .iter()
        .map(|h| LocalRoom {
            room_id: h.id.clone(),
            kind: h.kind.clone(),
            max_clients: h.max_clients,
            clients: h.sessions(),
            locked: h.locked.load(Relaxed),
            matchmaking: h.matchmaking,
        })
        .collect()
}

/// Runs until shutdown, then leaves the directory.
pub(crate) async fn run(sh: Arc<Shared>, agones: Option<Arc<AgonesHandle>>) {
    let mut shutdown = sh.shutdown.clone();
    let mut every = tokio::time::interval(heartbeat_every(sh.cfg.rooms.lease));
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut reachable = true;
    let mut empty_since: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => break,
        }
        let ok = heartbeat(&sh).await;
        if ok != reachable {
            if ok {
                info!("room directory reachable again: this node and its rooms are registered");
            } else {
                warn!(
                    "room directory unreachable: rooms keep running, matchmaking answers 503 \
                     until it is back"
                );
            }
            reachable = ok;
        }
        if ok {
            dispose_idle(&sh, &mut empty_since).await;
        }
        sh.registry.sweep_resume();
        if let Some(a) = &agones {
            // The reporter applies it in the background; this never waits on the sidecar.
            a.report(sh.registry.rooms().len() as u64, sh.registry.players());
        }
    }
    // Out of the directory first, so matchmaking elsewhere stops sending players here while
    // the sessions drain.
    let _ = timeout(DIRECTORY_CALL, sh.directory.deregister()).await;
}

/// One heartbeat; whether the directory took it.
async fn heartbeat(sh: &Shared) -> bool {
    let _gate = sh.claim_gate.write().await;
    let rooms = local_rooms(sh);
    let last_claim = sh.claims.load(Relaxed);
    match timeout(DIRECTORY_CALL, sh.directory.heartbeat(&rooms, last_claim)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            debug!(error = %e, "heartbeat failed");
            false
        }
        Err(_) => {
            debug!("heartbeat timed out");
            false
        }
    }
}

/// Disposes of matchmade rooms empty for `--room-idle` that have no reserved seat either.
async fn dispose_idle(sh: &Shared, empty_since: &mut HashMap<String, Instant>) {
    let now = Instant::now();
    let rooms = sh.registry.rooms();
    empty_since.retain(|id, _| rooms.iter().any(|r| &r.id == id && r.sessions() == 0));
    for r in rooms.iter().filter(|r| r.matchmaking && r.sessions() == 0) {
        let since = *empty_since.entry(r.id.clone()).or_insert(now);
        if now.duration_since(since) < sh.cfg.rooms.idle {
            continue;
        }
        match timeout(DIRECTORY_CALL, sh.directory.try_remove_room(&r.id)).await {
            Ok(Ok(true)) => {
                // A session that came in meanwhile keeps the room (the next heartbeat lists
                // it again).
                if sh.registry.dispose(&r.id) {
                    debug!(room = %r.id, kind = %r.kind, "disposed of an idle room");
                    empty_since.remove(&r.id);
                }
            }
            Ok(Ok(false)) => {} // a seat is reserved: someone is on the way
            Ok(Err(_)) | Err(_) => return,
        }
    }
}
