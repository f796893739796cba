//! `Duration`: a non-negative duration written the way Istio accepts it (Go syntax: `1.5s`, `100ms`, `1m30s`).
//!
//! This is the workspace's one Go-style duration parser: Istio fields use [`Duration`], flags and
//! environment variables [`parse_std`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration. Parsed from Go-style strings (`"1.5s"`, `"100ms"`, `"1m30s"`, `"2h"`,
/// `"10us"`); serialized as seconds with a fraction, e.g. `"1.5s"` or `"90s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct ParseDurationError {
    /// The rejected text.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Duration {
    /// From a number of milliseconds.
    pub fn from_millis(ms: u64) -> Duration {
        Duration(std::time::Duration::from_millis(ms))
    }

    /// From a number of seconds.
    pub fn from_secs(s: u64) -> Duration {
        Duration(std::time::Duration::from_secs(s))
    }

    /// The standard-library duration.
    pub fn as_std(&self) -> std::time::Duration {
        self.0
    }

    /// Parses a Go-style duration: a sequence of decimal numbers, each with an optional fraction
    /// and a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`). A bare `0` is accepted; negative
    /// durations are not.
    pub fn parse(s: &str) -> Result<Duration, ParseDurationError> {
        let err = |reason: &str| ParseDurationError {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let mut rest = s;
        if let Some(r) = rest.strip_prefix('+') {
            rest = r;
        } else if rest.starts_with('-') {
            return Err(err("negative durations are not allowed"));
        }
        if rest.is_empty() {
            return Err(err(
                "empty duration; expected a number with a unit, e.g. \"1.5s\" or \"100ms\"",
            ));
        }
        if rest == "0" {
            return Ok(Duration::default());
        }
        let mut total: u128 = 0; // nanoseconds
        while !rest.is_empty() {
            // Integer part.
            let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let int_part = &rest[..int_len];
            rest = &rest[int_len..];
            let mut frac_part = "";
            if let Some(r) = rest.strip_prefix('.') {
                let frac_len = r.bytes().take_while(u8::is_ascii_digit).count();
                frac_part = &r[..frac_len];
                rest = &r[frac_len..];
            }
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(err("expected a number, e.g. \"1.5s\""));
            }
            let unit_len = rest
                .char_indices()
                .find(|(_, c)| c.is_ascii_digit() || *c == '.')
                .map(|(i, _)| i)
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let scale: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60 * 1_000_000_000,
                "h" => 3600 * 1_000_000_000,
                "" => {
                    return Err(err(
                        "missing unit; use one of ns, us, ms, s, m, h (e.g. \"5s\")",
                    ));
                }
                _ => {
                    return Err(ParseDurationError {
                        input: s.to_string(),
                        reason: format!("unknown unit {unit:?}; use one of ns, us, ms, s, m, h"),
                    });
                }
            };
            let too_large = || err("duration is too large");
            let int: u128 = if int_part.is_empty() {
                0
            } else {
                int_part.parse::<u128>().map_err(|_| too_large())?
            };
            let mut value = int.checked_mul(scale).ok_or_else(too_large)?;
            // Fraction: scale each digit down; digits beyond nanosecond precision are dropped.
            let mut frac_scale = scale;
            for d in frac_part.bytes() {
                frac_scale /= 10;
                if frac_scale == 0 {
                    break;
                }
                value = value
                    .checked_add(u128::from(d - b'0') * frac_scale)
                    .ok_or_else(too_large)?;
            }
            total = total.checked_add(value).ok_or_else(too_large)?;
            if total > u128::from(u64::MAX) * 1_000_000_000 {
                return Err(too_large());
            }
        }
        let secs =
            u64::try_from(total / 1_000_000_000).map_err(|_| err("duration is too large"))?;
        let nanos =
            u32::try_from(total % 1_000_000_000).map_err(|_| err("duration is too large"))?;
        Ok(Duration(std::time::Duration::new(secs, nanos)))
    }
}

/// Parses a Go-style duration into a standard-library one: the workspace's one duration parser
/// for flags and environment variables as well as Istio fields. Usable directly as a clap
/// `value_parser` (`value_parser = weft_api::duration::parse_std`).
pub fn parse_std(s: &str) -> Result<std::time::Duration, ParseDurationError> {
    Duration::parse(s).map(|d| d.0)
}

impl FromStr for Duration {
    type Err = ParseDurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Duration::parse(s)
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let nanos = self.0.subsec_nanos();
        if nanos == 0 {
            write!(f, "{secs}s")
        } else {
            let frac = format!("{nanos:09}");
            write!(f, "{secs}.{}s", frac.trim_end_matches('0'))
        }
    }
}

/// The schema of a duration field: a string, with Istio's CEL rule that it is at least 1 ms
/// (as Istio's CRDs give every `google.protobuf.Duration` unless the proto opts out; those
/// fields use [`AnyDuration`]'s schema).
impl schemars::JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let (rule, message) = crate::crd::DURATION_RULE;
        schemars::json_schema!({
            "type": "string",
            "x-kubernetes-validations": [{"rule": rule, "message": message}],
        })
    }
}

/// The schema of the durations Istio's protos exempt from the 1 ms floor
/// (`+protoc-gen-crd:duration-validation:none`: a TCP idle timeout, a cookie's TTL, where
/// zero means something). Use it as `#[schemars(with = "Option<AnyDuration>")]` on a
/// [`Duration`] field.
pub struct AnyDuration;

impl schemars::JsonSchema for AnyDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AnyDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string"})
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"1.5s\", \"100ms\" or \"1m30s\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> std::time::Duration {
        Duration::parse(s).unwrap().0
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(d("1.5s"), std::time::Duration::from_millis(1500));
        assert_eq!(d("100ms"), std::time::Duration::from_millis(100));
        assert_eq!(d("1m30s"), std::time::Duration::from_secs(90));
        assert_eq!(d("2h"), std::time::Duration::from_secs(7200));
        assert_eq!(d("0.5s"), std::time::Duration::from_millis(500));
        assert_eq!(d("10us"), std::time::Duration::from_micros(10));
        assert_eq!(d("10µs"), std::time::Duration::from_micros(10));
        assert_eq!(d("7ns"), std::time::Duration::from_nanos(7));
        assert_eq!(d(".5s"), std::time::Duration::from_millis(500));
        assert_eq!(d("1h2m3.004s"), std::time::Duration::from_millis(3_723_004));
        assert_eq!(d("0"), std::time::Duration::ZERO);
        assert_eq!(d("+3s"), std::time::Duration::from_secs(3));
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in ["", "5", "-1s", "1x", "s", "1.s.", "1s5", "..5s", "1 s", "-"] {
            let e = Duration::parse(bad);
            assert!(e.is_err(), "{bad:?} should be rejected");
        }
        let msg = Duration::parse("5").unwrap_err().to_string();
        assert!(msg.contains("missing unit"), "{msg}");
        let msg = Duration::parse("1x").unwrap_err().to_string();
        assert!(msg.contains("unknown unit \"x\""), "{msg}");
        let msg = Duration::parse("-1s").unwrap_err().to_string();
        assert!(msg.contains("negative"), "{msg}");
        let msg = Duration::parse("").unwrap_err().to_string();
        assert!(msg.contains("empty"), "{msg}");
        assert!(Duration::parse("99999999999999999999999h").is_err());
    }

    #[test]
    fn parse_std_is_the_same_parser() {
        assert_eq!(parse_std("1m30s"), Ok(std::time::Duration::from_secs(90)));
        assert_eq!(
            parse_std("250ms"),
            Ok(std::time::Duration::from_millis(250))
        );
        let e = parse_std("250").unwrap_err();
        assert!(e.to_string().contains("missing unit"), "{e}");
        let boxed: Box<dyn std::error::Error + Send + Sync> = e.into();
        assert!(boxed.to_string().starts_with("invalid duration \"250\""));
    }

    #[test]
    fn displays_as_seconds() {
        assert_eq!(Duration::parse("1.5s").unwrap().to_string(), "1.5s");
        assert_eq!(Duration::parse("100ms").unwrap().to_string(), "0.1s");
        assert_eq!(Duration::parse("1m30s").unwrap().to_string(), "90s");
        assert_eq!(Duration::parse("10us").unwrap().to_string(), "0.00001s");
        for s in ["1.5s", "100ms", "1m30s", "2h", "7ns", "0"] {
            let v = Duration::parse(s).unwrap();
            assert_eq!(Duration::parse(&v.to_string()).unwrap(), v);
        }
    }

    #[test]
    fn serde_string_only() {
        let v: Duration = serde_yaml::from_str("\"1.5s\"").unwrap();
        assert_eq!(v, Duration::from_millis(1500));
        assert_eq!(serde_yaml::to_string(&v).unwrap().trim(), "1.5s");
        assert!(serde_yaml::from_str::<Duration>("5").is_err());
    }
}
