//! Host-name helpers: Istio short-name resolution and wildcard host matching.

/// Istio short-name resolution: `reviews` in namespace `default` with domain `cluster.local`
/// becomes `reviews.default.svc.cluster.local`. Names that already contain a dot, `*` and `*.x`
/// wildcards, and empty names are returned unchanged.
pub fn resolve_short_name(host: &str, namespace: &str, domain: &str) -> String {
    if host.is_empty() || host.contains('.') || host.starts_with('*') {
        return host.to_string();
    }
    let domain = domain.trim_matches('.');
    if domain.is_empty() {
        format!("{host}.{namespace}.svc")
    } else {
        format!("{host}.{namespace}.svc.{domain}")
    }
}

/// True if `host` is a wildcard (`*` or `*.example.com`).
pub fn is_wildcard(host: &str) -> bool {
    host.starts_with('*')
}

/// True if `pattern` (possibly `*` or `*.example.com`) matches `host`, which may itself be
/// concrete or a wildcard: every name `host` can stand for is covered by `pattern`
/// (Istio's `host.Name.SubsetOf`). Comparison ignores ASCII case and a trailing dot.
///
/// `*` matches everything; `*.example.com` matches `a.example.com`, `a.b.example.com` and
/// `*.a.example.com` but not `example.com`; a concrete pattern matches only the same name.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern
        .strip_suffix('.')
        .unwrap_or(pattern)
        .to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if let Some(suffix) = pattern.strip_prefix('*') {
        if let Some(h) = host.strip_prefix('*') {
            // A wildcard host is covered only by a wildcard at least as wide.
            h.ends_with(suffix)
        } else {
            host.ends_with(suffix) && host.len() > suffix.len()
        }
    } else {
        !host.starts_with('*') && pattern == host
    }
}

/// True if the two hosts can name at least one common name (either covers the other).
pub fn hosts_overlap(a: &str, b: &str) -> bool {
    host_matches(a, b) || host_matches(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names() {
        assert_eq!(
            resolve_short_name("reviews", "default", "cluster.local"),
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(
            resolve_short_name("reviews.other", "default", "cluster.local"),
            "reviews.other"
        );
        assert_eq!(resolve_short_name("*", "default", "cluster.local"), "*");
        assert_eq!(resolve_short_name("*.x", "default", "cluster.local"), "*.x");
        assert_eq!(resolve_short_name("", "default", "cluster.local"), "");
    }

    #[test]
    fn matching() {
        assert!(host_matches("*", "anything.com"));
        assert!(host_matches("*", "*.foo.com"));
        assert!(host_matches("*", "*"));
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(host_matches("*.example.com", "a.b.example.com"));
        assert!(host_matches("*.example.com", "*.a.example.com"));
        assert!(host_matches("*.example.com", "*.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "*.com"));
        assert!(!host_matches("*.example.com", "a.example.org"));
        assert!(host_matches("a.example.com", "A.Example.com."));
        assert!(!host_matches("a.example.com", "*.example.com"));
        assert!(!host_matches("a.example.com", "b.example.com"));
        assert!(hosts_overlap("*.com", "*.foo.com"));
        assert!(!hosts_overlap("a.com", "b.com"));
    }
}
