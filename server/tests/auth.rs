//! Signed player tokens (`--auth-secret-file`, PROTOCOL.md section 13) through the real front
//! door: a valid token gets in and the game sees its player id; a missing, expired, tampered,
//! foreign-secret or wrong-room token gets its own close code; a token replayed after its
//! expiry is refused; and `tickwire-server token` mints tokens the server accepts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use support::http::post_json;
use support::{TestServer, WAIT};
use tickwire_bot_client::{Client, ClientError, HelloArgs};
use tickwire_server::{Arena, ArenaRules, Game, PlayerInfo, Replicated};
use tickwire_shared::token::{PlayerClaims, TokenKey};
use tickwire_shared::{CloseCode, EntityId, InputFrame, WorldBounds};

const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";

fn key() -> TokenKey {
    TokenKey::new(SECRET).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(player: &str, expires_at: u64, room: Option<&str>) -> String {
    key()
        .sign(&PlayerClaims {
            player_id: player.into(),
            expires_at,
            room: room.map(str::to_owned),
        })
        .unwrap()
}

/// Connects with a token (and maybe a seat); `Err` is the close code the server refused with.
async fn connect(url: &str, auth: Option<String>, seat: Option<&str>) -> Result<Client, u16> {
    let hello = HelloArgs::new("p")
        .with_auth(auth)
        .with_seat(seat.map(str::to_owned));
    match Client::connect_with(url, &hello, None, WAIT).await {
        Ok(c) => Ok(c),
        Err(ClientError::Closed { code, .. }) => Err(code),
        Err(e) => panic!("connect failed: {e}"),
    }
}

/// An arena that records the player id of every player it spawns.
struct Recording {
    inner: Arena,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl Game for Recording {
    fn bounds(&self) -> WorldBounds {
        self.inner.bounds()
    }
    fn spawn_player(&mut self, p: PlayerInfo<'_>) -> EntityId {
        self.seen
            .lock()
            .unwrap()
            .push(p.player_id.map(str::to_owned));
        self.inner.spawn_player(p)
    }
    fn despawn_player(&mut self, e: EntityId) {
        self.inner.despawn_player(e)
    }
    fn apply_input(&mut self, e: EntityId, f: &InputFrame) {
        self.inner.apply_input(e, f)
    }
    fn step(&mut self, dt: f32) {
        self.inner.step(dt)
    }
    fn entities(&self) -> &[Replicated] {
        self.inner.entities()
    }
}

async fn server_with_tokens() -> (TestServer, Arc<Mutex<Vec<Option<String>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rec = seen.clone();
    let s = TestServer::start_custom(
        |c| {
            c.auth = Some(Arc::new(key()));
            c.rooms.room_npcs = 0;
        },
        move |server| {
            server.register_game("recording", move |spec| {
                Box::new(Recording {
                    inner: Arena::new(
                        tickwire_server::world::World::arena(),
                        ArenaRules::default(),
                        0,
                        spec.seed,
                    ),
                    seen: rec.clone(),
                })
            });
        },
    )
    .await;
    (s, seen)
}

#[tokio::test]
async fn tokens_are_required_checked_and_reach_the_game() {
    let (s, seen) = server_with_tokens().await;
    let url = s.url.clone();
    let later = now() + 600;

    // Valid, for any room and for the default room.
    let a = connect(&url, Some(token("alice", later, None)), None)
        .await
        .unwrap();
    let b = connect(&url, Some(token("bob", later, Some("default"))), None)
        .await
        .unwrap();

    // Missing, expired, tampered, another secret's, garbage, another room's.
    assert_eq!(
        connect(&url, None, None).await.err(),
        Some(CloseCode::TokenRequired.code())
    );
    assert_eq!(
        connect(&url, Some(token("carol", now() - 1, None)), None)
            .await
            .err(),
        Some(CloseCode::TokenExpired.code())
    );
    let good = token("dave", later, None);
    let mut tampered = good.clone().into_bytes();
    // Change one character of the text (byte 12 encodes the player id length and its start).
    tampered[12] = if tampered[12] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        connect(&url, Some(String::from_utf8(tampered).unwrap()), None)
            .await
            .err(),
        Some(CloseCode::TokenInvalid.code())
    );
    let foreign = TokenKey::new(&[9u8; 32])
        .unwrap()
        .sign(&PlayerClaims {
            player_id: "eve".into(),
            expires_at: later,
            room: None,
        })
        .unwrap();
    assert_eq!(
        connect(&url, Some(foreign), None).await.err(),
        Some(CloseCode::TokenInvalid.code())
    );
    assert_eq!(
        connect(&url, Some("not a token".into()), None).await.err(),
        Some(CloseCode::TokenInvalid.code())
    );
    assert_eq!(
        connect(&url, Some(token("frank", later, Some("r-elsewhere"))), None)
            .await
            .err(),
        Some(CloseCode::TokenWrongRoom.code())
    );

    // With matchmaking: a token bound to the seat's room gets in; one bound to another room
    // does not, and a refused token leaves the seat unused.
    let (status, v) = post_json(s.addr, "/matchmake/create/recording", &json!({})).await;
    assert_eq!(status, 200, "{v}");
    let room = v["room_id"].as_str().unwrap().to_owned();
    let seat = v["seat_token"].as_str().unwrap().to_owned();
    assert_eq!(
        connect(
            &url,
            Some(token("gina", later, Some("default"))),
            Some(&seat)
        )
        .await
        .err(),
        Some(CloseCode::TokenWrongRoom.code())
    );
    // The refused seat is still good: the right token gets in with it.
    let g = connect(&url, Some(token("gina", later, Some(&room))), Some(&seat))
        .await
        .unwrap();
    // The game saw the player id of the token.
    assert_eq!(*seen.lock().unwrap(), vec![Some("gina".to_owned())]);

    drop((a, b, g));
    s.shutdown().await;
}

#[tokio::test]
async fn a_token_replayed_after_its_expiry_is_refused() {
    let (s, _) = server_with_tokens().await;
    // Valid for this second and the next: usable now, refused once it has passed.
    let t = token("henry", now() + 2, None);
    let first = connect(&s.url, Some(t.clone()), None).await.unwrap();
    drop(first);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(
        connect(&s.url, Some(t), None).await.err(),
        Some(CloseCode::TokenExpired.code())
    );
    s.shutdown().await;
}

#[test]
fn the_token_subcommand_mints_what_the_server_accepts() {
    let dir = std::env::temp_dir().join(format!("tickwire-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, [SECRET, b"\n"].concat()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tickwire-server"))
        .args(["token", "--secret-file"])
        .arg(&secret)
        .args(["--player", "ivy", "--ttl", "60", "--room", "default"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let claims = key().verify(text.trim(), now()).unwrap();
    assert_eq!(claims.player_id, "ivy");
    assert_eq!(claims.room.as_deref(), Some("default"));
    assert!(claims.expires_at >= now() + 50 && claims.expires_at <= now() + 61);
    // A short secret is refused with a clear error, not a panic.
    std::fs::write(&secret, b"short").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tickwire-server"))
        .args(["token", "--secret-file"])
        .arg(&secret)
        .args(["--player", "ivy"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at least 32 bytes"),
        "{out:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
