//! Fetching an identity provider's signing keys (`[auth] jwks_url`): once before the
//! relay starts, then every `jwks_refresh_secs`, and sooner (at most every
//! [`KEYS_REFETCH`]) once a token names a key the set does not hold. The keys
//! themselves, and which one verifies a token, are [`KeySet`]'s.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::session::auth::{AuthConfig, KEYS_REFETCH, KeySet};

/// The longest a fetch may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest key set taken (providers publish a few keys: a few KiB).
const MAX_SET_BYTES: usize = 1024 * 1024;

/// Where the keys come from, and how to reach it.
pub(crate) struct Source {
    url: String,
    uri: Uri,
    /// For `https://`; none for `http://` to a loopback address.
    tls: Option<tokio_rustls::TlsConnector>,
    every: Duration,
}

impl Source {
    /// The source `[auth]` names, if any: an `https://` URL (trusting the system's
    /// certificates and `jwks_ca`'s) or an `http://` one to a loopback address.
    pub(crate) fn from_config(auth: &AuthConfig) -> Result<Option<Self>, String> {
        let Some(url) = &auth.jwks_url else {
            return Ok(None);
        };
        let uri: Uri = url.parse().map_err(|e| format!("auth.jwks_url `{url}`: {e}"))?;
        let host = uri.host().ok_or(format!("auth.jwks_url `{url}` names no host"))?;
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err("auth.jwks_url: no user name or password in the URL (they would be sent as the Host)".into());
        }
        let tls = match uri.scheme_str() {
            Some("https") => Some(tls_connector(auth.jwks_ca.as_deref())?),
            Some("http") if is_loopback(host) => None,
            Some("http") => {
                return Err(format!(
                    "auth.jwks_url `{url}`: keys that sign tokens are fetched over https:// (http:// only from a loopback address)"
                ));
            }
            _ => return Err(format!("auth.jwks_url `{url}` must be an https:// URL")),
        };
        if auth.jwks_refresh_secs == 0 {
            return Err("auth.jwks_refresh_secs must be at least 1".into());
        }
        Ok(Some(Self {
            url: url.clone(),
            uri,
            tls,
            every: Duration::from_secs(auth.jwks_refresh_secs),
        }))
    }

    /// The URL the keys come from.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Fetches the set into `keys`; returns how many keys it holds now.
    pub(crate) async fn load(&self, keys: &KeySet) -> Result<usize, String> {
        let body = tokio::time::timeout(FETCH_TIMEOUT, self.fetch())
            .await
            .map_err(|_| format!("no answer within {FETCH_TIMEOUT:?}"))??;
        keys.replace(&body)
    }

    async fn fetch(&self) -> Result<Bytes, String> {
        let host = self.uri.host().unwrap_or_default();
        let port = (self.uri.port_u16()).unwrap_or(if self.tls.is_some() { 443 } else { 80 });
        // `[::1]` as a URL writes it; connecting takes it bare.
        let address = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = TcpStream::connect((address, port)).await.map_err(|e| e.to_string())?;
        match &self.tls {
            Some(tls) => {
                let name = ServerName::try_from(address.to_string()).map_err(|e| e.to_string())?;
                let stream = tls.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
                self.get(stream).await
            }
            None => self.get(tcp).await,
        }
    }

    /// One `GET` over `io`: the body of a 200 answer, at most [`MAX_SET_BYTES`].
    async fn get(&self, io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static) -> Result<Bytes, String> {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        let authority = self.uri.authority().map_or("", |a| a.as_str());
        let request = Request::get(path)
            .header(hyper::header::HOST, authority)
            .header(
                hyper::header::USER_AGENT,
                concat!("tickrelay/", env!("CARGO_PKG_VERSION")),
            )
            .header(hyper::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        if response.status() != StatusCode::OK {
            return Err(format!("answered {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_SET_BYTES).collect().await;
        Ok(body.map_err(|e| format!("reading the body: {e}"))?.to_bytes())
    }
}

/// A loopback host as a URL names it.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// TLS for the fetch: the system's certificates and those of `ca` (PEM).
fn tls_connector(ca: Option<&Path>) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    // Certificates the store holds that rustls cannot use are skipped, as are stores
    // that cannot be read: `jwks_ca` may be all there is.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca {
        use rustls_pki_types::pem::PemObject;
        let pem = std::fs::read(path).map_err(|e| format!("auth.jwks_ca {}: {e}", path.display()))?;
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("auth.jwks_ca {}: {e}", path.display()))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!("auth.jwks_ca {} holds no certificate", path.display()));
        }
    }
    if roots.is_empty() {
        return Err("no certificate to trust for auth.jwks_url: none in the system's store; give auth.jwks_ca".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Keeps `keys` fresh from `source` until `shutdown` (see [`refreshing`]).
pub(crate) async fn keep_fresh(source: Source, keys: Arc<KeySet>, shutdown: CancellationToken) {
    refreshing(source.every, &keys, &shutdown, || source.load(&keys), &source.url).await;
}

/// Calls `load` every `every`, and within [`KEYS_REFETCH`] of the last call once a
/// token named a key `keys` lacks, until `shutdown` (a fetch under way included). A
/// failed fetch keeps the keys held (logged; tried again at the next turn).
async fn refreshing<F: Future<Output = Result<usize, String>>>(
    every: Duration,
    keys: &KeySet,
    shutdown: &CancellationToken,
    mut load: impl FnMut() -> F,
    url: &str,
) {
    let mut fetched = tokio::time::Instant::now();
    let mut check = tokio::time::interval(Duration::from_secs(1));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = check.tick() => {}
        }
        let since = fetched.elapsed();
        if since < every && !(keys.is_wanted() && since >= KEYS_REFETCH) {
            continue;
        }
        fetched = tokio::time::Instant::now();
        let loaded = tokio::select! {
            () = shutdown.cancelled() => return,
            loaded = load() => loaded,
        };
        match loaded {
            Ok(count) => tracing::debug!(url, keys = count, "signing keys fetched"),
            Err(e) => tracing::warn!(url, "cannot fetch the signing keys ({e}); keeping those held"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::session::auth::{AuthMode, Authenticator};

    /// A set of one Ed25519 key (RFC 8037's example), `kid` "a".
    const SET: &[u8] =
        br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

    /// A token (unsigned: it never gets that far) naming key `kid`.
    fn naming(kid: &str) -> String {
        use base64::Engine as _;
        let header = format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#);
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header);
        format!("{header}.e30.c2ln")
    }

    /// On the paused clock: a fetch every `every`; tokens naming unknown keys bring
    /// the next one forward, to 30 s after the last at the soonest, however many.
    #[tokio::test(start_paused = true)]
    async fn tokens_naming_unknown_keys_bring_a_fetch_forward_at_most_every_30_s() {
        let auth = Authenticator::new(&AuthConfig {
            mode: AuthMode::Jwt,
            jwks_url: Some("https://id.example/jwks.json".into()),
            ..AuthConfig::default()
        })
        .unwrap();
        let keys = auth.key_set().unwrap().clone();
        keys.replace(SET).unwrap();
        let (loads, shutdown) = (Arc::new(AtomicU64::new(0)), CancellationToken::new());
        let task = tokio::spawn({
            let (keys, loads, shutdown) = (keys.clone(), loads.clone(), shutdown.clone());
            async move {
                let load = || {
                    loads.fetch_add(1, Ordering::Relaxed);
                    std::future::ready(keys.replace(SET))
                };
                refreshing(Duration::from_secs(600), &keys, &shutdown, load, "test").await;
            }
        });
        let at = |secs| tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_secs(secs));
        at(10).await;
        for kid in ["b", "c", "d"] {
            assert!(auth.authenticate(Some(&naming(kid)), 0).is_err());
        }
        at(15).await; // 25 s in
        assert_eq!(loads.load(Ordering::Relaxed), 0, "not before 30 s");
        at(10).await; // 35 s in
        assert_eq!(loads.load(Ordering::Relaxed), 1, "one fetch for the three");
        assert!(auth.authenticate(Some(&naming("e")), 0).is_err());
        at(20).await; // 55 s: 20 s after the last
        assert_eq!(loads.load(Ordering::Relaxed), 1);
        at(10).await; // 65 s
        assert_eq!(loads.load(Ordering::Relaxed), 2);
        at(540).await; // 605 s: the periodic fetch, 600 s after the last
        assert_eq!(loads.load(Ordering::Relaxed), 2);
        at(60).await; // 665 s
        assert_eq!(loads.load(Ordering::Relaxed), 3);
        shutdown.cancel();
        task.await.unwrap();
    }

    #[test]
    fn urls_the_relay_fetches_from() {
        let source = |url: &str| {
            let config = AuthConfig {
                jwks_url: Some(url.into()),
                ..AuthConfig::default()
            };
            Source::from_config(&config).map(|s| s.map(|s| s.tls.is_some()))
        };
        assert_eq!(source("http://127.0.0.1:8080/jwks.json"), Ok(Some(false)));
        assert_eq!(source("http://[::1]/jwks.json"), Ok(Some(false)));
        assert!(source("http://id.example/jwks.json").unwrap_err().contains("https://"));
        assert!(
            source("https://user:pw@id.example/jwks.json")
                .unwrap_err()
                .contains("password")
        );
        assert!(source("ftp://id.example/jwks.json").is_err());
    }
}
