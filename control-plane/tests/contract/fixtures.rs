//! Where the config sets come from: the workspace's examples, the shared Istio corpus (with
//! its bookinfo Kubernetes manifests as a service registry), and YAML written here to
//! exercise the newest translations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ObjectReference, Service as KubeService};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize as _;
use weft_controller::source::ConfigSet;
use weft_controller::source::local::load_text;
use weft_controller::source::registry::{Labels, Pod, Registry, SERVICE_NAME_LABEL};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the controller crate is inside the workspace")
        .to_path_buf()
}

/// The shared Istio corpus (`../shared/corpus/istio` next to the workspace); a missing corpus
/// fails the test.
pub fn corpus_root() -> PathBuf {
    let root = workspace().join("../shared/corpus/istio");
    assert!(
        root.is_dir(),
        "the Istio corpus must exist at {} (it is part of the workspace checkout)",
        root.display()
    );
    root
}

/// Every directory under `root` (itself included) that holds `*.yaml`/`*.yml` files, sorted.
pub fn yaml_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut has_yaml = false;
        for entry in std::fs::read_dir(&dir)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()))
        {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
            {
                has_yaml = true;
            }
        }
        if has_yaml {
            out.push(dir);
        }
    }
    out.sort();
    out
}

/// A config set from YAML texts, loaded in order as local mode loads files (the first
/// object of a kind/namespace/name wins; invalid documents are left out and recorded).
pub fn config_from(texts: &[(&str, &str)]) -> ConfigSet {
    let mut set = ConfigSet::default();
    for (file, text) in texts {
        load_text(&mut set, Path::new(file), text, &ConfigSet::default());
    }
    set
}

/// A Kubernetes service registry from a manifest file: its Services (namespace `default`
/// when unset), and for each Service one ready endpoint per Deployment its selector selects,
/// on a Pod with the Deployment's template labels (so DestinationRule subsets select by
/// `version`) and service account, at a made-up address in 10.88.0.0/16.
pub fn kube_registry(file: &Path) -> Registry {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", file.display()));
    let mut services = Vec::new();
    let mut deployments: Vec<(String, String, Labels, Option<String>)> = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(document)
            .unwrap_or_else(|err| panic!("{}: {err}", file.display()));
        match value.get("kind").and_then(serde_yaml::Value::as_str) {
            Some("Service") => {
                let mut service: KubeService = serde_yaml::from_value(value)
                    .unwrap_or_else(|err| panic!("{}: Service: {err}", file.display()));
                service
                    .metadata
                    .namespace
                    .get_or_insert_with(|| "default".to_string());
                // A ClusterIP, as the API server allocates one (the capture shape's chains
                // and the DNS proxy's name table are keyed by it).
                if let Some(spec) = service.spec.as_mut()
                    && spec.cluster_ip.is_none()
                {
                    let ip = format!("10.96.0.{}", services.len() + 10);
                    spec.cluster_ips = Some(vec![ip.clone()]);
                    spec.cluster_ip = Some(ip);
                }
                services.push(service);
            }
            Some("Deployment") => {
                let deployment: Deployment = serde_yaml::from_value(value)
                    .unwrap_or_else(|err| panic!("{}: Deployment: {err}", file.display()));
                let labels = deployment
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.template.metadata.as_ref())
                    .and_then(|meta| meta.labels.clone())
                    .unwrap_or_default();
                let service_account = deployment
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.template.spec.as_ref())
                    .and_then(|spec| spec.service_account_name.clone());
                deployments.push((
                    deployment
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".to_string()),
                    deployment.metadata.name.clone().unwrap_or_default(),
                    labels,
                    service_account,
                ));
            }
            _ => {}
        }
    }
    let mut registry = Registry::default();
    for (service_index, service) in services.iter().enumerate() {
        let namespace = service.metadata.namespace.clone().unwrap_or_default();
        let name = service.metadata.name.clone().unwrap_or_default();
        let spec = service.spec.clone().unwrap_or_default();
        let selector = spec.selector.clone().unwrap_or_default();
        let mut endpoints = Vec::new();
        for (pod_index, (pod_namespace, deployment, labels, service_account)) in
            deployments.iter().enumerate()
        {
            let selected = !selector.is_empty()
                && *pod_namespace == namespace
                && selector.iter().all(|(k, v)| labels.get(k) == Some(v));
            if !selected {
                continue;
            }
            let pod = format!("{deployment}-0");
            registry.pods.insert(
                (namespace.clone(), pod.clone()),
                Pod {
                    labels: labels.clone(),
                    service_account: service_account.clone(),
                    node_name: None,
                },
            );
            endpoints.push(Endpoint {
                addresses: vec![format!("10.88.{}.{}", service_index + 1, pod_index + 1)],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    ..Default::default()
                }),
                target_ref: Some(ObjectReference {
                    kind: Some("Pod".to_string()),
                    name: Some(pod),
                    namespace: Some(namespace.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        let ports = spec
            .ports
            .iter()
            .flatten()
            .map(|port| EndpointPort {
                name: port.name.clone(),
                port: Some(match &port.target_port {
                    Some(IntOrString::Int(target)) => *target,
                    _ => port.port,
                }),
                protocol: Some("TCP".to_string()),
                ..Default::default()
            })
            .collect();
        registry.endpoint_slices.push(
            EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(format!("{name}-contract")),
                    namespace: Some(namespace.clone()),
                    labels: Some(BTreeMap::from([(SERVICE_NAME_LABEL.to_string(), name)])),
                    ..Default::default()
                },
                address_type: "IPv4".to_string(),
                endpoints,
                ports: Some(ports),
            }
            .into(),
        );
        registry.services.push(service.clone().into());
    }
    registry.sort();
    registry
}

/// The e2e harness's reviews service (`weft_e2e::reviews_service_yaml`, replicated: that crate
/// runs binaries and is not a dependency here): a ServiceEntry, one WorkloadEntry per version
/// pointing at its sidecar's inbound port, and a DestinationRule with one subset per version.
pub fn e2e_reviews_service_yaml(versions: &[&str]) -> String {
    let mut yaml = String::from(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  workloadSelector:
    labels: {app: reviews}
",
    );
    for (i, version) in versions.iter().enumerate() {
        yaml.push_str(&format!(
            "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: reviews-{version}
  namespace: default
spec:
  address: 127.0.9.{ip}
  ports: {{http: 15006}}
  labels: {{app: reviews, version: {version}}}
",
            ip = 11 + i
        ));
    }
    yaml.push_str(
        "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: default
spec:
  host: reviews
  subsets:
",
    );
    for version in versions {
        yaml.push_str(&format!(
            "  - name: {version}\n    labels: {{version: {version}}}\n"
        ));
    }
    yaml
}

/// `weft_e2e::split_vs`, replicated: a VirtualService splitting reviews by subset weights.
pub fn e2e_split_vs(weights: &[(&str, i32)]) -> String {
    let mut yaml = String::from(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews]
  http:
  - route:
",
    );
    for (subset, weight) in weights {
        yaml.push_str(&format!(
            "    - destination: {{host: reviews, subset: {subset}}}\n      weight: {weight}\n"
        ));
    }
    yaml
}

/// Services and rules that exercise the newest translations: DNS and DNS_ROUND_ROBIN
/// resolutions (hostname endpoints, hosts as endpoints, WorkloadEntries, subsets of them),
/// redirects, direct responses, rewrites, regex matches, timeouts, route and per-destination
/// header operations (plain values; the `%FORMATTER%` values are in [`formatter_values`]),
/// and fields that are reported as unsupported rather than translated.
pub const NEWEST: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external-api, namespace: default}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 8443, name: http2-alt, protocol: HTTP2, targetPort: 9443}
  - {number: 9000, name: undeclared}
  resolution: DNS
  endpoints:
  - {address: api-v1.example.com, labels: {version: v1}, weight: 3}
  - {address: api-v2.example.com, ports: {http: 8080}, labels: {version: v2}}
  - {address: 127.0.0.50, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hosts-as-endpoints, namespace: default}
spec:
  hosts: [httpbin.org, www.example.org]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 8080, name: http-alt, protocol: HTTP, targetPort: 80}
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wildcard, namespace: default}
spec:
  hosts: ["*.wild.example.com"]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: logical, namespace: default}
spec:
  hosts: [logical.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS_ROUND_ROBIN
  endpoints:
  - {address: lb.example.com, labels: {version: v1}, weight: 4}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: logical-vms, namespace: shop}
spec:
  hosts: [logical-vms.shop.example]
  ports: [{number: 8080, name: http, protocol: HTTP, targetPort: 18080}]
  resolution: DNS_ROUND_ROBIN
  workloadSelector: {labels: {app: lvm}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: lvm-1, namespace: shop}
spec: {address: lvm1.internal.example, labels: {app: lvm}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: lvm-2, namespace: shop}
spec: {address: lvm2.internal.example, labels: {app: lvm}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: logical-hosts, namespace: shop}
spec:
  hosts: [grpc.example.net, h2.example.net]
  ports: [{number: 50051, name: grpc, protocol: GRPC}]
  resolution: DNS_ROUND_ROBIN
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vms, namespace: shop}
spec:
  hosts: [vms.shop.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: DNS
  workloadSelector: {labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: shop}
spec: {address: vm1.internal.example, labels: {app: vm, version: v1}, ports: {http: 19080}, weight: 2}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-2, namespace: shop}
spec: {address: 127.0.0.61, labels: {app: vm, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-unix, namespace: shop}
spec: {address: "unix:///var/run/vm.sock", labels: {app: vm, version: v3}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: catalog, namespace: shop}
spec:
  hosts: [catalog]
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  - {number: 80, name: http-web, protocol: HTTP}
  - {number: 3306, name: tcp-db, protocol: TCP}
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.71, labels: {version: v1}}
  - {address: "::1", labels: {version: v2}, ports: {http: 19080}, weight: 9}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: external-api, namespace: default}
spec:
  host: api.example.com
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {connectTimeout: 250ms}}
    portLevelSettings:
    - port: {number: 8443}
      loadBalancer: {simple: RANDOM}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}
  - {name: none, labels: {version: v9}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: logical, namespace: default}
spec:
  host: logical.example.com
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: vms, namespace: shop}
spec:
  host: vms.shop.svc.cluster.local
  trafficPolicy:
    loadBalancer: {simple: LEAST_CONN}
    outlierDetection: {consecutive5xxErrors: 3}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: catalog, namespace: shop}
spec:
  host: catalog
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: external-api, namespace: default}
spec:
  hosts: [api.example.com]
  http:
  - name: regex
    match:
    - name: everything-regex
      uri: {regex: '/items/[0-9]+(/.*)?'}
      method: {regex: 'GET|HEAD'}
      headers:
        x-user: {regex: '[a-z]+-(admin|ops)'}
        x-tenant: {prefix: acme}
        x-present: {}
      queryParams:
        page: {regex: '[0-9]{1,3}'}
        debug: {exact: "true"}
      ignoreUriCase: true
    - name: authority-and-scheme
      authority: {prefix: api.}
      scheme: {exact: http}
      port: 80
    route:
    - destination: {host: api.example.com, subset: v1}
    timeout: 1.5s
  - name: without-headers
    match:
    - withoutHeaders:
        x-canary: {exact: "true"}
      uri: {prefix: /stable}
    route:
    - destination: {host: api.example.com, subset: v2, port: {number: 8443}}
    timeout: 100ms
  - name: redirect
    match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: new.example.com, redirectCode: 308, scheme: https, port: 8443}
  - name: redirect-derive
    match: [{uri: {exact: /derive}}]
    redirect: {authority: other.example.com, derivePort: FROM_REQUEST_PORT}
  - name: redirect-default-port
    match: [{uri: {exact: /https}}]
    redirect: {scheme: https, port: 443, redirectCode: 302}
  - name: direct-text
    match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: "I'm a teapot"}}
  - name: direct-bytes
    match: [{uri: {exact: /bytes}}]
    directResponse: {status: 200, body: {bytes: aGVsbG8=}}
    headers:
      response:
        set: {content-type: application/octet-stream}
  - name: direct-empty
    match: [{uri: {exact: /empty}}]
    directResponse: {status: 204}
  - name: rewrite
    match: [{uri: {prefix: /v1/}}]
    rewrite: {uri: /v2/, authority: internal.example.com}
    route:
    - destination: {host: api.example.com, subset: v2}
  - name: split
    match: [{uri: {prefix: /split}}]
    headers:
      request:
        set: {x-route: split, Host: split.example.com}
        add: {x-added: "1"}
        remove: [x-remove-me]
      response:
        set: {x-served-by: weft}
        add: {cache-control: no-cache}
        remove: [server]
    route:
    - destination: {host: api.example.com, subset: v1}
      weight: 70
      headers:
        request: {set: {x-subset: v1}, add: {x-percent: "100%%"}, remove: [x-v2-only]}
        response: {set: {x-answered-by: v1}, remove: [x-debug]}
    - destination: {host: api.example.com, subset: v2}
      weight: 30
      headers:
        request: {set: {x-subset: v2}}
        response: {add: {x-answered-by: v2}}
    - destination: {host: api.example.com, subset: none}
      weight: 0
    retries: {attempts: 3, perTryTimeout: 2s}
    fault: {abort: {httpStatus: 503, percentage: {value: 1}}}
    mirror: {host: logical.example.com}
    corsPolicy: {allowOrigins: [{exact: "https://example.com"}]}
  - name: single-destination-headers
    match: [{uri: {prefix: /single}}]
    route:
    - destination: {host: api.example.com}
      headers:
        request: {set: {host: single.example.com, x-single: "yes"}}
        response: {set: {x-single: "yes"}}
  - name: default
    route:
    - destination: {host: api.example.com}
    timeout: 30s
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: regex-rewrite, namespace: default}
spec:
  hosts: [www.example.org]
  http:
  - name: regex-and-rewrite
    match: [{uri: {regex: '/legacy/.*'}}]
    rewrite: {uri: /modern/}
    route: [{destination: {host: www.example.org}}]
  - name: regex-rewrite
    match: [{uri: {prefix: /re}}]
    rewrite: {uriRegexRewrite: {match: '^/re(.*)', rewrite: '/\1'}}
    route: [{destination: {host: www.example.org}}]
  - route: [{destination: {host: www.example.org, port: {number: 8080}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: logical, namespace: default}
spec:
  hosts: [logical.example.com, "*.wild.example.com"]
  http:
  - match: [{uri: {prefix: /v2}}]
    route:
    - destination: {host: logical.example.com, subset: v2}
  - match: [{uri: {prefix: /authority}}]
    headers:
      request: {set: {":authority": logical-authority.example.com}}
    route:
    - destination: {host: logical.example.com, subset: v1}
  - route:
    - destination: {host: logical.example.com, subset: v1}
      headers:
        request: {set: {host: logical-v1.example.com}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vms, namespace: shop}
spec:
  hosts: [vms.shop.svc.cluster.local]
  http:
  - name: from-contract-server
    match:
    - sourceLabels: {app: contract}
      uri: {prefix: /v2}
    route: [{destination: {host: vms, subset: v2}}]
  - name: from-default-namespace
    match: [{sourceNamespace: default}]
    route: [{destination: {host: vms, subset: v3}}]
  - route:
    - {destination: {host: vms, subset: v1}, weight: 50}
    - {destination: {host: catalog, subset: v1}, weight: 50}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: catalog, namespace: shop}
spec:
  hosts: [catalog]
  http:
  - match: [{uri: {exact: /grpc}}]
    route: [{destination: {host: grpc.example.net}}]
  - match: [{port: 80}]
    route: [{destination: {host: catalog, port: {number: 80}, subset: v2}}]
  - route: [{destination: {host: catalog, subset: v1}}]
    timeout: 2s
"#;

/// The services the formatter VirtualServices route to: two hosts resolved by DNS, and one
/// with static endpoints (so that every resource type is checked).
pub const FORMATTER_SERVICES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hosts-as-endpoints, namespace: default}
spec:
  hosts: [httpbin.org, www.example.org]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.81}]
"#;

/// Header values with every `%FORMATTER%` `weft-api` accepts: each of its
/// `header_format::SUPPORTED` commands in the forms it takes, each `START_TIME` specifier of
/// `START_TIME_SPECIFIERS`, all of them in one `START_TIME`, and `%%`. Each value is checked
/// with `weft-api`'s own `check_header_value`, so the fixtures are valid config.
pub fn formatter_values() -> Vec<String> {
    use weft_api::header_format::{START_TIME_SPECIFIERS, SUPPORTED, check_header_value};
    let mut values: Vec<String> = Vec::new();
    for name in SUPPORTED {
        let candidates = [
            format!("%{name}%"),
            format!("%{name}(x-contract)%"),
            format!("%{name}(x-contract?x-fallback):12%"),
            format!("%{name}(POD_NAME)%"),
            format!("%{name}(POD_NAME):8%"),
            format!("before %{name}% after"),
        ];
        let accepted: Vec<String> = candidates
            .into_iter()
            .filter(|value| check_header_value(value).is_ok())
            .collect();
        assert!(
            !accepted.is_empty(),
            "no test value for the formatter %{name}% that weft-api accepts"
        );
        values.extend(accepted);
    }
    let mut specifiers = Vec::new();
    for spec in START_TIME_SPECIFIERS {
        match *spec {
            "%E1S..%E9S" => specifiers.extend((1..=9).map(|n| format!("%E{n}S"))),
            "%1f..%9f" => specifiers.extend((1..=9).map(|n| format!("%{n}f"))),
            other => specifiers.push(other.to_string()),
        }
    }
    for spec in &specifiers {
        values.push(format!("%START_TIME({spec})%"));
    }
    values.push(format!("%START_TIME({})%", specifiers.join(" ")));
    values.push("100%% literal, %HOSTNAME% and %PROTOCOL%".to_string());
    for value in &values {
        if let Err(err) = check_header_value(value) {
            panic!("weft-api refuses the test value {value:?}: {err}");
        }
    }
    values
}

/// A VirtualService named `name` for `httpbin.org` ([`FORMATTER_SERVICES`]) that sets `values`
/// in every place a header value goes: route-level request and response `set`/`add`, and
/// per-destination request and response operations on a split.
pub fn formatters_vs(name: &str, values: &[String]) -> String {
    // JSON strings are YAML double-quoted scalars.
    let map = |prefix: &str| -> String {
        let entries: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                format!(
                    "{prefix}-{i}: {}",
                    serde_json::to_string(value).expect("json string")
                )
            })
            .collect();
        format!("{{{}}}", entries.join(", "))
    };
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [httpbin.org]
  http:
  - name: route-level
    match: [{{uri: {{prefix: /route}}}}]
    headers:
      request: {{set: {req_set}, add: {req_add}}}
      response: {{set: {resp_set}, add: {resp_add}}}
    route:
    - destination: {{host: httpbin.org}}
  - name: per-destination
    route:
    - destination: {{host: httpbin.org}}
      weight: 50
      headers:
        request: {{set: {dest_req}}}
        response: {{add: {dest_resp}}}
    - destination: {{host: www.example.org}}
      weight: 50
      headers:
        request: {{add: {dest_req}}}
        response: {{set: {dest_resp}}}
"#,
        req_set = map("x-req-set"),
        req_add = map("x-req-add"),
        resp_set = map("x-resp-set"),
        resp_add = map("x-resp-add"),
        dest_req = map("x-dest-req"),
        dest_resp = map("x-dest-resp"),
    )
}
