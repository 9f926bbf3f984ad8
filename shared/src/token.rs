//! Signed player tokens (PROTOCOL.md section 13): who a player is, until when, and for which
//! room, signed by the game's backend with HMAC-SHA256 under a secret it shares with the
//! server.
//!
//! A token is the URL-safe base64 (no padding) of these bytes:
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | format version, [`TOKEN_VERSION`] |
//! | 8 | expiry, seconds since the Unix epoch, u64 little-endian |
//! | 1 | player id length P, 1..=[`MAX_PLAYER_ID_BYTES`] |
//! | P | player id, UTF-8 |
//! | 1 | room id length R, 0..=[`MAX_ROOM_ID_BYTES`]; 0 means any room |
//! | R | room id, UTF-8 |
//! | 32 | HMAC-SHA256 under the secret of every byte before it |
//!
//! Anyone can read a token; only the holder of the secret can make one. The layout is the
//! same in every language: no JSON, no canonicalisation question.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

/// The token format this crate writes and reads.
pub const TOKEN_VERSION: u8 = 1;
/// Longest player id, in bytes of UTF-8.
pub const MAX_PLAYER_ID_BYTES: usize = 64;
/// Longest room id a token may bind, in bytes of UTF-8.
pub const MAX_ROOM_ID_BYTES: usize = 64;
/// Bytes of the signature.
pub const SIGNATURE_BYTES: usize = 32;
/// Longest token text (base64 of the longest token), which is also the longest `Hello.auth`.
pub const MAX_TOKEN_TEXT_BYTES: usize =
    (1 + 8 + 1 + MAX_PLAYER_ID_BYTES + 1 + MAX_ROOM_ID_BYTES + SIGNATURE_BYTES).div_ceil(3) * 4;
/// Shortest secret accepted, in bytes (RFC 2104 asks for at least the hash output length).
pub const MIN_SECRET_BYTES: usize = 32;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayerClaims {
    /// The player's id in the game's backend.
    pub player_id: String,
    /// When the token stops being accepted, in seconds since the Unix epoch.
    pub expires_at: u64,
    /// The room it is for; `None` for any room.
    pub room: Option<String>,
}

/// Why a token was refused, or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not base64, too short or long, an unknown version, bad lengths or bad UTF-8.
    #[error("malformed token")]
    Malformed,
    /// The signature does not match: changed, or signed with another secret.
    #[error("bad token signature")]
    BadSignature,
    /// The expiry has passed.
    #[error("token expired")]
    Expired,
    /// Signed for another room.
    #[error("token is for another room")]
    WrongRoom,
    /// The secret is shorter than [`MIN_SECRET_BYTES`].
    #[error("secret too short: at least {MIN_SECRET_BYTES} bytes")]
    WeakSecret,
    /// The claims do not fit the layout (empty or long ids).
    #[error(
        "player id must be 1..={MAX_PLAYER_ID_BYTES} bytes and room id at most {MAX_ROOM_ID_BYTES}"
    )]
    BadClaims,
}

/// An HMAC-SHA256 key for making and checking tokens.
pub struct TokenKey(hmac::Key);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A key from the shared secret (at least [`MIN_SECRET_BYTES`] bytes).
    pub fn new(secret: &[u8]) -> Result<TokenKey, TokenError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(TokenError::WeakSecret);
        }
        Ok(TokenKey(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }

    /// The key from a secret file's contents: trailing whitespace (a newline an editor or
    /// `echo` added) is not part of the secret.
    pub fn from_file_contents(contents: &[u8]) -> Result<TokenKey, TokenError> {
        let end = contents
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        TokenKey::new(&contents[..end])
    }

    /// Makes the token text for `claims`.
    pub fn sign(&self, claims: &PlayerClaims) -> Result<String, TokenError> {
        let room = claims.room.as_deref().unwrap_or("");
        let id = claims.player_id.as_bytes();
        if id.is_empty() || id.len() > MAX_PLAYER_ID_BYTES || room.len() > MAX_ROOM_ID_BYTES {
            return Err(TokenError::BadClaims);
        }
        let mut bytes = Vec::with_capacity(11 + id.len() + room.len() + SIGNATURE_BYTES);
        bytes.push(TOKEN_VERSION);
        bytes.extend_from_slice(&claims.expires_at.to_le_bytes());
        bytes.push(id.len() as u8);
        bytes.extend_from_slice(id);
        bytes.push(room.len() as u8);
        bytes.extend_from_slice(room.as_bytes());
        let tag = hmac::sign(&self.0, &bytes);
        bytes.extend_from_slice(tag.as_ref());
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Checks a token's signature and layout, and its expiry against `now` (seconds since
    /// the Unix epoch): a token is accepted while `now < expires_at`. It does not check the
    /// room; see [`PlayerClaims::check_room`].
    pub fn verify(&self, text: &str, now: u64) -> Result<PlayerClaims, TokenError> {
        if text.len() > MAX_TOKEN_TEXT_BYTES {
            return Err(TokenError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| TokenError::Malformed)?;
        let body_len = bytes
            .len()
            .checked_sub(SIGNATURE_BYTES)
            .ok_or(TokenError::Malformed)?;
        let (body, tag) = bytes.split_at(body_len);
        // The signature first: nothing of an unsigned token is looked at.
        hmac::verify(&self.0, body, tag).map_err(|_| TokenError::BadSignature)?;
        let claims = parse_body(body)?;
        if now >= claims.expires_at {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

impl PlayerClaims {
    /// Whether the token may enter `room_id`.
    pub fn check_room(&self, room_id: &str) -> Result<(), TokenError> {
        match &self.room {
            Some(r) if r != room_id => Err(TokenError::WrongRoom),
            _ => Ok(()),
        }
    }
}

fn parse_body(body: &[u8]) -> Result<PlayerClaims, TokenError> {
    let mut r = Reader(body);
    if r.take(1)? != [TOKEN_VERSION] {
        return Err(TokenError::Malformed);
    }
    let mut expiry = [0u8; 8];
    expiry.copy_from_slice(r.take(8)?);
    let id_len = usize::from(r.take(1)?[0]);
    if id_len == 0 || id_len > MAX_PLAYER_ID_BYTES {
        return Err(TokenError::Malformed);
    }
    let player_id = r.text(id_len)?;
    let room_len = usize::from(r.take(1)?[0]);
    if room_len > MAX_ROOM_ID_BYTES {
        return Err(TokenError::Malformed);
    }
    let room = r.text(room_len)?;
    if !r.0.is_empty() {
        return Err(TokenError::Malformed);
    }
    Ok(PlayerClaims {
        player_id,
        expires_at: u64::from_le_bytes(expiry),
        room: (!room.is_empty()).then_some(room),
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TokenError> {
        if self.0.len() < n {
            return Err(TokenError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn text(&mut self, n: usize) -> Result<String, TokenError> {
        let b = self.take(n)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| TokenError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn claims(room: Option<&str>) -> PlayerClaims {
        PlayerClaims {
            player_id: "player-42".into(),
            expires_at: 2_000_000_000,
            room: room.map(str::to_owned),
        }
    }

    #[test]
    fn signs_and_verifies() {
        let key = TokenKey::new(SECRET).unwrap();
        let t = key.sign(&claims(Some("r1"))).unwrap();
        let c = key.verify(&t, 1_999_999_999).unwrap();
        assert_eq!(c, claims(Some("r1")));
        assert_eq!(c.check_room("r1"), Ok(()));
        assert_eq!(c.check_room("r2"), Err(TokenError::WrongRoom));
        let any = key.verify(&key.sign(&claims(None)).unwrap(), 0).unwrap();
        assert_eq!(any.check_room("whatever"), Ok(()));
    }

    #[test]
    fn refuses_expired_tampered_foreign_and_garbage() {
        let key = TokenKey::new(SECRET).unwrap();
        let t = key.sign(&claims(None)).unwrap();
        assert_eq!(key.verify(&t, 2_000_000_000), Err(TokenError::Expired));
        // Flip one bit of every byte in turn: never accepted.
        let raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        for i in 0..raw.len() {
            let mut b = raw.clone();
            b[i] ^= 1;
            let text = URL_SAFE_NO_PAD.encode(&b);
            assert_eq!(
                key.verify(&text, 0),
                Err(TokenError::BadSignature),
                "byte {i}"
            );
        }
        let other = TokenKey::new(&[7u8; 32]).unwrap();
        assert_eq!(other.verify(&t, 0), Err(TokenError::BadSignature));
        for bad in ["", "!!!", "AAAA", &"A".repeat(MAX_TOKEN_TEXT_BYTES + 4)] {
            assert!(key.verify(bad, 0).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn limits() {
        assert_eq!(
            TokenKey::new(&[1u8; 31]).err(),
            Some(TokenError::WeakSecret)
        );
        let key = TokenKey::from_file_contents(b"0123456789abcdef0123456789abcdef\n").unwrap();
        let t = key.sign(&claims(None)).unwrap();
        assert!(TokenKey::new(SECRET).unwrap().verify(&t, 0).is_ok());
        let mut long = claims(Some(&"r".repeat(MAX_ROOM_ID_BYTES)));
        long.player_id = "p".repeat(MAX_PLAYER_ID_BYTES);
        let t = key.sign(&long).unwrap();
        assert!(t.len() <= MAX_TOKEN_TEXT_BYTES);
        assert_eq!(key.verify(&t, 0).unwrap(), long);
        long.player_id.push('p');
        assert_eq!(key.sign(&long), Err(TokenError::BadClaims));
        long.player_id.clear();
        assert_eq!(key.sign(&long), Err(TokenError::BadClaims));
    }
}
