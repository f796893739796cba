//! A proxy NACKs config it cannot apply, keeps serving the old config, and the control
//! plane logs the rejection. The control plane here is the real `weft-xds` ADS server
//! (the code `weft-controller` serves with) fed hand-made Envoy resources, because the
//! controller itself never generates a resource its proxy cannot apply.

use std::{io::Write, net::SocketAddr, sync::Arc, time::Duration};

use envoy_types::pb::{
    envoy::{
        config::{
            cluster::v3::{Cluster, cluster},
            core::v3::{
                Address, AggregatedConfigSource, ConfigSource, SocketAddress, address,
                config_source, socket_address,
            },
            endpoint::v3::{
                ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
            },
            listener::v3::{Filter, FilterChain, Listener, filter},
            route::v3::{
                Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route,
                route_action, route_match,
            },
        },
        extensions::filters::{
            http::router::v3::Router,
            network::http_connection_manager::v3::{
                HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
            },
        },
        r#type::matcher::v3::RegexMatcher,
    },
    google::protobuf::Any,
};
use parking_lot::Mutex;
use prost::{Message, Name};
use tokio::sync::watch;
use weft_e2e::{App, HttpClient, Net, Sidecar, eventually};
use weft_xds::{AdsServer, Generator, Resource, type_url};

/// Hand-made config: one outbound listener whose single route goes to the app, matching
/// paths with `regex` when given (else prefix "/").
struct HandMade {
    listen: SocketAddr,
    app: SocketAddr,
    regex: Option<&'static str>,
}

fn any<M: Message + Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

fn ads() -> Option<ConfigSource> {
    Some(ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    })
}

fn socket(addr: SocketAddr) -> Option<Address> {
    Some(Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: addr.ip().to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                addr.port(),
            ))),
            ..Default::default()
        })),
    })
}

impl Generator for HandMade {
    type Proxy = ();

    fn connect(
        &self,
        _node: &weft_xds::Node,
        _peer: Option<&weft_xds::AuthenticatedPeer>,
    ) -> Result<(), tonic::Status> {
        Ok(())
    }

    fn generate(&self, _proxy: &(), type_url: &str) -> Vec<Resource> {
        match type_url {
            type_url::LISTENER => {
                let hcm = HttpConnectionManager {
                    stat_prefix: "outbound".into(),
                    route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
                        config_source: ads(),
                        route_config_name: "outbound".into(),
                    })),
                    http_filters: vec![HttpFilter {
                        name: "envoy.filters.http.router".into(),
                        config_type: Some(http_filter::ConfigType::TypedConfig(any(
                            &Router::default(),
                        ))),
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                let listener = Listener {
                    name: "virtualOutbound".into(),
                    address: socket(self.listen),
                    filter_chains: vec![FilterChain {
                        filters: vec![Filter {
                            name: "envoy.filters.network.http_connection_manager".into(),
                            config_type: Some(filter::ConfigType::TypedConfig(any(&hcm))),
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                vec![Resource::new("virtualOutbound", &listener)]
            }
            type_url::ROUTE => {
                let path = match self.regex {
                    Some(regex) => route_match::PathSpecifier::SafeRegex(RegexMatcher {
                        regex: regex.into(),
                        ..Default::default()
                    }),
                    None => route_match::PathSpecifier::Prefix("/".into()),
                };
                let config = RouteConfiguration {
                    name: "outbound".into(),
                    virtual_hosts: vec![VirtualHost {
                        name: "app".into(),
                        domains: vec!["*".into()],
                        routes: vec![Route {
                            r#match: Some(RouteMatch {
                                path_specifier: Some(path),
                                ..Default::default()
                            }),
                            action: Some(route::Action::Route(RouteAction {
                                cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                                    "app".into(),
                                )),
                                ..Default::default()
                            })),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                vec![Resource::new("outbound", &config)]
            }
            type_url::CLUSTER => {
                let cluster = Cluster {
                    name: "app".into(),
                    cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                        cluster::DiscoveryType::Eds as i32,
                    )),
                    eds_cluster_config: Some(cluster::EdsClusterConfig {
                        eds_config: ads(),
                        service_name: "app".into(),
                    }),
                    ..Default::default()
                };
                vec![Resource::new("app", &cluster)]
            }
            type_url::ENDPOINT => {
                let cla = ClusterLoadAssignment {
                    cluster_name: "app".into(),
                    endpoints: vec![LocalityLbEndpoints {
                        lb_endpoints: vec![LbEndpoint {
                            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(
                                Endpoint {
                                    address: socket(self.app),
                                    ..Default::default()
                                },
                            )),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                vec![Resource::new("app", &cla)]
            }
            _ => Vec::new(),
        }
    }
}

/// Log lines of this test process, captured from `tracing`.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unappliable_route_is_nacked_logged_and_old_config_keeps_serving() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .init();

    let net = Net::new();
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(SocketAddr::new(net.ip(11), 9080), "app", "v1", dir.path()).await;
    let proxy_ip = net.ip(10);
    let good = HandMade {
        listen: SocketAddr::new(proxy_ip, 15001),
        app: app.addr,
        regex: None,
    };
    let (snapshots, rx) = watch::channel(Arc::new(good));
    let server = AdsServer::new(rx);
    let xds = SocketAddr::new(net.ip(1), 15010);
    let listener = tokio::net::TcpListener::bind(xds).await.unwrap();
    let service = server.clone().into_service();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });

    let sidecar = Sidecar::start(
        proxy_ip,
        &format!("http://{xds}"),
        "client",
        "app=client",
        None,
        dir.path(),
    )
    .await;
    let http = HttpClient::new();
    let get = || http.request(sidecar.outbound(), "GET", "anything", "/hello", &[]);
    let reply = eventually(
        Duration::from_secs(5),
        "the good route to serve",
        || async { get().await.ok().filter(|r| r.status == 200) },
    )
    .await;
    assert_eq!(reply.version.as_deref(), Some("v1"));

    // Push a route whose regex does not compile.
    snapshots.send_replace(Arc::new(HandMade {
        listen: SocketAddr::new(proxy_ip, 15001),
        app: app.addr,
        regex: Some("/hel(lo"),
    }));
    let nack = eventually(
        Duration::from_secs(3),
        "the proxy to NACK the route",
        || async {
            server
                .status()
                .into_iter()
                .flat_map(|p| p.types)
                .find(|t| t.type_url == type_url::ROUTE)
                .and_then(|t| t.last_nack)
        },
    )
    .await;
    assert!(
        nack.contains("outbound"),
        "the NACK names the route config: {nack}"
    );
    assert!(
        nack.to_lowercase().contains("regex"),
        "the NACK says what is wrong: {nack}"
    );

    // The control plane logged it at warn, naming the proxy and the type.
    let logged = String::from_utf8_lossy(&logs.0.lock()).into_owned();
    let line = logged
        .lines()
        .find(|l| l.contains("WARN") && l.contains("rejected") && l.contains("RDS"))
        .unwrap_or_else(|| panic!("no NACK warning in the control plane log:\n{logged}"));
    assert!(
        line.contains("client"),
        "the warning names the proxy: {line}"
    );

    // The old route still serves, repeatedly.
    for _ in 0..50 {
        let reply = get().await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
    }

    // A fixed config is accepted again.
    snapshots.send_replace(Arc::new(HandMade {
        listen: SocketAddr::new(proxy_ip, 15001),
        app: app.addr,
        regex: Some("/hel+o"),
    }));
    eventually(
        Duration::from_secs(3),
        "the fixed route to be ACKed",
        || async {
            let acked = server
                .status()
                .into_iter()
                .flat_map(|p| p.types)
                .find(|t| t.type_url == type_url::ROUTE)
                .filter(|t| t.acked_version.as_deref() == Some(t.sent_version.as_str()));
            acked.map(|_| ())
        },
    )
    .await;
    let reply = get().await.unwrap();
    assert_eq!(reply.status, 200);
    let reply = http
        .request(sidecar.outbound(), "GET", "anything", "/other", &[])
        .await
        .unwrap();
    assert_eq!(
        reply.status, 404,
        "the new route only matches /hel+o: {}",
        reply.body
    );
}
