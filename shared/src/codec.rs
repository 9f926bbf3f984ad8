//! The envelope codec: every message is one binary frame in bincode's wire format with the
//! "standard" (variable-length integer) configuration, written and read by `wincode`.
//!
//! Decoding untrusted bytes always runs under two limits: the frame length, checked before any
//! parsing, and wincode's preallocation limit, which bounds every length prefix. Semantic
//! limits (frame counts, name lengths) are checked after decoding. Nothing here panics on any
//! input; every failure is a [`DecodeError`].

use wincode::config::{Config, Configuration};

use crate::message::{ClientMessage, MAX_INPUT_FRAMES, MAX_NAME_BYTES, ServerMessage};

/// Largest client frame the server decodes. A full `Input` is 8 frames of at most 10 bytes.
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

/// Why a message could not be encoded (only a message that breaks a protocol limit).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// wincode refused the value.
    #[error("cannot encode message: {0}")]
    Write(#[from] wincode::WriteError),
}

/// Appends the frame for a client message to `out`.
pub fn encode_client(msg: &ClientMessage, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    wincode::config::serialize_into(out, msg, client_config())?;
    Ok(())
}

/// Appends the frame for a server message to `out`.
pub fn encode_server(msg: &ServerMessage, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    wincode::config::serialize_into(out, msg, server_config())?;
    Ok(())
}

/// Decodes one client frame (the server's side). Rejects frames over
/// [`MAX_CLIENT_MESSAGE_BYTES`], trailing bytes, more than [`MAX_INPUT_FRAMES`] input frames
/// and names over [`MAX_NAME_BYTES`].
pub fn decode_client(frame: &[u8]) -> Result<ClientMessage, DecodeError> {
    check_len(frame, MAX_CLIENT_MESSAGE_BYTES)?;
    let msg: ClientMessage = wincode::config::deserialize_exact(frame, client_config())?;
    match &msg {
        ClientMessage::Input { frames, .. } if frames.len() > MAX_INPUT_FRAMES => {
            return Err(DecodeError::OverLimit {
                what: "input frames",
                len: frames.len(),
                max: MAX_INPUT_FRAMES,
            });
        }
        ClientMessage::Hello { name, .. } if name.len() > MAX_NAME_BYTES => {
            return Err(DecodeError::OverLimit {
                what: "name bytes",
                len: name.len(),
                max: MAX_NAME_BYTES,
            });
        }
        _ => {}
    }
    Ok(msg)
}

/// Decodes one server frame (a client's side). Rejects frames over
/// [`MAX_SERVER_MESSAGE_BYTES`] and trailing bytes.
pub fn decode_server(frame: &[u8]) -> Result<ServerMessage, DecodeError> {
    check_len(frame, MAX_SERVER_MESSAGE_BYTES)?;
    Ok(wincode::config::deserialize_exact(frame, server_config())?)
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
    use crate::ids::{InputSeq, Tick};
    use crate::message::InputFrame;

    fn roundtrip_client(msg: ClientMessage) {
        let mut buf = Vec::new();
        encode_client(&msg, &mut buf).unwrap();
        assert_eq!(decode_client(&buf).unwrap(), msg);
    }

    #[test]
    fn client_messages_roundtrip() {
        roundtrip_client(ClientMessage::Hello {
            protocol_version: 1,
            name: "ada".into(),
            resume_token: Some(u64::MAX),
        });
        roundtrip_client(ClientMessage::Input {
            ack_tick: Tick(70_000),
            frames: vec![InputFrame {
                seq: InputSeq(3),
                move_x: -127,
                move_y: 5,
                aim_yaw: 65535,
                buttons: 1,
            }],
        });
        roundtrip_client(ClientMessage::Ping { client_time: 0 });
        roundtrip_client(ClientMessage::Leave);
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
        let frames = vec![InputFrame::default(); MAX_INPUT_FRAMES + 1];
        let mut buf = Vec::new();
        encode_client(
            &ClientMessage::Input {
                ack_tick: Tick(0),
                frames,
            },
            &mut buf,
        )
        .unwrap();
        assert!(matches!(
            decode_client(&buf),
            Err(DecodeError::OverLimit { .. })
        ));
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
}
