//! End to end: the controller serves a config directory over ADS to a `weft-xds` client,
//! pushes edits, and shows the proxy at `/debug/syncz`.

use clap::Parser;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::google::protobuf::Any;
use parking_lot::Mutex;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_controller::Args;
use weft_xds::{AdsClient, ClientConfig, Handler, type_url};

const CONFIG: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: 19080}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin, namespace: default}
spec:
  hosts: [www.httpbin.org]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
"#;

#[derive(Default)]
struct Seen {
    by_type: BTreeMap<String, Vec<Any>>,
}

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Seen>>);

impl Handler for Collect {
    fn apply(&mut self, type_url: &str, _version: &str, resources: Vec<Any>) -> Result<(), String> {
        self.0
            .lock()
            .by_type
            .insert(type_url.to_string(), resources);
        Ok(())
    }

    fn resource_names(&self, type_url: &str) -> Vec<String> {
        match type_url {
            type_url::ROUTE => vec!["outbound".to_string()],
            type_url::ENDPOINT => {
                vec!["outbound|9080||reviews.default.svc.cluster.local".to_string()]
            }
            _ => Vec::new(),
        }
    }
}

impl Collect {
    fn outbound(&self) -> Option<RouteConfiguration> {
        let seen = self.0.lock();
        let any = seen.by_type.get(type_url::ROUTE)?.first()?.clone();
        RouteConfiguration::decode(any.value.as_slice()).ok()
    }

    async fn wait_for(&self, what: &str, check: impl Fn(&Self) -> bool) {
        for _ in 0..100 {
            if check(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }
}

async fn http_get(address: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: debug\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("reads");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_and_pushes_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, CONFIG).expect("writes config");
    let args = Args::try_parse_from([
        "weft-controller",
        "--config-dir",
        &dir.path().display().to_string(),
        "--webhook-address",
        "127.0.0.1:0",
        "--xds-address",
        "127.0.0.1:0",
        "--debug-address",
        "127.0.0.1:0",
        "--debounce",
        "20ms",
        "--dns-refresh-rate",
        "45s",
    ])
    .expect("flags parse");
    let controller = weft_controller::start(args).await.expect("starts");
    let node_id = "sidecar~127.0.0.1~reviews-v1.default~default.svc.cluster.local";
    let node = Node {
        id: node_id.to_string(),
        ..Default::default()
    };
    let collect = Collect::default();
    let client = AdsClient::new(
        ClientConfig::new(format!("http://{}", controller.xds_address), node),
        collect.clone(),
    );
    let client_task = tokio::spawn(client.run());

    collect
        .wait_for("the outbound routes", |c| c.outbound().is_some())
        .await;
    {
        let seen = collect.0.lock();
        for type_url in [type_url::CLUSTER, type_url::ENDPOINT, type_url::LISTENER] {
            assert!(
                seen.by_type.get(type_url).is_some_and(|r| !r.is_empty()),
                "no {type_url}"
            );
        }
    }
    // A DNS ServiceEntry is a STRICT_DNS cluster with its endpoints inline, at the
    // --dns-refresh-rate. (Its host sorts after reviews': the route checks below look at
    // the first virtual host.)
    let httpbin = {
        let seen = collect.0.lock();
        seen.by_type[type_url::CLUSTER]
            .iter()
            .filter_map(|any| Cluster::decode(any.value.as_slice()).ok())
            .find(|cluster| cluster.name == "outbound|80||www.httpbin.org")
            .expect("the www.httpbin.org cluster")
    };
    assert_eq!(
        httpbin.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::StrictDns as i32
        ))
    );
    assert!(httpbin.load_assignment.is_some() && httpbin.eds_cluster_config.is_none());
    #[allow(deprecated)] // Envoy deprecates the field in favour of an extension; Istio sets it.
    let refresh_rate = httpbin.dns_refresh_rate.map(|rate| rate.seconds);
    assert_eq!(refresh_rate, Some(45));

    let routes = collect.outbound().expect("routes");
    assert_eq!(
        routes.virtual_hosts[0].name,
        "reviews.default.svc.cluster.local:9080"
    );
    assert_eq!(routes.virtual_hosts[0].routes.len(), 1);

    // An edit is pushed.
    std::fs::write(
        &file,
        CONFIG.replace(
            "  - route: [{destination: {host: reviews}}]",
            "  - match: [{uri: {prefix: /a}}]\n    route: [{destination: {host: reviews}}]\n  - route: [{destination: {host: reviews}}]",
        ),
    )
    .expect("edits config");
    collect
        .wait_for("the edited routes", |c| {
            c.outbound()
                .is_some_and(|r| r.virtual_hosts[0].routes.len() == 2)
        })
        .await;

    let syncz = http_get(controller.debug_address, "/debug/syncz").await;
    assert!(syncz.starts_with("HTTP/1.1 200"), "{syncz}");
    assert!(syncz.contains(node_id), "{syncz}");
    let configz = http_get(controller.debug_address, "/debug/configz").await;
    assert!(
        configz.contains("VirtualService default/reviews"),
        "{configz}"
    );
    // Local mode: ready once the directory was scanned and its model published, which
    // `start` does before it returns.
    let ready = http_get(controller.debug_address, "/ready").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(ready.ends_with("\r\n\r\nready\n"), "{ready}");

    client_task.abort();
    controller.stop().await.expect("stops cleanly");
}
