//! Matchmaking over HTTP (JSON), on the game port:
//!
//! - `POST /matchmake/join_or_create/{kind}`: a seat in an open room of that kind anywhere in
//!   the fleet, or in a new one;
//! - `POST /matchmake/create/{kind}`: a seat in a new room;
//! - `POST /matchmake/join/{room_id}`: a seat in that room;
//! - `GET /rooms`: every live room in the fleet.
//!
//! The seat answers are `{"room_id", "ws_url", "quic_url", "seat_token", "expires_in_s"}`.
//! The optional request body is `{"max_clients": N}` (create and join_or_create; default
//! `--room-size`, at most `--max-room-size`). Errors are JSON `{"error", "message"}` with
//! 400 (bad body or size), 404 (unknown kind or room), 409 (room full or locked) and 503
//! (the directory is unreachable, or no node is alive to make a room on).

use bytes::Bytes;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use crate::Shared;
use crate::directory::{MatchError, Reservation};
use crate::http::{Answer, json};

/// The optional body of a matchmaking request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// Seats in a new room.
    max_clients: Option<u32>,
}

/// A reserved seat, as the client receives it.
#[derive(Debug, Serialize)]
struct SeatAnswer<'a> {
    room_id: &'a str,
    ws_url: &'a str,
    quic_url: Option<&'a str>,
    seat_token: &'a str,
    expires_in_s: f64,
}

/// An error answer.
#[derive(Debug, Serialize)]
struct ErrorAnswer {
    error: &'static str,
    message: String,
}

fn error(status: StatusCode, error: &'static str, message: impl Into<String>) -> Answer {
    json(
        status,
        &ErrorAnswer {
            error,
            message: message.into(),
        },
    )
}

fn match_error(e: MatchError) -> Answer {
    match e {
        MatchError::Unavailable(why) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "directory_unavailable",
            format!("the room directory is unreachable: {why}"),
        ),
        MatchError::NoNode => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_node",
            "no live node to make a room on",
        ),
        MatchError::NoSuchRoom => error(StatusCode::NOT_FOUND, "no_such_room", "no such room"),
        MatchError::RoomFull => error(StatusCode::CONFLICT, "room_full", "the room is full"),
        MatchError::RoomLocked => error(
            StatusCode::CONFLICT,
            "room_locked",
            "the room takes no new players",
        ),
    }
}

fn seat(r: &Reservation) -> Answer {
    json(
        StatusCode::OK,
        &SeatAnswer {
            room_id: &r.room_id,
            ws_url: &r.node.ws_url,
            quic_url: r.node.quic_url.as_deref(),
            seat_token: &r.seat_token,
            expires_in_s: r.expires_in_s,
        },
    )
}

/// `POST /matchmake/{rest}` with `body`.
pub(crate) async fn handle(sh: &Shared, rest: &str, body: &Bytes) -> Answer {
    let opts: Options = if body.iter().all(u8::is_ascii_whitespace) {
        Options::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(o) => o,
            Err(e) => return error(StatusCode::BAD_REQUEST, "bad_body", e.to_string()),
        }
    };
    let (action, target) = rest.split_once('/').unwrap_or((rest, ""));
    if target.is_empty() || target.contains('/') {
        return error(StatusCode::NOT_FOUND, "not_found", "no such endpoint");
    }
    let result = match action {
        "join_or_create" | "create" => {
            if !sh.registry.has_kind(target) {
                return error(
                    StatusCode::NOT_FOUND,
                    "unknown_kind",
                    format!(
                        "no game kind {target:?}; this server has: {}",
                        sh.registry.kinds().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
            let max = opts.max_clients.unwrap_or(sh.cfg.rooms.room_size);
            if max == 0 || max > sh.cfg.rooms.max_room_size {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_max_clients",
                    format!(
                        "max_clients must be between 1 and {}",
                        sh.cfg.rooms.max_room_size
                    ),
                );
            }
            if action == "create" {
                sh.directory.create(target, max).await
            } else {
                sh.directory.join_or_create(target, max).await
            }
        }
        "join" => {
            if opts.max_clients.is_some() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    "join takes no max_clients: the room has its own",
                );
            }
            sh.directory.join(target).await
        }
        _ => return error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    };
    match result {
        Ok(r) => {
            sh.metrics
                .seats_reserved
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            seat(&r)
        }
        Err(e) => match_error(e),
    }
}

/// `GET /rooms`.
pub(crate) async fn rooms(sh: &Shared) -> Answer {
    match sh.directory.rooms().await {
        Ok(rooms) => json(StatusCode::OK, &rooms),
        Err(e) => match_error(e),
    }
}
