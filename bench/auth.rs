//! What checking a token at the upgrade costs, by algorithm and by where its key
//! comes from (`cargo bench --bench auth`). Every WebSocket upgrade and QUIC
//! handshake under `[auth] mode = "jwt"` pays one, and so does every token refresh.

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tickrelay::session::auth::{AuthConfig, AuthMode, Authenticator};

/// A fixed moment, with tokens valid around it.
const NOW: u64 = 1_800_000_000;

fn key(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/keys").join(name)
}

fn token(algorithm: Algorithm, key: &EncodingKey, kid: Option<&str>) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_string);
    let claims = serde_json::json!({ "sub": "bench", "exp": NOW + 600 });
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn with_public_key(algorithm: &str, file: &str) -> Authenticator {
    Authenticator::new(&AuthConfig {
        mode: AuthMode::Jwt,
        algorithm: algorithm.into(),
        public_key: Some(key(file)),
        ..AuthConfig::default()
    })
    .unwrap()
}

fn bench_auth(c: &mut Criterion) {
    let pem = |file: &str| std::fs::read(key(file)).unwrap();
    let rsa = EncodingKey::from_rsa_pem(&pem("rsa.pem")).unwrap();
    let mut cases: Vec<(&str, Authenticator, String)> = vec![
        (
            "rs256_pem",
            with_public_key("RS256", "rsa.pub.pem"),
            token(Algorithm::RS256, &rsa, None),
        ),
        (
            "es256_pem",
            with_public_key("ES256", "ec.pub.pem"),
            token(
                Algorithm::ES256,
                &EncodingKey::from_ec_pem(&pem("ec.pem")).unwrap(),
                None,
            ),
        ),
        (
            "eddsa_pem",
            with_public_key("EdDSA", "ed.pub.pem"),
            token(
                Algorithm::EdDSA,
                &EncodingKey::from_ed_pem(&pem("ed.pem")).unwrap(),
                None,
            ),
        ),
        (
            "hs256",
            Authenticator::new(&AuthConfig {
                mode: AuthMode::Jwt,
                hs256_secret: Some("a benchmark secret of 32 bytes!!".into()),
                ..AuthConfig::default()
            })
            .unwrap(),
            token(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"a benchmark secret of 32 bytes!!"),
                None,
            ),
        ),
    ];
    // The same RSA key, published in a JWK set (`[auth] jwks_url`; not fetched here).
    let jwks = Authenticator::new(&AuthConfig {
        mode: AuthMode::Jwt,
        jwks_url: Some("https://id.example/jwks.json".into()),
        ..AuthConfig::default()
    })
    .unwrap();
    (jwks.key_set().unwrap()).replace(&pem("rsa.jwks.json")).unwrap();
    cases.push(("rs256_jwk", jwks, token(Algorithm::RS256, &rsa, Some("bench-rsa"))));

    let mut group = c.benchmark_group("auth");
    for (name, auth, token) in &cases {
        assert!(
            auth.authenticate(Some(token), NOW).is_ok(),
            "{name}: the token verifies"
        );
        group.bench_function(*name, |b| b.iter(|| auth.authenticate(Some(token), NOW).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, bench_auth);
criterion_main!(benches);
