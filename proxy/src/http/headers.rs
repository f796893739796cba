//! Header handling shared by the layers: hop-by-hop removal, Envoy header mutations, `x-request-id`.

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction as A;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use rand::RngExt;

use crate::config::HeaderOps;
use crate::config::formatter::HeaderTemplate;

pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those named by `Connection`.
/// `te: trailers` survives on requests.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, request: bool) {
    // Usually there are none: one pass over the few names present is far cheaper than
    // hashing six names to remove them.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if let Some(conn) = headers.get(header::CONNECTION) {
        let named: Vec<HeaderName> = conn
            .to_str()
            .unwrap_or("")
            .split(',')
            .filter_map(|n| HeaderName::try_from(n.trim()).ok())
            .filter(|n| !(request && *n == header::TE))
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    for name in [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ] {
        headers.remove(name);
    }
    let keep_te = request
        && headers.get_all(header::TE).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
        });
    headers.remove(header::TE);
    if keep_te {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Whether `name` is a hop-by-hop header (or `te`, which is one unless it says `trailers`).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::TE
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

/// Renders a value with `%COMMAND%` formatters, given the headers being mutated.
pub(crate) type Render<'a> = &'a dyn Fn(&HeaderTemplate, &HeaderMap) -> Option<HeaderValue>;

/// Applies one level of header mutations: removals, then additions. Values without
/// formatters are used as parsed; the others are rendered by `render` (empty = not added,
/// unless `keep_empty_value`).
pub(crate) fn apply_header_ops(ops: &HeaderOps, headers: &mut HeaderMap, render: Render<'_>) {
    for name in &ops.remove {
        headers.remove(name);
    }
    for add in &ops.add {
        let value = match add.value.as_static() {
            Some(v) => v.clone(),
            None => render(&add.value, headers).unwrap_or_else(|| HeaderValue::from_static("")),
        };
        if value.is_empty() && !add.keep_empty {
            continue;
        }
        match add.action {
            A::AppendIfExistsOrAdd => {
                headers.append(add.name.clone(), value);
            }
            A::AddIfAbsent => {
                if !headers.contains_key(&add.name) {
                    headers.insert(add.name.clone(), value);
                }
            }
            A::OverwriteIfExistsOrAdd => {
                headers.insert(add.name.clone(), value);
            }
            A::OverwriteIfExists => {
                if headers.contains_key(&add.name) {
                    headers.insert(add.name.clone(), value);
                }
            }
        }
    }
}

/// This host's name, for `%HOSTNAME%` (read once).
pub(crate) fn hostname() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "-".to_string())
    })
}

/// A random UUID v4 for `x-request-id` (this runs per request: formatted on the stack).
pub(crate) fn request_id() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(rand::rng().random()).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let s = id.hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-custom"),
        );
        h.insert("x-custom", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::TE, HeaderValue::from_static("gzip, trailers"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h[header::TE], "trailers");
        assert_eq!(h["x-keep"], "yes");
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed() {
        // One at a time: the scan that skips the work when none is present must know them all.
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
            "te",
        ] {
            for request in [true, false] {
                let mut h = HeaderMap::new();
                h.insert(name, HeaderValue::from_static("gzip"));
                h.insert("x-keep", HeaderValue::from_static("yes"));
                strip_hop_by_hop(&mut h, request);
                assert_eq!(h.len(), 1, "{name} (request: {request}): {h:?}");
            }
        }
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        let before = h.clone();
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h, before);
    }

    #[test]
    fn te_without_trailers_is_dropped() {
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut h, true);
        assert!(h.is_empty());
    }

    #[test]
    fn request_id_is_uuid_v4() {
        let id = request_id();
        let s = id.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        for _ in 0..200 {
            let id = request_id();
            let s = id.to_str().unwrap();
            for (i, c) in s.chars().enumerate() {
                if matches!(i, 8 | 13 | 18 | 23) {
                    assert_eq!(c, '-', "{s}");
                } else {
                    assert!(c.is_ascii_hexdigit() && !c.is_ascii_uppercase(), "{s}");
                }
            }
            assert_eq!(&s[14..15], "4", "{s}");
            assert!(
                matches!(&s[19..20], "8" | "9" | "a" | "b"),
                "RFC 4122 variant: {s}"
            );
        }
    }

    #[test]
    fn header_ops_follow_append_actions() {
        use crate::config::HeaderAdd;
        let add = |name: &'static str, value: &'static str, action| HeaderAdd {
            name: HeaderName::from_static(name),
            value: HeaderTemplate::literal(HeaderValue::from_static(value)),
            action,
            keep_empty: false,
        };
        let ops = HeaderOps {
            add: vec![
                add("a", "2", A::AppendIfExistsOrAdd),
                add("b", "2", A::AddIfAbsent),
                add("c", "2", A::OverwriteIfExistsOrAdd),
                add("d", "2", A::OverwriteIfExists),
                add("e", "", A::OverwriteIfExistsOrAdd),
            ],
            remove: vec![HeaderName::from_static("r")],
        };
        let mut h = HeaderMap::new();
        for n in ["a", "b", "c", "r"] {
            h.insert(n, HeaderValue::from_static("1"));
        }
        apply_header_ops(&ops, &mut h, &|_, _| None);
        assert_eq!(h.get_all("a").iter().count(), 2);
        assert_eq!(h["b"], "1");
        assert_eq!(h["c"], "2");
        assert!(!h.contains_key("d"));
        assert!(!h.contains_key("e"));
        assert!(!h.contains_key("r"));
    }
}

#[cfg(test)]
mod render_tests {
    use super::*;
    use crate::config::HeaderAdd;

    #[test]
    fn formatter_values_are_rendered_and_empty_ones_skipped() {
        let ops = HeaderOps {
            add: vec![
                HeaderAdd {
                    name: HeaderName::from_static("x-client"),
                    value: HeaderTemplate::parse("ip=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%")
                        .unwrap(),
                    action: A::OverwriteIfExistsOrAdd,
                    keep_empty: false,
                },
                HeaderAdd {
                    name: HeaderName::from_static("x-empty"),
                    value: HeaderTemplate::parse("%REQ(x-missing)%").unwrap(),
                    action: A::OverwriteIfExistsOrAdd,
                    keep_empty: false,
                },
            ],
            remove: Vec::new(),
        };
        let mut h = HeaderMap::new();
        let render = |t: &HeaderTemplate, headers: &HeaderMap| {
            t.render(&crate::config::formatter::FormatContext {
                downstream_remote: "10.1.2.3:5555".parse().unwrap(),
                downstream_local: "10.1.2.4:15001".parse().unwrap(),
                protocol: http::Version::HTTP_11,
                request_method: None,
                request_uri: None,
                request_headers: headers,
                response_headers: None,
                upstream: None,
                start_time: std::time::SystemTime::now(),
                hostname: hostname(),
            })
        };
        apply_header_ops(&ops, &mut h, &render);
        assert_eq!(h["x-client"], "ip=10.1.2.3");
        assert!(!h.contains_key("x-empty"));
    }
}
