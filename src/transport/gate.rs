//! Listener protections, checked before any work is done (at the WebSocket upgrade,
//! and before a QUIC handshake): a global connection cap (HTTP 503; a refused QUIC
//! connection), a per-IP connection cap and a per-IP handshake rate (HTTP 429). One
//! gate counts both transports. An admitted connection holds a [`Permit`] that gives
//! its slot back when dropped.
//!
//! Before that, every accepted TCP socket that has not yet become a session (TLS and
//! HTTP still under way) holds a [`SocketPermit`]: one address may hold at most
//! `max_per_ip` of them too, so idle or half-sent handshakes cannot take every file
//! descriptor; and all addresses together at most `max_unfinished_handshakes`, beyond
//! which each new socket sheds the oldest unfinished one (its [`SocketPermit::shed`]
//! fires), so many addresses holding sockets open cannot lock new clients out.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use hyper::StatusCode;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::bucket::TokenBucket;
use crate::session::limits::address_key;

/// An address holding fewer connections than this may take the last ones (see
/// [`ConnectionLimits::reserve_for_light_addresses`]).
pub const LIGHT_ADDRESS: usize = 8;

/// Listener protections (`[connections]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionLimits {
    /// Open connections (both transports) at most; more get HTTP 503 at the upgrade.
    pub max_connections: usize,
    /// Open connections per client IP; more get HTTP 429.
    pub max_per_ip: usize,
    /// Sustained upgrade requests per second per client IP; more get HTTP 429.
    pub handshakes_per_ip_per_second: f64,
    /// Upgrade request burst per client IP.
    pub handshake_burst: f64,
    /// Accepted sockets not yet upgraded (TLS or HTTP under way), all addresses
    /// together; beyond, each new socket closes the oldest of them.
    pub max_unfinished_handshakes: usize,
    /// The last connections below `max_connections` (at most a quarter of it) that
    /// only addresses holding fewer than [`LIGHT_ADDRESS`] may take: a few addresses
    /// holding thousands each cannot lock everyone else out (HTTP 503).
    pub reserve_for_light_addresses: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 20_000,
            max_per_ip: 4_096,
            handshakes_per_ip_per_second: 200.0,
            handshake_burst: 400.0,
            max_unfinished_handshakes: 8_192,
            reserve_for_light_addresses: 1_024,
        }
    }
}

struct PerIp {
    open: usize,
    /// Accepted sockets not yet upgraded (or answered and closed).
    sockets: usize,
    /// Upgrades (and QUIC handshakes).
    handshakes: TokenBucket,
    /// Accepted TCP sockets, at the same rate: each costs a TLS handshake (a key
    /// exchange and a signature) before any upgrade is asked for.
    accepts: TokenBucket,
}

/// See the module documentation.
pub struct Gate {
    limits: ConnectionLimits,
    open: AtomicUsize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    per_ip: HashMap<IpAddr, PerIp>,
    /// Unfinished sockets by age (the key grows with each accept), with what sheds
    /// each.
    unfinished: BTreeMap<u64, CancellationToken>,
    accepted: u64,
}

/// Why an upgrade was refused, as the HTTP status and a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// 503 (server full) or 429 (this IP).
    pub status: StatusCode,
    /// Human-readable reason.
    pub message: &'static str,
}

/// An admitted connection's slot.
pub struct Permit {
    gate: Arc<Gate>,
    ip: IpAddr,
}

/// An accepted socket's slot, until it becomes a session or closes.
pub struct SocketPermit {
    gate: Arc<Gate>,
    ip: IpAddr,
    id: u64,
    shed: CancellationToken,
}

impl SocketPermit {
    /// Fires when newer sockets shed this one: close it.
    pub fn shed(&self) -> &CancellationToken {
        &self.shed
    }
}

impl Gate {
    /// A gate with no connections.
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            open: AtomicUsize::new(0),
            state: Mutex::new(State::default()),
        })
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Admits an accepted socket from `ip`, or says why not (close it): the address
    /// holds `max_per_ip` sockets, or opens them faster than its handshake rate. At
    /// the global cap the oldest unfinished socket is shed to make room; the result
    /// says whether one was.
    pub fn admit_socket(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<(SocketPermit, bool), &'static str> {
        let ip = address_key(ip);
        let mut state = self.state.lock();
        let address = self.address(&mut state.per_ip, ip, now);
        if address.sockets >= self.limits.max_per_ip {
            return Err("this address holds [connections] max_per_ip sockets");
        }
        if address.accepts.try_take(1.0, now).is_err() {
            return Err("this address opens sockets faster than [connections] handshakes_per_ip_per_second");
        }
        address.sockets += 1;
        let mut shed = false;
        while state.unfinished.len() >= self.limits.max_unfinished_handshakes.max(1) {
            let (_, oldest) = state.unfinished.pop_first().expect("at the cap, not empty");
            oldest.cancel();
            shed = true;
        }
        let id = state.accepted;
        state.accepted += 1;
        let token = CancellationToken::new();
        state.unfinished.insert(id, token.clone());
        let permit = SocketPermit {
            gate: self.clone(),
            ip,
            id,
            shed: token,
        };
        Ok((permit, shed))
    }

    fn address<'a>(&self, per_ip: &'a mut HashMap<IpAddr, PerIp>, ip: IpAddr, now: Instant) -> &'a mut PerIp {
        if per_ip.len() > 65_536 {
            // Forget idle addresses whose bucket has refilled: nothing to remember.
            per_ip.retain(|_, s| s.open > 0 || s.sockets > 0 || !s.handshakes.is_full(now) || !s.accepts.is_full(now));
        }
        let bucket = || {
            TokenBucket::new(
                self.limits.handshakes_per_ip_per_second,
                self.limits.handshake_burst,
                now,
            )
        };
        per_ip.entry(ip).or_insert_with(|| PerIp {
            open: 0,
            sockets: 0,
            handshakes: bucket(),
            accepts: bucket(),
        })
    }

    /// Admits a connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<Permit, Refusal> {
        let ip = address_key(ip);
        let mut state = self.state.lock();
        let state = self.address(&mut state.per_ip, ip, now);
        if state.handshakes.try_take(1.0, now).is_err() {
            return Err(Refusal {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: "too many connection attempts from this address; slow down",
            });
        }
        if state.open >= self.limits.max_per_ip {
            return Err(Refusal {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: "too many connections from this address",
            });
        }
        let open = self.open.load(Ordering::Relaxed);
        if open >= self.limits.max_connections {
            return Err(Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: "server at capacity; try again later",
            });
        }
        // The last connections are kept for addresses that hold few: a handful of
        // addresses holding thousands each cannot lock out everyone else.
        let reserve = (self.limits.reserve_for_light_addresses).min(self.limits.max_connections / 4);
        if open >= self.limits.max_connections - reserve && state.open >= LIGHT_ADDRESS {
            return Err(Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: "server near capacity: its last connections are kept for addresses holding few; try again later",
            });
        }
        state.open += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(Permit { gate: self.clone(), ip })
    }
}

impl Drop for SocketPermit {
    fn drop(&mut self) {
        let mut state = self.gate.state.lock();
        state.unfinished.remove(&self.id);
        if let Some(address) = state.per_ip.get_mut(&self.ip) {
            address.sockets -= 1;
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(address) = self.gate.state.lock().per_ip.get_mut(&self.ip) {
            address.open -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn gate(max_connections: usize, max_per_ip: usize, rate: f64, burst: f64) -> Arc<Gate> {
        Gate::new(ConnectionLimits {
            max_connections,
            max_per_ip,
            handshakes_per_ip_per_second: rate,
            handshake_burst: burst,
            ..ConnectionLimits::default()
        })
    }

    #[test]
    fn caps_and_release() {
        let g = gate(3, 2, 1000.0, 1000.0);
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = g.admit(a, now).unwrap();
        let _p2 = g.admit(a, now).unwrap();
        assert_eq!(g.admit(a, now).err().unwrap().status, StatusCode::TOO_MANY_REQUESTS);
        let _p3 = g.admit(b, now).unwrap();
        assert_eq!(g.admit(b, now).err().unwrap().status, StatusCode::SERVICE_UNAVAILABLE);
        drop(p1);
        assert_eq!(g.open(), 2);
        assert!(g.admit(a, now).is_ok());
    }

    /// Near the cap, the last connections go to addresses that hold few: a few
    /// addresses holding thousands each do not lock everyone else out.
    #[test]
    fn the_last_connections_are_kept_for_addresses_holding_few() {
        let g = Gate::new(ConnectionLimits {
            max_connections: 160,
            max_per_ip: 1000,
            reserve_for_light_addresses: 10,
            ..ConnectionLimits::default()
        });
        let now = Instant::now();
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let mut held: Vec<Permit> = (0..150).map(|_| g.admit(ip(1), now).unwrap()).collect();
        let refused = g.admit(ip(1), now).err().unwrap();
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "{}", refused.message);
        held.extend((0..LIGHT_ADDRESS).map(|_| g.admit(ip(2), now).unwrap()));
        assert!(g.admit(ip(2), now).is_err(), "no longer holding few");
        held.extend((0..2).map(|_| g.admit(ip(3), now).unwrap()));
        assert_eq!(g.open(), 160);
        assert_eq!(
            g.admit(ip(4), now).err().unwrap().message,
            "server at capacity; try again later"
        );
        drop(held.swap_remove(0));
        assert!(g.admit(ip(1), now).is_err(), "what a heavy address gives back is kept");
        assert!(g.admit(ip(4), now).is_ok());
    }

    #[test]
    fn ipv6_clients_are_capped_per_64_bit_prefix() {
        let g = gate(10, 1, 1000.0, 1000.0);
        let now = Instant::now();
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let _held = g.admit(ip("2001:db8::1"), now).unwrap();
        assert_eq!(
            g.admit(ip("2001:db8::2"), now).err().unwrap().status,
            StatusCode::TOO_MANY_REQUESTS,
            "another address of the same /64"
        );
        assert!(g.admit(ip("2001:db8:0:1::1"), now).is_ok(), "another /64");
    }

    #[test]
    fn unfinished_sockets_are_capped_per_address() {
        let g = gate(100, 2, 1000.0, 1000.0);
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let s1 = g.admit_socket(a, now).unwrap();
        let _s2 = g.admit_socket(a, now).unwrap();
        assert!(!s1.1, "nothing shed below the global cap");
        assert!(g.admit_socket(a, now).is_err());
        assert!(g.admit_socket("10.0.0.2".parse().unwrap(), now).is_ok());
        drop(s1);
        assert!(g.admit_socket(a, now).is_ok());
        // Sessions count apart: the same address may still upgrade.
        assert!(g.admit(a, now).is_ok());
    }

    /// Each accepted socket costs a TLS handshake: an address that opens and closes
    /// sockets in a loop is held to its handshake rate at accept, not only at the
    /// upgrade it never asks for.
    #[test]
    fn sockets_are_accepted_at_the_handshake_rate_per_address() {
        let g = gate(100, 100, 1.0, 2.0);
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..2 {
            drop(g.admit_socket(a, now).unwrap());
        }
        let refused = g.admit_socket(a, now).err().unwrap();
        assert!(refused.contains("handshakes_per_ip_per_second"), "{refused}");
        assert!(
            g.admit_socket("10.0.0.2".parse().unwrap(), now).is_ok(),
            "another address"
        );
        assert!(
            g.admit_socket(a, now + std::time::Duration::from_secs(1)).is_ok(),
            "a second later"
        );
    }

    #[test]
    fn at_the_global_cap_the_oldest_unfinished_socket_is_shed() {
        let g = Gate::new(ConnectionLimits {
            max_unfinished_handshakes: 3,
            ..ConnectionLimits::default()
        });
        let now = Instant::now();
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let (first, _) = g.admit_socket(ip(1), now).unwrap();
        let (second, _) = g.admit_socket(ip(2), now).unwrap();
        let (third, _) = g.admit_socket(ip(3), now).unwrap();
        drop(second);
        let (fourth, shed) = g.admit_socket(ip(4), now).unwrap();
        assert!(!shed, "a finished socket gave its place back");
        let (_fifth, shed) = g.admit_socket(ip(5), now).unwrap();
        assert!(shed);
        assert!(first.shed().is_cancelled(), "the oldest goes first");
        assert!(!third.shed().is_cancelled() && !fourth.shed().is_cancelled());
        let (_sixth, _) = g.admit_socket(ip(6), now).unwrap();
        assert!(third.shed().is_cancelled());
        assert!(!fourth.shed().is_cancelled());
        drop(first);
        assert_eq!(
            g.state.lock().per_ip[&ip(1)].sockets,
            0,
            "a shed socket's address slot returns when it closes"
        );
    }

    #[test]
    fn handshake_rate_per_ip() {
        let g = gate(100, 100, 2.0, 3.0);
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mut permits = Vec::new();
        for _ in 0..3 {
            permits.push(g.admit(a, now).unwrap());
        }
        assert!(g.admit(a, now).is_err());
        assert!(
            g.admit("10.0.0.9".parse().unwrap(), now).is_ok(),
            "other addresses unaffected"
        );
        assert!(g.admit(a, now + Duration::from_millis(500)).is_ok());
    }
}
