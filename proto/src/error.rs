//! Every way a session can end ([`CloseReason`]), each mapped to exactly one close
//! code and reason string, and the error codes of in-band `Error` messages.
//!
//! `docs/PROTOCOL.md` lists the same table for client authors.

pub use crate::v1::ErrorCode;

/// Why the server closes a session. Each variant maps to one close code (RFC 6455 for
/// transport-level causes, 4000–4999 for application causes).
///
/// Application codes 4000–4499 mean "do not reconnect automatically"; 4500–4999 mean
/// "reconnecting makes sense" (after backoff, possibly with a fresh token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// 1000: the client asked to close, or the session ended normally.
    Normal,
    /// 1001: the server is shutting down.
    ShuttingDown,
    /// 1002: the peer broke the transport's framing (WebSocket frames, or the QUIC
    /// control stream's length prefixes).
    ProtocolError,
    /// 1003: a text frame; tickrelay speaks binary protobuf only.
    TextFrame,
    /// 1007: a binary message that is not a valid `ClientEnvelope`.
    Undecodable,
    /// 1008: the client kept sending over its rate limit.
    RateLimited,
    /// 1009: an inbound message over the size limit.
    MessageTooBig,
    /// 1011: an internal server error.
    InternalError,
    /// 1013: try again later (cluster mode: the session a resume names is live on
    /// another node).
    TryAgainLater,
    /// 4000: the token was refused at the upgrade (WebSocket, to a client that offered
    /// the `tickrelay.v1` subprotocol) or in a QUIC `Hello`.
    AuthFailed,
    /// 4001: the request's `Origin` is not on the allowlist (at the upgrade, to a
    /// client that offered the `tickrelay.v1` subprotocol). A forbidden request within
    /// a session is answered with `Error{FORBIDDEN}` instead, and the session goes on.
    Forbidden,
    /// 4002: another connection took this one's place: the session's resume (a
    /// reconnect, another process with its resume token), or a newer session of the
    /// same user (`duplicate_sessions = "replace"`).
    Replaced,
    /// 4003: the client speaks an unsupported protocol version.
    UnsupportedVersion,
    /// 4500: the token expired and was not refreshed in time.
    TokenExpired,
    /// 4501: the client did not read its messages fast enough.
    SlowConsumer,
    /// 4502: the client did not answer heartbeats.
    HeartbeatTimeout,
    /// 4503: the server is at capacity.
    ServerFull,
    /// 4504: the resume token is unknown or its grace period ended.
    ResumeFailed,
}

impl CloseReason {
    /// The close code sent to the peer.
    pub fn code(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::ShuttingDown => 1001,
            Self::ProtocolError => 1002,
            Self::TextFrame => 1003,
            Self::Undecodable => 1007,
            Self::RateLimited => 1008,
            Self::MessageTooBig => 1009,
            Self::InternalError => 1011,
            Self::TryAgainLater => 1013,
            Self::AuthFailed => 4000,
            Self::Forbidden => 4001,
            Self::Replaced => 4002,
            Self::UnsupportedVersion => 4003,
            Self::TokenExpired => 4500,
            Self::SlowConsumer => 4501,
            Self::HeartbeatTimeout => 4502,
            Self::ServerFull => 4503,
            Self::ResumeFailed => 4504,
        }
    }

    /// The reason string sent with the close (at most 123 bytes, as RFC 6455 allows).
    pub fn reason(self) -> &'static str {
        match self {
            Self::Normal => "normal closure",
            Self::ShuttingDown => "server shutting down",
            Self::ProtocolError => "protocol error: malformed framing",
            Self::TextFrame => "text frames are not supported; send binary protobuf",
            Self::Undecodable => "message is not a valid tickrelay.v1.ClientEnvelope",
            Self::RateLimited => "rate limit exceeded repeatedly",
            Self::MessageTooBig => "message exceeds the size limit",
            Self::InternalError => "internal server error",
            Self::TryAgainLater => "try again later: the session is live on another node",
            Self::AuthFailed => "authentication failed",
            Self::Forbidden => "forbidden",
            Self::Replaced => {
                "replaced by another connection: this session resumed there, or a newer session of the same user"
            }
            Self::UnsupportedVersion => "unsupported protocol version",
            Self::TokenExpired => "token expired",
            Self::SlowConsumer => "slow consumer: fell too far behind",
            Self::HeartbeatTimeout => "heartbeat timeout",
            Self::ServerFull => "server at capacity",
            Self::ResumeFailed => "resume token unknown or expired",
        }
    }

    /// Whether a client should reconnect (with backoff) after this close.
    pub fn should_reconnect(self) -> bool {
        reconnect_allowed(self.code())
    }

    /// Every variant, for documentation and tests.
    pub const ALL: [CloseReason; 18] = [
        Self::Normal,
        Self::ShuttingDown,
        Self::ProtocolError,
        Self::TextFrame,
        Self::Undecodable,
        Self::RateLimited,
        Self::MessageTooBig,
        Self::InternalError,
        Self::TryAgainLater,
        Self::AuthFailed,
        Self::Forbidden,
        Self::Replaced,
        Self::UnsupportedVersion,
        Self::TokenExpired,
        Self::SlowConsumer,
        Self::HeartbeatTimeout,
        Self::ServerFull,
        Self::ResumeFailed,
    ];
}

/// `reason` cut to what a close frame carries (123 bytes, RFC 6455), at a character
/// boundary.
pub fn fit_close_reason(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// The client-side rule for any close code, including ones this version does not know
/// (1015: a failed TLS handshake, which the next attempt may get past).
pub fn reconnect_allowed(code: u16) -> bool {
    matches!(code, 1001 | 1006 | 1011..=1015 | 4500..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_reasons_fit_a_close_frame() {
        let mut codes: Vec<u16> = CloseReason::ALL.iter().map(|r| r.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), CloseReason::ALL.len());
        for r in CloseReason::ALL {
            assert!(r.reason().len() <= 123, "{r:?}");
        }
    }

    #[test]
    fn close_reasons_are_cut_at_a_character_boundary() {
        assert_eq!(fit_close_reason("short"), "short");
        let long = "é".repeat(100); // 200 bytes
        let fitted = fit_close_reason(&long);
        assert_eq!(fitted.len(), 122);
        assert!(long.starts_with(fitted));
    }

    #[test]
    fn reconnect_ranges() {
        assert!(CloseReason::ShuttingDown.should_reconnect());
        assert!(CloseReason::SlowConsumer.should_reconnect());
        assert!(!CloseReason::Replaced.should_reconnect());
        assert!(!CloseReason::RateLimited.should_reconnect());
        assert!(!CloseReason::Undecodable.should_reconnect());
        // RFC 6455's codes, as PROTOCOL.md lists them.
        let after: Vec<u16> = (1000..=1015).filter(|&c| reconnect_allowed(c)).collect();
        assert_eq!(after, [1001, 1006, 1011, 1012, 1013, 1014, 1015]);
        assert!(reconnect_allowed(4500) && reconnect_allowed(4999) && !reconnect_allowed(4499));
    }
}
