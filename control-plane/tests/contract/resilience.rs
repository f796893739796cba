//! The resilience translations end to end through the proxy's converters: the proxy's own
//! domain config must carry every field the controller sent (retries, faults, retry limits).

use std::collections::HashMap;

use weft_proxy::config::fault::AbortKind;
use weft_proxy::config::hash_policy::HashKey;
use weft_proxy::config::retry::RetryOn;
use weft_proxy::config::{Action, ClusterConfig, RouteConfig};

use super::check::Generated;
use super::fixtures::config_from;

/// Every resilience field the controller translates: VirtualService `retries` (each field,
/// `attempts: 0`, none at all: Istio's default) and `fault` (delay and abort, HTTP and gRPC,
/// `percentage` and the legacy `percent`), DestinationRule `retryBudget` and
/// `connectionPool.http.maxRetries` at the rule, port and subset levels.
const RESILIENCE: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 81, name: http-admin, protocol: HTTP}
  endpoints:
  - {address: 127.0.0.81, labels: {version: v1}}
  - {address: 127.0.0.82, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: plain, namespace: default}
spec:
  hosts: [plain.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.83}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop, namespace: default}
spec:
  host: shop.example.internal
  trafficPolicy:
    retryBudget: {percent: 25, minRetryConcurrency: 5, budgetInterval: 2s}
    connectionPool: {http: {maxRetries: 7}}
    outlierDetection:
      consecutive5xxErrors: 4
      consecutiveGatewayErrors: 2
      splitExternalLocalOriginErrors: true
      consecutiveLocalOriginFailures: 6
      interval: 2s
      baseEjectionTime: 45s
      maxEjectionPercent: 50
      minHealthPercent: 30
    portLevelSettings:
    - port: {number: 81}
      connectionPool: {http: {maxRetries: 2}}
      outlierDetection: {consecutiveErrors: 7}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      retryBudget: {percent: 10}
      connectionPool: {http: {maxRetries: 1}}
  - name: pool
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN, warmup: {duration: 30s, minimumPercent: 20, aggression: 2}}
      connectionPool:
        tcp:
          maxConnections: 3
          connectTimeout: 250ms
          tcpKeepalive: {probes: 4, time: 30s, interval: 5s}
          maxConnectionDuration: 1h
        http:
          http1MaxPendingRequests: 5
          http2MaxRequests: 50
          maxRequestsPerConnection: 10
          maxRetries: 6
          idleTimeout: 30s
          h2UpgradePolicy: UPGRADE
          maxConcurrentStreams: 100
          http2KeepAlive: {interval: 30s, timeout: 5s}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example.internal]
  http:
  - name: every-retry-field
    match: [{uri: {prefix: /retry}}]
    route: [{destination: {host: shop.example.internal, subset: v1}}]
    retries:
      attempts: 4
      perTryTimeout: 250ms
      retryOn: 5xx,gateway-error,reset,reset-before-request,connect-failure,retriable-4xx,refused-stream,retriable-status-codes,retriable-headers,envoy-ratelimited,cancelled,deadline-exceeded,internal,resource-exhausted,unavailable,409
      retryRemoteLocalities: true
      retryIgnorePreviousHosts: false
      backoff: 50ms
    timeout: 3s
  - name: no-retries
    match: [{uri: {prefix: /once}}]
    route: [{destination: {host: shop.example.internal, subset: v2}}]
    retries: {attempts: 0}
  - name: http-faults
    match: [{uri: {prefix: /fault}}]
    route: [{destination: {host: shop.example.internal}}]
    fault:
      delay: {fixedDelay: 2s, percentage: {value: 12.5}}
      abort: {httpStatus: 418, percentage: {value: 0.5}}
  - name: grpc-and-legacy-faults
    match: [{uri: {prefix: /grpc}}]
    route: [{destination: {host: shop.example.internal}}]
    fault:
      delay: {fixedDelay: 1s, percent: 30}
      abort: {grpcStatus: RESOURCE_EXHAUSTED}
  - route: [{destination: {host: shop.example.internal}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: sticky, namespace: default}
spec:
  hosts: [sticky.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 81, name: http-query, protocol: HTTP}
  endpoints:
  - {address: 127.0.0.91, labels: {version: v1}}
  - {address: 127.0.0.92, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: sticky, namespace: default}
spec:
  host: sticky.example.internal
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 2048}}
    portLevelSettings:
    - port: {number: 81}
      loadBalancer:
        consistentHash: {httpQueryParameterName: id, maglev: {tableSize: 65537}}
  subsets:
  - name: cookie
    labels: {version: v1}
    trafficPolicy:
      loadBalancer:
        consistentHash:
          httpCookie:
            name: user
            path: /
            ttl: 60s
            attributes: [{name: SameSite, value: Lax}, {name: Secure}]
          minimumRingSize: 512
  - name: source
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 131}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: sticky, namespace: default}
spec:
  hosts: [sticky.example.internal]
  http:
  - name: by-cookie
    match: [{uri: {prefix: /cookie}}]
    route: [{destination: {host: sticky.example.internal, subset: cookie}}]
  - name: by-source
    match: [{uri: {prefix: /source}}]
    route: [{destination: {host: sticky.example.internal, subset: source}}]
  - name: by-header
    route: [{destination: {host: sticky.example.internal}}]
"#;

fn converted() -> (HashMap<String, RouteConfig>, HashMap<String, ClusterConfig>) {
    let generated = Generated::for_client(
        "resilience.yaml",
        config_from(&[("resilience.yaml", RESILIENCE)]),
        &[],
        false,
    );
    (generated.proxy_routes(), generated.proxy_clusters())
}

fn forward<'a>(
    rc: &'a RouteConfig,
    vhost: &str,
    route: &str,
) -> &'a weft_proxy::config::ForwardAction {
    let vh = rc
        .virtual_hosts
        .iter()
        .find(|v| v.name == vhost)
        .unwrap_or_else(|| panic!("no virtual host {vhost}"));
    let r = vh
        .routes
        .iter()
        .find(|r| r.name == route)
        .unwrap_or_else(|| panic!("no route {route} in {vhost}"));
    match &r.action {
        Action::Forward(f) => f,
        other => panic!("{route}: not a forward action: {other:?}"),
    }
}

#[test]
fn retries_and_faults_reach_the_proxy() {
    let (routes, _) = converted();
    let outbound = &routes["outbound"];
    let shop = "shop.example.internal:80";

    let every = forward(outbound, shop, "every-retry-field");
    let retry = every.retry.as_ref().expect("a retry policy");
    assert_eq!(retry.num_retries, 4);
    assert_eq!(
        retry.per_try_timeout,
        Some(std::time::Duration::from_millis(250))
    );
    for on in [
        RetryOn::SERVER_ERROR,
        RetryOn::GATEWAY_ERROR,
        RetryOn::RESET,
        RetryOn::RESET_BEFORE_REQUEST,
        RetryOn::CONNECT_FAILURE,
        RetryOn::RETRIABLE_4XX,
        RetryOn::REFUSED_STREAM,
        RetryOn::RETRIABLE_STATUS_CODES,
        RetryOn::RETRIABLE_HEADERS,
        RetryOn::RATE_LIMITED,
        RetryOn::GRPC_ANY,
    ] {
        assert!(retry.on.contains(on), "{on:?}");
    }
    assert_eq!(retry.status_codes, [409]);
    assert!(retry.other_priorities, "retryRemoteLocalities");
    assert!(!retry.other_hosts, "retryIgnorePreviousHosts: false");
    assert_eq!(retry.backoff_base, std::time::Duration::from_millis(50));
    assert!(!retry.non_idempotent_before_send_only, "the user's policy");
    assert_eq!(every.timeout, Some(std::time::Duration::from_secs(3)));

    assert!(forward(outbound, shop, "no-retries").retry.is_none());

    let faults = forward(outbound, shop, "http-faults");
    let fault = faults.fault.as_ref().expect("faults");
    let delay = fault.delay.as_ref().expect("a delay");
    assert_eq!((delay.duration.as_secs(), delay.per_million), (2, 125_000));
    let abort = fault.abort.as_ref().expect("an abort");
    assert_eq!(
        abort.kind,
        AbortKind::Http(418.try_into().expect("a status"))
    );
    assert_eq!(abort.per_million, 5_000);
    // A route without retries gets Istio's default, guarded for non-idempotent requests.
    let default = faults.retry.as_ref().expect("Istio's default policy");
    assert_eq!(default.num_retries, 2);
    assert!(default.non_idempotent_before_send_only);
    assert!(default.other_hosts);

    let grpc = forward(outbound, shop, "grpc-and-legacy-faults")
        .fault
        .as_ref()
        .expect("faults");
    assert_eq!(grpc.delay.as_ref().unwrap().per_million, 300_000);
    let abort = grpc.abort.as_ref().unwrap();
    assert_eq!(
        (abort.kind, abort.per_million),
        (AbortKind::Grpc(8), 1_000_000)
    );

    // A service without VirtualService: Istio's default policy on its default route.
    let plain = &outbound
        .virtual_hosts
        .iter()
        .find(|v| v.name == "plain.example.internal:80")
        .expect("plain's virtual host")
        .routes[0];
    let Action::Forward(plain) = &plain.action else {
        panic!("forward")
    };
    assert!(
        plain
            .retry
            .as_ref()
            .is_some_and(|r| r.non_idempotent_before_send_only)
    );
}

#[test]
fn retry_limits_reach_the_proxy_per_level() {
    let (_, clusters) = converted();
    let limits = |name: &str| {
        let cb = &clusters
            .get(name)
            .unwrap_or_else(|| panic!("no cluster {name}"))
            .circuit_breakers;
        (cb.max_retries, cb.retry_budget.expect("a budget"))
    };
    let (max, budget) = limits("outbound|80||shop.example.internal");
    assert_eq!(max, 7);
    assert_eq!((budget.percent, budget.min_retries), (25.0, 5));
    assert_eq!(budget.window, std::time::Duration::from_secs(2));
    // Port-level connection pool replaces the rule's for port 81; the budget is the rule's.
    let (max, budget) = limits("outbound|81||shop.example.internal");
    assert_eq!((max, budget.percent), (2, 25.0));
    // The subset's own policy.
    let (max, budget) = limits("outbound|80|v2|shop.example.internal");
    assert_eq!((max, budget.percent, budget.min_retries), (1, 10.0, 3));
    // Outlier detection, every field, at the rule's level and (replacing it) the port's.
    let outlier = clusters["outbound|80||shop.example.internal"]
        .outlier
        .as_ref()
        .expect("outlier detection");
    let d = &outlier.detection;
    assert_eq!(
        (
            d.consecutive_5xx,
            d.consecutive_gateway_failure,
            d.consecutive_local_origin_failure
        ),
        (Some(4), Some(2), Some(6))
    );
    assert!(d.split_external_local_origin_errors);
    assert_eq!(d.interval, std::time::Duration::from_secs(2));
    assert_eq!(d.base_ejection_time, std::time::Duration::from_secs(45));
    assert_eq!(d.max_ejection_percent, 50);
    assert_eq!(outlier.panic_threshold, 30.0);
    let port = clusters["outbound|81||shop.example.internal"]
        .outlier
        .as_ref()
        .expect("port-level outlier detection");
    assert_eq!(
        (
            port.detection.consecutive_5xx,
            port.detection.consecutive_gateway_failure
        ),
        (None, Some(7)),
        "consecutiveErrors: gateway errors only, as Istio"
    );
    assert_eq!(
        port.panic_threshold, 0.0,
        "no panic mode unless minHealthPercent"
    );
    assert!(
        clusters["outbound|80||plain.example.internal"]
            .outlier
            .is_none()
    );
    // Every connection pool field.
    let pool = &clusters["outbound|80|pool|shop.example.internal"];
    let cb = &pool.circuit_breakers;
    assert_eq!(
        (
            cb.max_connections,
            cb.max_pending_requests,
            cb.max_requests,
            cb.max_retries
        ),
        (3, 5, 50, 6)
    );
    assert_eq!(pool.connect_timeout, std::time::Duration::from_millis(250));
    assert_eq!(pool.idle_timeout, std::time::Duration::from_secs(30));
    let c = &pool.connection;
    assert_eq!(c.max_requests_per_connection, Some(10));
    assert_eq!(
        c.max_connection_duration,
        Some(std::time::Duration::from_secs(3600))
    );
    assert_eq!(c.max_concurrent_streams, Some(100));
    assert_eq!(
        c.http2_keepalive,
        Some(weft_proxy::config::cluster_http::Http2Keepalive {
            interval: std::time::Duration::from_secs(30),
            timeout: std::time::Duration::from_secs(5),
            jitter: std::time::Duration::from_millis(4500),
        }),
        "http2KeepAlive, with Envoy's 15% jitter"
    );
    let keepalive = c.keepalive.expect("keepalive");
    assert_eq!(
        (keepalive.probes, keepalive.time, keepalive.interval),
        (
            Some(4),
            Some(std::time::Duration::from_secs(30)),
            Some(std::time::Duration::from_secs(5))
        )
    );
    assert_eq!(
        pool.protocol,
        weft_proxy::config::UpstreamProtocol::Http2,
        "h2UpgradePolicy: UPGRADE"
    );
    assert_eq!(
        pool.slow_start,
        Some(weft_lb::warmup::Config {
            window: std::time::Duration::from_secs(30),
            aggression: 2.0,
            min_weight_percent: 20.0
        }),
        "warmup"
    );
    // Istio's defaults: no limit but the pool's own.
    let unlimited = &clusters["outbound|80|v1|shop.example.internal"].circuit_breakers;
    assert_eq!(
        (
            unlimited.max_connections,
            unlimited.max_pending_requests,
            unlimited.max_requests
        ),
        (u32::MAX, u32::MAX, u32::MAX)
    );
    // No DestinationRule: Istio's unlimited max_retries, Weft's default budget.
    let (max, budget) = limits("outbound|80||plain.example.internal");
    assert_eq!(
        (max, budget.percent, budget.min_retries),
        (u32::MAX, 20.0, 3)
    );
}

#[test]
fn consistent_hashing_reaches_the_proxy() {
    use weft_lb::hash::HashConfig;
    use weft_proxy::upstream::LbPolicy;
    let (routes, clusters) = converted();
    let lb = |name: &str| clusters[name].lb_policy;
    assert_eq!(
        lb("outbound|80||sticky.example.internal"),
        LbPolicy::Hash(HashConfig::Ring {
            minimum_ring_size: 2048,
            maximum_ring_size: weft_lb::hash::DEFAULT_MAXIMUM_RING_SIZE
        })
    );
    assert_eq!(
        lb("outbound|81||sticky.example.internal"),
        LbPolicy::Hash(HashConfig::Maglev { table_size: 65537 })
    );
    assert_eq!(
        lb("outbound|80|cookie|sticky.example.internal"),
        LbPolicy::Hash(HashConfig::Ring {
            minimum_ring_size: 512,
            maximum_ring_size: weft_lb::hash::DEFAULT_MAXIMUM_RING_SIZE
        })
    );
    assert_eq!(
        lb("outbound|80|source|sticky.example.internal"),
        LbPolicy::Hash(HashConfig::Maglev { table_size: 131 })
    );
    let outbound = &routes["outbound"];
    let key = |vhost: &str, route: &str| forward(outbound, vhost, route).hash_policy[0].key.clone();
    let sticky = "sticky.example.internal:80";
    assert_eq!(
        key(sticky, "by-header"),
        HashKey::Header("x-user".parse().unwrap())
    );
    assert_eq!(
        key(sticky, "by-cookie"),
        HashKey::Cookie {
            name: "user".into(),
            ttl: Some(std::time::Duration::from_secs(60)),
            path: Some("/".into()),
            attributes: vec![
                ("SameSite".into(), Some("Lax".into())),
                ("Secure".into(), None)
            ],
        }
    );
    assert_eq!(key(sticky, "by-source"), HashKey::SourceIp);
    assert_eq!(
        key("sticky.example.internal:81", "by-header"),
        HashKey::QueryParameter("id".into()),
        "port 81's own consistent hash"
    );
}
