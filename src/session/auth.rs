//! Authentication at the WebSocket upgrade: a JWT (HS256 with a shared secret,
//! RS256/ES256/EdDSA with a public key, or any of those public-key algorithms with
//! the keys an identity provider publishes as a JWK set, chosen by the token's `kid`)
//! from `Authorization: Bearer`, the `token` query
//! parameter, or a `Sec-WebSocket-Protocol` entry `tickrelay.bearer.<jwt>` (browsers
//! cannot set headers). The user id is the token's `sub`; `exp` is required and is
//! enforced during the session too. An optional `rooms` claim restricts which rooms
//! the token may join (`"match-*"` matches by prefix). Also where resume tokens and
//! random ids are drawn ([`resume_token`], [`random_hex`]: from the operating system;
//! the session itself draws none).
//!
//! Anonymous mode (for local development) accepts every connection.

use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Authentication settings (`[auth]` in the config file).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `anonymous` (development only) or `jwt`.
    pub mode: AuthMode,
    /// `HS256`, `RS256`, `ES256` or `EdDSA` (not used with `jwks_url`: each key
    /// of the set has its own).
    pub algorithm: String,
    /// Shared secret for HS256.
    pub hs256_secret: Option<String>,
    /// PEM public key for RS256, ES256 or EdDSA.
    pub public_key: Option<PathBuf>,
    /// Where an identity provider publishes its signing keys (a JWK set, as
    /// `https://…/.well-known/jwks.json`): fetched at start and every
    /// `jwks_refresh_secs`, and sooner when a token names a key not in it. `http://`
    /// only to a loopback address.
    pub jwks_url: Option<String>,
    /// PEM certificates trusted for fetching `jwks_url`, besides the system's.
    pub jwks_ca: Option<PathBuf>,
    /// Seconds between fetches of `jwks_url`.
    pub jwks_refresh_secs: u64,
    /// Required `iss`, if set.
    pub issuer: Option<String>,
    /// Required `aud`, if set.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: u64,
    /// What a second connection of the same user does: `allow` both, or `replace`
    /// the older one (closed with 4002).
    pub duplicate_sessions: DuplicateSessions,
}

/// Authentication mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Every connection is accepted as `anonymous-<n>`, `n` unique on the node (in a
    /// cluster: in the cluster).
    Anonymous,
    /// A valid JWT is required at the upgrade.
    Jwt,
}

/// Policy for several connections of one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DuplicateSessions {
    /// Every connection lives on.
    Allow,
    /// The newest connection replaces the older one.
    Replace,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::Anonymous,
            algorithm: "HS256".into(),
            hs256_secret: None,
            public_key: None,
            jwks_url: None,
            jwks_ca: None,
            jwks_refresh_secs: 600,
            issuer: None,
            audience: None,
            leeway_secs: 5,
            duplicate_sessions: DuplicateSessions::Allow,
        }
    }
}

/// The claims tickrelay reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Rooms the token may join; absent means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
}

/// [`Claims`] with the time claims that are only checked, never minted.
#[derive(Deserialize)]
struct Timed {
    #[serde(flatten)]
    claims: Claims,
    /// Not before, seconds since the Unix epoch.
    nbf: Option<u64>,
    /// Issued at, seconds since the Unix epoch.
    iat: Option<u64>,
}

/// Who a session is.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user id (`sub`, or `anonymous-<n>`).
    pub user_id: Arc<str>,
    /// When the session must end, seconds since the Unix epoch: the token's `exp` plus
    /// the configured leeway (none when anonymous).
    pub expires_at: Option<u64>,
    /// Allowed room patterns (none: any room).
    pub rooms: Option<Vec<String>>,
    /// Whose share of room creations this session's joins use: the user id with JWT;
    /// for anonymous users (one per session) the client's address, set by
    /// [`Identity::with_address`].
    pub creator: Arc<str>,
}

impl Identity {
    /// Counts an anonymous identity's room creations by the client's address `ip`
    /// (an identity with a user id keeps it).
    pub fn with_address(mut self, ip: std::net::IpAddr) -> Self {
        if self.creator.is_empty() {
            self.creator = crate::session::limits::address_key(ip).to_string().into();
        }
        self
    }

    /// Whether this identity may join `room`.
    pub fn may_join(&self, room: &str) -> bool {
        room_allowed(self.rooms.as_deref(), room)
    }
}

/// Whether a token's room `patterns` (none: any room) allow `room`: a pattern is a
/// room id, or a prefix followed by `*`.
pub fn room_allowed(patterns: Option<&[String]>, room: &str) -> bool {
    patterns.is_none_or(|patterns| {
        patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => room.starts_with(prefix),
            None => p == room,
        })
    })
}

/// Why a token was refused. The kind labels the `auth_failures` metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token in any of the accepted places.
    #[error("missing token")]
    Missing,
    /// The token has expired.
    #[error("token expired")]
    Expired,
    /// The token's `nbf` (not before) or `iat` (issued at) is in the future, beyond
    /// the leeway.
    #[error("token not valid yet (nbf or iat in the future)")]
    NotYetValid,
    /// The signature does not verify.
    #[error("invalid signature")]
    BadSignature,
    /// The token's `alg` is not one the relay verifies with its key(s) (`none`, or a
    /// stronger or weaker one than configured, or an algorithm confusion).
    #[error("algorithm {got} not accepted (this relay takes {accepted})")]
    WrongAlgorithm {
        /// The token's `alg`.
        got: String,
        /// What the relay takes.
        accepted: String,
    },
    /// The token names a signing key (`kid`) the relay does not hold: its set of
    /// keys is fetched again (an identity provider's new key).
    #[error("unknown signing key (`kid`): try again in 30 s")]
    UnknownKey,
    /// Anything else: malformed, wrong issuer or audience, missing claims.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A refreshed token names another user.
    #[error("the new token is for another user")]
    OtherUser,
}

/// What a token that does not decode says to its client: short, and nothing of the
/// parser's own words (line and column, variant lists).
fn token_error(token: &str, accepted: &[Algorithm], kind: &jsonwebtoken::errors::ErrorKind) -> AuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    let why = match kind {
        K::InvalidSignature => return AuthError::BadSignature,
        K::InvalidAlgorithm | K::InvalidAlgorithmName => return wrong_algorithm(token, accepted),
        K::InvalidToken | K::Base64(_) | K::Utf8(_) | K::Json(_) => return malformed(token, accepted),
        K::InvalidIssuer => "wrong issuer (`iss`)",
        K::InvalidAudience => "wrong audience (`aud`)",
        K::InvalidSubject => "wrong subject (`sub`)",
        K::MissingRequiredClaim(claim) => return AuthError::Invalid(format!("missing claim `{claim}`")),
        _ => "not accepted",
    };
    AuthError::Invalid(why.into())
}

/// The token's `alg` as written, if its header is base64url JSON.
fn written_algorithm(token: &str) -> Option<String> {
    let header = part_json(token.split('.').next()?)?;
    // Printable only: the refusal goes to the log and to the client.
    Some(
        header
            .get("alg")?
            .as_str()?
            .chars()
            .filter(|c| !c.is_control())
            .take(16)
            .collect(),
    )
}

/// One part of a token, decoded: base64url JSON, or `None`.
fn part_json(part: &str) -> Option<serde_json::Value> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn wrong_algorithm(token: &str, accepted: &[Algorithm]) -> AuthError {
    let names: Vec<String> = accepted.iter().map(|a| format!("{a:?}")).collect();
    AuthError::WrongAlgorithm {
        got: written_algorithm(token).map_or_else(|| "(none named)".into(), |alg| format!("`{alg}`")),
        accepted: match names.is_empty() {
            true => "none: it holds no key for it".into(),
            false => names.join(", "),
        },
    }
}

/// What is wrong with a token that did not decode, found part by part.
fn malformed(token: &str, accepted: &[Algorithm]) -> AuthError {
    let invalid = |why: &str| AuthError::Invalid(why.into());
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return invalid("malformed: a JWT is three base64url parts joined by dots");
    };
    let Some(header) = part_json(header) else {
        return invalid("malformed header (not base64url JSON)");
    };
    if header
        .get("alg")
        .and_then(|alg| alg.as_str()?.parse::<Algorithm>().ok())
        .is_none()
    {
        return wrong_algorithm(token, accepted);
    }
    let Some(claims) = part_json(claims) else {
        return invalid("malformed claims (not base64url JSON)");
    };
    if !claims.get("sub").is_some_and(serde_json::Value::is_string) {
        return invalid("the claim `sub` must be a string");
    }
    if !claims.get("exp").is_some_and(serde_json::Value::is_number) {
        return invalid("the claim `exp` must be a number (seconds since the Unix epoch)");
    }
    use base64::Engine as _;
    if base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature)
        .is_err()
    {
        return invalid("malformed signature (not base64url: a character cut off or added?)");
    }
    invalid("malformed header or claims (`nbf`, `iat`, `rooms` or `kid` of the wrong type?)")
}

impl AuthError {
    /// Every [`AuthError::kind`].
    pub const KINDS: [&'static str; 8] = [
        "missing",
        "expired",
        "not_yet_valid",
        "bad_signature",
        "wrong_algorithm",
        "unknown_key",
        "invalid",
        "other_user",
    ];

    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::BadSignature => "bad_signature",
            Self::WrongAlgorithm { .. } => "wrong_algorithm",
            Self::UnknownKey => "unknown_key",
            Self::Invalid(_) => "invalid",
            Self::OtherUser => "other_user",
        }
    }
}

/// How tokens are verified.
enum Keys {
    /// With the one key of the configuration (boxed: the set is a pointer).
    One(Box<(DecodingKey, Validation)>),
    /// With the key of an identity provider's set that the token names.
    Set(Arc<KeySet>),
}

impl Keys {
    fn decode(&self, token: &str) -> Result<Timed, AuthError> {
        match self {
            Keys::One(one) => (jsonwebtoken::decode::<Timed>(token, &one.0, &one.1))
                .map(|data| data.claims)
                .map_err(|e| token_error(token, &one.1.algorithms, e.kind())),
            Keys::Set(set) => set.decode(token),
        }
    }
}

/// Signing keys from a JWK set (`[auth] jwks_url`), replaced whole by each fetch
/// ([`KeySet::replace`]); the fetching is the server's.
pub struct KeySet {
    keys: parking_lot::RwLock<HeldKeys>,
    /// What every token must meet beside its signature (issuer, audience, claims).
    validation: Validation,
    /// A token named a key the set does not hold (a provider's new key): fetch again.
    wanted: AtomicBool,
    /// How many times the set was taken ([`KeySet::replace`]).
    generation: AtomicU64,
    /// Key ids tokens named that the set did not hold (by their hash), with the
    /// generation they were first seen at: one still missing after two fetches
    /// since is no new key, and its tokens are refused for good (a retired key, a
    /// forgery).
    unknown: parking_lot::Mutex<rustc_hash::FxHashMap<u64, u64>>,
    /// Hashes key ids for `unknown`, with keys of its own (no id can be made to
    /// share another's count).
    kid_hasher: std::hash::RandomState,
}

/// Key ids remembered as missing, at most (16 bytes each): when full, those already
/// refused are forgotten first (named again, they wait two fetches more), then all.
/// A flood of made-up ids must name more than this many within two fetches to keep
/// one made-up id from being refused.
const MAX_UNKNOWN_KIDS: usize = 65_536;

/// The longest key id (`kid`) looked up.
const MAX_KID_BYTES: usize = 256;

/// The keys of a set, and what they verify together (each algorithm once, in a
/// fixed order: what a refusal names, worked out once per fetch rather than per
/// refused token).
#[derive(Default)]
struct HeldKeys {
    list: Vec<SetKey>,
    accepted: Vec<Algorithm>,
    /// The ids of the set's keys it cannot use, and why: a token naming one is
    /// told so (not that its key is unknown).
    skipped: Vec<(String, &'static str)>,
}

/// Whether an RSA key (JWK `n` and `e`, base64url) is one the signature checks take: a
/// modulus of 2,048 to 8,192 bits, an odd exponent from 3 to 2^33 − 1. (Others
/// would refuse every token signed with them as an invalid signature.)
fn rsa_verifiable(n: &str, e: &str) -> bool {
    use base64::Engine as _;
    let decode = |part: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).ok();
    let significant = |bytes: Vec<u8>| -> Vec<u8> { bytes.into_iter().skip_while(|&b| b == 0).collect() };
    let (Some(n), Some(e)) = (decode(n).map(significant), decode(e).map(significant)) else {
        return false;
    };
    let bits = |bytes: &[u8]| {
        bytes
            .first()
            .map_or(0, |&top| 8 * bytes.len() - top.leading_zeros() as usize)
    };
    let exponent = (e.len() <= 8).then(|| e.iter().fold(0u64, |v, &b| v << 8 | u64::from(b)));
    (2048..=8192).contains(&bits(&n)) && exponent.is_some_and(|e| e % 2 == 1 && (3..1 << 33).contains(&e))
}

/// What `keys` verify, each algorithm once.
fn accepted<'a>(keys: impl Iterator<Item = &'a SetKey>) -> Vec<Algorithm> {
    let mut all: Vec<Algorithm> = keys.flat_map(|k| k.algorithms.iter().copied()).collect();
    all.sort_by_key(|a| format!("{a:?}"));
    all.dedup();
    all
}

/// One usable key of a set.
struct SetKey {
    kid: Option<String>,
    key: DecodingKey,
    /// What it may verify: the JWK's `alg`, or every public-key algorithm of its type.
    algorithms: Vec<Algorithm>,
}

impl KeySet {
    fn new(validation: Validation) -> Self {
        Self {
            keys: parking_lot::RwLock::new(HeldKeys::default()),
            validation,
            wanted: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            unknown: parking_lot::Mutex::default(),
            kid_hasher: std::hash::RandomState::new(),
        }
    }

    /// Takes the keys of a JWK set document (`{"keys": [...]}`) in place of those
    /// held, and returns how many. Keys it cannot use are skipped: shared secrets
    /// (`oct`: a published set holds public keys only), keys for encryption, curves
    /// and types it does not verify, RSA keys outside what the checks take (see
    /// `rsa_verifiable`); a token naming one is refused saying so. A document
    /// without a usable key changes nothing and is an error.
    pub fn replace(&self, json: &[u8]) -> Result<usize, String> {
        use jsonwebtoken::jwk::{AlgorithmParameters as P, EllipticCurve, JwkSet, PublicKeyUse};
        let set: JwkSet = serde_json::from_slice(json).map_err(|e| format!("not a JWK set: {e}"))?;
        let (mut usable, mut skipped) = (Vec::new(), Vec::new());
        for jwk in &set.keys {
            let of_type = match &jwk.algorithm {
                _ if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) => Err("an encryption key"),
                P::RSA(rsa) if rsa_verifiable(&rsa.n, &rsa.e) => Ok(RSA_ALGORITHMS.to_vec()),
                P::RSA(_) => Err("an RSA key of under 2,048 or over 8,192 bits, or an exponent not odd in 3..2^33"),
                P::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Ok(vec![Algorithm::ES256]),
                P::EllipticCurve(ec) if ec.curve == EllipticCurve::P384 => Ok(vec![Algorithm::ES384]),
                P::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => Ok(vec![Algorithm::EdDSA]),
                _ => Err("a key type or curve it does not verify with"),
            };
            let algorithms = of_type.and_then(|of_type| match jwk.common.key_algorithm.map(Algorithm::try_from) {
                None => Ok(of_type),
                Some(Ok(alg)) if of_type.contains(&alg) => Ok(vec![alg]),
                Some(_) => Err("a key whose `alg` does not fit its type"),
            });
            let key = algorithms.and_then(|algorithms| match DecodingKey::from_jwk(jwk) {
                Ok(key) => Ok((key, algorithms)),
                Err(_) => Err("a malformed key"),
            });
            match (key, jwk.common.key_id.clone()) {
                (Ok((key, algorithms)), kid) => usable.push(SetKey { kid, key, algorithms }),
                (Err(why), Some(kid)) => skipped.push((kid, why)),
                (Err(_), None) => {}
            }
        }
        if usable.is_empty() {
            return Err(format!(
                "none of its {} keys is a public signing key tickrelay verifies (RSA, P-256, P-384, Ed25519)",
                set.keys.len()
            ));
        }
        let count = usable.len();
        // A key id seen missing before and published now is no stranger: should the
        // set lack it again, the count of fetches lacking it starts over.
        let published: rustc_hash::FxHashSet<u64> = (usable.iter())
            .filter_map(|k| k.kid.as_deref().map(|kid| self.kid_hasher.hash_one(kid)))
            .collect();
        self.unknown.lock().retain(|kid, _| !published.contains(kid));
        let keys = HeldKeys {
            accepted: accepted(usable.iter()),
            list: usable,
            skipped,
        };
        let mut held = self.keys.write();
        *held = keys;
        // Under the lock: a token that saw these keys sees this generation.
        self.generation.fetch_add(1, Ordering::Relaxed);
        self.wanted.store(false, Ordering::Relaxed);
        Ok(count)
    }

    /// Whether a token named a key the set does not hold since the last fetch.
    pub fn is_wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }

    fn decode(&self, token: &str) -> Result<Timed, AuthError> {
        const MAX_KEYS_PER_KID: usize = 4;
        let held = self.keys.read();
        let (keys, all) = (&held.list, &held.accepted);
        let header = jsonwebtoken::decode_header(token).map_err(|e| token_error(token, all, e.kind()))?;
        // The key the token names; without `kid`, the set's one key for its
        // algorithm (trying each of several would multiply what a forged token costs).
        let candidates: Vec<&SetKey> = match &header.kid {
            // (A set may list one key id twice: for two algorithms, or two keys.)
            Some(kid) => match keys.iter().filter(|k| k.kid.as_ref() == Some(kid)).collect::<Vec<_>>() {
                named if named.is_empty() => {
                    return Err(match held.skipped.iter().find(|(id, _)| id == kid) {
                        Some((_, why)) => AuthError::Invalid(format!(
                            "signed by a key its issuer publishes and this relay cannot verify with ({why})"
                        )),
                        None => self.unknown(kid),
                    });
                }
                named => named,
            },
            None => {
                let able: Vec<&SetKey> = keys.iter().filter(|k| k.algorithms.contains(&header.alg)).collect();
                match able.len() {
                    0 => return Err(wrong_algorithm(token, all)),
                    1 => able,
                    n => {
                        return Err(AuthError::Invalid(format!(
                            "the token names no signing key (`kid`), and its issuer publishes {n} keys for {:?}",
                            header.alg
                        )));
                    }
                }
            }
        };
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        let mut verdict = None;
        // At most the first few keys under one name: a set (1 MiB, hostile or not) that
        // lists hundreds under one `kid` would make each forged token cost as many
        // signature checks.
        let named = candidates.iter().filter(|k| k.algorithms.contains(&header.alg));
        for key in named.take(MAX_KEYS_PER_KID) {
            let checked = jsonwebtoken::decode::<Timed>(token, &key.key, &validation)
                .map(|data| data.claims)
                .map_err(|e| token_error(token, all, e.kind()));
            // This key verified the signature (its claims decide): no other is tried.
            let verified = !matches!(checked, Err(AuthError::BadSignature));
            verdict = Some(checked);
            if verified {
                break;
            }
        }
        // None of the keys it may name verifies its algorithm: told what those do.
        verdict.unwrap_or_else(|| Err(wrong_algorithm(token, &accepted(candidates.into_iter()))))
    }

    /// A token names `kid`, which the set does not hold (called with the keys read):
    /// a key the provider added since the last fetch (try again once it is fetched),
    /// or, once two fetches since it was first seen lack it (a provider's published
    /// set may lag its new key by one: caches), one that is not the provider's
    /// (refused). Either way the set is fetched again (at most every
    /// [`KEYS_REFETCH`]).
    fn unknown(&self, kid: &str) -> AuthError {
        if kid.len() > MAX_KID_BYTES {
            return AuthError::Invalid(format!("a key id (`kid`) longer than {MAX_KID_BYTES} bytes"));
        }
        let generation = self.generation.load(Ordering::Relaxed);
        let kid = self.kid_hasher.hash_one(kid);
        let mut unknown = self.unknown.lock();
        if unknown.len() >= MAX_UNKNOWN_KIDS && !unknown.contains_key(&kid) {
            unknown.retain(|_, &mut first_seen| generation < first_seen + 2);
            if unknown.len() >= MAX_UNKNOWN_KIDS {
                unknown.clear();
            }
        }
        let first_seen = *unknown.entry(kid).or_insert(generation);
        self.wanted.store(true, Ordering::Relaxed);
        if generation >= first_seen + 2 {
            return AuthError::Invalid("signed by a key (`kid`) its issuer does not publish".into());
        }
        AuthError::UnknownKey
    }
}

/// How soon a set is fetched again once a token named a key it does not hold, at
/// the soonest (clients cannot make the relay fetch more often): how long a client
/// told so should wait before it tries again.
pub const KEYS_REFETCH: std::time::Duration = std::time::Duration::from_secs(30);

/// The algorithms an RSA key verifies.
const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// What every token must meet beside its signature by `algorithm`: `exp` and `sub`
/// present (`exp`, `nbf` and `iat` are checked against the caller's clock, see
/// [`Authenticator::authenticate`]), and the configured issuer and audience.
fn validation(config: &AuthConfig, algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    // A configured issuer or audience must be there too: jsonwebtoken checks the
    // claims only when present (a token of the same keys for another service, without
    // `aud`, would pass).
    let mut required = vec!["exp", "sub"];
    required.extend(config.issuer.as_ref().map(|_| "iss"));
    required.extend(config.audience.as_ref().map(|_| "aud"));
    validation.set_required_spec_claims(&required);
    validation.validate_exp = false;
    if let Some(issuer) = &config.issuer {
        validation.set_issuer(&[issuer]);
    }
    match &config.audience {
        Some(audience) => validation.set_audience(&[audience]),
        None => validation.validate_aud = false,
    }
    validation
}

/// Checks tokens according to an [`AuthConfig`].
pub struct Authenticator {
    mode: AuthMode,
    leeway_secs: u64,
    keys: Option<Keys>,
    anonymous: AtomicU64,
    /// The warning when the HS256 secret is shorter than [`MIN_HS256_SECRET_BYTES`].
    short_secret: Option<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("mode", &self.mode).finish()
    }
}

/// The longest user id (`sub`) accepted.
pub const MAX_SUB_BYTES: usize = 256;

/// The shortest HS256 secret accepted without a warning: the hash's size, as RFC 7518
/// (section 3.2) requires.
pub const MIN_HS256_SECRET_BYTES: usize = 32;

impl Authenticator {
    /// Builds the verifier; fails on a missing or unreadable key. With `jwks_url` it
    /// holds no key until the server fetches the set ([`Authenticator::key_set`]).
    pub fn new(config: &AuthConfig) -> Result<Self, String> {
        let mut short_secret = None;
        let keys = match config.mode {
            AuthMode::Anonymous => None,
            AuthMode::Jwt if config.jwks_url.is_some() => {
                if config.public_key.is_some() || config.hs256_secret.is_some() {
                    return Err("auth.jwks_url takes the keys from the identity provider: leave out \
                                auth.public_key and the HS256 secret"
                        .into());
                }
                Some(Keys::Set(Arc::new(KeySet::new(validation(config, Algorithm::RS256)))))
            }
            AuthMode::Jwt => {
                let algorithm: Algorithm = config
                    .algorithm
                    .parse()
                    .map_err(|_| format!("unknown auth.algorithm `{}`", config.algorithm))?;
                let key = match algorithm.family() {
                    _ if algorithm == Algorithm::HS256 => {
                        let secret = config.hs256_secret.as_deref().filter(|s| !s.is_empty()).ok_or(
                            "JWT authentication with HS256 needs a shared secret: --jwt-secret, \
                             TICKRELAY_JWT_SECRET or [auth] hs256_secret",
                        )?;
                        short_secret = short_secret_warning(secret.len());
                        DecodingKey::from_secret(secret.as_bytes())
                    }
                    family @ (AlgorithmFamily::Rsa | AlgorithmFamily::Ec | AlgorithmFamily::Ed) => {
                        let path = (config.public_key.as_ref())
                            .ok_or(format!("auth.public_key (a PEM file) is required for {algorithm:?}"))?;
                        let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                        let key = match family {
                            AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&pem),
                            AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&pem),
                            _ => DecodingKey::from_ed_pem(&pem),
                        };
                        key.map_err(|e| format!("invalid public key {}: {e}", path.display()))?
                    }
                    _ => {
                        return Err(format!(
                            "auth.algorithm {algorithm:?} is not supported; use HS256, RS256 (or RS384, RS512, \
                             PS256, PS384, PS512), ES256 (or ES384) or EdDSA"
                        ));
                    }
                };
                Some(Keys::One(Box::new((key, validation(config, algorithm)))))
            }
        };
        Ok(Self {
            mode: config.mode,
            leeway_secs: config.leeway_secs,
            keys,
            anonymous: AtomicU64::new(0),
            short_secret,
        })
    }

    /// The signing keys fetched from `[auth] jwks_url`, when configured.
    pub fn key_set(&self) -> Option<&Arc<KeySet>> {
        match &self.keys {
            Some(Keys::Set(set)) => Some(set),
            _ => None,
        }
    }

    /// The warning when the HS256 secret is shorter than [`MIN_HS256_SECRET_BYTES`]
    /// (tokens can be forged by guessing it; see [`short_secret_warning`]).
    pub fn short_secret(&self) -> Option<&str> {
        self.short_secret.as_deref()
    }

    /// Anonymous users are numbered from `first` on (cluster mode: from the node's
    /// first session id, so that two players on two nodes never share a user id, and
    /// with it presence and the `replace` policy).
    pub fn number_anonymous_from(&self, first: u64) {
        self.anonymous.store(first.saturating_sub(1), Ordering::Relaxed);
    }

    /// Whether connections need a token.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Authenticates a connection from the token it presented, if any, at `now_unix`
    /// (seconds since the Unix epoch): a token is accepted until `exp` plus the leeway.
    pub fn authenticate(&self, token: Option<&str>, now_unix: u64) -> Result<Identity, AuthError> {
        match &self.keys {
            None => Ok(Identity {
                user_id: format!("anonymous-{}", self.anonymous.fetch_add(1, Ordering::Relaxed) + 1).into(),
                expires_at: None,
                rooms: None,
                creator: "".into(),
            }),
            Some(keys) => {
                let token = token.ok_or(AuthError::Missing)?;
                let Timed { claims, nbf, iat } = keys.decode(token)?;
                // The user id appears in logs and in other members' presence: short and
                // printable, never echoed as sent.
                check_sub(&claims.sub).map_err(AuthError::Invalid)?;
                // Accepted up to `exp + leeway`, so enforced until then too.
                let expires_at = claims.exp.saturating_add(self.leeway_secs);
                if expires_at <= now_unix {
                    return Err(AuthError::Expired);
                }
                let valid_from = nbf.into_iter().chain(iat).max().unwrap_or(0);
                if valid_from > now_unix.saturating_add(self.leeway_secs) {
                    return Err(AuthError::NotYetValid);
                }
                let user_id: Arc<str> = claims.sub.into();
                Ok(Identity {
                    creator: user_id.clone(),
                    user_id,
                    expires_at: Some(expires_at),
                    rooms: claims.rooms,
                })
            }
        }
    }

    /// Checks a token sent in-band to extend a session of `user_id`.
    pub fn refresh(&self, user_id: &str, token: &str, now_unix: u64) -> Result<Identity, AuthError> {
        let identity = self.authenticate(Some(token), now_unix)?;
        if &*identity.user_id != user_id {
            return Err(AuthError::OtherUser);
        }
        Ok(identity)
    }
}

/// The warning for an HS256 secret of `bytes` when it is shorter than
/// [`MIN_HS256_SECRET_BYTES`] (at start, by `--check`, and by `tickrelay token`).
pub fn short_secret_warning(bytes: usize) -> Option<String> {
    (bytes < MIN_HS256_SECRET_BYTES).then(|| {
        format!(
            "the HS256 secret is {bytes} bytes, shorter than {MIN_HS256_SECRET_BYTES} (RFC 7518 asks for at least \
             256 bits): tokens can be forged by guessing it; use for example `head -c 32 /dev/urandom | base64`"
        )
    })
}

/// Checks a token's user id (`sub`) as the relay does: 1-[`MAX_SUB_BYTES`] bytes,
/// without control characters.
pub fn check_sub(sub: &str) -> Result<(), String> {
    if sub.is_empty() || sub.len() > MAX_SUB_BYTES || sub.chars().any(char::is_control) {
        return Err(format!(
            "sub must be 1-{MAX_SUB_BYTES} bytes without control characters"
        ));
    }
    Ok(())
}

/// Mints an HS256 token (for development and tests: `tickrelay token`).
pub fn mint_hs256(secret: &str, claims: &Claims) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 encoding cannot fail")
}

/// The token a request presents: `Authorization: Bearer`, then the `token` query
/// parameter, then a `tickrelay.bearer.<jwt>` WebSocket subprotocol entry.
pub fn token_from_request<'a>(
    authorization: Option<&'a str>,
    query: Option<&'a str>,
    protocols: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    authorization
        .and_then(|v| {
            // The scheme is case-insensitive (RFC 7235).
            let (scheme, token) = v.trim_start().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .map(str::trim)
        .or_else(|| query_param(query?, "token"))
        .or_else(|| {
            protocols
                .flat_map(|v| v.split(','))
                .find_map(|p| p.trim().strip_prefix(BEARER_PROTOCOL_PREFIX))
        })
}

/// The subprotocol prefix that carries a token.
pub const BEARER_PROTOCOL_PREFIX: &str = "tickrelay.bearer.";
/// The subprotocol the server selects when a client offers it.
pub const PROTOCOL: &str = "tickrelay.v1";

/// One query parameter's raw value (tokens and resume tokens need no decoding).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })
}

/// A fresh resume token: 128 random bits from the operating system, as hex.
pub fn resume_token() -> String {
    random_hex::<16>()
}

/// `N` random bytes from the OS, in hex.
pub fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed moment: the checks run on the caller's clock, never the system's.
    const NOW: u64 = 1_800_000_000;

    fn now() -> u64 {
        NOW
    }

    fn jwt(secret: &str) -> Authenticator {
        jwt_with_leeway(secret, 0)
    }

    fn jwt_with_leeway(secret: &str, leeway_secs: u64) -> Authenticator {
        Authenticator::new(&AuthConfig {
            mode: AuthMode::Jwt,
            hs256_secret: Some(secret.into()),
            leeway_secs,
            ..Default::default()
        })
        .unwrap()
    }

    fn token(secret: &str, sub: &str, exp: u64, rooms: Option<Vec<String>>) -> String {
        mint_hs256(
            secret,
            &Claims {
                sub: sub.into(),
                exp,
                rooms,
            },
        )
    }

    #[test]
    fn valid_forged_expired_and_missing_tokens() {
        let auth = jwt("s3cret");
        let ok = auth
            .authenticate(Some(&token("s3cret", "alice", now() + 60, None)), NOW)
            .unwrap();
        assert_eq!(&*ok.user_id, "alice");
        assert_eq!(
            auth.authenticate(Some(&token("guess", "alice", now() + 60, None)), NOW)
                .unwrap_err(),
            AuthError::BadSignature
        );
        assert_eq!(
            auth.authenticate(Some(&token("s3cret", "alice", now() - 60, None)), NOW)
                .unwrap_err(),
            AuthError::Expired
        );
        assert_eq!(auth.authenticate(None, NOW).unwrap_err(), AuthError::Missing);
        assert!(matches!(
            auth.authenticate(Some("not.a.jwt"), NOW),
            Err(AuthError::Invalid(_))
        ));
        // What a client is told of a token that does not decode: nothing of the
        // parser's words.
        // Signed, without `exp`; and {"alg":"none"}.{"sub":"a","exp":1}. unsigned.
        let key = jsonwebtoken::EncodingKey::from_secret(b"s3cret");
        let no_exp = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &serde_json::json!({"sub": "a"}), &key);
        let no_exp = no_exp.unwrap();
        let alg_none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIiwiZXhwIjoxfQ.";
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &serde_json::json!({"sub": "a", "exp": now() + 60}),
            &key,
        );
        let hs512 = hs512.unwrap();
        let good = token("s3cret", "alice", now() + 60, None);
        let cut = &good[..good.len() - 1];
        let spaced = format!("{good} ");
        let sub_a_number = jsonwebtoken::encode(&Header::default(), &serde_json::json!({"sub": 1, "exp": 1}), &key);
        let sub_a_number = sub_a_number.unwrap();
        for (token, told) in [
            ("not.a.jwt", "malformed header (not base64url JSON)"),
            ("a.b", "malformed: a JWT is three base64url parts joined by dots"),
            (no_exp.as_str(), "the claim `exp` must be a number"),
            (sub_a_number.as_str(), "the claim `sub` must be a string"),
            (alg_none, "algorithm `none` not accepted (this relay takes HS256)"),
            (
                hs512.as_str(),
                "algorithm `HS512` not accepted (this relay takes HS256)",
            ),
            (cut, "malformed signature (not base64url"),
            (spaced.as_str(), "malformed signature (not base64url"),
        ] {
            let error = auth.authenticate(Some(token), NOW).unwrap_err().to_string();
            assert!(error.contains(told) && !error.contains("line"), "{token}: {error}");
        }
        // A user id goes to logs and presence: printable and short, or refused.
        for sub in [
            "",
            "bob\nadmin logged in",
            "\u{1b}[31mred",
            &"x".repeat(MAX_SUB_BYTES + 1),
        ] {
            assert!(
                matches!(
                    auth.authenticate(Some(&token("s3cret", sub, now() + 60, None)), NOW),
                    Err(AuthError::Invalid(_))
                ),
                "{sub:?}"
            );
        }
        let longest = "x".repeat(MAX_SUB_BYTES);
        assert!(
            auth.authenticate(Some(&token("s3cret", &longest, now() + 60, None)), NOW)
                .is_ok()
        );
    }

    /// A configured issuer and audience are required: a token of the same key
    /// without them (issued for another service) is refused, as is one naming others.
    #[test]
    fn a_configured_issuer_and_audience_must_be_in_the_token() {
        let auth = Authenticator::new(&AuthConfig {
            mode: AuthMode::Jwt,
            hs256_secret: Some("k".into()),
            issuer: Some("https://id.example".into()),
            audience: Some("tickrelay".into()),
            ..Default::default()
        })
        .unwrap();
        let key = jsonwebtoken::EncodingKey::from_secret(b"k");
        let signed =
            |claims: serde_json::Value| jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
        let (iss, aud) = ("https://id.example", "tickrelay");
        let both = signed(serde_json::json!({"sub": "a", "exp": NOW + 60, "iss": iss, "aud": aud}));
        assert!(auth.authenticate(Some(&both), NOW).is_ok());
        for claims in [
            serde_json::json!({"sub": "a", "exp": NOW + 60, "iss": iss}),
            serde_json::json!({"sub": "a", "exp": NOW + 60, "aud": aud}),
            serde_json::json!({"sub": "a", "exp": NOW + 60, "iss": iss, "aud": "other"}),
            serde_json::json!({"sub": "a", "exp": NOW + 60, "iss": "https://other", "aud": aud}),
        ] {
            let refused = auth.authenticate(Some(&signed(claims.clone())), NOW);
            assert!(refused.is_err(), "{claims}");
        }
        // Without them configured, neither is needed.
        let plain = jwt("k");
        let bare = signed(serde_json::json!({"sub": "a", "exp": NOW + 60}));
        assert!(plain.authenticate(Some(&bare), NOW).is_ok());
    }

    #[test]
    fn expiry_is_checked_on_the_callers_clock_with_the_leeway() {
        let auth = jwt_with_leeway("k", 5);
        let t = token("k", "bob", NOW, None);
        assert_eq!(auth.authenticate(Some(&t), NOW + 4).unwrap().expires_at, Some(NOW + 5));
        assert_eq!(auth.authenticate(Some(&t), NOW + 5).unwrap_err(), AuthError::Expired);
        // A token long expired on the system clock is fine on an earlier one.
        assert!(auth.authenticate(Some(&token("k", "bob", 1_000, None)), 900).is_ok());
    }

    #[test]
    fn a_token_from_the_future_is_refused_within_the_leeway() {
        #[derive(Serialize)]
        struct Future {
            sub: &'static str,
            exp: u64,
            nbf: Option<u64>,
            iat: Option<u64>,
        }
        let auth = jwt_with_leeway("k", 5);
        let mint = |nbf, iat| {
            let claims = Future {
                sub: "bob",
                exp: NOW + 600,
                nbf,
                iat,
            };
            let key = EncodingKey::from_secret(b"k");
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
        };
        for (nbf, iat) in [(Some(NOW + 60), None), (None, Some(NOW + 60))] {
            let token = mint(nbf, iat);
            assert_eq!(
                auth.authenticate(Some(&token), NOW).unwrap_err(),
                AuthError::NotYetValid
            );
            // Valid once its time has come (and a little before: the leeway).
            assert!(auth.authenticate(Some(&token), NOW + 55).is_ok());
        }
        assert!(
            auth.authenticate(Some(&mint(Some(NOW - 1), Some(NOW - 1))), NOW)
                .is_ok()
        );
    }

    /// JWT checked with the keys a provider publishes (not fetched here).
    fn jwks_config() -> AuthConfig {
        AuthConfig {
            mode: AuthMode::Jwt,
            jwks_url: Some("https://id.example/jwks.json".into()),
            ..AuthConfig::default()
        }
    }

    #[test]
    fn a_key_set_keeps_public_signing_keys_only() {
        let config = jwks_config();
        let auth = Authenticator::new(&config).unwrap();
        let set = auth.key_set().expect("a set to fetch");
        // Before the first fetch nothing verifies.
        assert_eq!(auth.authenticate(Some("a.b.c"), now()).unwrap_err().kind(), "invalid");
        let ed = |kid: &str, extra: &str| {
            format!(
                r#"{{"kty":"OKP","crv":"Ed25519","kid":"{kid}","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"{extra}}}"#
            )
        };
        let secret = r#"{"kty":"oct","kid":"s","k":"c2VjcmV0"}"#;
        let document = format!(
            r#"{{"keys":[{},{},{},{secret}]}}"#,
            ed("sig", ""),
            ed("enc", r#","use":"enc""#),
            ed("rsa-alg", r#","alg":"RS256""#)
        );
        assert_eq!(
            set.replace(document.as_bytes()),
            Ok(1),
            "a shared secret, an encryption key, a mislabelled key"
        );
        // A token naming a key the set holds and cannot use is told so (no fetch).
        let named = |kid: &str| {
            let header = format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#);
            format!("{}.e30.c2ln", base64_url(header.as_bytes()))
        };
        let refused = auth.authenticate(Some(&named("enc")), now()).unwrap_err();
        assert!(
            refused.to_string().contains("cannot verify with (an encryption key)"),
            "{refused}"
        );
        assert!(!set.is_wanted());
        let none = format!(r#"{{"keys":[{secret}]}}"#);
        assert!(set.replace(none.as_bytes()).unwrap_err().contains("none of its 1 keys"));
        assert!(set.replace(b"<html>").unwrap_err().contains("not a JWK set"));
        // A token naming a key the set lacks asks for a fetch.
        assert!(!set.is_wanted());
        let header = r#"{"alg":"EdDSA","kid":"new"}"#;
        let token = format!("{}.e30.c2ln", base64_url(header.as_bytes()));
        assert_eq!(
            auth.authenticate(Some(&token), now()).unwrap_err(),
            AuthError::UnknownKey
        );
        assert!(set.is_wanted());
        // Still missing after two fetches: refused for good.
        let document = format!(r#"{{"keys":[{}]}}"#, ed("sig", ""));
        set.replace(document.as_bytes()).unwrap();
        let unknown = auth.authenticate(Some(&token), now()).unwrap_err();
        assert_eq!(unknown, AuthError::UnknownKey, "one fetch may lag a new key");
        set.replace(document.as_bytes()).unwrap();
        assert_eq!(auth.authenticate(Some(&token), now()).unwrap_err().kind(), "invalid");
        // Key ids are bounded, and so is what is remembered of them.
        let long = auth.authenticate(Some(&named(&"k".repeat(MAX_KID_BYTES + 1))), now());
        assert_eq!(long.unwrap_err().kind(), "invalid");
        for i in 0..2 * MAX_UNKNOWN_KIDS {
            let _ = auth.authenticate(Some(&named(&format!("flood-{i}"))), now());
        }
        assert!(set.unknown.lock().len() <= MAX_UNKNOWN_KIDS);
        // With a static key configured as well, the configuration is refused.
        let both = AuthConfig {
            hs256_secret: Some("secret".into()),
            ..config
        };
        assert!(Authenticator::new(&both).unwrap_err().contains("jwks_url"));
    }

    /// RSA keys the signature checks refuse to use are not counted as the set's.
    #[test]
    fn rsa_keys_the_checks_cannot_use_are_skipped() {
        let b64 = |bytes: &[u8]| base64_url(bytes);
        let modulus = |bits: usize| {
            let mut n = vec![0xff_u8; bits / 8];
            n[0] = 0x80;
            n
        };
        let f4 = b64(&[1, 0, 1]);
        assert!(rsa_verifiable(&b64(&modulus(2048)), &f4));
        assert!(rsa_verifiable(&b64(&modulus(8192)), &b64(&[3])));
        let padded = [&[0u8][..], &modulus(2048)].concat();
        assert!(
            rsa_verifiable(&b64(&padded), &f4),
            "a leading zero byte counts for nothing"
        );
        assert!(!rsa_verifiable(&b64(&modulus(1024)), &f4));
        assert!(!rsa_verifiable(&b64(&modulus(16384)), &f4));
        for e in [&[1u8][..], &[1, 0, 0], &[2, 0, 0, 0, 1], &[1; 9]] {
            assert!(!rsa_verifiable(&b64(&modulus(2048)), &b64(e)), "{e:?}");
        }
        assert!(!rsa_verifiable("not base64!", &f4));
    }

    /// A flood of made-up key ids between fetches (far fewer than
    /// [`MAX_UNKNOWN_KIDS`]) does not keep a missing key waiting: it is refused once
    /// two fetches lacked it.
    #[test]
    fn made_up_key_ids_do_not_keep_a_missing_key_waiting() {
        let auth = Authenticator::new(&jwks_config()).unwrap();
        let set = auth.key_set().unwrap();
        let document = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"sig","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        set.replace(document).unwrap();
        let named = |kid: &str| {
            let header = format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#);
            format!("{}.e30.c2ln", base64_url(header.as_bytes()))
        };
        assert_eq!(
            auth.authenticate(Some(&named("gone")), now()).unwrap_err(),
            AuthError::UnknownKey
        );
        for round in 0..2 {
            for i in 0..5_000 {
                let _ = auth.authenticate(Some(&named(&format!("flood-{round}-{i}"))), now());
            }
            set.replace(document).unwrap();
        }
        assert_eq!(
            auth.authenticate(Some(&named("gone")), now()).unwrap_err().kind(),
            "invalid"
        );
    }

    /// A token without `kid` is checked with the set's one key for its algorithm;
    /// with several, it is refused rather than checked with each (a forged one
    /// would cost a signature check per key).
    #[test]
    fn a_token_without_a_key_id_is_checked_with_one_key_at_most() {
        let auth = Authenticator::new(&jwks_config()).unwrap();
        let key = || {
            let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
            let x = base64_url(pair.public_key_raw());
            let jwk = format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}"}}"#);
            let signer = jsonwebtoken::EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap();
            (jwk, signer)
        };
        let ((one, signer), (two, _)) = (key(), key());
        let claims = Claims {
            sub: "ada".into(),
            exp: NOW + 60,
            rooms: None,
        };
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::EdDSA), &claims, &signer).unwrap();
        let set = auth.key_set().unwrap();
        set.replace(format!(r#"{{"keys":[{one}]}}"#).as_bytes()).unwrap();
        assert_eq!(&*auth.authenticate(Some(&token), NOW).unwrap().user_id, "ada");
        set.replace(format!(r#"{{"keys":[{two},{one}]}}"#).as_bytes()).unwrap();
        let refused = auth.authenticate(Some(&token), NOW).unwrap_err();
        assert!(
            refused.to_string().contains("names no signing key (`kid`)"),
            "{refused}"
        );
    }

    /// A set may publish one key id twice (a key rotated in under the old one's
    /// name, as some providers do): a token naming it verifies with whichever of
    /// them signed it, and a third key's signature under that name does not.
    #[test]
    fn a_key_id_published_twice_verifies_with_either_key() {
        let config = jwks_config();
        let auth = Authenticator::new(&config).unwrap();
        // An Ed25519 key pair: its public half as a JWK named "k", and a signer.
        let key = || {
            let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
            let x = base64_url(pair.public_key_raw());
            let jwk = format!(r#"{{"kty":"OKP","crv":"Ed25519","kid":"k","x":"{x}"}}"#);
            let signer = jsonwebtoken::EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap();
            (jwk, signer)
        };
        let ((old, old_signer), (new, new_signer), (_, stranger)) = (key(), key(), key());
        let document = format!(r#"{{"keys":[{old},{new}]}}"#);
        assert_eq!(auth.key_set().unwrap().replace(document.as_bytes()), Ok(2));
        let signed = |signer: &jsonwebtoken::EncodingKey, sub: &str| {
            let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
            header.kid = Some("k".into());
            let claims = Claims {
                sub: sub.into(),
                exp: NOW + 60,
                rooms: None,
            };
            jsonwebtoken::encode(&header, &claims, signer).unwrap()
        };
        for (signer, user) in [(&old_signer, "old"), (&new_signer, "new")] {
            let identity = auth.authenticate(Some(&signed(signer, user)), NOW).unwrap();
            assert_eq!(&*identity.user_id, user);
        }
        assert_eq!(
            auth.authenticate(Some(&signed(&stranger, "eve")), NOW).unwrap_err(),
            AuthError::BadSignature
        );
    }

    /// A token is checked with at most the first four keys its `kid` names: a set
    /// listing many under one name does not multiply what a forged token costs.
    #[test]
    fn a_key_id_is_checked_with_its_first_four_keys_at_most() {
        let config = jwks_config();
        let auth = Authenticator::new(&config).unwrap();
        let keys: Vec<_> = (0..6)
            .map(|_| {
                let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
                let x = base64_url(pair.public_key_raw());
                let jwk = format!(r#"{{"kty":"OKP","crv":"Ed25519","kid":"k","x":"{x}"}}"#);
                let signer = jsonwebtoken::EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap();
                (jwk, signer)
            })
            .collect();
        let jwks: Vec<&str> = keys.iter().map(|(jwk, _)| jwk.as_str()).collect();
        let document = format!(r#"{{"keys":[{}]}}"#, jwks.join(","));
        assert_eq!(auth.key_set().unwrap().replace(document.as_bytes()), Ok(6));
        let signed = |signer: &jsonwebtoken::EncodingKey| {
            let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
            header.kid = Some("k".into());
            let claims = Claims {
                sub: "ann".into(),
                exp: NOW + 60,
                rooms: None,
            };
            jsonwebtoken::encode(&header, &claims, signer).unwrap()
        };
        assert!(auth.authenticate(Some(&signed(&keys[3].1)), NOW).is_ok(), "the fourth");
        assert_eq!(
            auth.authenticate(Some(&signed(&keys[4].1)), NOW).unwrap_err(),
            AuthError::BadSignature,
            "the fifth is not tried"
        );
    }

    /// Base64url without padding, as a JWT's parts are written.
    fn base64_url(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn room_restrictions() {
        let auth = jwt("k");
        let id = auth
            .authenticate(
                Some(&token(
                    "k",
                    "bob",
                    now() + 60,
                    Some(vec!["lobby".into(), "match-*".into()]),
                )),
                NOW,
            )
            .unwrap();
        assert!(id.may_join("lobby") && id.may_join("match-42"));
        assert!(!id.may_join("lobby2") && !id.may_join("admin"));
    }

    #[test]
    fn refresh_must_keep_the_user() {
        let auth = jwt("k");
        assert!(auth.refresh("bob", &token("k", "bob", now() + 600, None), NOW).is_ok());
        assert_eq!(
            auth.refresh("bob", &token("k", "eve", now() + 600, None), NOW)
                .unwrap_err(),
            AuthError::OtherUser
        );
    }

    #[test]
    fn token_sources_in_order() {
        assert_eq!(
            token_from_request(Some("Bearer abc"), Some("token=q"), std::iter::empty()),
            Some("abc")
        );
        for header in ["BEARER abc", "bearer abc", "beArer  abc "] {
            assert_eq!(token_from_request(Some(header), None, std::iter::empty()), Some("abc"));
        }
        assert_eq!(token_from_request(Some("Basic abc"), None, std::iter::empty()), None);
        assert_eq!(
            token_from_request(None, Some("room=x&token=q"), std::iter::empty()),
            Some("q")
        );
        let protocols = ["tickrelay.v1, tickrelay.bearer.xyz"];
        assert_eq!(token_from_request(None, None, protocols.into_iter()), Some("xyz"));
        assert_eq!(token_from_request(None, None, std::iter::empty()), None);
    }

    #[test]
    fn anonymous_mode_names_users() {
        let auth = Authenticator::new(&AuthConfig::default()).unwrap();
        assert_eq!(&*auth.authenticate(None, NOW).unwrap().user_id, "anonymous-1");
        let other_node = Authenticator::new(&AuthConfig::default()).unwrap();
        other_node.number_anonymous_from(1 << 40);
        assert_eq!(
            &*other_node.authenticate(None, NOW).unwrap().user_id,
            "anonymous-1099511627776"
        );
        assert_eq!(
            &*auth.authenticate(Some("ignored"), NOW).unwrap().user_id,
            "anonymous-2"
        );
    }

    #[test]
    fn resume_tokens_are_unique() {
        let a = resume_token();
        assert_eq!(a.len(), 32);
        assert_ne!(a, resume_token());
    }
}
