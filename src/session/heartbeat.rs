//! Heartbeats, sans IO. After `interval` without any inbound traffic the session
//! sends a transport-level ping; if nothing at all arrives within `timeout` after
//! that, the peer is considered gone (close 4502). Any inbound traffic counts as
//! liveness, so a busy client is never pinged.

use std::time::{Duration, Instant};

/// What the driver must do when the heartbeat timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Nothing yet.
    Idle,
    /// Send a transport-level ping now.
    Ping,
    /// The peer did not answer in time: drop it.
    TimedOut,
}

/// The heartbeat state of one connection.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    interval: Duration,
    timeout: Duration,
    last_inbound: Instant,
    ping_sent: Option<Instant>,
}

impl Heartbeat {
    /// A heartbeat that considers the peer alive as of `now`.
    pub fn new(interval: Duration, timeout: Duration, now: Instant) -> Self {
        Self {
            interval,
            timeout,
            last_inbound: now,
            ping_sent: None,
        }
    }

    /// Records inbound traffic of any kind.
    pub fn on_inbound(&mut self, now: Instant) {
        self.last_inbound = now;
        self.ping_sent = None;
    }

    /// A ping was sent and nothing came since: the next inbound traffic may bring
    /// the deadline sooner (when the interval is shorter than the timeout).
    pub fn pinged(&self) -> bool {
        self.ping_sent.is_some()
    }

    /// When [`Heartbeat::poll`] has something to do next.
    pub fn deadline(&self) -> Instant {
        match self.ping_sent {
            Some(sent) => sent + self.timeout,
            None => self.last_inbound + self.interval,
        }
    }

    /// Advances the heartbeat to `now`.
    #[must_use]
    pub fn poll(&mut self, now: Instant) -> Beat {
        if now < self.deadline() {
            return Beat::Idle;
        }
        if self.ping_sent.is_some() {
            Beat::TimedOut
        } else {
            self.ping_sent = Some(now);
            Beat::Ping
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_silent_peer_is_pinged_then_dropped_on_time() {
        let t0 = Instant::now();
        let mut h = Heartbeat::new(30 * S, 5 * S, t0);
        assert_eq!(h.poll(t0 + 29 * S), Beat::Idle);
        assert_eq!(h.deadline(), t0 + 30 * S);
        assert_eq!(h.poll(t0 + 30 * S), Beat::Ping);
        assert_eq!(h.poll(t0 + 34 * S), Beat::Idle);
        assert_eq!(h.deadline(), t0 + 35 * S);
        assert_eq!(h.poll(t0 + 35 * S), Beat::TimedOut);
    }

    #[test]
    fn any_inbound_traffic_is_liveness() {
        let t0 = Instant::now();
        let mut h = Heartbeat::new(30 * S, 5 * S, t0);
        assert_eq!(h.poll(t0 + 30 * S), Beat::Ping);
        h.on_inbound(t0 + 32 * S); // the pong, or any message
        assert_eq!(h.poll(t0 + 40 * S), Beat::Idle);
        assert_eq!(h.deadline(), t0 + 62 * S);
        // A client sending inputs every tick is never pinged.
        for i in 0..3000 {
            h.on_inbound(t0 + 40 * S + Duration::from_millis(i * 33));
            assert_eq!(h.poll(t0 + 40 * S + Duration::from_millis(i * 33)), Beat::Idle);
        }
    }
}
