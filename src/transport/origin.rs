//! The `Origin` allowlist checked at the WebSocket upgrade. A refused origin gets
//! HTTP 403, not a WebSocket.
//!
//! Patterns: an exact origin (`https://game.example.com`), a wildcard subdomain
//! (`https://*.example.com`, which does not match `https://example.com` itself), and
//! a wildcard port (`http://localhost:*`). Requests without an `Origin` header come
//! from non-browser clients; whether they are allowed is a separate setting.

use serde::{Deserialize, Serialize};

/// `[origins]` in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OriginConfig {
    /// Allowed origin patterns.
    pub allowed: Vec<String>,
    /// Whether requests without an `Origin` header (non-browser clients) are allowed.
    pub allow_missing: bool,
}

impl Default for OriginConfig {
    /// Local development: pages served from this machine, and non-browser clients.
    fn default() -> Self {
        Self {
            allowed: [
                "http://localhost:*",
                "https://localhost:*",
                "http://127.0.0.1:*",
                "https://127.0.0.1:*",
                "http://[::1]:*",
                "https://[::1]:*",
            ]
            .map(String::from)
            .to_vec(),
            allow_missing: true,
        }
    }
}

impl OriginConfig {
    /// Whether a request with this `Origin` header (or none) may upgrade.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        match origin {
            None => self.allow_missing,
            Some(origin) => well_formed(origin) && self.allowed.iter().any(|p| matches(p, origin)),
        }
    }
}

impl OriginConfig {
    /// Refuses a pattern no origin a browser sends could match (a trailing slash or a
    /// path, no scheme, a port that is not a number or `*`): it would refuse every
    /// page it was meant for, without a word.
    pub fn validate(&self) -> Result<(), String> {
        for pattern in &self.allowed {
            let concrete = pattern.replacen("://*.", "://wildcard.", 1);
            let concrete = match concrete.strip_suffix(":*") {
                Some(head) => format!("{head}:1"),
                None => concrete,
            };
            // Browsers leave a scheme's default port out of the origin.
            let default_port = ["https://", "http://"]
                .iter()
                .zip([":443", ":80"])
                .any(|(scheme, port)| pattern.to_ascii_lowercase().starts_with(scheme) && pattern.ends_with(port));
            // A port with a leading zero is no port a browser writes.
            let zero_led = split(&concrete)
                .and_then(|(_, _, port)| port)
                .is_some_and(|p| p.starts_with('0'));
            if !well_formed(&concrete) || concrete.contains('*') || default_port || zero_led {
                return Err(format!(
                    "origins.allowed: {pattern:?} can never match: an origin is scheme://host[:port] (a port \
                     number or `*`, never the scheme's default one), without a path or a trailing slash, for \
                     example \"https://game.example.com\" or \"https://*.example.com\""
                ));
            }
        }
        Ok(())
    }
}

/// Whether `origin` has the form browsers send (RFC 6454 serialisation):
/// `scheme://host[:port]` with a numeric port and nothing else — no path, no trailing
/// slash, no whitespace or control characters.
fn well_formed(origin: &str) -> bool {
    let Some((scheme, host, port)) = split(origin) else {
        return false;
    };
    let clean = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_graphic() && !matches!(c, '/' | '?' | '#' | '@' | '\\'))
    };
    clean(scheme)
        && clean(host)
        && port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

fn split(origin: &str) -> Option<(&str, &str, Option<&str>)> {
    let (scheme, rest) = origin.split_once("://")?;
    let (host, port) = match rest.rsplit_once(':') {
        // IPv6 literals carry colons inside brackets.
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (rest, None),
    };
    Some((scheme, host, port))
}

fn matches(pattern: &str, origin: &str) -> bool {
    let (Some((p_scheme, p_host, p_port)), Some((scheme, host, port))) = (split(pattern), split(origin)) else {
        return false;
    };
    let host_ok = match p_host.strip_prefix("*.") {
        Some(domain) => {
            host.len() > domain.len() + 1 && {
                let (sub, tail) = host.split_at(host.len() - domain.len());
                tail.eq_ignore_ascii_case(domain) && sub.ends_with('.')
            }
        }
        None => p_host.eq_ignore_ascii_case(host),
    };
    let port_ok = p_port == Some("*") || p_port == port;
    p_scheme.eq_ignore_ascii_case(scheme) && host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_that_can_never_match_are_refused() {
        let config = |pattern: &str| OriginConfig {
            allowed: vec![pattern.into()],
            allow_missing: false,
        };
        for good in [
            "https://game.example.com",
            "https://GAME.example.com",
            "https://*.example.com",
            "http://localhost:*",
            "http://[::1]:8080",
            "app://localhost",
        ] {
            assert_eq!(config(good).validate(), Ok(()), "{good}");
        }
        for bad in [
            "https://game.example.com/",
            "game.example.com",
            "https://game.example.com/play",
            "https://game.example.com:port",
            "https://*",
            " https://game.example.com",
            "https://game.example.com:443",
            "http://game.example.com:80",
            "https://game.example.com:0443",
        ] {
            assert!(config(bad).validate().unwrap_err().contains("can never match"), "{bad}");
        }
        assert_eq!(OriginConfig::default().validate(), Ok(()));
    }

    #[test]
    fn patterns() {
        let c = OriginConfig {
            allowed: vec![
                "https://game.example.com".into(),
                "https://*.studio.io".into(),
                "http://localhost:*".into(),
            ],
            allow_missing: false,
        };
        assert!(c.allows(Some("https://game.example.com")));
        assert!(!c.allows(Some("http://game.example.com")), "scheme matters");
        assert!(!c.allows(Some("https://game.example.com:8443")), "port matters");
        assert!(!c.allows(Some("https://evil-game.example.com")));
        assert!(c.allows(Some("https://eu.play.studio.io")));
        assert!(
            c.allows(Some("https://EU.play.Studio.IO")),
            "hosts match whatever their case"
        );
        assert!(
            !c.allows(Some("https://studio.io")),
            "the bare domain is not a subdomain"
        );
        assert!(!c.allows(Some("https://evilstudio.io")));
        assert!(c.allows(Some("http://localhost:5173")));
        assert!(!c.allows(Some("http://localhost.evil.com:5173")));
        // What no browser sends is refused even where the pattern would match.
        for odd in [
            "http://localhost:evil.com",
            "http://localhost:5173/",
            "http://localhost:5173\t",
            "http://localhost:5173/path",
            "http://user@localhost:5173",
            "http://localhost:123456",
            "http://:5173",
        ] {
            assert!(!c.allows(Some(odd)), "{odd:?}");
        }
        assert!(!c.allows(None));
        assert!(!c.allows(Some("null")));
    }

    #[test]
    fn default_allows_local_pages_and_non_browsers() {
        let c = OriginConfig::default();
        assert!(c.allows(None));
        assert!(c.allows(Some("http://127.0.0.1:8080")));
        assert!(c.allows(Some("http://[::1]:8080")));
        assert!(!c.allows(Some("https://example.com")));
    }
}
