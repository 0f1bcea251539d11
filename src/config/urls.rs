//! URLs of a cluster's configuration: a node's HTTP base from its public WebSocket
//! URL, and Redis URLs without their passwords (for logs and the printed
//! configuration).

/// The HTTP base of a node's public WebSocket URL: `wss://host:port/ws` →
/// `https://host:port` (`ws://` → `http://`); behind a proxy routing by path, the
/// path up to the WebSocket endpoint's own segment stays: `wss://lb/eu-1/ws` →
/// `https://lb/eu-1` (its API is at `https://lb/eu-1/rooms/…`).
pub(crate) fn http_base(public_url: &str) -> Option<String> {
    let (scheme, rest) = public_url.split_once("://")?;
    let scheme = match scheme {
        "wss" => "https",
        "ws" => "http",
        _ => return None,
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.trim_end_matches('/');
    if authority.is_empty() {
        return None;
    }
    let prefix = path.rsplit_once('/').map_or("", |(prefix, _)| prefix);
    Some(match prefix {
        "" => format!("{scheme}://{authority}"),
        prefix => format!("{scheme}://{authority}/{prefix}"),
    })
}

/// `urls` (one, or several separated by commas) with each one's `user:password@`
/// replaced by `***@`: a password must not reach a log.
pub(crate) fn without_credentials(urls: &str) -> String {
    let hide = |url: &str| match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://***{}", &rest[at..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    };
    urls.split(',').map(hide).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nodes_http_base_comes_from_its_public_url() {
        assert_eq!(
            http_base("wss://relay-2.example.com:7443/ws").as_deref(),
            Some("https://relay-2.example.com:7443")
        );
        assert_eq!(
            http_base("ws://10.0.0.2:7443/ws").as_deref(),
            Some("http://10.0.0.2:7443")
        );
        assert_eq!(
            http_base("wss://lb.example.com/eu-1/ws").as_deref(),
            Some("https://lb.example.com/eu-1")
        );
        assert_eq!(
            http_base("wss://lb.example.com").as_deref(),
            Some("https://lb.example.com")
        );
        assert_eq!(
            http_base("wss://lb.example.com/eu-1/ws/").as_deref(),
            Some("https://lb.example.com/eu-1")
        );
        assert_eq!(http_base("quic://10.0.0.2:7443"), None);
        assert_eq!(http_base("wss:///ws"), None);
    }

    #[test]
    fn passwords_never_reach_a_log() {
        assert_eq!(
            without_credentials("redis://:hunter2@10.0.0.5:6379/0"),
            "redis://***@10.0.0.5:6379/0"
        );
        assert_eq!(
            without_credentials("rediss://app:s3cret@a:6380,rediss://app:s3cret@b:6380"),
            "rediss://***@a:6380,rediss://***@b:6380"
        );
        assert_eq!(without_credentials("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
