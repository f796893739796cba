//! Unit tests of the cluster generator.

use super::*;
use crate::xds::testing::{SERVICES, bookinfo_model, model_from_yaml};
use envoy_types::pb::google::protobuf::Duration as ProtoDuration;
use prost::Message;

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
