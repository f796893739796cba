//! Envoy's response flags (`%RESPONSE_FLAGS%`, Istio's `response_flags` metric label): what
//! happened to one request besides its status, as a set printed in Envoy's order.
//!
//! ```text
//!  local reply (error.rs: ProxyError::flags) ─┐
//!  proxied response (http/policy.rs: DI, URX) ─┴─► response extensions: ResponseFlags
//!                                                   (absent = none) ─► access log, metrics
//!  local replies also say them in `x-weft-response-flags` (tests and curl see them)
//!  failures after the response head (upstream/body.rs) ─► logged with their flags
//! ```

use std::fmt;

/// A set of Envoy response flags.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ResponseFlags(u32);

macro_rules! flags {
    ($($name:ident = $bit:literal, $code:literal, $doc:literal;)+) => {
        impl ResponseFlags {
            $(
                #[doc = concat!("`", $code, "`: ", $doc)]
                pub const $name: Self = Self(1 << $bit);
            )+
        }

        /// Every flag with its code, in the order Envoy prints them.
        const TABLE: &[(ResponseFlags, &str)] = &[$((ResponseFlags::$name, $code)),+];
    };
}

flags! {
    NO_HEALTHY_UPSTREAM = 0, "UH", "no healthy upstream endpoint (503).";
    UPSTREAM_REQUEST_TIMEOUT = 1, "UT", "the route timeout expired (504).";
    UPSTREAM_REMOTE_RESET = 2, "UR", "the upstream reset the stream.";
    UPSTREAM_CONNECTION_FAILURE = 3, "UF", "the upstream connection failed (503).";
    UPSTREAM_CONNECTION_TERMINATION = 4, "UC", "the upstream connection closed mid-exchange.";
    UPSTREAM_OVERFLOW = 5, "UO", "a circuit breaker was full (503).";
    NO_ROUTE_FOUND = 6, "NR", "no route matched (404).";
    DELAY_INJECTED = 7, "DI", "fault injection delayed the request.";
    FAULT_INJECTED = 8, "FI", "fault injection aborted the request.";
    RATE_LIMITED = 9, "RL", "a local rate limit refused the request (429).";
    DOWNSTREAM_CONNECTION_TERMINATION = 10, "DC", "the downstream connection went away.";
    UPSTREAM_RETRY_LIMIT_EXCEEDED = 11, "URX", "retriable, but no retry was left.";
    STREAM_IDLE_TIMEOUT = 12, "SI", "nothing moved for the stream idle timeout.";
    DOWNSTREAM_PROTOCOL_ERROR = 13, "DPE", "the downstream broke the protocol.";
    UPSTREAM_PROTOCOL_ERROR = 14, "UPE", "the upstream broke the protocol.";
    NO_CLUSTER_FOUND = 15, "NC", "the route's cluster is not configured.";
    RBAC_DENIED = 16, "RBAC", "an RBAC policy denied the request (403).";
}

impl ResponseFlags {
    /// No flag.
    pub const NONE: Self = Self(0);

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets.
    #[must_use]
    pub fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Adds `other`'s flags.
    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }

    /// The flag of one Envoy code (`"UO"`), if Weft knows it.
    pub fn from_code(code: &str) -> Option<Self> {
        TABLE
            .iter()
            .find(|(_, c)| *c == code)
            .map(|(flag, _)| *flag)
    }

    /// The codes of the flags set, in Envoy's order.
    pub fn codes(self) -> impl Iterator<Item = &'static str> {
        TABLE
            .iter()
            .filter(move |(flag, _)| self.contains(*flag))
            .map(|(_, code)| *code)
    }
}

impl std::ops::BitOr for ResponseFlags {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        self.with(other)
    }
}

/// Envoy's format: the codes joined by commas (`UF,URX`); empty for none (an access log
/// writes `-` then).
impl fmt::Display for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, code) in self.codes().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(code)?;
        }
        Ok(())
    }
}

impl fmt::Debug for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResponseFlags({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_in_envoys_order_and_reads_codes_back() {
        let flags = ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED
            | ResponseFlags::UPSTREAM_CONNECTION_FAILURE
            | ResponseFlags::DELAY_INJECTED;
        assert_eq!(flags.to_string(), "UF,DI,URX");
        assert_eq!(ResponseFlags::NONE.to_string(), "");
        assert!(flags.contains(ResponseFlags::DELAY_INJECTED));
        assert!(!flags.contains(ResponseFlags::FAULT_INJECTED));
        for (flag, code) in TABLE {
            assert_eq!(ResponseFlags::from_code(code), Some(*flag));
            assert_eq!(flag.to_string(), *code);
        }
        let bits: Vec<u32> = TABLE.iter().map(|(f, _)| f.0).collect();
        let mut unique = bits.clone();
        unique.dedup();
        assert_eq!(bits, unique, "one bit per flag");
        assert_eq!(ResponseFlags::from_code("XX"), None);
    }
}
