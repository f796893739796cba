//! The newer VirtualService route features end to end through the proxy's converters: mirrors,
//! CORS (route policy and the connection manager's filter), `uriRegexRewrite`, per-destination
//! authorities and `statPrefix` must arrive whole in the proxy's domain config.

use envoy_types::pb::envoy::config::listener::v3 as lds;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use weft_proxy::config::{Action, ClusterPick, ForwardAction, Listener, Network, RouteConfig};

use super::check::Generated;
use super::fixtures::config_from;

/// Every new route field, on a service with two versions and a mirror target.
const ROUTES_EXTRA: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.81, labels: {version: v1}}
  - {address: 127.0.0.82, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shadow, namespace: default}
spec:
  hosts: [shadow.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.83}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop, namespace: default}
spec:
  host: shop.example.internal
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example.internal]
  http:
  - name: mirrored
    match: [{uri: {prefix: /mirror}, statPrefix: shop-mirror}]
    route: [{destination: {host: shop.example.internal, subset: v1}}]
    mirrors:
    - {destination: {host: shop.example.internal, subset: v2}, percentage: {value: 50}}
    - {destination: {host: shadow.example.internal, port: {number: 8080}}}
  - name: single-mirror
    match: [{uri: {prefix: /single}}]
    route: [{destination: {host: shop.example.internal}}]
    mirror: {host: shadow.example.internal}
    mirrorPercentage: {value: 12.5}
  - name: legacy-mirror
    match: [{uri: {prefix: /legacy}}]
    route: [{destination: {host: shop.example.internal}}]
    mirror: {host: shadow.example.internal}
    mirrorPercent: 30
  - name: cors
    match: [{uri: {prefix: /cors}}]
    route: [{destination: {host: shop.example.internal}}]
    corsPolicy:
      allowOrigins: [{exact: "https://a.example"}, {prefix: "https://b."}, {regex: "https://.*\\.c\\.example"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-a, x-b]
      exposeHeaders: [x-c]
      maxAge: 1h
      allowCredentials: true
      unmatchedPreflights: IGNORE
  - name: regex
    match: [{uri: {prefix: /service}}]
    rewrite: {uriRegexRewrite: {match: "^/service/([^/]+)(/.*)$", rewrite: "\\2/instance/\\1"}}
    route: [{destination: {host: shop.example.internal}}]
  - name: split
    route:
    - destination: {host: shop.example.internal, subset: v1}
      weight: 80
      headers: {request: {set: {host: v1.shop.internal, x-version: v1}}}
    - destination: {host: shop.example.internal, subset: v2}
      weight: 20
      headers: {request: {add: {host: v2.shop.internal}}}
"#;

fn generated() -> Generated {
    Generated::for_client(
        "routes-extra.yaml",
        config_from(&[("routes-extra.yaml", ROUTES_EXTRA)]),
        &[],
        true,
    )
}

fn outbound(generated: &Generated) -> RouteConfig {
    generated
        .proxy_routes()
        .remove("outbound")
        .expect("the outbound routes")
}

fn forward<'a>(rc: &'a RouteConfig, route: &str) -> &'a ForwardAction {
    let vh = rc
        .virtual_hosts
        .iter()
        .find(|v| v.name == "shop.example.internal:80")
        .expect("the shop's virtual host");
    let r = vh
        .routes
        .iter()
        .find(|r| r.name == route)
        .unwrap_or_else(|| panic!("no route {route}"));
    match &r.action {
        Action::Forward(f) => f,
        other => panic!("{route}: not a forward action: {other:?}"),
    }
}

#[test]
fn mirrors_reach_the_proxy_with_their_shares() {
    let rc = outbound(&generated());
    let mirrors: Vec<(&str, u32, bool)> = forward(&rc, "mirrored")
        .mirrors
        .iter()
        .map(|m| (m.cluster.name.as_str(), m.per_million, m.shadow_suffix))
        .collect();
    assert_eq!(
        mirrors,
        [
            ("outbound|80|v2|shop.example.internal", 500_000, true),
            ("outbound|8080||shadow.example.internal", 1_000_000, true),
        ]
    );
    // `mirror` and `mirrors` exclude each other (Istio's validateHTTPRouteConflict).
    let single = &forward(&rc, "single-mirror").mirrors;
    assert_eq!(
        (single[0].cluster.name.as_str(), single[0].per_million),
        ("outbound|8080||shadow.example.internal", 125_000)
    );
    let legacy = &forward(&rc, "legacy-mirror").mirrors;
    assert_eq!(legacy[0].per_million, 300_000, "mirrorPercent: 30");
    // Mirror clusters have their slots, resolved with the routes' clusters.
    assert!(
        rc.cluster_slots
            .iter()
            .any(|c| c == "outbound|8080||shadow.example.internal")
    );
}

#[test]
fn cors_reaches_the_proxy_and_the_filter_is_on_the_outbound_listener() {
    let generated = generated();
    let rc = outbound(&generated);
    let cors = forward(&rc, "cors").cors.as_ref().expect("a CORS policy");
    assert_eq!(cors.allow_origins.len(), 3);
    assert!(cors.allow_origins[2].matches("https://x.c.example"));
    assert_eq!(cors.allow_methods.as_ref().expect("methods"), "GET,POST");
    assert_eq!(cors.allow_headers.as_ref().expect("headers"), "x-a,x-b");
    assert_eq!(cors.expose_headers.as_ref().expect("expose"), "x-c");
    assert_eq!(cors.max_age.as_ref().expect("max age"), "3600");
    assert!(cors.allow_credentials);
    assert!(!cors.forward_not_matching_preflights, "IGNORE");
    assert!(forward(&rc, "regex").cors.is_none());

    let outbound_listener = generated
        .listeners
        .iter()
        .find(|l| l.name == "virtualOutbound")
        .expect("the outbound listener");
    let listener: lds::Listener =
        prost::Message::decode(outbound_listener.body.value.as_slice()).expect("listener");
    let listener = Listener::try_from(listener).expect("the proxy accepts the listener");
    let Network::Http(manager) = &listener.chains[0].network else {
        panic!("an HTTP chain");
    };
    assert!(manager.cors_filter, "the CORS filter runs outbound");
}

#[test]
fn regex_rewrites_authorities_and_stat_prefixes_reach_the_proxy() {
    let generated = generated();
    let rc = outbound(&generated);
    let rewrite = forward(&rc, "regex")
        .regex_rewrite
        .as_ref()
        .expect("a regex rewrite");
    assert_eq!(rewrite.apply("/service/foo/v1/api"), "/v1/api/instance/foo");

    let split = forward(&rc, "split");
    let ClusterPick::Weighted { clusters, .. } = &split.clusters else {
        panic!("a weighted split");
    };
    let authorities: Vec<Option<&str>> = clusters
        .iter()
        .map(|c| c.host_rewrite.as_ref().and_then(|h| h.to_str().ok()))
        .collect();
    assert_eq!(
        authorities,
        [Some("v1.shop.internal"), Some("v2.shop.internal")]
    );
    assert!(
        split.host_rewrite.is_none(),
        "per destination, not per route"
    );

    // statPrefix is sent (observability only) and accepted by the proxy.
    let resource = generated
        .routes
        .iter()
        .find(|r| r.name == "outbound")
        .expect("the outbound routes");
    let rc: RouteConfiguration =
        prost::Message::decode(resource.body.value.as_slice()).expect("route configuration");
    let mirrored = rc
        .virtual_hosts
        .iter()
        .flat_map(|v| &v.routes)
        .find(|r| r.name == "mirrored")
        .expect("the mirrored route");
    assert_eq!(mirrored.stat_prefix, "shop-mirror");
}
