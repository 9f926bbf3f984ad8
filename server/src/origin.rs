//! The `Origin` allowlist for WebSocket upgrades (`--allowed-origin`, `--require-origin`).
//!
//! A browser lets any page open a WebSocket to any server, and the connection comes from the
//! player's browser with the player's cookies and address: cross-site WebSocket hijacking.
//! The one thing the page cannot forge is the `Origin` header the browser adds (RFC 6455
//! section 10.2), so the server refuses origins it does not know with 403 before upgrading.
//! Non-browser clients send any `Origin` they like, or none: this protects players' browsers,
//! not the server.

use std::fmt;

/// An origin, `scheme://host[:port]` (RFC 6454), normalised: scheme and host lowercase, the
/// port always explicit (80 for http and ws, 443 for https and wss).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

/// Why an `--allowed-origin` value is not an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// Not `scheme://host[:port]`.
    #[error("{0:?} is not scheme://host[:port]")]
    Malformed(String),
    /// It has a path, query or user info: an origin is only scheme, host and port.
    #[error("{0:?} has more than scheme://host[:port] (an origin has no path or query)")]
    NotAnOrigin(String),
    /// A scheme without a default port, and no port given.
    #[error("{0:?}: give the port (no default for this scheme)")]
    NoPort(String),
}

impl Origin {
    /// Parses `scheme://host[:port]`, as a browser sends it and an operator writes it (a
    /// trailing `/` is tolerated). `null` (an opaque origin) is not an origin.
    pub fn parse(s: &str) -> Result<Origin, OriginError> {
        let malformed = || OriginError::Malformed(s.to_owned());
        let (scheme, rest) = s.split_once("://").ok_or_else(malformed)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || scheme.is_empty() {
            return Err(malformed());
        }
        if rest.contains(['/', '?', '#', '@']) {
            return Err(OriginError::NotAnOrigin(s.to_owned()));
        }
        let uri: hyper::Uri = s.parse().map_err(|_| malformed())?;
        let auth = uri.authority().ok_or_else(malformed)?;
        let scheme = scheme.to_ascii_lowercase();
        let port = match (auth.port_u16(), scheme.as_str()) {
            (Some(p), _) => p,
            (None, "http" | "ws") => 80,
            (None, "https" | "wss") => 443,
            (None, _) => return Err(OriginError::NoPort(s.to_owned())),
        };
        Ok(Origin {
            scheme,
            host: auth.host().to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// Which `Origin` headers an upgrade may carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    /// Empty: any origin, or none.
    allowed: Vec<Origin>,
    /// Refuse an upgrade without an `Origin` header (only with a non-empty list).
    require: bool,
}

impl OriginPolicy {
    /// Only `allowed` (any when empty); `require` also refuses a request with no `Origin`.
    pub fn new(allowed: Vec<Origin>, require: bool) -> OriginPolicy {
        OriginPolicy { allowed, require }
    }

    /// Whether an upgrade whose `Origin` headers are `values` is let in. With a list, a
    /// present `Origin` must be one of it (so `null`, or several `Origin` headers, never
    /// pass); an absent one passes unless `require`.
    pub fn allows<'a>(&self, mut values: impl Iterator<Item = &'a [u8]>) -> bool {
        if self.allowed.is_empty() && !self.require {
            return true;
        }
        match (values.next(), values.next()) {
            (None, _) => !self.require,
            (Some(v), None) => std::str::from_utf8(v)
                .ok()
                .and_then(|v| Origin::parse(v.trim()).ok())
                .is_some_and(|o| self.allowed.is_empty() || self.allowed.contains(&o)),
            (Some(_), Some(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str], require: bool) -> OriginPolicy {
        OriginPolicy::new(
            allowed.iter().map(|o| Origin::parse(o).unwrap()).collect(),
            require,
        )
    }

    fn allows(p: &OriginPolicy, origin: Option<&str>) -> bool {
        p.allows(origin.map(str::as_bytes).into_iter())
    }

    #[test]
    fn origins_parse_and_normalise() {
        let o = Origin::parse("HTTPS://Game.Example.com").unwrap();
        assert_eq!(o.to_string(), "https://game.example.com:443");
        assert_eq!(Origin::parse("https://game.example.com:443/").unwrap(), o);
        assert_eq!(
            Origin::parse("http://[::1]:8080").unwrap().to_string(),
            "http://[::1]:8080"
        );
        for bad in ["null", "game.example.com", "https://", "://x"] {
            assert!(
                matches!(Origin::parse(bad), Err(OriginError::Malformed(_))),
                "{bad}"
            );
        }
        for bad in ["https://x/play", "https://x?a=1", "https://u@x"] {
            assert!(
                matches!(Origin::parse(bad), Err(OriginError::NotAnOrigin(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            Origin::parse("app://x"),
            Err(OriginError::NoPort(_))
        ));
    }

    #[test]
    fn the_policy_matches_scheme_host_and_port() {
        let open = OriginPolicy::default();
        assert!(allows(&open, Some("https://evil.example")));
        assert!(allows(&open, None));

        let p = policy(
            &["https://game.example.com", "http://127.0.0.1:8080"],
            false,
        );
        assert!(allows(&p, Some("https://game.example.com")));
        assert!(allows(&p, Some("https://GAME.example.com:443")));
        assert!(allows(&p, Some("http://127.0.0.1:8080")));
        assert!(allows(&p, None));
        for bad in [
            "https://evil.example",
            "http://game.example.com",
            "https://game.example.com:8443",
            "https://game.example.com.evil.example",
            "http://127.0.0.1:8081",
            "null",
            "",
        ] {
            assert!(!allows(&p, Some(bad)), "{bad}");
        }
        let two = [
            b"https://game.example.com".as_slice(),
            b"https://game.example.com",
        ];
        assert!(!p.allows(two.into_iter()));

        let strict = policy(&["https://game.example.com"], true);
        assert!(!allows(&strict, None));
        assert!(allows(&strict, Some("https://game.example.com")));
    }
}
