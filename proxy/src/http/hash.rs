//! The consistent-hash key of a request (the route's `hash_policy`), and the cookie a policy
//! with a TTL generates when the request has none.
//!
//! ```text
//!  hash_policy[] ─► header value │ cookie │ source IP │ query parameter ─► xxHash64
//!     keys combined as Envoy does (rotate left 1, xor); a terminal policy that gave a key ends it
//!  cookie policy with ttl, cookie missing ─► value = hex(xxHash64(client address)) ─► hashed,
//!     and `Set-Cookie: name=value; Max-Age=ttl; Path=path; HttpOnly` on the response
//! ```

use std::net::SocketAddr;

use http::{HeaderValue, Request};
use weft_lb::hash::key_hash;

use crate::config::hash_policy::{HashKey, HashPolicy};

/// A request's hash key, and the cookie to set on its response when one was generated.
#[derive(Debug, Default)]
pub(super) struct RequestHash {
    pub key: Option<u64>,
    pub set_cookie: Option<HeaderValue>,
}

/// Computes the key of `req` under `policies`; `None` when no policy finds its value.
pub(super) fn request_hash<B>(
    policies: &[HashPolicy],
    req: &Request<B>,
    client: SocketAddr,
) -> RequestHash {
    let mut out = RequestHash::default();
    for policy in policies {
        let value = match &policy.key {
            HashKey::Header(name) => {
                super::router::header_value(req.headers(), name).map(|v| key_hash(v.as_bytes()))
            }
            HashKey::SourceIp => Some(key_hash(client.ip().to_string().as_bytes())),
            HashKey::QueryParameter(name) => req.uri().query().and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| key_hash(v.as_bytes()))
            }),
            HashKey::Cookie {
                name,
                ttl,
                path,
                attributes,
            } => match crate::authn::cookie(req.headers(), name) {
                Some(value) => Some(key_hash(value.as_bytes())),
                None => ttl.map(|ttl| {
                    let value = format!("{:016x}", key_hash(client.to_string().as_bytes()));
                    out.set_cookie = set_cookie(name, &value, ttl, path.as_deref(), attributes);
                    key_hash(value.as_bytes())
                }),
            },
        };
        if let Some(value) = value {
            out.key = Some(match out.key {
                Some(previous) => previous.rotate_left(1) ^ value,
                None => value,
            });
            if policy.terminal {
                break;
            }
        }
    }
    out
}

fn set_cookie(
    name: &str,
    value: &str,
    ttl: std::time::Duration,
    path: Option<&str>,
    attributes: &[(String, Option<String>)],
) -> Option<HeaderValue> {
    let mut cookie = format!("{name}={value}");
    // Envoy: a zero TTL makes a session cookie.
    if !ttl.is_zero() {
        cookie.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if let Some(path) = path {
        cookie.push_str(&format!("; Path={path}"));
    }
    // As Envoy writes them: after the path, before HttpOnly.
    for (name, value) in attributes {
        match value {
            Some(value) => cookie.push_str(&format!("; {name}={value}")),
            None => cookie.push_str(&format!("; {name}")),
        }
    }
    cookie.push_str("; HttpOnly");
    HeaderValue::try_from(cookie).ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn policy(key: HashKey, terminal: bool) -> HashPolicy {
        HashPolicy { key, terminal }
    }

    fn client() -> SocketAddr {
        "10.0.0.7:40000".parse().unwrap()
    }

    #[test]
    fn the_same_value_gives_the_same_key() {
        let policies = [policy(HashKey::Header("x-user".parse().unwrap()), false)];
        let req = |user: &str| Request::get("/").header("x-user", user).body(()).unwrap();
        let a = request_hash(&policies, &req("jason"), client()).key;
        assert_eq!(a, request_hash(&policies, &req("jason"), client()).key);
        assert_ne!(a, request_hash(&policies, &req("alice"), client()).key);
        let none = Request::get("/").body(()).unwrap();
        assert_eq!(request_hash(&policies, &none, client()).key, None);
    }

    #[test]
    fn keys_combine_until_a_terminal_one() {
        let header = policy(HashKey::Header("x-user".parse().unwrap()), true);
        let query = policy(HashKey::QueryParameter("id".into()), false);
        let req = Request::get("/?id=7")
            .header("x-user", "j")
            .body(())
            .unwrap();
        let terminal_first = request_hash(&[header.clone(), query.clone()], &req, client()).key;
        let header_only = request_hash(std::slice::from_ref(&header), &req, client()).key;
        assert_eq!(terminal_first, header_only);
        let both = request_hash(&[query, header], &req, client()).key;
        assert_ne!(both, header_only);
    }

    #[test]
    fn a_missing_cookie_is_generated_with_its_ttl() {
        let policies = [policy(
            HashKey::Cookie {
                name: "user".into(),
                ttl: Some(Duration::from_secs(60)),
                path: Some("/".into()),
                attributes: vec![
                    ("SameSite".into(), Some("Strict".into())),
                    ("Secure".into(), None),
                ],
            },
            false,
        )];
        let bare = Request::get("/").body(()).unwrap();
        let generated = request_hash(&policies, &bare, client());
        let set = generated.set_cookie.expect("a Set-Cookie");
        let set = set.to_str().unwrap();
        assert!(set.starts_with("user="), "{set}");
        assert!(
            set.ends_with("; Max-Age=60; Path=/; SameSite=Strict; Secure; HttpOnly"),
            "{set}"
        );
        // The client sends it back: the same key.
        let value = set.split(';').next().unwrap();
        let back = Request::get("/").header("cookie", value).body(()).unwrap();
        let again = request_hash(&policies, &back, "10.9.9.9:1".parse().unwrap());
        assert_eq!(again.key, generated.key);
        assert!(again.set_cookie.is_none());
    }
}
