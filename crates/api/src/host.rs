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

/// `host` lowercased, without a trailing dot: the form [`host_matches`] compares.
fn normalise(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// [`host_matches`] on normalised names, without allocating.
fn covers(pattern: &str, host: &str) -> bool {
    match (pattern.strip_prefix('*'), host.strip_prefix('*')) {
        (Some(suffix), Some(h)) => h.ends_with(suffix),
        (Some(suffix), None) => host.ends_with(suffix) && host.len() > suffix.len(),
        (None, _) => !host.starts_with('*') && pattern == host,
    }
}

/// The suffixes of `name` that start at a dot, longest first, then `""`: the suffixes a
/// wildcard `*<suffix>` covering `name` can have.
fn dot_suffixes(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('.')
        .map(|(at, _)| &name[at..])
        .chain(std::iter::once(""))
}

/// For every host that overlaps an earlier one: `(its index, the index of the first earlier
/// host it overlaps)`, in order (what VirtualService validation reports).
///
/// Close to linear in the number of hosts: every name is normalised once and earlier hosts
/// are found through hash maps keyed by dot-suffixes (`*.b.c` covers `a.b.c` because
/// `.b.c` is one of its suffixes). Only partial wildcards (`*foo.com`, which Istio accepts
/// with a warning) are compared one by one. Comparing every pair was quadratic: 7,500
/// hosts took seconds.
pub fn overlapping_hosts(hosts: &[String]) -> Vec<(usize, usize)> {
    use std::collections::HashMap;
    let norm: Vec<String> = hosts.iter().map(|h| normalise(h)).collect();
    // First index of each earlier concrete name, and of each of their dot-suffixes.
    let mut concrete: HashMap<&str, usize> = HashMap::new();
    let mut concrete_suffixes: HashMap<&str, usize> = HashMap::new();
    // Earlier wildcards `*S` (S empty or starting with a dot): by S, and by S's dot-suffixes.
    let mut wild: HashMap<&str, usize> = HashMap::new();
    let mut wild_suffixes: HashMap<&str, usize> = HashMap::new();
    // Earlier partial wildcards, in order.
    let mut partial: Vec<usize> = Vec::new();
    let mut out = Vec::new();
    for (j, host) in norm.iter().enumerate() {
        let mut first: Option<usize> = None;
        let mut found = |i: Option<&usize>| {
            if let Some(&i) = i {
                first = Some(first.map_or(i, |f| f.min(i)));
            }
        };
        let standard = match host.strip_prefix('*') {
            None => Some(None),
            Some(s) if s.is_empty() || s.starts_with('.') => Some(Some(s)),
            Some(_) => None,
        };
        match standard {
            // A concrete name: the same name, or a wildcard over one of its suffixes.
            Some(None) => {
                found(concrete.get(host.as_str()));
                for suffix in dot_suffixes(host) {
                    found(wild.get(suffix));
                }
            }
            // `*S`: a wildcard over S or a suffix of it, a narrower wildcard or a concrete
            // name under S.
            Some(Some(s)) => {
                for suffix in dot_suffixes(s) {
                    found(wild.get(suffix));
                }
                found(wild_suffixes.get(s));
                found(concrete_suffixes.get(s));
            }
            // A partial wildcard: compared with every earlier host.
            None => found((0..j).find(|&i| overlap(&norm[i], host)).as_ref()),
        }
        // Earlier partial wildcards (a partial `host` compared with them above already).
        if standard.is_some()
            && let Some(&i) = partial.iter().find(|&&i| overlap(&norm[i], host))
        {
            found(Some(&i));
        }
        if let Some(i) = first {
            out.push((j, i));
        }
        match standard {
            Some(None) => {
                concrete.entry(host).or_insert(j);
                for suffix in dot_suffixes(host) {
                    concrete_suffixes.entry(suffix).or_insert(j);
                }
            }
            Some(Some(s)) => {
                wild.entry(s).or_insert(j);
                for suffix in dot_suffixes(s) {
                    wild_suffixes.entry(suffix).or_insert(j);
                }
            }
            None => partial.push(j),
        }
    }
    out
}

fn overlap(a: &str, b: &str) -> bool {
    covers(a, b) || covers(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pairwise definition `overlapping_hosts` must agree with.
    fn pairwise(hosts: &[String]) -> Vec<(usize, usize)> {
        (1..hosts.len())
            .filter_map(|j| {
                (0..j)
                    .find(|&i| hosts_overlap(&hosts[i], &hosts[j]))
                    .map(|i| (j, i))
            })
            .collect()
    }

    #[test]
    fn overlapping_hosts_agrees_with_the_pairwise_check() {
        let names = [
            "a.b.c", "*.b.c", "x.a.b.c", "*.a.b.c", "*", "b.c", "*.c", "A.B.C.", "*foo.b.c",
            "xfoo.b.c", "foo.b.c", "10.0.0.1", "*.d", "e.d", "*oo.b.c", "q.r",
        ];
        let hosts: Vec<String> = names.iter().map(ToString::to_string).collect();
        // Every rotation, and the reverse of each: the first earlier match must be the same.
        for start in 0..hosts.len() {
            let mut rotated = hosts.clone();
            rotated.rotate_left(start);
            assert_eq!(
                overlapping_hosts(&rotated),
                pairwise(&rotated),
                "{rotated:?}"
            );
            rotated.reverse();
            assert_eq!(
                overlapping_hosts(&rotated),
                pairwise(&rotated),
                "{rotated:?}"
            );
            // Without `*`, which overlaps everything.
            rotated.retain(|h| h != "*");
            assert_eq!(
                overlapping_hosts(&rotated),
                pairwise(&rotated),
                "{rotated:?}"
            );
        }
    }

    #[test]
    fn many_distinct_hosts_are_cheap() {
        // 20,000 names: pairwise this is 200 million comparisons; here one pass.
        let hosts: Vec<String> = (0..20_000).map(|i| format!("h{i}.example.io")).collect();
        assert!(overlapping_hosts(&hosts).is_empty());
        let mut with_wildcard = hosts.clone();
        with_wildcard.push("*.example.io".to_string());
        assert_eq!(overlapping_hosts(&with_wildcard), vec![(20_000, 0)]);
    }

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
