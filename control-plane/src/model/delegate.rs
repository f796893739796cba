//! VirtualService delegation (`http[].delegate`), as Istio's `mergeVirtualServicesIfNeeded`: a
//! root's route that names a delegate is replaced by the delegate's HTTP routes, each match the
//! root route's AND the delegate's. Controller only: the proxy sees ordinary routes.
//!
//! ```text
//!  root http[i] { match M1…, delegate {name, namespace (default: the root's)} }
//!    delegate found ─► for each delegate http[j]: matches = {m1 ∧ d | m1 ∈ M1, d ∈ D, no conflict}
//!                      (D empty: M1; M1 empty: D); unset fields (rewrite, timeout, retries, fault,
//!                      mirror(s), corsPolicy, headers) from the root route; hosts resolved in the
//!                      delegate's namespace. A delegate route none of whose matches fits the root's
//!                      is left out (warned).
//!    delegate missing ─► the route is left out, warned at spec.http[i].delegate
//! ```

use std::collections::BTreeMap;

use weft_api::host::resolve_short_name;
use weft_api::networking::{HttpMatchRequest, HttpRoute, StringMatch, VirtualService};

use super::VirtualServiceEntry;
use crate::object::Warning;

/// Merges the delegates into the roots that name them; delegates stay as they are (without
/// hosts, they route nothing by themselves).
pub(super) fn merge(entries: &mut [VirtualServiceEntry], domain: &str) -> Vec<Warning> {
    let delegates: BTreeMap<(String, String), VirtualService> = entries
        .iter()
        .map(|e| ((e.namespace.clone(), e.key.name.clone()), e.spec.clone()))
        .collect();
    let mut warnings = Vec::new();
    for entry in entries.iter_mut() {
        if entry.hosts.is_empty() || entry.spec.http.iter().all(|h| h.delegate.is_none()) {
            continue;
        }
        let mut merged = Vec::with_capacity(entry.spec.http.len());
        for (index, root) in entry.spec.http.iter().enumerate() {
            let Some(delegate) = &root.delegate else {
                merged.push(root.clone());
                continue;
            };
            let path = format!("spec.http[{index}].delegate");
            let namespace = delegate
                .namespace
                .clone()
                .filter(|ns| !ns.is_empty())
                .unwrap_or_else(|| entry.namespace.clone());
            let Some(spec) = delegates.get(&(namespace.clone(), delegate.name.clone())) else {
                warnings.push(Warning::new(
                    &entry.key,
                    path,
                    format!(
                        "delegate VirtualService {namespace}/{} not found; the route is left out",
                        delegate.name
                    ),
                ));
                continue;
            };
            for (j, leaf) in spec.http.iter().enumerate() {
                if leaf.delegate.is_some() {
                    warnings.push(Warning::new(
                        &entry.key,
                        &path,
                        format!(
                            "{namespace}/{}: http[{j}] delegates again; left out",
                            delegate.name
                        ),
                    ));
                    continue;
                }
                match merge_route(root, resolved(leaf, &namespace, domain)) {
                    Some(route) => merged.push(route),
                    None => warnings.push(Warning::new(
                        &entry.key,
                        &path,
                        format!(
                            "{namespace}/{}: http[{j}]'s matches conflict with the root route's; left out",
                            delegate.name
                        ),
                    )),
                }
            }
        }
        entry.spec.http = merged;
    }
    warnings
}

/// A delegate's route with its destination hosts resolved in the delegate's namespace.
fn resolved(leaf: &HttpRoute, namespace: &str, domain: &str) -> HttpRoute {
    let mut out = leaf.clone();
    let resolve = |host: &mut String| *host = resolve_short_name(host, namespace, domain);
    for destination in &mut out.route {
        resolve(&mut destination.destination.host);
    }
    if let Some(mirror) = &mut out.mirror {
        resolve(&mut mirror.host);
    }
    for mirror in &mut out.mirrors {
        resolve(&mut mirror.destination.host);
    }
    out
}

/// Istio's `mergeHTTPRoute`: `None` when the matches conflict.
fn merge_route(root: &HttpRoute, mut leaf: HttpRoute) -> Option<HttpRoute> {
    leaf.r#match = merge_matches(&root.r#match, &leaf.r#match)?;
    leaf.name = match (&root.name, leaf.name.take()) {
        (Some(r), Some(l)) if !r.is_empty() => Some(format!("{r}-{l}")),
        (r, None) => r.clone(),
        (_, l) => l,
    };
    macro_rules! inherit {
        ($($field:ident),+) => {$(
            if leaf.$field.is_none() {
                leaf.$field = root.$field.clone();
            }
        )+};
    }
    inherit!(
        rewrite,
        timeout,
        retries,
        fault,
        mirror,
        mirror_percentage,
        cors_policy,
        headers
    );
    if leaf.mirrors.is_empty() {
        leaf.mirrors = root.mirrors.clone();
    }
    // `mirrorPercent` and `mirror_percent` are one proto field under two names.
    if leaf.mirror_percent_value().is_none() {
        leaf.mirror_percent = root.mirror_percent;
        leaf.mirror_percent_snake = root.mirror_percent_snake;
    }
    Some(leaf)
}

/// Istio's `mergeHTTPMatchRequests`: every delegate match must fit some root match.
fn merge_matches(
    root: &[HttpMatchRequest],
    leaf: &[HttpMatchRequest],
) -> Option<Vec<HttpMatchRequest>> {
    if root.is_empty() {
        return Some(leaf.to_vec());
    }
    if leaf.is_empty() {
        return Some(root.to_vec());
    }
    let mut out = Vec::new();
    for sub in leaf {
        let before = out.len();
        for top in root.iter().filter(|top| !conflict(top, sub)) {
            out.push(merge_match(top, sub));
        }
        if out.len() == before {
            return None;
        }
    }
    Some(out)
}

/// Istio's `mergeHTTPMatchRequest`: the delegate's conditions, the root's where it has none.
fn merge_match(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> HttpMatchRequest {
    let mut out = leaf.clone();
    out.name = match (&root.name, out.name.take()) {
        (Some(r), Some(l)) if !r.is_empty() => Some(format!("{r}-{l}")),
        (r, None) => r.clone(),
        (_, l) => l,
    };
    for (mine, theirs) in [
        (&mut out.uri, &root.uri),
        (&mut out.scheme, &root.scheme),
        (&mut out.method, &root.method),
        (&mut out.authority, &root.authority),
    ] {
        if mine.is_none() {
            mine.clone_from(theirs);
        }
    }
    for (mine, theirs) in [
        (&mut out.headers, &root.headers),
        (&mut out.query_params, &root.query_params),
        (&mut out.without_headers, &root.without_headers),
    ] {
        for (key, value) in theirs {
            mine.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    for (key, value) in &root.source_labels {
        out.source_labels
            .entry(key.clone())
            .or_insert_with(|| value.clone());
    }
    if out.port.is_none() {
        out.port = root.port;
    }
    if out.gateways.is_empty() {
        out.gateways.clone_from(&root.gateways);
    }
    if out.source_namespace.is_none() {
        out.source_namespace.clone_from(&root.source_namespace);
    }
    if out.stat_prefix.is_none() {
        out.stat_prefix.clone_from(&root.stat_prefix);
    }
    out
}

/// Istio's `hasConflict`: the delegate's match cannot narrow the root's.
fn conflict(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> bool {
    let pairs = [
        (&root.uri, &leaf.uri),
        (&root.scheme, &leaf.scheme),
        (&root.method, &leaf.method),
        (&root.authority, &leaf.authority),
    ];
    if pairs
        .iter()
        .any(|(r, l)| string_conflict(r.as_ref(), l.as_ref()))
    {
        return true;
    }
    let keyed = [
        (&root.headers, &leaf.headers),
        (&root.without_headers, &leaf.without_headers),
        (&root.query_params, &leaf.query_params),
    ];
    if keyed.iter().any(|(r, l)| {
        l.iter()
            .any(|(key, value)| string_conflict(r.get(key), Some(value)))
    }) {
        return true;
    }
    if root.ignore_uri_case != leaf.ignore_uri_case {
        return true;
    }
    if let (Some(r), Some(l)) = (root.port, leaf.port)
        && r != 0
        && l != 0
        && r != l
    {
        return true;
    }
    if let Some(ns) = root.source_namespace.as_deref().filter(|ns| !ns.is_empty())
        && leaf.source_namespace.as_deref() != Some(ns)
    {
        return true;
    }
    if leaf
        .source_labels
        .iter()
        .any(|(k, v)| root.source_labels.get(k).is_some_and(|r| r != v))
    {
        return true;
    }
    !root.gateways.is_empty()
        && !leaf.gateways.is_empty()
        && leaf.gateways.iter().any(|g| !root.gateways.contains(g))
}

/// Istio's `stringMatchConflict`.
fn string_conflict(root: Option<&StringMatch>, leaf: Option<&StringMatch>) -> bool {
    let (Some(root), Some(leaf)) = (root, leaf) else {
        return false;
    };
    match (root, leaf) {
        (StringMatch::Present, _) | (_, StringMatch::Present) => false,
        (StringMatch::Regex(_), _) | (_, StringMatch::Regex(_)) => true,
        (StringMatch::Exact(r), StringMatch::Exact(l)) => r != l,
        (StringMatch::Exact(_), StringMatch::Prefix(_)) => true,
        (StringMatch::Prefix(r), StringMatch::Prefix(l) | StringMatch::Exact(l)) => {
            !l.starts_with(r.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(yaml: &str) -> Vec<HttpMatchRequest> {
        serde_yaml::from_str(yaml).expect("matches")
    }

    #[test]
    fn matches_combine_and_conflicts_are_found() {
        let root = matches("[{uri: {prefix: /productpage}, headers: {end-user: {exact: jason}}}]");
        let merged = merge_matches(&root, &matches("[{uri: {prefix: /productpage/v1}}]")).unwrap();
        assert_eq!(merged.len(), 1);
        assert_eq!(
            merged[0].uri,
            Some(StringMatch::Prefix("/productpage/v1".into()))
        );
        assert_eq!(
            merged[0].headers["end-user"],
            StringMatch::Exact("jason".into())
        );
        // Outside the root's prefix: a conflict.
        assert!(merge_matches(&root, &matches("[{uri: {prefix: /reviews}}]")).is_none());
        assert!(merge_matches(&root, &matches("[{uri: {regex: /p.*}}]")).is_none());
        // Either side empty: the other's.
        assert_eq!(merge_matches(&[], &root).unwrap(), root);
        assert_eq!(merge_matches(&root, &[]).unwrap(), root);
    }

    const DELEGATION: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: api
    match: [{uri: {prefix: /api}}]
    timeout: 3s
    delegate: {name: reviews-api, namespace: team}
  - name: gone
    match: [{uri: {prefix: /old}}]
    delegate: {name: nowhere}
  - route: [{destination: {host: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-api, namespace: team}
spec:
  http:
  - name: v2
    match: [{uri: {prefix: /api/v2}}]
    route: [{destination: {host: reviews.default.svc.cluster.local}}]
  - name: outside
    match: [{uri: {prefix: /other}}]
    route: [{destination: {host: reviews.default.svc.cluster.local}}]
  - name: rest
    route: [{destination: {host: details}}]
"#;

    #[test]
    fn a_delegates_routes_replace_the_root_route_with_merged_matches() {
        let model = crate::testing::model_from_yaml(DELEGATION);
        let vs = model
            .virtual_service("reviews.default.svc.cluster.local")
            .expect("the root routes reviews");
        let names: Vec<&str> = vs
            .spec
            .http
            .iter()
            .filter_map(|h| h.name.as_deref())
            .collect();
        assert_eq!(names, ["api-v2", "api-rest"]);
        let v2 = &vs.spec.http[0];
        assert_eq!(
            v2.r#match[0].uri,
            Some(StringMatch::Prefix("/api/v2".into()))
        );
        assert_eq!(
            v2.timeout.map(|t| t.0),
            Some(std::time::Duration::from_secs(3)),
            "inherited from the root"
        );
        let rest = &vs.spec.http[1];
        assert_eq!(
            rest.r#match[0].uri,
            Some(StringMatch::Prefix("/api".into()))
        );
        assert_eq!(
            rest.route[0].destination.host, "details.team.svc.cluster.local",
            "short names resolve in the delegate's namespace"
        );
        assert_eq!(
            vs.spec.http.len(),
            3,
            "the missing delegate's route is left out"
        );
        let warnings: Vec<String> = model.warnings.iter().map(ToString::to_string).collect();
        for expected in [
            "spec.http[1].delegate: delegate VirtualService default/nowhere not found",
            "spec.http[0].delegate: team/reviews-api: http[1]'s matches conflict",
        ] {
            assert!(
                warnings.iter().any(|w| w.contains(expected)),
                "missing {expected:?} in {warnings:#?}"
            );
        }
    }
}
