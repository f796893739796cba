//! Test fixtures: small bookinfo-like models built from YAML.

use std::path::Path;

use crate::model::{MeshSettings, Model};
use crate::source::ConfigSet;
use crate::source::local::load_text;

/// A config set from YAML text (panics on invalid documents, to keep fixtures honest).
pub fn config_from_yaml(yaml: &str) -> ConfigSet {
    let mut set = ConfigSet::default();
    load_text(
        &mut set,
        Path::new("fixture.yaml"),
        yaml,
        &ConfigSet::default(),
    );
    assert!(set.errors.is_empty(), "fixture errors: {:#?}", set.errors);
    set
}

/// A model from YAML text.
pub fn model_from_yaml(yaml: &str) -> Model {
    Model::build(&config_from_yaml(yaml), &MeshSettings::default())
}

/// Services: reviews (v1..v3 WorkloadEntries), ratings (inline endpoints, targetPort),
/// productpage (ports 9080 and 80), grpc (GRPC port) in `default`; details in `other`.
pub const SERVICES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec: {address: 127.0.0.11, labels: {app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2, namespace: default}
spec: {address: 127.0.0.12, labels: {app: reviews, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v3, namespace: default}
spec: {address: 127.0.0.13, labels: {app: reviews, version: v3}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-elsewhere, namespace: other}
spec: {address: 127.0.0.19, labels: {app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  ports: [{number: 9080, name: http, protocol: HTTP, targetPort: 9999}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.21, ports: {http: 19080}, weight: 5, labels: {version: v1}}
  - {address: 127.0.0.22, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: productpage, namespace: default}
spec:
  hosts: [productpage]
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  - {number: 80, name: http-web, protocol: HTTP}
  - {number: 3306, name: tcp-db, protocol: TCP}
  resolution: STATIC
  endpoints: [{address: 127.0.0.31}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: grpc, namespace: default}
spec:
  hosts: [grpc.example.com]
  ports: [{number: 50051, name: grpc, protocol: GRPC}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.41}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: details, namespace: other}
spec:
  hosts: [details]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.51}]
"#;

/// Rules: subsets and policies for reviews; a VirtualService with most features.
pub const RULES: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    connectionPool: {tcp: {connectTimeout: 3s}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN}
  - {name: v3, labels: {version: v3}}
  - {name: v9, labels: {version: v9}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match:
    - headers: {end-user: {exact: jason}}
    route:
    - destination: {host: reviews, subset: v2}
    retries: {attempts: 3}
    mirror: {host: reviews, subset: v1}
  - name: canary
    match:
    - sourceLabels: {app: productpage}
      uri: {prefix: /canary}
    route:
    - destination: {host: reviews, subset: v3}
  - name: split
    route:
    - destination: {host: reviews, subset: v1}
      weight: 80
    - destination: {host: reviews, subset: v3}
      weight: 20
    timeout: 5s
  - name: unreachable
    route:
    - destination: {host: reviews, subset: v1}
"#;

/// The bookinfo-like config set (services and rules).
pub fn bookinfo_config() -> ConfigSet {
    config_from_yaml(&format!("{SERVICES}\n---\n{RULES}"))
}

/// The bookinfo-like model.
pub fn bookinfo_model() -> Model {
    Model::build(&bookinfo_config(), &MeshSettings::default())
}

/// The `address:port` of every endpoint of a load assignment, in order.
pub fn assignment_addresses(
    assignment: &envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment,
) -> Vec<String> {
    use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
    use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint;
    assignment
        .endpoints
        .iter()
        .flat_map(|locality| &locality.lb_endpoints)
        .filter_map(|lb| match &lb.host_identifier {
            Some(lb_endpoint::HostIdentifier::Endpoint(endpoint)) => endpoint.address.as_ref(),
            _ => None,
        })
        .filter_map(|address| match &address.address {
            Some(address::Address::SocketAddress(socket)) => match socket.port_specifier {
                Some(socket_address::PortSpecifier::PortValue(port)) => {
                    Some(format!("{}:{port}", socket.address))
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}
