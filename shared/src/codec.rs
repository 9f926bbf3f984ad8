//! The envelope codec: every message is one binary frame in bincode's wire format with the
//! "standard" (variable-length integer) configuration, written and read by `wincode`.
//!
//! Decoding untrusted bytes always runs under two limits: the frame length, checked before any
//! parsing, and wincode's preallocation limit, which bounds every length prefix. Semantic
//! limits (frame counts, name lengths) are checked after decoding. Nothing here panics on any
//! input; every failure is a [`DecodeError`].

use wincode::config::{Config, Configuration};
use wincode::{SchemaRead, SchemaWrite};

use crate::ids::{InputSeq, Tick};

use crate::message::{
    ClientMessage, MAX_AUTH_BYTES, MAX_INPUT_FRAMES, MAX_NAME_BYTES, MAX_REASON_BYTES,
    MAX_SEAT_BYTES, ServerMessage,
};

/// Largest client frame the server decodes. A full `Input` (8 frames) is at most 95 bytes.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 512;
/// Largest server frame a client decodes: a full snapshot of a crowded view fits easily.
pub const MAX_SERVER_MESSAGE_BYTES: usize = 1 << 20;

fn client_config() -> impl Config {
    Configuration::default()
        .with_varint_encoding()
        .with_preallocation_size_limit::<MAX_CLIENT_MESSAGE_BYTES>()
        .with_deserialization_size_limit::<MAX_CLIENT_MESSAGE_BYTES>()
}

fn server_config() -> impl Config {
    Configuration::default()
        .with_varint_encoding()
        .with_preallocation_size_limit::<MAX_SERVER_MESSAGE_BYTES>()
        .with_deserialization_size_limit::<MAX_SERVER_MESSAGE_BYTES>()
}

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The frame is longer than the side's limit; nothing was parsed.
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Frame length.
        len: usize,
        /// The limit it broke.
        limit: usize,
    },
    /// The bytes are not a valid message (bad tag, truncated, bad UTF-8, trailing bytes,
    /// a length prefix over the limit).
    #[error("malformed message: {0}")]
    Malformed(#[from] wincode::ReadError),
    /// The message decoded but breaks a protocol limit.
    #[error("{what}: {len} is over the limit of {max}")]
    OverLimit {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why a message could not be encoded. On error nothing is left appended to the buffer.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// wincode refused the value.
    #[error("cannot encode message: {0}")]
    Write(#[from] wincode::WriteError),
    /// The message breaks a protocol limit the peer would reject it for.
    #[error("{what}: {len} is over the limit of {max}")]
    OverLimit {
        /// Which field or frame.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Appends the frame for a client message to `out`. Refuses (leaving `out` as it was) a
/// message the server would reject for its size or limits.
pub fn encode_client(msg: &ClientMessage, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    check_client_limits(msg).map_err(|(what, len, max)| EncodeError::OverLimit {
        what,
        len,
        max,
    })?;
    let start = out.len();
    let result = wincode::config::serialize_into(&mut *out, msg, client_config());
    let len = out.len() - start;
    if result.is_err() || len > MAX_CLIENT_MESSAGE_BYTES {
        out.truncate(start);
        result?;
        return Err(EncodeError::OverLimit {
            what: "client frame bytes",
            len,
            max: MAX_CLIENT_MESSAGE_BYTES,
        });
    }
    Ok(())
}

/// Appends the frame for a server message to `out` (leaving `out` as it was on error).
pub fn encode_server(msg: &ServerMessage, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if let ServerMessage::Disconnect { reason, .. } = msg
        && reason.len() > MAX_REASON_BYTES
    {
        return Err(EncodeError::OverLimit {
            what: "reason bytes",
            len: reason.len(),
            max: MAX_REASON_BYTES,
        });
    }
    let start = out.len();
    if let Err(e) = wincode::config::serialize_into(&mut *out, msg, server_config()) {
        out.truncate(start);
        return Err(e.into());
    }
    Ok(())
}

/// The semantic limits of a client message: `(what, len, max)` of the first one broken.
fn check_client_limits(msg: &ClientMessage) -> Result<(), (&'static str, usize, usize)> {
    match msg {
        ClientMessage::Input { frames, .. } if frames.len() > MAX_INPUT_FRAMES => {
            Err(("input frames", frames.len(), MAX_INPUT_FRAMES))
        }
        ClientMessage::Hello { name, .. } if name.len() > MAX_NAME_BYTES => {
            Err(("name bytes", name.len(), MAX_NAME_BYTES))
        }
        ClientMessage::Hello {
            seat: Some(seat), ..
        } if seat.len() > MAX_SEAT_BYTES => Err(("seat bytes", seat.len(), MAX_SEAT_BYTES)),
        ClientMessage::Hello {
            auth: Some(auth), ..
        } if auth.len() > MAX_AUTH_BYTES => Err(("auth bytes", auth.len(), MAX_AUTH_BYTES)),
        _ => Ok(()),
    }
}

/// The `Snapshot` envelope with a borrowed body: the same bytes as
/// `ServerMessage::Snapshot(SnapshotMessage { .. })`, without first copying the body into an
/// owned message (the server frames one snapshot per client per tick).
#[derive(SchemaWrite)]
struct SnapshotFrameRef<'a> {
    tick: Tick,
    baseline_age: u32,
    last_input: InputSeq,
    checksum: u32,
    partial: bool,
    body: &'a [u8],
}

/// `ServerMessage::Snapshot`'s variant index.
const SNAPSHOT_VARIANT: u32 = 1;

/// Appends the frame of a `Snapshot` whose body is `body` to `out` (leaving `out` as it was on
/// error). Byte-for-byte what [`encode_server`] writes for the equivalent owned message.
pub fn encode_snapshot_frame(
    tick: Tick,
    baseline_age: u32,
    last_input: InputSeq,
    checksum: u32,
    partial: bool,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    let frame = SnapshotFrameRef {
        tick,
        baseline_age,
        last_input,
        checksum,
        partial,
        body,
    };
    let result = wincode::config::serialize_into(&mut *out, &SNAPSHOT_VARIANT, server_config())
        .and_then(|()| wincode::config::serialize_into(&mut *out, &frame, server_config()));
    if let Err(e) = result {
        out.truncate(start);
        return Err(e.into());
    }
    Ok(())
}

/// The envelope of a `Snapshot` up to its body: what [`encode_snapshot_frame`] writes before
/// the body bytes, for a body of `body_len` bytes.
#[derive(SchemaWrite)]
struct SnapshotHeaderRef {
    tick: Tick,
    baseline_age: u32,
    last_input: InputSeq,
    checksum: u32,
    partial: bool,
    /// bincode writes a byte slice's length as a `u64`, a varint in this configuration.
    body_len: u64,
}

/// Longest [`encode_snapshot_header`] output: the tag (1 byte), four `u32` varints (5 bytes
/// each), the `partial` flag (1 byte) and the body length (9 bytes for a `u64` varint up to
/// 2^64).
pub const MAX_SNAPSHOT_HEADER_BYTES: usize = 1 + 4 * 5 + 1 + 9;

/// Appends the `Snapshot` envelope's bytes up to (not including) a body of `body_len` bytes:
/// the header plus the body is byte-for-byte [`encode_snapshot_frame`]'s frame. Lets a server
/// encode a body once and frame it for many clients, each with its own header. Refuses a body
/// the peer would reject for its size (leaving `out` as it was).
pub fn encode_snapshot_header(
    tick: Tick,
    baseline_age: u32,
    last_input: InputSeq,
    checksum: u32,
    partial: bool,
    body_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    if body_len > MAX_SERVER_MESSAGE_BYTES {
        return Err(EncodeError::OverLimit {
            what: "snapshot body bytes",
            len: body_len,
            max: MAX_SERVER_MESSAGE_BYTES,
        });
    }
    let start = out.len();
    let header = SnapshotHeaderRef {
        tick,
        baseline_age,
        last_input,
        checksum,
        partial,
        body_len: body_len as u64,
    };
    let result = wincode::config::serialize_into(&mut *out, &SNAPSHOT_VARIANT, server_config())
        .and_then(|()| wincode::config::serialize_into(&mut *out, &header, server_config()));
    if let Err(e) = result {
        out.truncate(start);
        return Err(e.into());
    }
    Ok(())
}

/// Decodes one client frame (the server's side). Rejects frames over
/// [`MAX_CLIENT_MESSAGE_BYTES`], trailing bytes, more than [`MAX_INPUT_FRAMES`] input frames,
/// names over [`MAX_NAME_BYTES`], seats over [`MAX_SEAT_BYTES`] and tokens over
/// [`MAX_AUTH_BYTES`].
pub fn decode_client(frame: &[u8]) -> Result<ClientMessage, DecodeError> {
    check_len(frame, MAX_CLIENT_MESSAGE_BYTES)?;
    let msg: ClientMessage = wincode::config::deserialize_exact(frame, client_config())?;
    check_client_limits(&msg).map_err(|(what, len, max)| DecodeError::OverLimit {
        what,
        len,
        max,
    })?;
    Ok(msg)
}

/// The start of every `Hello` envelope: the variant index, then `protocol_version`. Every
/// protocol version begins its `Hello` this way, whatever fields follow.
#[derive(SchemaRead)]
struct HelloHead {
    variant: u32,
    protocol_version: u16,
}

/// `ClientMessage::Hello`'s variant index.
const HELLO_VARIANT: u32 = 0;

/// The `protocol_version` of a frame that starts like a `Hello`, read without decoding the
/// rest of it (in the same configuration as [`decode_client`]); `None` for a frame that is
/// not a `Hello` or too short to hold the version.
///
/// A server calls it on a frame [`decode_client`] refused: a `Hello` of another protocol
/// version may not decode as this version's `Hello` (version 1's lacks the `seat` field),
/// and its sender should get close code 4001 "unsupported protocol version" rather than
/// 1002. The result says nothing about the validity of the rest of the frame.
pub fn peek_hello_version(frame: &[u8]) -> Option<u16> {
    let head: HelloHead = wincode::config::deserialize(frame, client_config()).ok()?;
    (head.variant == HELLO_VARIANT).then_some(head.protocol_version)
}

/// Decodes one server frame (a client's side). Rejects frames over
/// [`MAX_SERVER_MESSAGE_BYTES`], trailing bytes and reasons over [`MAX_REASON_BYTES`].
pub fn decode_server(frame: &[u8]) -> Result<ServerMessage, DecodeError> {
    check_len(frame, MAX_SERVER_MESSAGE_BYTES)?;
    let msg: ServerMessage = wincode::config::deserialize_exact(frame, server_config())?;
    if let ServerMessage::Disconnect { reason, .. } = &msg
        && reason.len() > MAX_REASON_BYTES
    {
        return Err(DecodeError::OverLimit {
            what: "reason bytes",
            len: reason.len(),
            max: MAX_REASON_BYTES,
        });
    }
    Ok(msg)
}

fn check_len(frame: &[u8], limit: usize) -> Result<(), DecodeError> {
    if frame.len() > limit {
        return Err(DecodeError::TooLarge {
            len: frame.len(),
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::InputFrame;

    #[test]
    fn header_plus_body_is_the_frame() {
        for (tick, age, input, sum, len) in [
            (1u32, 0u32, 0u32, 0x811c_9dc5u32, 0usize),
            (250, 3, 251, 7, 250),
            (u32::MAX, u32::MAX, u32::MAX, u32::MAX, 70_000),
        ] {
            let body = vec![0xa5u8; len];
            let partial = len % 2 == 0;
            let mut frame = Vec::new();
            let (t, i) = (Tick(tick), InputSeq(input));
            encode_snapshot_frame(t, age, i, sum, partial, &body, &mut frame).unwrap();
            let mut header = Vec::new();
            encode_snapshot_header(t, age, i, sum, partial, len, &mut header).unwrap();
            assert!(header.len() <= MAX_SNAPSHOT_HEADER_BYTES);
            header.extend_from_slice(&body);
            assert_eq!(header, frame);
        }
    }

    fn roundtrip_client(msg: ClientMessage) {
        let mut buf = Vec::new();
        encode_client(&msg, &mut buf).unwrap();
        assert_eq!(decode_client(&buf).unwrap(), msg);
    }

    #[test]
    fn client_messages_roundtrip() {
        roundtrip_client(ClientMessage::Hello {
            protocol_version: crate::PROTOCOL_VERSION,
            name: "ada".into(),
            resume_token: Some(u64::MAX),
            seat: None,
            auth: None,
        });
        roundtrip_client(ClientMessage::Hello {
            protocol_version: crate::PROTOCOL_VERSION,
            name: String::new(),
            resume_token: None,
            seat: Some("s".repeat(MAX_SEAT_BYTES)),
            auth: None,
        });
        roundtrip_client(ClientMessage::Input {
            ack_tick: Tick(70_000),
            frames: vec![InputFrame {
                seq: InputSeq(3),
                move_x: -127,
                move_y: 5,
                aim_yaw: 65535,
                buttons: 1,
                view_tick: Tick(u32::MAX),
                interp_ms: u16::MAX,
            }],
        });
        roundtrip_client(ClientMessage::Ping { client_time: 0 });
        roundtrip_client(ClientMessage::Leave);
    }

    #[test]
    fn borrowed_snapshot_frame_matches_the_owned_message() {
        use crate::message::SnapshotMessage;
        let msg = SnapshotMessage {
            tick: Tick(70_000),
            baseline_age: 3,
            last_input: InputSeq(251),
            checksum: 0xdead_beef,
            partial: true,
            body: vec![1, 2, 3, 0xff],
        };
        let mut owned = Vec::new();
        encode_server(&ServerMessage::Snapshot(msg.clone()), &mut owned).unwrap();
        let mut borrowed = vec![];
        encode_snapshot_frame(
            msg.tick,
            msg.baseline_age,
            msg.last_input,
            msg.checksum,
            msg.partial,
            &msg.body,
            &mut borrowed,
        )
        .unwrap();
        assert_eq!(owned, borrowed);
    }

    #[test]
    fn varint_matches_bincode_standard() {
        // bincode 2's standard config: < 251 one byte, 251 + u16, 252 + u32, 253 + u64.
        let mut buf = Vec::new();
        encode_client(&ClientMessage::Ping { client_time: 250 }, &mut buf).unwrap();
        assert_eq!(buf, [2, 250]);
        buf.clear();
        encode_client(&ClientMessage::Ping { client_time: 251 }, &mut buf).unwrap();
        assert_eq!(buf, [2, 251, 251, 0]);
        buf.clear();
        encode_client(&ClientMessage::Ping { client_time: 65536 }, &mut buf).unwrap();
        assert_eq!(buf, [2, 252, 0, 0, 1, 0]);
        buf.clear();
        encode_client(
            &ClientMessage::Ping {
                client_time: 1 << 32,
            },
            &mut buf,
        )
        .unwrap();
        assert_eq!(buf, [2, 253, 0, 0, 0, 0, 1, 0, 0, 0]);
    }

    #[test]
    fn limits_are_enforced() {
        let msg = ClientMessage::Input {
            ack_tick: Tick(0),
            frames: vec![InputFrame::default(); MAX_INPUT_FRAMES + 1],
        };
        let mut buf = vec![7];
        assert!(matches!(
            encode_client(&msg, &mut buf),
            Err(EncodeError::OverLimit { .. })
        ));
        assert_eq!(buf, [7], "nothing appended on error");
        // Hand-built: the same message with 9 frames must be refused by the decoder.
        let mut nine = vec![1u8, 0, 9];
        for i in 0..9u8 {
            nine.extend_from_slice(&[i + 1, 0, 0, 0, 0, 0, 0]);
        }
        assert!(matches!(
            decode_client(&nine),
            Err(DecodeError::OverLimit { .. })
        ));
        let long_name = ClientMessage::Hello {
            protocol_version: crate::PROTOCOL_VERSION,
            name: "n".repeat(MAX_NAME_BYTES + 1),
            resume_token: None,
            seat: None,
            auth: None,
        };
        assert!(encode_client(&long_name, &mut buf).is_err());
        // A seat of 129 bytes: refused by the encoder, and by the decoder when hand-built.
        let long_seat = ClientMessage::Hello {
            protocol_version: crate::PROTOCOL_VERSION,
            name: "ada".into(),
            resume_token: None,
            seat: Some("s".repeat(MAX_SEAT_BYTES + 1)),
            auth: None,
        };
        assert!(matches!(
            encode_client(&long_seat, &mut buf),
            Err(EncodeError::OverLimit {
                what: "seat bytes",
                len: 129,
                max: MAX_SEAT_BYTES
            })
        ));
        let mut seat_129 = vec![0u8, 2, 3, b'a', b'd', b'a', 0, 1, 129];
        seat_129.extend_from_slice(&[b's'; MAX_SEAT_BYTES + 1]);
        seat_129.push(0); // auth: None
        assert!(matches!(
            decode_client(&seat_129),
            Err(DecodeError::OverLimit {
                what: "seat bytes",
                len: 129,
                max: MAX_SEAT_BYTES
            })
        ));
        seat_129.truncate(seat_129.len() - 2);
        seat_129[8] = 128;
        seat_129.push(0);
        assert!(
            decode_client(&seat_129).is_ok(),
            "128 bytes is within the limit"
        );
        // A token of 257 bytes likewise; 256 is within the limit.
        let long_auth = ClientMessage::Hello {
            protocol_version: 3,
            name: "a".into(),
            resume_token: None,
            seat: None,
            auth: Some("t".repeat(MAX_AUTH_BYTES + 1)),
        };
        assert!(matches!(
            encode_client(&long_auth, &mut buf),
            Err(EncodeError::OverLimit {
                what: "auth bytes",
                ..
            })
        ));
        let mut auth_257 = vec![0u8, 3, 1, b'a', 0, 0, 1, 251, 1, 1];
        auth_257.extend_from_slice(&[b't'; MAX_AUTH_BYTES + 1]);
        assert!(matches!(
            decode_client(&auth_257),
            Err(DecodeError::OverLimit {
                what: "auth bytes",
                len: 257,
                max: MAX_AUTH_BYTES
            })
        ));
        let mut auth_256 = vec![0u8, 3, 1, b'a', 0, 0, 1, 251, 0, 1];
        auth_256.extend_from_slice(&[b't'; MAX_AUTH_BYTES]);
        assert!(
            decode_client(&auth_256).is_ok(),
            "256 bytes is within the limit"
        );
        let long_reason = ServerMessage::Disconnect {
            code: 1000,
            reason: "r".repeat(MAX_REASON_BYTES + 1),
        };
        assert!(encode_server(&long_reason, &mut buf).is_err());
        assert_eq!(buf, [7]);
        assert!(matches!(
            decode_client(&[0u8; MAX_CLIENT_MESSAGE_BYTES + 1]),
            Err(DecodeError::TooLarge { .. })
        ));
        // A Vec length prefix claiming 2^64-1 items must not allocate.
        let huge = [1u8, 0, 253, 255, 255, 255, 255, 255, 255, 255, 255];
        assert!(matches!(
            decode_client(&huge),
            Err(DecodeError::Malformed(_))
        ));
        // Trailing bytes.
        assert!(decode_client(&[3, 0]).is_err());
        assert!(decode_client(&[]).is_err());
    }

    #[test]
    fn peek_hello_version_reads_only_the_head() {
        // A version-1 Hello ("ada", no resume token): no seat field, so it no longer decodes,
        // but its version can still be read; likewise version 2's, which lacks `auth`.
        let v1 = [0u8, 1, 3, b'a', b'd', b'a', 0];
        assert!(decode_client(&v1).is_err());
        assert_eq!(peek_hello_version(&v1), Some(1));
        let v2 = [0u8, 2, 3, b'a', b'd', b'a', 0, 0];
        assert!(decode_client(&v2).is_err());
        assert_eq!(peek_hello_version(&v2), Some(2));
        // This version's Hello, and a version that needs a longer varint.
        let mut buf = Vec::new();
        let hello = ClientMessage::Hello {
            protocol_version: crate::PROTOCOL_VERSION,
            name: "ada".into(),
            resume_token: None,
            seat: Some("r8kq2mz4tb.3f9d0c1a2b4e6f7a8c9d0e1f2a".into()),
            auth: None,
        };
        encode_client(&hello, &mut buf).unwrap();
        assert_eq!(peek_hello_version(&buf), Some(crate::PROTOCOL_VERSION));
        assert_eq!(peek_hello_version(&[0, 251, 44, 1]), Some(300));
        assert_eq!(peek_hello_version(&[0, 251, 44, 1, 0xff, 0xff]), Some(300));
        // Not a Hello, or not enough of one.
        buf.clear();
        encode_client(
            &ClientMessage::Input {
                ack_tick: Tick(1),
                frames: vec![InputFrame::default()],
            },
            &mut buf,
        )
        .unwrap();
        assert_eq!(peek_hello_version(&buf), None);
        assert_eq!(peek_hello_version(&[3]), None);
        assert_eq!(peek_hello_version(&[2, 0]), None);
        assert_eq!(peek_hello_version(&[]), None);
        assert_eq!(peek_hello_version(&[0]), None);
        assert_eq!(peek_hello_version(&[0, 251, 44]), None, "truncated varint");
        assert_eq!(
            peek_hello_version(&[0, 252, 0, 0, 1, 0]),
            None,
            "too wide for u16"
        );
        assert_eq!(peek_hello_version(&[0xff, 0xff, 0xff]), None, "garbage");
        assert_eq!(peek_hello_version(&[254, 1, 2, 3, 4, 5, 6, 7, 8, 9]), None);
    }
}
