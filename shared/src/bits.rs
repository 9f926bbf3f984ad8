//! Bit-level writer and reader for snapshot bodies.
//!
//! Bit order is LSB-first: the stream's bit `i` is bit `i % 8` of byte `i / 8`, and a
//! multi-bit value is written least significant bit first. The last byte is padded with
//! zero bits. Integers of unknown size use order-0 Exp-Golomb codes ([`BitWriter::write_eg0`]).

/// Longest Exp-Golomb prefix a reader accepts: enough for any `u32`.
const MAX_EG0_PREFIX: u32 = 32;

/// Why a bit stream could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BitError {
    /// The stream ended in the middle of a value.
    #[error("bit stream ended early")]
    Eof,
    /// An Exp-Golomb code longer than any `u32` needs.
    #[error("Exp-Golomb code too long")]
    CodeTooLong,
}

/// Appends bits to a byte buffer.
#[derive(Debug, Default, Clone)]
pub struct BitWriter {
    buf: Vec<u8>,
    acc: u64,
    acc_bits: u32,
}

impl BitWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes the low `n` bits of `value` (`n` ≤ 32), least significant first.
    #[inline]
    pub fn write_bits(&mut self, value: u32, n: u32) {
        debug_assert!(n <= 32);
        if n == 0 {
            return;
        }
        self.put(u64::from(value) & ((1u64 << n) - 1), n);
    }

    /// Writes the `n` bits of `v` (`1 ≤ n ≤ 64`; `v` has no bit set at `n` or above): into
    /// the accumulator, which is spilled a whole 64-bit word at a time.
    #[inline]
    fn put(&mut self, v: u64, n: u32) {
        debug_assert!((1..=64).contains(&n) && (n == 64 || v >> n == 0));
        let used = self.acc_bits;
        // used < 64 always: the accumulator is spilled as soon as it fills.
        self.acc |= v << used;
        let total = used + n;
        if total >= 64 {
            self.buf.extend_from_slice(&self.acc.to_le_bytes());
            // What did not fit; with used == 0 all n bits fitted.
            self.acc = if used == 0 { 0 } else { v >> (64 - used) };
            self.acc_bits = total - 64;
        } else {
            self.acc_bits = total;
        }
    }

    /// Writes one bit.
    #[inline]
    pub fn write_bit(&mut self, bit: bool) {
        self.put(u64::from(bit), 1);
    }

    /// Writes `value` as an order-0 Exp-Golomb code: with `m = value + 1` and
    /// `k = floor(log2(m))`, `k` zero bits, a one bit, then the low `k` bits of `m`
    /// (LSB-first). 0 → `1`, 1 → `01` + `0`, 2 → `01` + `1`, 3 → `001` + `00`, …
    #[inline]
    pub fn write_eg0(&mut self, value: u32) {
        let m = u64::from(value) + 1;
        let k = 63 - m.leading_zeros();
        // k ≤ 32 because m ≤ 2^32; the top bit of m is implicit.
        let rest = m & ((1u64 << k) - 1);
        if k < 32 {
            // The whole code (2k + 1 ≤ 63 bits) in one write: k zeros, the one, the rest.
            self.put((1 << k) | (rest << (k + 1)), 2 * k + 1);
        } else {
            self.put(1 << k, k + 1);
            self.put(rest, k);
        }
    }

    /// Appends `len` bits of `src` starting at bit `start` (in this module's LSB-first order),
    /// at whatever bit offset the writer is at: a bit run encoded once (one entity's delta or
    /// full state) is copied into many bodies 56 bits at a time instead of being re-encoded.
    /// `src` must hold `start + len` bits.
    #[inline]
    pub fn append_bits(&mut self, src: &[u8], start: usize, len: usize) {
        debug_assert!(start + len <= src.len() * 8);
        let (mut pos, end) = (start, start + len);
        while pos < end {
            // A 64-bit load shifted by at most 7 holds 57 bits of the source.
            let take = (end - pos).min(56) as u32;
            let byte = pos / 8;
            let word = match src.get(byte..byte + 8) {
                Some(w) => u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]),
                None => {
                    // The last few bytes of the source.
                    let mut w = [0u8; 8];
                    let avail = src.len().saturating_sub(byte).min(8);
                    w[..avail].copy_from_slice(&src[byte..byte + avail]);
                    u64::from_le_bytes(w)
                }
            };
            self.put((word >> (pos % 8)) & ((1u64 << take) - 1), take);
            pos += take as usize;
        }
    }

    /// The bytes spilled so far; after [`BitWriter::finish_view`] that is everything written.
    /// A source for [`BitWriter::append_bits`] that several threads can read at once.
    pub fn written(&self) -> &[u8] {
        &self.buf
    }

    /// Bits written so far.
    pub fn bit_len(&self) -> usize {
        self.buf.len() * 8 + self.acc_bits as usize
    }

    /// Flushes the partial byte (zero-padded) and returns the bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.flush();
        self.buf
    }

    /// Flushes the partial byte and appends the bytes to `out`, leaving the writer empty and
    /// its buffer's capacity ready for reuse.
    pub fn finish_into(&mut self, out: &mut Vec<u8>) {
        self.flush();
        out.extend_from_slice(&self.buf);
        self.buf.clear();
    }

    /// Flushes the partial byte and returns everything written; [`BitWriter::clear`] then
    /// readies the writer (and its buffer) for the next body.
    pub fn finish_view(&mut self) -> &[u8] {
        self.flush();
        &self.buf
    }

    /// Empties the writer, keeping its buffer's capacity.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.acc = 0;
        self.acc_bits = 0;
    }

    fn flush(&mut self) {
        let bytes = self.acc_bits.div_ceil(8) as usize;
        self.buf.extend_from_slice(&self.acc.to_le_bytes()[..bytes]);
        self.acc = 0;
        self.acc_bits = 0;
    }
}

/// Reads bits from a byte slice, in the order [`BitWriter`] wrote them.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Bits left to read (including trailing padding).
    pub fn remaining(&self) -> usize {
        self.bytes.len() * 8 - self.pos
    }

    /// Reads `n` bits (`n` ≤ 32), least significant first.
    pub fn read_bits(&mut self, n: u32) -> Result<u32, BitError> {
        debug_assert!(n <= 32);
        if n as usize > self.remaining() {
            return Err(BitError::Eof);
        }
        let mut value: u64 = 0;
        let mut got = 0u32;
        while got < n {
            let byte = self.bytes[self.pos / 8];
            let offset = (self.pos % 8) as u32;
            let take = (8 - offset).min(n - got);
            let bits = (u64::from(byte) >> offset) & ((1u64 << take) - 1);
            value |= bits << got;
            got += take;
            self.pos += take as usize;
        }
        Ok(value as u32)
    }

    /// Reads one bit.
    pub fn read_bit(&mut self) -> Result<bool, BitError> {
        Ok(self.read_bits(1)? == 1)
    }

    /// Reads an order-0 Exp-Golomb code (see [`BitWriter::write_eg0`]).
    pub fn read_eg0(&mut self) -> Result<u32, BitError> {
        let mut k = 0u32;
        while !self.read_bit()? {
            k += 1;
            if k > MAX_EG0_PREFIX {
                return Err(BitError::CodeTooLong);
            }
        }
        let rest = u64::from(self.read_bits(k)?);
        let m = (1u64 << k) | rest;
        u32::try_from(m - 1).map_err(|_| BitError::CodeTooLong)
    }

    /// Whether everything after the read position is zero padding within the last byte.
    pub fn only_padding_left(&self) -> bool {
        if self.remaining() >= 8 {
            return false;
        }
        let mut probe = self.clone();
        let left = probe.remaining() as u32;
        matches!(probe.read_bits(left), Ok(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_roundtrip_and_order() {
        let mut w = BitWriter::new();
        w.write_bits(0b1, 1);
        w.write_bits(0b10, 2);
        w.write_bits(0xABCD, 16);
        w.write_bits(u32::MAX, 32);
        let bytes = w.finish();
        // First byte: bit0 = 1, bits1-2 = 0b10, then low 5 bits of 0xABCD (0b01101).
        assert_eq!(bytes[0], 0b0110_1101);
        let mut r = BitReader::new(&bytes);
        assert_eq!(r.read_bits(1), Ok(1));
        assert_eq!(r.read_bits(2), Ok(2));
        assert_eq!(r.read_bits(16), Ok(0xABCD));
        assert_eq!(r.read_bits(32), Ok(u32::MAX));
        assert!(r.only_padding_left());
        assert_eq!(r.read_bits(8), Err(BitError::Eof));
    }

    #[test]
    fn append_bits_copies_runs_at_any_offset() {
        let mut src = BitWriter::new();
        for i in 0..40u32 {
            src.write_bits(i.wrapping_mul(0x9e37_79b9), (i % 32) + 1);
        }
        let total = src.bit_len();
        let bytes = src.finish();
        for lead in 0..9u32 {
            for (start, len) in [(0, total), (3, 70), (13, 1), (31, 33), (total - 5, 5)] {
                let mut w = BitWriter::new();
                w.write_bits(0x55, lead);
                w.append_bits(&bytes, start, len);
                let out = w.finish();
                let mut r = BitReader::new(&out);
                assert_eq!(r.read_bits(lead).unwrap(), 0x55 & ((1 << lead) - 1));
                let mut s = BitReader::new(&bytes);
                s.read_bits((start % 32) as u32).unwrap();
                for _ in 0..start / 32 {
                    s.read_bits(32).unwrap();
                }
                for _ in 0..len {
                    assert_eq!(r.read_bit(), s.read_bit());
                }
                assert!(r.only_padding_left());
            }
        }
    }

    #[test]
    fn eg0_roundtrip() {
        let values = [
            0u32,
            1,
            2,
            3,
            4,
            7,
            8,
            255,
            256,
            65_535,
            u32::MAX - 1,
            u32::MAX,
        ];
        let mut w = BitWriter::new();
        for v in values {
            w.write_eg0(v);
        }
        let bytes = w.finish();
        let mut r = BitReader::new(&bytes);
        for v in values {
            assert_eq!(r.read_eg0(), Ok(v));
        }
    }

    #[test]
    fn eg0_small_codes() {
        let mut w = BitWriter::new();
        w.write_eg0(0);
        assert_eq!(w.bit_len(), 1);
        w.write_eg0(2);
        assert_eq!(w.bit_len(), 4);
        // bits: 1 | 0 1 1  → 0b1101
        assert_eq!(w.finish(), vec![0b1101]);
    }

    /// What the writer is for, one bit at a time: LSB-first, `n` bits of `v`.
    fn model_bits(out: &mut Vec<bool>, v: u64, n: u32) {
        out.extend((0..n).map(|i| (v >> i) & 1 == 1));
    }

    fn model_eg0(out: &mut Vec<bool>, value: u32) {
        let m = u64::from(value) + 1;
        let k = 63 - m.leading_zeros();
        model_bits(out, 0, k);
        out.push(true);
        model_bits(out, m, k);
    }

    fn packed(bits: &[bool]) -> Vec<u8> {
        bits.chunks(8)
            .map(|c| c.iter().enumerate().map(|(i, &b)| u8::from(b) << i).sum())
            .collect()
    }

    proptest::proptest! {
        /// Every write, at every accumulator offset, against the one-bit-at-a-time model:
        /// the writer's word spills are invisible in its bytes and its length.
        #[test]
        fn writes_match_a_bit_by_bit_model(
            ops in proptest::collection::vec((0u8..4, proptest::prelude::any::<u32>(), 0u32..=32), 0..200),
        ) {
            // A source for appends: 320 pseudo-random bits (every bit position takes both
            // values somewhere, so a bit the writer drops shows).
            let src: Vec<u8> = (0..40u64)
                .map(|i| (i.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
                .collect();
            let src_bits: Vec<bool> = (0..src.len() * 8).map(|i| (src[i / 8] >> (i % 8)) & 1 == 1).collect();
            let (mut w, mut model) = (BitWriter::new(), Vec::new());
            for (op, v, n) in ops {
                match op {
                    0 => {
                        w.write_bits(v, n);
                        model_bits(&mut model, u64::from(v), n);
                    }
                    1 => {
                        w.write_bit(v & 1 == 1);
                        model.push(v & 1 == 1);
                    }
                    2 => {
                        // Large codes too: shift the value down by n bits.
                        let v = v >> (n % 32);
                        w.write_eg0(v);
                        model_eg0(&mut model, v);
                    }
                    _ => {
                        let start = (v % 200) as usize;
                        let len = (n as usize * 3) % 101;
                        w.append_bits(&src, start, len);
                        model.extend_from_slice(&src_bits[start..start + len]);
                    }
                }
                proptest::prop_assert_eq!(w.bit_len(), model.len());
            }
            proptest::prop_assert_eq!(w.finish(), packed(&model));
        }
    }

    #[test]
    fn eg0_rejects_overlong() {
        let zeros = [0u8; 8];
        assert_eq!(
            BitReader::new(&zeros).read_eg0(),
            Err(BitError::CodeTooLong)
        );
        assert_eq!(BitReader::new(&[0u8]).read_eg0(), Err(BitError::Eof));
    }
}
