//! The QUIC framing (PROTOCOL.md section 11), shared by the server and every QUIC client: the
//! ALPN id, and the length prefix in front of each envelope on a stream, with a sans-IO
//! decoder that splits a stream's bytes into envelopes under the side's size limit.
//!
//! Datagrams carry one envelope and no prefix, so only streams go through here.

use crate::codec::{MAX_CLIENT_MESSAGE_BYTES, MAX_SERVER_MESSAGE_BYTES};

/// The ALPN protocol id (section 11.1); a server refuses a connection without it.
pub const ALPN: &[u8] = b"tickwire/1";

/// Bytes of the length prefix in front of every envelope on a stream (u32 little-endian).
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// An announced envelope length over the decoder's limit. A server closes with 1009 at once,
/// before the body arrives; a client gives the connection up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stream envelope of {len} bytes announced, over the limit of {max}")]
pub struct FrameTooLong {
    /// The length the prefix announced.
    pub len: usize,
    /// The decoder's limit.
    pub max: usize,
}

/// Appends `envelope` behind its length prefix to `out`.
///
/// An envelope is at most [`MAX_SERVER_MESSAGE_BYTES`] long, so its length fits the u32.
pub fn write_frame(out: &mut Vec<u8>, envelope: &[u8]) {
    out.reserve(LENGTH_PREFIX_BYTES + envelope.len());
    out.extend_from_slice(&(envelope.len() as u32).to_le_bytes());
    out.extend_from_slice(envelope);
}

/// The envelope of a stream that must hold exactly one length-prefixed envelope (a snapshot
/// on its own unidirectional stream, section 11.4); `None` when the bytes are anything else.
pub fn single_frame(stream: &[u8]) -> Option<&[u8]> {
    match stream.split_first_chunk::<LENGTH_PREFIX_BYTES>() {
        Some((len, rest)) if u32::from_le_bytes(*len) as usize == rest.len() => Some(rest),
        _ => None,
    }
}

/// Splits a stream's bytes into length-prefixed envelopes, refusing any announced length over
/// its limit. Feed it what the stream delivers with [`FrameDecoder::push`], then take whole
/// envelopes with [`FrameDecoder::next_frame`] until it says more bytes are needed.
///
/// It buffers at most one partial envelope plus whatever one `push` added, so a reader that
/// takes every whole envelope before its next read bounds its memory by its read size plus the
/// limit.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    max: usize,
}

impl FrameDecoder {
    /// A decoder refusing envelopes longer than `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            max,
        }
    }

    /// The server's decoder for a client's control stream: at most
    /// [`MAX_CLIENT_MESSAGE_BYTES`] (512) per envelope.
    pub fn client_envelopes() -> Self {
        Self::new(MAX_CLIENT_MESSAGE_BYTES)
    }

    /// A client's decoder for the server's streams: at most [`MAX_SERVER_MESSAGE_BYTES`]
    /// (1 MiB) per envelope.
    pub fn server_envelopes() -> Self {
        Self::new(MAX_SERVER_MESSAGE_BYTES)
    }

    /// Adds bytes received on the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received and not yet returned as envelopes.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole envelope; `Ok(None)` when more bytes are needed; [`FrameTooLong`] as
    /// soon as a prefix announces more than the limit (the stream is then unusable: nothing
    /// after it can be framed).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameTooLong> {
        let Some(prefix) = self.buf.first_chunk::<LENGTH_PREFIX_BYTES>() else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(*prefix) as usize;
        if len > self.max {
            return Err(FrameTooLong { len, max: self.max });
        }
        let Some(frame) = self.buf.get(LENGTH_PREFIX_BYTES..LENGTH_PREFIX_BYTES + len) else {
            return Ok(None);
        };
        let frame = frame.to_vec();
        self.buf.drain(..LENGTH_PREFIX_BYTES + len);
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_byte_by_byte_or_at_once_and_bounds_the_length() {
        let mut two = Vec::new();
        write_frame(&mut two, b"abc");
        write_frame(&mut two, b"");
        assert_eq!(two, [3, 0, 0, 0, b'a', b'b', b'c', 0, 0, 0, 0]);
        let mut r = FrameDecoder::new(8);
        for b in &two[..6] {
            assert_eq!(r.next_frame(), Ok(None));
            r.push(&[*b]);
        }
        r.push(&two[6..]);
        assert_eq!(r.next_frame(), Ok(Some(b"abc".to_vec())));
        assert_eq!(r.next_frame(), Ok(Some(Vec::new())));
        assert_eq!(r.next_frame(), Ok(None));
        assert_eq!(r.buffered(), 0);
        // Refused on the prefix alone, before any body byte.
        r.push(&9u32.to_le_bytes());
        assert_eq!(r.next_frame(), Err(FrameTooLong { len: 9, max: 8 }));
    }

    #[test]
    fn the_sides_limits_are_512_and_1_mib() {
        let mut server = FrameDecoder::client_envelopes();
        server.push(&513u32.to_le_bytes());
        assert_eq!(
            server.next_frame(),
            Err(FrameTooLong { len: 513, max: 512 })
        );
        let mut client = FrameDecoder::server_envelopes();
        client.push(&(1u32 << 20).to_le_bytes());
        assert_eq!(client.next_frame(), Ok(None));
        let mut client = FrameDecoder::server_envelopes();
        client.push(&((1u32 << 20) + 1).to_le_bytes());
        assert!(client.next_frame().is_err());
    }

    #[test]
    fn the_hello_of_section_11_2() {
        // PROTOCOL.md 11.2: the Hello of 9.1 on the control stream.
        let hello = [0x00, 0x03, 0x03, 0x61, 0x64, 0x61, 0x00, 0x00, 0x00];
        let mut out = Vec::new();
        write_frame(&mut out, &hello);
        assert_eq!(out[..4], [0x09, 0, 0, 0]);
        assert_eq!(single_frame(&out), Some(&hello[..]));
        assert_eq!(single_frame(&out[..12]), None);
        assert_eq!(single_frame(&[1, 0]), None);
        assert_eq!(ALPN.len(), 10);
    }
}
