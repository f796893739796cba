//! A route's `hash_policy` (DestinationRule `loadBalancer.consistentHash`'s key) → `HashPolicy`:
//! what a request is hashed on when its cluster balances by consistent hashing.
//!
//! ```text
//!  header { header_name } │ cookie { name, ttl, path, attributes } │ connection_properties { source_ip }
//!  │ query_parameter { name }   (+ terminal)
//! ```

use std::time::Duration;

use envoy_types::pb::envoy::config::route::v3::route_action::HashPolicy as EnvoyHashPolicy;
use envoy_types::pb::envoy::config::route::v3::route_action::hash_policy as hp;
use http::HeaderName;

use super::{Reason, duration, invalid};

/// One key a request may be hashed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    Header(HeaderName),
    /// A cookie; with `ttl`, a missing one is generated (and set on the response, with
    /// `path` and `attributes`).
    Cookie {
        name: String,
        ttl: Option<Duration>,
        path: Option<String>,
        /// `(name, value)`: `; name=value` on the generated cookie, `; name` without a value.
        attributes: Vec<(String, Option<String>)>,
    },
    SourceIp,
    QueryParameter(String),
}

/// A route's hash policies, in order; Envoy combines the keys a request has, and stops after
/// a `terminal` one that gave a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashPolicy {
    pub key: HashKey,
    pub terminal: bool,
}

/// Converts one `hash_policy` entry.
pub(crate) fn hash_policy(p: EnvoyHashPolicy, at: &str) -> Result<HashPolicy, Reason> {
    use hp::PolicySpecifier as S;
    let key = match p.policy_specifier {
        Some(S::Header(h)) => {
            if h.regex_rewrite.is_some() {
                return Err(Reason::Unsupported(format!("{at}.header.regex_rewrite")));
            }
            HashKey::Header(
                HeaderName::try_from(h.header_name.as_str())
                    .map_err(|e| invalid(format!("{at}.header.header_name"), e.to_string()))?,
            )
        }
        Some(S::Cookie(c)) => {
            if c.name.is_empty() {
                return Err(invalid(format!("{at}.cookie.name"), "is required"));
            }
            let mut attributes = Vec::with_capacity(c.attributes.len());
            for (i, a) in c.attributes.into_iter().enumerate() {
                let field = |f: &str| format!("{at}.cookie.attributes[{i}].{f}");
                if a.name.is_empty() {
                    return Err(invalid(field("name"), "is required"));
                }
                // Envoy's check (HTTP_HEADER_VALUE, not strict): what a header can carry.
                for (f, text) in [("name", &a.name), ("value", &a.value)] {
                    if http::HeaderValue::from_str(text).is_err() {
                        return Err(invalid(
                            field(f),
                            format!("{text:?} has a character a header cannot carry"),
                        ));
                    }
                }
                attributes.push((a.name, Some(a.value).filter(|v| !v.is_empty())));
            }
            let ttl = duration("cookie.ttl", c.ttl.as_ref()).map_err(|r| r.within(at))?;
            HashKey::Cookie {
                name: c.name,
                ttl,
                path: Some(c.path).filter(|p| !p.is_empty()),
                attributes,
            }
        }
        Some(S::ConnectionProperties(c)) if c.source_ip => HashKey::SourceIp,
        Some(S::ConnectionProperties(_)) => {
            return Err(invalid(
                format!("{at}.connection_properties.source_ip"),
                "must be true",
            ));
        }
        Some(S::QueryParameter(q)) => {
            if q.name.is_empty() {
                return Err(invalid(format!("{at}.query_parameter.name"), "is required"));
            }
            HashKey::QueryParameter(q.name)
        }
        Some(S::FilterState(_)) => return Err(Reason::Unsupported(format!("{at}.filter_state"))),
        None => return Err(invalid(at.to_string(), "needs a policy")),
    };
    Ok(HashPolicy {
        key,
        terminal: p.terminal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_istio_key() {
        let header = EnvoyHashPolicy {
            policy_specifier: Some(hp::PolicySpecifier::Header(hp::Header {
                header_name: "x-user".into(),
                regex_rewrite: None,
            })),
            terminal: false,
        };
        assert_eq!(
            hash_policy(header, "hash_policy[0]").unwrap().key,
            HashKey::Header(HeaderName::from_static("x-user"))
        );
        let cookie = EnvoyHashPolicy {
            policy_specifier: Some(hp::PolicySpecifier::Cookie(hp::Cookie {
                name: "user".into(),
                ttl: Some(envoy_types::pb::google::protobuf::Duration {
                    seconds: 60,
                    nanos: 0,
                }),
                path: "/".into(),
                attributes: vec![
                    hp::CookieAttribute {
                        name: "SameSite".into(),
                        value: "Strict".into(),
                    },
                    hp::CookieAttribute {
                        name: "Secure".into(),
                        value: String::new(),
                    },
                ],
            })),
            terminal: true,
        };
        let p = hash_policy(cookie.clone(), "hash_policy[0]").unwrap();
        assert!(p.terminal);
        assert_eq!(
            p.key,
            HashKey::Cookie {
                name: "user".into(),
                ttl: Some(Duration::from_secs(60)),
                path: Some("/".into()),
                attributes: vec![
                    ("SameSite".into(), Some("Strict".into())),
                    ("Secure".into(), None)
                ],
            }
        );
        for (attribute, field) in [
            (hp::CookieAttribute::default(), "attributes[0].name"),
            (
                hp::CookieAttribute {
                    name: "SameSite".into(),
                    value: "Strict\r\nX: y".into(),
                },
                "attributes[0].value",
            ),
        ] {
            let mut bad = cookie.clone();
            if let Some(hp::PolicySpecifier::Cookie(c)) = &mut bad.policy_specifier {
                c.attributes = vec![attribute];
            }
            let error = hash_policy(bad, "hash_policy[0]").unwrap_err().to_string();
            assert!(
                error.contains(&format!("hash_policy[0].cookie.{field}")),
                "{error}"
            );
        }
        let ip = EnvoyHashPolicy {
            policy_specifier: Some(hp::PolicySpecifier::ConnectionProperties(
                hp::ConnectionProperties { source_ip: true },
            )),
            terminal: false,
        };
        assert_eq!(hash_policy(ip, "h").unwrap().key, HashKey::SourceIp);
        let bad = EnvoyHashPolicy {
            policy_specifier: Some(hp::PolicySpecifier::Header(hp::Header {
                header_name: "bad header".into(),
                regex_rewrite: None,
            })),
            terminal: false,
        };
        assert!(
            hash_policy(bad, "hash_policy[2]")
                .unwrap_err()
                .to_string()
                .contains("hash_policy[2].header.header_name")
        );
    }
}
