//! Unit tests of the cluster generator.

use super::*;
use crate::testing::{SERVICES, bookinfo_model, model_from_yaml};
use envoy_types::pb::google::protobuf::Duration as ProtoDuration;
use prost::Message;
use weft_api::networking::SimpleLb;

const REVIEWS: &str = "reviews.default.svc.cluster.local";

fn find<'a>(all: &'a [Cluster], name: &str) -> &'a Cluster {
    all.iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

fn upstream(cluster: &Cluster) -> http_protocol_options::UpstreamProtocolOptions {
    let any = cluster
        .typed_extension_protocol_options
        .get(HTTP_PROTOCOL_OPTIONS)
        .expect("protocol options");
    assert!(
        any.type_url
            .ends_with("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
    );
    HttpProtocolOptions::decode(any.value.as_slice())
        .expect("decodes")
        .upstream_protocol_options
        .expect("upstream options")
}

#[test]
fn one_cluster_per_port_and_subset() {
    let model = bookinfo_model();
    let all = clusters(&model, &Proxy::sidecar("default"));
    let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
    for expected in [
        format!("outbound|9080||{REVIEWS}"),
        format!("outbound|9080|v1|{REVIEWS}"),
        format!("outbound|9080|v2|{REVIEWS}"),
        format!("outbound|9080|v3|{REVIEWS}"),
        "outbound|9080||ratings.default.svc.cluster.local".to_string(),
        "outbound|80||productpage.default.svc.cluster.local".to_string(),
        "outbound|3306||productpage.default.svc.cluster.local".to_string(),
        "outbound|50051||grpc.example.com".to_string(),
    ] {
        assert!(
            names.contains(&expected.as_str()),
            "missing {expected} in {names:?}"
        );
    }
    assert!(!names.iter().any(|n| n.starts_with("inbound")));
    let cluster = find(&all, &format!("outbound|9080|v1|{REVIEWS}"));
    assert_eq!(
        cluster.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32
        ))
    );
    let eds = cluster.eds_cluster_config.as_ref().expect("eds config");
    assert_eq!(eds.service_name, cluster.name);
    assert!(eds.eds_config.is_some());
}

#[test]
fn lb_policy_and_connect_timeout_from_rule_and_subset() {
    let model = bookinfo_model();
    let all = clusters(&model, &Proxy::sidecar("default"));
    let whole = find(&all, &format!("outbound|9080||{REVIEWS}"));
    assert_eq!(whole.lb_policy, cluster::LbPolicy::Random as i32);
    assert_eq!(
        whole.connect_timeout,
        Some(ProtoDuration {
            seconds: 3,
            nanos: 0
        })
    );
    let v2 = find(&all, &format!("outbound|9080|v2|{REVIEWS}"));
    assert_eq!(v2.lb_policy, cluster::LbPolicy::RoundRobin as i32);
    assert_eq!(
        v2.connect_timeout,
        Some(ProtoDuration {
            seconds: 3,
            nanos: 0
        })
    );
    // No rule: Istio's defaults.
    let ratings = find(&all, "outbound|9080||ratings.default.svc.cluster.local");
    assert_eq!(ratings.lb_policy, cluster::LbPolicy::LeastRequest as i32);
    assert_eq!(
        ratings.connect_timeout,
        Some(ProtoDuration {
            seconds: 10,
            nanos: 0
        })
    );
}

#[test]
fn lb_mapping() {
    assert_eq!(
        lb_policy(SimpleLb::LeastConn),
        cluster::LbPolicy::LeastRequest
    );
    assert_eq!(
        lb_policy(SimpleLb::LeastRequest),
        cluster::LbPolicy::LeastRequest
    );
    assert_eq!(
        lb_policy(SimpleLb::Unspecified),
        cluster::LbPolicy::LeastRequest
    );
    assert_eq!(
        lb_policy(SimpleLb::Passthrough),
        cluster::LbPolicy::LeastRequest
    );
    assert_eq!(lb_policy(SimpleLb::Random), cluster::LbPolicy::Random);
    assert_eq!(
        lb_policy(SimpleLb::RoundRobin),
        cluster::LbPolicy::RoundRobin
    );
}

#[test]
fn port_level_settings_override() {
    let model = model_from_yaml(&format!(
        "{SERVICES}\n---\n{}",
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: productpage, namespace: default}
spec:
  host: productpage.default.svc.cluster.local
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    portLevelSettings:
    - port: {number: 80}
      loadBalancer: {simple: RANDOM}
      connectionPool: {tcp: {connectTimeout: 250ms}}
"#
    ));
    let all = clusters(&model, &Proxy::sidecar("default"));
    let web = find(&all, "outbound|80||productpage.default.svc.cluster.local");
    assert_eq!(web.lb_policy, cluster::LbPolicy::Random as i32);
    assert_eq!(
        web.connect_timeout,
        Some(ProtoDuration {
            seconds: 0,
            nanos: 250_000_000
        })
    );
    let app = find(&all, "outbound|9080||productpage.default.svc.cluster.local");
    assert_eq!(app.lb_policy, cluster::LbPolicy::RoundRobin as i32);
}

#[test]
fn upstream_protocol_follows_the_port() {
    let model = bookinfo_model();
    let all = clusters(&model, &Proxy::sidecar("default"));
    assert!(matches!(
        upstream(find(&all, "outbound|50051||grpc.example.com")),
        http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(_)
    ));
    assert!(matches!(
        upstream(find(&all, &format!("outbound|9080||{REVIEWS}"))),
        http_protocol_options::UpstreamProtocolOptions::UseDownstreamProtocolConfig(_)
    ));
}

#[test]
fn inbound_cluster_is_static_to_the_app() {
    let model = bookinfo_model();
    let mut proxy = Proxy::sidecar("default");
    proxy.app_port = Some(8080);
    let all = clusters(&model, &proxy);
    let inbound = find(&all, "inbound|8080||");
    assert_eq!(
        inbound.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32
        ))
    );
    let assignment = inbound.load_assignment.as_ref().expect("load assignment");
    let endpoint = &assignment.endpoints[0].lb_endpoints[0];
    let Some(lb_endpoint::HostIdentifier::Endpoint(endpoint)) = &endpoint.host_identifier else {
        panic!("endpoint expected");
    };
    assert_eq!(endpoint.address, Some(socket("127.0.0.1", 8080)));
}

// DNS clusters (ServiceEntry `resolution: DNS` / `DNS_ROUND_ROBIN`).

const DNS_SERVICES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: default}
spec:
  hosts: [api.example.com]
  ports:
  - {number: 443, name: http-api, protocol: HTTP, targetPort: 8443}
  - {number: 80, name: http, protocol: HTTP}
  resolution: DNS
  endpoints:
  - {address: a.example.com, weight: 3, labels: {version: v1}}
  - {address: 10.0.0.7, ports: {http: 8080}, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hosts, namespace: default}
spec:
  hosts: [httpbin.org, example.org]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 8000, name: http-alt, protocol: HTTP, targetPort: 9000}
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: round-robin, namespace: default}
spec:
  hosts: [rr.example.com]
  ports: [{number: 80, name: http, protocol: GRPC}]
  resolution: DNS_ROUND_ROBIN
  endpoints: [{address: lb.example.com, weight: 7}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: external, namespace: default}
spec:
  host: api.example.com
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v9, labels: {version: v9}}
"#;

fn dns_lb_endpoint(address: &str, port: u32, weight: u32) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(socket(address, port)),
            ..Default::default()
        })),
        load_balancing_weight: Some(envoy_types::pb::google::protobuf::UInt32Value {
            value: weight,
        }),
        ..Default::default()
    }
}

/// Auto mTLS to endpoints without known identities, as every outbound cluster without
/// DestinationRule TLS has it (its content is checked in `tls/upstream_tests.rs`).
fn auto_mtls(name: &str) -> Vec<cluster::TransportSocketMatch> {
    let [_, port, subset, host] = name.split('|').collect::<Vec<_>>()[..] else {
        panic!("not an outbound cluster name: {name}");
    };
    let port = port.parse().expect("port");
    vec![
        cluster::TransportSocketMatch {
            name: "tlsMode-istio".to_string(),
            r#match: Some(tls::tls_mode_istio()),
            transport_socket: Some(tls::upstream::istio_mutual(
                tls::upstream::istio_sni(port, subset, host),
                &[],
            )),
        },
        cluster::TransportSocketMatch {
            name: "tlsMode-disabled".to_string(),
            r#match: Some(Default::default()),
            transport_socket: Some(tls::upstream::plaintext()),
        },
    ]
}

/// Exactly the cluster the xDS contract describes for a DNS cluster.
#[allow(deprecated)] // `dns_refresh_rate`: see `dns_cluster_fields`.
fn expected_dns_cluster(
    name: &str,
    discovery_type: cluster::DiscoveryType,
    lb_policy: cluster::LbPolicy,
    http2: bool,
    refresh_seconds: i64,
    lb_endpoints: Vec<LbEndpoint>,
) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(discovery_type as i32)),
        connect_timeout: Some(ProtoDuration {
            seconds: 10,
            nanos: 0,
        }),
        lb_policy: lb_policy as i32,
        circuit_breakers: Some(crate::xds::clusters::ClusterPolicy::default().circuit_breakers()),
        typed_extension_protocol_options: protocol_options(http2),
        dns_lookup_family: cluster::DnsLookupFamily::V4Only as i32,
        dns_refresh_rate: Some(ProtoDuration {
            seconds: refresh_seconds,
            nanos: 0,
        }),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.to_string(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints,
                ..Default::default()
            }],
            ..Default::default()
        }),
        transport_socket_matches: auto_mtls(name),
        // Auto mTLS: Istio's metadata exchange with sidecars.
        filters: vec![crate::xds::metadata_exchange::cluster_filter()],
        metadata: Some(service_metadata(
            name.rsplit('|').next().unwrap_or_default(),
            "default",
        )),
        ..Default::default()
    }
}

/// Istio's `istio.services` metadata of a ServiceEntry host's cluster (its name is its host).
fn service_metadata(
    host: &str,
    namespace: &str,
) -> envoy_types::pb::envoy::config::core::v3::Metadata {
    use envoy_types::pb::google::protobuf::{ListValue, Struct, Value, value::Kind};
    let text = |s: &str| Value {
        kind: Some(Kind::StringValue(s.to_string())),
    };
    let service = Struct {
        fields: [("host", host), ("name", host), ("namespace", namespace)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), text(v)))
            .collect(),
    };
    let services = Value {
        kind: Some(Kind::ListValue(ListValue {
            values: vec![Value {
                kind: Some(Kind::StructValue(service)),
            }],
        })),
    };
    envoy_types::pb::envoy::config::core::v3::Metadata {
        filter_metadata: [(
            "istio".to_string(),
            Struct {
                fields: [("services".to_string(), services)].into_iter().collect(),
            },
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    }
}

#[test]
fn dns_resolution_is_a_strict_dns_cluster_with_inline_endpoints() {
    let model = model_from_yaml(DNS_SERVICES);
    let all = clusters(&model, &Proxy::sidecar("default"));
    let name = "outbound|443||api.example.com";
    let cluster = find(&all, name);
    assert_eq!(
        *cluster,
        expected_dns_cluster(
            name,
            cluster::DiscoveryType::StrictDns,
            cluster::LbPolicy::RoundRobin,
            false,
            60,
            vec![
                // The host name as written; targetPort; the entry's weight.
                dns_lb_endpoint("a.example.com", 8443, 3),
                // An IP is fine in a DNS cluster; the endpoint's port override wins.
                dns_lb_endpoint("10.0.0.7", 8443, 1),
            ],
        )
    );
    // Exact equality above: no `eds_cluster_config`, `respect_dns_ttl` unset, nothing else.
    assert!(cluster.eds_cluster_config.is_none());
    let http = find(&all, "outbound|80||api.example.com");
    let endpoints = &http.load_assignment.as_ref().expect("inline").endpoints[0];
    assert_eq!(
        endpoints.lb_endpoints,
        [
            dns_lb_endpoint("a.example.com", 80, 3),
            dns_lb_endpoint("10.0.0.7", 8080, 1)
        ]
    );
}

#[test]
fn dns_subsets_get_their_own_clusters_with_their_endpoints() {
    let model = model_from_yaml(DNS_SERVICES);
    let all = clusters(&model, &Proxy::sidecar("default"));
    let v1 = "outbound|443|v1|api.example.com";
    assert_eq!(
        *find(&all, v1),
        expected_dns_cluster(
            v1,
            cluster::DiscoveryType::StrictDns,
            cluster::LbPolicy::RoundRobin,
            false,
            60,
            vec![dns_lb_endpoint("a.example.com", 8443, 3)],
        )
    );
    let v2 = find(&all, "outbound|80|v2|api.example.com");
    assert_eq!(
        v2.load_assignment.as_ref().expect("inline").endpoints[0].lb_endpoints,
        [dns_lb_endpoint("10.0.0.7", 8080, 1)]
    );
    // A subset that selects nothing has no cluster (as Istio: routes to it get 503 NC).
    assert!(!all.iter().any(|c| c.name.contains("|v9|")));
}

#[test]
fn hosts_without_endpoints_are_their_own_endpoint() {
    let model = model_from_yaml(DNS_SERVICES);
    let all = clusters(&model, &Proxy::sidecar("default"));
    for host in ["httpbin.org", "example.org"] {
        let name = format!("outbound|80||{host}");
        assert_eq!(
            *find(&all, &name),
            expected_dns_cluster(
                &name,
                cluster::DiscoveryType::StrictDns,
                cluster::LbPolicy::LeastRequest,
                false,
                60,
                vec![dns_lb_endpoint(host, 80, 1)],
            )
        );
        // targetPort when the port has one.
        let alt = find(&all, &format!("outbound|8000||{host}"));
        assert_eq!(
            alt.load_assignment.as_ref().expect("inline").endpoints[0].lb_endpoints,
            [dns_lb_endpoint(host, 9000, 1)]
        );
    }
}

#[test]
fn dns_round_robin_is_a_logical_dns_cluster() {
    let model = model_from_yaml(DNS_SERVICES);
    let all = clusters(&model, &Proxy::sidecar("default"));
    let name = "outbound|80||rr.example.com";
    assert_eq!(
        *find(&all, name),
        expected_dns_cluster(
            name,
            cluster::DiscoveryType::LogicalDns,
            cluster::LbPolicy::LeastRequest,
            true,
            60,
            vec![dns_lb_endpoint("lb.example.com", 80, 7)],
        )
    );
}

#[test]
#[allow(deprecated)] // `dns_refresh_rate`: see `dns_cluster_fields`.
fn dns_refresh_rate_comes_from_the_settings() {
    let settings = crate::model::MeshSettings {
        dns_refresh_rate: Duration::from_millis(2500),
        ..Default::default()
    };
    let model =
        crate::model::Model::build(&crate::testing::config_from_yaml(DNS_SERVICES), &settings);
    let all = clusters(&model, &Proxy::sidecar("default"));
    for cluster in all.iter().filter(|c| c.load_assignment.is_some()) {
        assert_eq!(
            cluster.dns_refresh_rate,
            Some(ProtoDuration {
                seconds: 2,
                nanos: 500_000_000
            }),
            "{}",
            cluster.name
        );
    }
}

#[test]
#[allow(deprecated)] // `dns_refresh_rate`: see `dns_cluster_fields`.
fn dns_clusters_have_no_eds_resource_and_static_ones_keep_theirs() {
    let model = model_from_yaml(&format!("{SERVICES}\n---\n{DNS_SERVICES}"));
    let assignments = crate::xds::endpoints::load_assignments(&model);
    let names: Vec<&str> = assignments
        .iter()
        .map(|a| a.cluster_name.as_str())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with("example.com") && !n.ends_with("grpc.example.com")),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.ends_with(".org")), "{names:?}");
    assert!(names.contains(&"outbound|9080||reviews.default.svc.cluster.local"));
    // The EDS clusters are unchanged.
    let all = clusters(&model, &Proxy::sidecar("default"));
    let reviews = find(&all, "outbound|9080||reviews.default.svc.cluster.local");
    assert!(reviews.eds_cluster_config.is_some() && reviews.load_assignment.is_none());
    assert_eq!(reviews.dns_lookup_family, 0);
    assert!(reviews.dns_refresh_rate.is_none());
}

#[test]
fn passthrough_sends_captured_traffic_to_the_original_destination() {
    let model = model_from_yaml(&format!(
        "{SERVICES}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
         metadata: {{name: ratings, namespace: default}}\n\
         spec: {{host: ratings, trafficPolicy: {{loadBalancer: {{simple: PASSTHROUGH}}}}}}\n"
    ));
    let name = "outbound|9080||ratings.default.svc.cluster.local";
    let mut captured = Proxy::sidecar("default");
    captured.capture = true;
    let all = clusters(&model, &captured);
    let c = find(&all, name);
    assert_eq!(
        c.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::OriginalDst as i32
        ))
    );
    assert_eq!(c.lb_policy, cluster::LbPolicy::ClusterProvided as i32);
    assert!(c.eds_cluster_config.is_none());
    // A sidecar addressed explicitly has no original destination: it balances as usual.
    let all = clusters(&model, &Proxy::sidecar("default"));
    let c = find(&all, name);
    assert_eq!(c.lb_policy, cluster::LbPolicy::LeastRequest as i32);
    assert!(c.eds_cluster_config.is_some());
}
