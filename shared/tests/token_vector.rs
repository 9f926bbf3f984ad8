//! The signed-token vector of PROTOCOL.md section 13: a secret, the claims, and the token text
//! this crate makes for them, so a backend in another language can check its minting code.
#![cfg(feature = "token")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use tickwire_shared::token::{PlayerClaims, TokenError, TokenKey};

const PROTOCOL_MD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/PROTOCOL.md");

/// The `key: value` lines of the ```text block after `<!-- token-vector -->`.
fn vector_lines() -> Vec<(String, String)> {
    let md = std::fs::read_to_string(Path::new(PROTOCOL_MD)).unwrap();
    let start = md
        .find("<!-- token-vector -->")
        .expect("PROTOCOL.md has a <!-- token-vector --> block");
    let rest = &md[start..];
    let open = rest.find("```text\n").expect("a ```text block") + 8;
    let close = rest[open..].find("```").expect("the block ends") + open;
    rest[open..close]
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn field<'a>(lines: &'a [(String, String)], key: &str) -> &'a str {
    &lines
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("token vector lacks {key}"))
        .1
}

#[test]
fn token_vector_matches_protocol_md() {
    let lines = vector_lines();
    let key = TokenKey::new(field(&lines, "secret").as_bytes()).unwrap();
    let claims = PlayerClaims {
        player_id: field(&lines, "player_id").to_owned(),
        expires_at: field(&lines, "expires_at").parse().unwrap(),
        room: match field(&lines, "room") {
            "" | "(any)" => None,
            r => Some(r.to_owned()),
        },
    };
    let token = field(&lines, "token");
    assert_eq!(
        key.sign(&claims).unwrap(),
        token,
        "PROTOCOL.md's token text"
    );
    let now = claims.expires_at - 1;
    assert_eq!(key.verify(token, now).unwrap(), claims);
    assert_eq!(
        key.verify(token, claims.expires_at),
        Err(TokenError::Expired)
    );
    // The protocol-vector Hello carries this very token.
    let hello = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/hello_auth.json"),
    )
    .unwrap();
    assert!(
        hello.contains(token),
        "hello_auth.json carries the token vector"
    );
}
