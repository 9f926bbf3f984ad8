//! The tag example (`server/examples/tag`): its rules' unit tests (the game module is
//! included from the example, so they run here under `cargo test --workspace`), two real
//! WebSocket clients playing it in the default room of a real server, seen through verified
//! snapshots, and "tag" as a kind that matchmaking makes rooms of.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../examples/tag/game.rs"]
mod tag;

mod support;

use std::net::SocketAddr;

use serde_json::json;
use support::WAIT;
use support::http::{get_json, post_json};
use tag::{FLAG_IT, FLAG_SAFE, FLAG_SCORE, TagRules};
use tickwire_bot_client::{Client, Event, HelloArgs};
use tickwire_server::game::{KIND_NPC, KIND_PLAYER};
use tickwire_server::{Server, ServerConfig};
use tickwire_shared::{EntityId, QuantizedState, Quantizer, Tick};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// The test's no-tag-back, seconds: long enough that the tagger scores a whole second in it.
const NO_TAG_BACK: f32 = 1.5;

/// Most snapshots each client reads before the test gives up: 20 s at 30 Hz, where a passing
/// run needs under 7 (the longest chase across the 16 × 16 court, then the no-tag-back).
const MAX_ROUNDS: usize = 600;

struct Running {
    addr: SocketAddr,
    url: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// The example's server on 127.0.0.1:0: no runners in the default room (two clients play),
/// two in each matchmade one, a 16 × 16 court.
async fn start() -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rules = |runners| TagRules {
        runners,
        no_tag_back: NO_TAG_BACK,
        ..TagRules::default()
    };
    let server: Server = tag::tag_server(
        ServerConfig::defaults(),
        tag::court(8.0),
        rules(0),
        rules(2),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Running {
        addr,
        url: format!("ws://{addr}/ws"),
        stop,
        task,
    }
}

/// The next verified snapshot's tick and view; panics on any snapshot that does not verify.
async fn snapshot(c: &mut Client) -> (Tick, Vec<(EntityId, QuantizedState)>) {
    loop {
        match timeout(WAIT, c.next_event())
            .await
            .expect("a snapshot in time")
            .unwrap()
        {
            Event::Snapshot {
                outcome, message, ..
            } => {
                outcome.expect("every snapshot decodes and verifies");
                return (message.tick, c.receiver().view().to_vec());
            }
            Event::Pong { .. } | Event::Welcome(_) => {}
            Event::Closed { code, reason } => panic!("closed: {code} {reason}"),
        }
    }
}

fn find(view: &[(EntityId, QuantizedState)], id: EntityId) -> Option<QuantizedState> {
    view.iter().find(|(e, _)| *e == id).map(|(_, s)| *s)
}

/// Sends a frame that runs from `from` towards `to` (or stands still when `to` is `None` or
/// already there).
async fn run_towards(
    c: &mut Client,
    q: &Quantizer,
    from: &QuantizedState,
    to: Option<&QuantizedState>,
) {
    let (mut x, mut y) = (0, 0);
    if let Some(to) = to {
        let d = (q.dequantize_pos(to.pos) - q.dequantize_pos(from.pos)).truncate();
        if d.length() > 0.3 {
            let d = d.normalize() * 127.0;
            (x, y) = (d.x as i8, d.y as i8);
        }
    }
    c.send_input(x, y, 0, 0).await.unwrap();
}

/// What one client has seen of the game so far.
#[derive(Debug, Default)]
struct Seen {
    /// It has seen the second player become it.
    passed: bool,
    /// It has seen the first it become it again.
    back: Option<(Tick, u16)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_players_play_tag_and_it_passes_on_touch() {
    let s = start().await;
    let mut clients = [
        Client::connect(&s.url, "ada", None, WAIT).await.unwrap(),
        Client::connect(&s.url, "bo", None, WAIT).await.unwrap(),
    ];
    let ids = [clients[0].welcome.entity_id, clients[1].welcome.entity_id];
    let q = *clients[0].receiver().quantizer();
    let rate = u32::from(clients[0].welcome.tick_rate);

    // Who is it first (the game picks at random once both are in play).
    let mut chaser: Option<usize> = None;
    // The newest tick at which a client saw the first it still it, before the pass.
    let mut last_before_pass: Option<Tick> = None;
    let mut seen = [Seen::default(), Seen::default()];
    for _ in 0..MAX_ROUNDS {
        if seen.iter().all(|v| v.passed && v.back.is_some()) {
            break;
        }
        for k in 0..2 {
            let c = &mut clients[k];
            let (tick, view) = snapshot(c).await;
            let (Some(me), Some(other)) = (find(&view, ids[k]), find(&view, ids[1 - k])) else {
                c.send_input(0, 0, 0, 0).await.unwrap();
                continue;
            };
            let states = if k == 0 { [me, other] } else { [other, me] };
            // Every verified view: at most one it, a safe player is never it, scores flagged.
            for st in &states {
                assert_eq!(st.kind, KIND_PLAYER);
                assert_ne!(st.flags & FLAG_SCORE, 0, "{st:?}");
                assert!(
                    st.flags & FLAG_IT == 0 || st.flags & FLAG_SAFE == 0,
                    "{st:?}"
                );
            }
            let it: Vec<usize> = (0..2).filter(|&p| states[p].flags & FLAG_IT != 0).collect();
            assert!(it.len() <= 1, "two its: {states:?}");
            let Some(&it) = it.first() else {
                // Not yet a game in this view (one player was alone until now).
                c.send_input(0, 0, 0, 0).await.unwrap();
                continue;
            };
            let first = *chaser.get_or_insert(it);
            let runner = 1 - first;
            if it == first && !seen[k].passed {
                // Before the pass: it scores nothing, and chases.
                assert_eq!(states[first].health, 0, "it scored: {states:?}");
                last_before_pass = Some(last_before_pass.map_or(tick, |t| t.max(tick)));
            } else if it == runner {
                seen[k].passed = true;
                assert_ne!(
                    states[first].flags & FLAG_SAFE,
                    0,
                    "the tagger is safe: {states:?}"
                );
            } else if seen[k].back.is_none() {
                // The first it is it again: a tag-back, once it was no longer safe.
                seen[k].back = Some((tick, states[first].health));
            }
            // The one who is it runs at the other; the other stands still.
            let target = (it == k).then_some(&other);
            run_towards(c, &q, &me, target).await;
        }
    }
    assert!(
        seen.iter().all(|v| v.passed),
        "both saw it pass on: {seen:?}"
    );
    let before = last_before_pass.expect("a client saw the game before the pass");
    for v in &seen {
        let (back, score) = v.back.expect("both saw the tag-back");
        // The pass came after `before`, the tag-back no sooner than the no-tag-back after it.
        let gap = back.0 - before.0;
        assert!(
            f64::from(gap) >= f64::from(NO_TAG_BACK) * f64::from(rate),
            "tagged back {gap} ticks after the pass"
        );
        // Not it for the whole no-tag-back: at least one whole second scored.
        assert!(score >= 1, "the tagger's score at the tag-back: {score}");
    }
    for c in clients {
        c.close().await;
    }

    // "tag" is a kind matchmaking makes rooms of, with its runners.
    let (status, seat) = post_json(s.addr, "/matchmake/create/tag", &json!({})).await;
    assert_eq!(status, 200, "{seat}");
    let hello = HelloArgs::new("cy").with_seat(seat["seat_token"].as_str().map(str::to_owned));
    let mut c = Client::connect_with(&s.url, &hello, None, WAIT)
        .await
        .unwrap();
    let me = c.welcome.entity_id;
    let mut view = Vec::new();
    for _ in 0..MAX_ROUNDS {
        view = snapshot(&mut c).await.1;
        c.send_input(0, 0, 0, 0).await.unwrap();
        if view.iter().any(|(_, st)| st.flags & FLAG_IT != 0) {
            break;
        }
    }
    let kinds: Vec<u16> = view.iter().map(|(_, st)| st.kind).collect();
    assert_eq!(
        kinds,
        [KIND_NPC, KIND_NPC, KIND_PLAYER],
        "two runners and me: {view:?}"
    );
    assert_eq!(view[2].0, me);
    let its = view
        .iter()
        .filter(|(_, st)| st.flags & FLAG_IT != 0)
        .count();
    assert_eq!(its, 1, "{view:?}");
    let (status, rooms) = get_json(s.addr, "/rooms").await;
    assert_eq!(status, 200);
    let room = rooms
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room_id"] == seat["room_id"])
        .cloned()
        .unwrap_or_default();
    assert_eq!(room["kind"], "tag", "{rooms}");
    c.close().await;

    let _ = s.stop.send(());
    timeout(WAIT, s.task)
        .await
        .expect("the server stops")
        .unwrap();
}
