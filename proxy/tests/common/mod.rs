//! Shared helpers for the in-process integration tests: Envoy resource builders, upstream servers, clients.
#![allow(dead_code, clippy::unwrap_used)] // test helpers: panicking is the point.

pub mod authz;
pub mod mesh;
pub mod raw_h2;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use envoy_types::pb::envoy::config::cluster::v3 as cds;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3 as eds;
use envoy_types::pb::envoy::config::listener::v3 as lds;
use envoy_types::pb::envoy::config::route::v3 as rt;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::envoy::extensions::upstreams::http::v3 as uh;
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration, UInt32Value};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::{Message, Name};
use weft_proxy::ConfigStore;
use weft_xds::type_url;

pub fn any<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

fn ads() -> core::ConfigSource {
    core::ConfigSource {
        config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
            Default::default(),
        )),
        ..Default::default()
    }
}

pub fn socket(addr: SocketAddr) -> core::Address {
    core::Address {
        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
            address: addr.ip().to_string(),
            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(u32::from(
                addr.port(),
            ))),
            ..Default::default()
        })),
    }
}

pub fn listener(name: &str, addr: SocketAddr, rds: &str) -> Any {
    listener_with(name, addr, rds, |_| {})
}

/// [`listener`] with a change to its connection manager.
pub fn listener_with(
    name: &str,
    addr: SocketAddr,
    rds: &str,
    change: impl FnOnce(&mut hcm::HttpConnectionManager),
) -> Any {
    let mut m = hcm::HttpConnectionManager {
        stat_prefix: name.into(),
        route_specifier: Some(hcm::http_connection_manager::RouteSpecifier::Rds(
            hcm::Rds {
                route_config_name: rds.into(),
                config_source: Some(ads()),
            },
        )),
        http_filters: vec![hcm::HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(hcm::http_filter::ConfigType::TypedConfig(Any {
                type_url: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                    .into(),
                value: vec![],
            })),
            ..Default::default()
        }],
        ..Default::default()
    };
    change(&mut m);
    any(&lds::Listener {
        name: name.into(),
        address: Some(socket(addr)),
        filter_chains: vec![lds::FilterChain {
            filters: vec![lds::Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(lds::filter::ConfigType::TypedConfig(any(&m))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    })
}

pub fn prefix(p: &str) -> rt::RouteMatch {
    rt::RouteMatch {
        path_specifier: Some(rt::route_match::PathSpecifier::Prefix(p.into())),
        ..Default::default()
    }
}

pub fn to_cluster(m: rt::RouteMatch, cluster: &str, timeout: Option<Duration>) -> rt::Route {
    rt::Route {
        r#match: Some(m),
        action: Some(rt::route::Action::Route(rt::RouteAction {
            cluster_specifier: Some(rt::route_action::ClusterSpecifier::Cluster(cluster.into())),
            timeout: timeout.map(|t| PbDuration {
                seconds: t.as_secs() as i64,
                nanos: t.subsec_nanos() as i32,
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

pub fn weighted(m: rt::RouteMatch, clusters: &[(&str, u32)]) -> rt::Route {
    rt::Route {
        r#match: Some(m),
        action: Some(rt::route::Action::Route(rt::RouteAction {
            cluster_specifier: Some(rt::route_action::ClusterSpecifier::WeightedClusters(
                rt::WeightedCluster {
                    clusters: clusters
                        .iter()
                        .map(|(n, w)| rt::weighted_cluster::ClusterWeight {
                            name: n.to_string(),
                            weight: Some(UInt32Value { value: *w }),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        })),
        ..Default::default()
    }
}

pub fn vhost(name: &str, domains: &[&str], routes: Vec<rt::Route>) -> rt::VirtualHost {
    rt::VirtualHost {
        name: name.into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        routes,
        ..Default::default()
    }
}

pub fn route_config(name: &str, vhosts: Vec<rt::VirtualHost>) -> Any {
    any(&rt::RouteConfiguration {
        name: name.into(),
        virtual_hosts: vhosts,
        ..Default::default()
    })
}

/// An EDS cluster; `h2` selects h2c upstream, else the downstream protocol.
pub fn cluster(name: &str, h2: bool) -> Any {
    use uh::http_protocol_options as o;
    let upstream = if h2 {
        o::UpstreamProtocolOptions::ExplicitHttpConfig(o::ExplicitHttpConfig {
            protocol_config: Some(
                o::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(Default::default()),
            ),
        })
    } else {
        o::UpstreamProtocolOptions::UseDownstreamProtocolConfig(Default::default())
    };
    let opts = uh::HttpProtocolOptions {
        upstream_protocol_options: Some(upstream),
        ..Default::default()
    };
    any(&cds::Cluster {
        name: name.into(),
        cluster_discovery_type: Some(cds::cluster::ClusterDiscoveryType::Type(
            cds::cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cds::cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: name.into(),
        }),
        connect_timeout: Some(PbDuration {
            seconds: 1,
            nanos: 0,
        }),
        typed_extension_protocol_options: [(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
            any(&opts),
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    })
}

pub fn endpoints(name: &str, addrs: &[SocketAddr]) -> Any {
    any(&eds::ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![eds::LocalityLbEndpoints {
            lb_endpoints: addrs
                .iter()
                .map(|a| eds::LbEndpoint {
                    host_identifier: Some(eds::lb_endpoint::HostIdentifier::Endpoint(
                        eds::Endpoint {
                            address: Some(socket(*a)),
                            ..Default::default()
                        },
                    )),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// A store with one listener "outbound" on 127.0.0.1:<ephemeral> using RDS "outbound".
pub struct Proxy {
    pub store: ConfigStore,
    pub addr: SocketAddr,
    version: u32,
}

impl Proxy {
    pub fn start() -> Self {
        Self::start_with(ConfigStore::new(), |_| {})
    }

    /// [`Proxy::start`] on `store` (its drain, limits), with a change to the listener's
    /// connection manager.
    pub fn start_with(
        mut store: ConfigStore,
        change: impl FnOnce(&mut hcm::HttpConnectionManager),
    ) -> Self {
        store
            .apply_response(
                type_url::LISTENER,
                "l1",
                vec![listener_with(
                    "outbound",
                    "127.0.0.1:0".parse().unwrap(),
                    "outbound",
                    change,
                )],
            )
            .unwrap();
        let addr = store.local_addr("outbound").unwrap();
        Self {
            store,
            addr,
            version: 0,
        }
    }

    pub fn push(&mut self, type_url: &str, resources: Vec<Any>) -> Result<(), String> {
        self.version += 1;
        self.store
            .apply_response(type_url, &format!("v{}", self.version), resources)
    }

    /// Clusters (each with its endpoints) and one virtual host for `domains` that sends
    /// everything to `target`.
    pub fn route_all(
        &mut self,
        clusters: &[(&str, bool, Vec<SocketAddr>)],
        domains: &[&str],
        target: &str,
    ) {
        self.configure(
            clusters,
            vec![vhost(
                "all",
                domains,
                vec![to_cluster(prefix("/"), target, None)],
            )],
        );
    }

    /// Clusters (each with its endpoints) and the "outbound" route table.
    pub fn configure(
        &mut self,
        clusters: &[(&str, bool, Vec<SocketAddr>)],
        vhosts: Vec<rt::VirtualHost>,
    ) {
        self.push(
            type_url::CLUSTER,
            clusters.iter().map(|(n, h2, _)| cluster(n, *h2)).collect(),
        )
        .unwrap();
        self.push(
            type_url::ENDPOINT,
            clusters.iter().map(|(n, _, a)| endpoints(n, a)).collect(),
        )
        .unwrap();
        self.push(type_url::ROUTE, vec![route_config("outbound", vhosts)])
            .unwrap();
    }
}

/// Starts an upstream answering `<name> <version> <host> <path>`; `/slow/<ms>` waits first.
pub async fn upstream(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                    if let Some(ms) = req.uri().path().strip_prefix("/slow/") {
                        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
                    }
                    let host = req
                        .headers()
                        .get("host")
                        .map(|h| h.to_str().unwrap_or("").to_string());
                    let host = host
                        .or_else(|| req.uri().authority().map(|a| a.to_string()))
                        .unwrap_or_default();
                    let rid = req.headers().contains_key("x-request-id");
                    let body = format!(
                        "{name} {:?} {host} {} rid={rid} conn={}",
                        req.version(),
                        req.uri().path_and_query().map_or("/", |p| p.as_str()),
                        req.headers().contains_key("connection"),
                    );
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

pub type TestClient = Client<HttpConnector, Empty<Bytes>>;

pub fn h1_client() -> TestClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub fn h2_client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

/// Sends GET `path` with `Host: host` to the proxy; returns status, flags header and body.
pub async fn get(
    client: &TestClient,
    proxy: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut req = Request::get(format!("http://{proxy}{path}")).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let flags = resp
        .headers()
        .get("x-weft-response-flags")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, flags, String::from_utf8_lossy(&body).into_owned())
}

/// What a [`counting_upstream`] has seen.
#[derive(Debug, Default)]
pub struct Seen {
    pub accepted: std::sync::atomic::AtomicUsize,
    pub closed: std::sync::atomic::AtomicUsize,
    /// `:authority` (h2) or `Host` (h1) of every request, and its HTTP version.
    pub authorities: parking_lot::Mutex<Vec<(String, http::Version)>>,
}

impl Seen {
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
    pub fn closed(&self) -> usize {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// An upstream that counts its connections and records request authorities. `/slow/<ms>`
/// waits first. With `h2_max_streams` it speaks only h2c and advertises that stream limit.
pub async fn counting_upstream(h2_max_streams: Option<u32>) -> (SocketAddr, Arc<Seen>) {
    use std::sync::atomic::Ordering;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            s.accepted.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            tokio::spawn(async move {
                let s2 = s.clone();
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let s = s2.clone();
                    async move {
                        let authority = req
                            .uri()
                            .authority()
                            .map(|a| a.to_string())
                            .or_else(|| {
                                req.headers()
                                    .get("host")
                                    .map(|h| h.to_str().unwrap_or("").to_string())
                            })
                            .unwrap_or_default();
                        s.authorities
                            .lock()
                            .push((authority.clone(), req.version()));
                        if let Some(ms) = req.uri().path().strip_prefix("/slow/") {
                            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0)))
                                .await;
                        }
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let text = format!("authority={authority} body={}", body.len());
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                    }
                });
                let io = TokioIo::new(stream);
                match h2_max_streams {
                    Some(max) => {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .max_concurrent_streams(max)
                            .serve_connection(io, svc)
                            .await;
                    }
                    None => {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, svc)
                            .await;
                    }
                }
                s.closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, seen)
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; panics with `what` then.
pub async fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An EDS cluster with the given idle timeout for upstream connections.
pub fn cluster_with_idle_timeout(name: &str, h2: bool, idle: Duration) -> Any {
    let mut c = cds::Cluster::decode(cluster(name, h2).value.as_slice()).unwrap();
    let key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
    let mut opts =
        uh::HttpProtocolOptions::decode(c.typed_extension_protocol_options[key].value.as_slice())
            .unwrap();
    opts.common_http_protocol_options = Some(core::HttpProtocolOptions {
        idle_timeout: Some(PbDuration {
            seconds: idle.as_secs() as i64,
            nanos: idle.subsec_nanos() as i32,
        }),
        ..Default::default()
    });
    c.typed_extension_protocol_options
        .insert(key.to_string(), any(&opts));
    any(&c)
}

/// An EDS h2c cluster whose connections send a PING every `interval` (no jitter) and close
/// when one is not answered within `timeout`.
pub fn cluster_with_h2_keepalive(name: &str, interval: Duration, timeout: Duration) -> Any {
    use uh::http_protocol_options as o;
    let mut c = cds::Cluster::decode(cluster(name, true).value.as_slice()).unwrap();
    let key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
    let pb = |d: Duration| PbDuration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    };
    let opts = uh::HttpProtocolOptions {
        upstream_protocol_options: Some(o::UpstreamProtocolOptions::ExplicitHttpConfig(
            o::ExplicitHttpConfig {
                protocol_config: Some(
                    o::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                        core::Http2ProtocolOptions {
                            connection_keepalive: Some(core::KeepaliveSettings {
                                interval: Some(pb(interval)),
                                timeout: Some(pb(timeout)),
                                interval_jitter: Some(
                                    envoy_types::pb::envoy::r#type::v3::Percent { value: 0.0 },
                                ),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                    ),
                ),
            },
        )),
        ..Default::default()
    };
    c.typed_extension_protocol_options
        .insert(key.to_string(), any(&opts));
    any(&c)
}

/// A STRICT_DNS cluster resolving `host:port`, IPv4 only, refreshed every `refresh`.
#[allow(deprecated)]
pub fn dns_cluster(name: &str, host: &str, port: u16, refresh: Duration) -> Any {
    any(&cds::Cluster {
        name: name.into(),
        cluster_discovery_type: Some(cds::cluster::ClusterDiscoveryType::Type(
            cds::cluster::DiscoveryType::StrictDns as i32,
        )),
        dns_lookup_family: cds::cluster::DnsLookupFamily::V4Only as i32,
        dns_refresh_rate: Some(PbDuration {
            seconds: refresh.as_secs() as i64,
            nanos: refresh.subsec_nanos() as i32,
        }),
        load_assignment: Some(eds::ClusterLoadAssignment {
            cluster_name: name.into(),
            endpoints: vec![eds::LocalityLbEndpoints {
                lb_endpoints: vec![eds::LbEndpoint {
                    host_identifier: Some(eds::lb_endpoint::HostIdentifier::Endpoint(
                        eds::Endpoint {
                            address: Some(core::Address {
                                address: Some(core::address::Address::SocketAddress(
                                    core::SocketAddress {
                                        address: host.into(),
                                        port_specifier: Some(
                                            core::socket_address::PortSpecifier::PortValue(
                                                u32::from(port),
                                            ),
                                        ),
                                        ..Default::default()
                                    },
                                )),
                            }),
                            ..Default::default()
                        },
                    )),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Gives `store` the inbound cluster `inbound|9080||` with endpoint `app` and the route table
/// `inbound|9080` sending everything to it (as a sidecar's inbound listener for port 9080 has).
pub fn route_inbound_to(store: &mut ConfigStore, app: SocketAddr) {
    store
        .apply_response(
            type_url::CLUSTER,
            "c1",
            vec![cluster("inbound|9080||", false)],
        )
        .unwrap();
    store
        .apply_response(
            type_url::ENDPOINT,
            "e1",
            vec![endpoints("inbound|9080||", &[app])],
        )
        .unwrap();
    store
        .apply_response(
            type_url::ROUTE,
            "r1",
            vec![route_config(
                "inbound|9080",
                vec![vhost(
                    "inbound|http|9080",
                    &["*"],
                    vec![to_cluster(prefix("/"), "inbound|9080||", None)],
                )],
            )],
        )
        .unwrap();
}
