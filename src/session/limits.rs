//! Rate limits, sans IO: token buckets on a caller-supplied clock.
//!
//! A session has a [`RateLimiter`] with two buckets, one on messages and one on bytes.
//! A message over either limit is refused (the client gets a `RATE_LIMITED` error with
//! a retry hint, at most a few per second); a client that stays over the limit for
//! longer than the flood window is closed with 1008.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use tickrelay_proto::bucket::TokenBucket;

/// The key per-address limits count a client under: its IPv4 address, or the /64
/// prefix of its IPv6 address (one host is commonly given a whole /64, so counting
/// single IPv6 addresses would give it 2^64 allowances). IPv4-mapped IPv6 addresses
/// count as their IPv4 address.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

/// How many of something (connections, parked sessions) each address holds; an
/// address holding none is forgotten.
#[derive(Debug, Default)]
pub struct AddressCounts(HashMap<IpAddr, usize>);

impl AddressCounts {
    /// What `address` holds.
    pub fn get(&self, address: IpAddr) -> usize {
        self.0.get(&address).copied().unwrap_or(0)
    }

    /// Counts one more for `address`.
    pub fn add(&mut self, address: IpAddr) {
        *self.0.entry(address).or_default() += 1;
    }

    /// Counts one less for `address`.
    pub fn remove(&mut self, address: IpAddr) {
        if let Some(n) = self.0.get_mut(&address) {
            *n -= 1;
            if *n == 0 {
                self.0.remove(&address);
            }
        }
    }

    /// The most any address holds.
    pub fn most(&self) -> usize {
        self.0.values().copied().max().unwrap_or(0)
    }

    /// Forgets every count.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// Per-session limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Sustained messages per second.
    pub messages_per_second: f64,
    /// Message burst.
    pub message_burst: f64,
    /// Sustained inbound bytes per second.
    pub bytes_per_second: f64,
    /// Byte burst.
    pub byte_burst: f64,
    /// A client continuously over the limit for this long is closed with 1008.
    pub flood_window: Duration,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            messages_per_second: 50.0,
            message_burst: 100.0,
            bytes_per_second: 64.0 * 1024.0,
            byte_burst: 128.0 * 1024.0,
            flood_window: Duration::from_secs(1),
        }
    }
}

/// What the limiter decided about one inbound transport message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limits.
    Allow,
    /// Over the limit: drop it; tell the client when `notify` is set (errors are
    /// themselves rate limited), with the retry hint.
    Refuse {
        /// Send a `RATE_LIMITED` error now.
        notify: bool,
        /// When the client may send again.
        retry_after: Duration,
    },
    /// Over the limit for longer than the flood window: close with 1008.
    Flood,
}

/// Message and byte buckets plus flood detection.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    limits: RateLimits,
    messages: TokenBucket,
    bytes: TokenBucket,
    over: Option<Over>,
    last_notice: Option<Instant>,
    refused: u64,
}

/// Since a client's first refused message: what it sent (refused or not).
#[derive(Debug, Clone, Copy)]
struct Over {
    since: Instant,
    messages: f64,
    bytes: f64,
}

impl Over {
    /// Whether the client is back under the limit: one flood window or more since
    /// its first refusal, it sent no more than the sustained rates allow. (Whether it
    /// had tokens left after a message says nothing: a client whose messages arrive
    /// in bunches, as Nagle's algorithm sends them, finds the buckets refilled at
    /// each bunch.)
    fn back_under(&self, limits: &RateLimits, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.since);
        let secs = elapsed.as_secs_f64();
        elapsed >= limits.flood_window
            && self.messages <= limits.messages_per_second * secs
            && self.bytes <= limits.bytes_per_second * secs
    }
}

/// Minimum time between two `RATE_LIMITED` errors to one client.
const NOTICE_INTERVAL: Duration = Duration::from_millis(250);

impl RateLimiter {
    /// A limiter with full buckets.
    pub fn new(limits: RateLimits, now: Instant) -> Self {
        Self {
            limits,
            messages: TokenBucket::new(limits.messages_per_second, limits.message_burst, now),
            bytes: TokenBucket::new(limits.bytes_per_second, limits.byte_burst, now),
            over: None,
            last_notice: None,
            refused: 0,
        }
    }

    /// The limits.
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// The session goes on over a new connection: the buckets as they are, the flood
    /// window afresh (a time offline is not time over the limit).
    pub fn resume(&mut self) {
        self.over = None;
    }

    /// Messages refused so far.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Checks one transport message of `bytes` bytes holding `messages` messages.
    pub fn check(&mut self, messages: usize, bytes: usize, now: Instant) -> Verdict {
        // Take from the byte bucket only if the message bucket allows, so a refused
        // message costs nothing.
        let result = self.messages.try_take(messages as f64, now).and_then(|()| {
            self.bytes
                .try_take(bytes as f64, now)
                .inspect_err(|_| self.messages.give_back(messages as f64))
        });
        if let Some(over) = &mut self.over {
            over.messages += messages as f64;
            over.bytes += bytes as f64;
        }
        match result {
            Ok(()) => {
                if self.over.is_some_and(|over| over.back_under(&self.limits, now)) {
                    self.over = None;
                }
                Verdict::Allow
            }
            Err(retry_after) => {
                self.refused += messages as u64;
                // A client still refused one flood window after its first refusal is
                // flooding.
                let over = *self.over.get_or_insert(Over {
                    since: now,
                    messages: messages as f64,
                    bytes: bytes as f64,
                });
                if now.saturating_duration_since(over.since) >= self.limits.flood_window {
                    return Verdict::Flood;
                }
                let notify = self
                    .last_notice
                    .is_none_or(|t| now.saturating_duration_since(t) >= NOTICE_INTERVAL);
                if notify {
                    self.last_notice = Some(now);
                }
                Verdict::Refuse { notify, retry_after }
            }
        }
    }
}

/// The rate of token refreshes per user, all its sessions together: 3 at once, then
/// one every 5 s. A client refreshes before its token expires (minutes apart), and
/// once more when told its identity provider's new key is not fetched yet; each
/// refresh checks a signature (about 20 µs of CPU for RS256, 53 µs for ES256, `cargo bench
/// --bench auth`, on the thread that serves other connections too).
pub fn refresh_rate() -> SharedRate {
    SharedRate::new(0.2, 3.0)
}

/// A rate shared by every session of one key (a user, or an anonymous client's
/// address): what one client may not multiply by opening more sessions. Keys whose
/// bucket has refilled are forgotten once there are many.
#[derive(Debug)]
pub struct SharedRate {
    per_second: f64,
    burst: f64,
    keys: parking_lot::Mutex<Keys>,
}

#[derive(Debug, Default)]
struct Keys {
    buckets: std::collections::HashMap<std::sync::Arc<str>, TokenBucket>,
    /// How many keys make the next new one look for idle keys to forget: twice
    /// what was kept last time, so the scan costs a constant per key however many
    /// stay busy.
    prune_at: usize,
}

/// Keys kept before the full (idle) buckets are first looked for.
const SHARED_RATE_KEYS: usize = 4_096;

impl SharedRate {
    /// `per_second` sustained, `burst` at once, per key.
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self {
            per_second,
            burst,
            keys: parking_lot::Mutex::new(Keys {
                prune_at: SHARED_RATE_KEYS,
                ..Keys::default()
            }),
        }
    }

    /// Takes one for `key`, or says how long until one is available.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut keys = self.keys.lock();
        if let Some(bucket) = keys.buckets.get_mut(key) {
            return bucket.try_take(1.0, now);
        }
        if keys.buckets.len() >= keys.prune_at {
            keys.buckets.retain(|_, b| !b.is_full(now));
            keys.prune_at = SHARED_RATE_KEYS.max(2 * keys.buckets.len());
        }
        let mut bucket = TokenBucket::new(self.per_second, self.burst, now);
        let taken = bucket.try_take(1.0, now);
        keys.buckets.insert(key.into(), bucket);
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_well_behaved_client_is_never_refused() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(RateLimits::default(), t0);
        // 30 messages per second for a minute, 200 bytes each.
        for i in 0..30 * 60 {
            assert_eq!(r.check(1, 200, t0 + ms(i * 33)), Verdict::Allow);
        }
        assert_eq!(r.refused(), 0);
    }

    #[test]
    fn a_flood_is_refused_then_closed_within_the_window() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(RateLimits::default(), t0);
        let mut verdicts = Vec::new();
        // 1,000 messages per second.
        for i in 0..2000u64 {
            let v = r.check(1, 100, t0 + Duration::from_micros(i * 1000));
            verdicts.push(v);
            if v == Verdict::Flood {
                break;
            }
        }
        // The burst passes (plus what refills meanwhile: 50/s over ~0.1 s).
        let first_refusal = verdicts.iter().position(|v| *v != Verdict::Allow).unwrap();
        assert!((100..=106).contains(&first_refusal), "{first_refusal}");
        assert!(matches!(verdicts[first_refusal], Verdict::Refuse { notify: true, .. }));
        let notices = verdicts
            .iter()
            .filter(|v| matches!(v, Verdict::Refuse { notify: true, .. }))
            .count();
        assert!(notices <= 5, "errors are themselves limited: {notices}");
        assert_eq!(*verdicts.last().unwrap(), Verdict::Flood);
        // Closed at its first refused message one flood window (1 s = 1,000 messages
        // here) after the first refusal, or the one after if that one got through.
        let closed_after = verdicts.len() - 1 - first_refusal;
        assert!((1000..=1001).contains(&closed_after), "{closed_after}");
    }

    #[test]
    fn a_flood_in_bunches_is_closed_too() {
        // 200 messages per second arriving 8 at a time every 40 ms (a client with
        // Nagle's algorithm on): each bunch finds 2 tokens refilled and gets 2 through.
        let t0 = Instant::now();
        let mut r = RateLimiter::new(RateLimits::default(), t0);
        let mut closed_at = None;
        'sending: for bunch in 0..100u64 {
            for _ in 0..8 {
                if r.check(1, 40, t0 + ms(bunch * 40)) == Verdict::Flood {
                    closed_at = Some(ms(bunch * 40));
                    break 'sending;
                }
            }
        }
        // The burst of 100 lasts about 0.65 s at 150 more per second than the rate.
        let closed_at = closed_at.expect("the flood was never closed");
        assert!(closed_at >= ms(1000) && closed_at <= ms(1800), "{closed_at:?}");
    }

    #[test]
    fn a_burst_over_the_limit_then_the_rate_is_no_flood() {
        // 150 at once (50 refused), then 40 per second for a minute.
        let t0 = Instant::now();
        let mut r = RateLimiter::new(RateLimits::default(), t0);
        for _ in 0..150 {
            r.check(1, 10, t0);
        }
        assert_eq!(r.refused(), 50);
        for i in 1..=40 * 60 {
            assert_ne!(r.check(1, 10, t0 + ms(i * 25)), Verdict::Flood, "message {i}");
        }
        assert!(r.over.is_none(), "back under the limit");
    }

    #[test]
    fn a_short_excess_recovers_without_a_close() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(RateLimits::default(), t0);
        for _ in 0..100 {
            r.check(1, 10, t0);
        }
        assert!(matches!(r.check(1, 10, t0), Verdict::Refuse { .. }));
        // The client backs off as told and is fine again.
        assert_eq!(r.check(1, 10, t0 + ms(500)), Verdict::Allow);
        assert_eq!(r.check(1, 10, t0 + ms(2500)), Verdict::Allow);
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_bit_prefix() {
        let key = |s: &str| address_key(s.parse().unwrap()).to_string();
        assert_eq!(key("10.1.2.3"), "10.1.2.3");
        assert_eq!(key("::ffff:10.1.2.3"), "10.1.2.3");
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::1"), "::");
    }

    #[test]
    fn bytes_are_limited_too() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(RateLimits::default(), t0);
        for _ in 0..8 {
            assert_eq!(r.check(1, 16 * 1024, t0), Verdict::Allow);
        }
        assert!(matches!(r.check(1, 16 * 1024, t0), Verdict::Refuse { .. }));
        // The refused message did not use a message token.
        assert_eq!(r.messages.tokens(), 92.0);
    }

    #[test]
    fn a_shared_rate_counts_per_key_and_refills() {
        let t0 = Instant::now();
        let rate = SharedRate::new(1.0, 2.0);
        assert_eq!(rate.take("10.0.0.1", t0), Ok(()));
        assert_eq!(rate.take("10.0.0.1", t0), Ok(()));
        assert_eq!(rate.take("10.0.0.1", t0), Err(ms(1000)));
        assert_eq!(rate.take("alice", t0), Ok(()), "another key has its own bucket");
        assert_eq!(rate.take("10.0.0.1", t0 + ms(1000)), Ok(()));
        // Many keys: once there are twice as many as were kept, the idle (full)
        // buckets are forgotten and the busy ones kept.
        for n in 0..SHARED_RATE_KEYS {
            let _ = rate.take(&format!("old {n}"), t0);
        }
        for n in 0..SHARED_RATE_KEYS {
            let _ = rate.take(&format!("new {n}"), t0 + ms(5000));
        }
        let keys = rate.keys.lock();
        assert!(keys.buckets.len() <= SHARED_RATE_KEYS, "{}", keys.buckets.len());
        assert!(keys.buckets.keys().all(|k| k.starts_with("new")));
    }
}
