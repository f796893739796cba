//! The TCP proxy of a VirtualService's `tcp` and `tls` routes, in process: a listener whose
//! chains split plaintext connections 80/20 with `weighted_clusters` and route TLS connections
//! by the ClientHello's SNI (an exact name, a `*.` wildcard), to greeting servers on 127.0.0.1.
#![allow(clippy::unwrap_used)] // test code: panicking is the point.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{Proxy, any, cluster, endpoints, socket};
use envoy_types::pb::envoy::config::listener::v3 as lds;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use weft_xds::contract::TLS_INSPECTOR;
use weft_xds::type_url;

/// A server that greets every connection with `<name>\n`, then closes it.
async fn greeter(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.write_all(format!("{name}\n").as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

fn tcp_filter(specifier: tcp::tcp_proxy::ClusterSpecifier) -> lds::Filter {
    lds::Filter {
        name: weft_xds::contract::TCP_PROXY.into(),
        config_type: Some(lds::filter::ConfigType::TypedConfig(any(&tcp::TcpProxy {
            stat_prefix: "tcp".into(),
            cluster_specifier: Some(specifier),
            ..Default::default()
        }))),
    }
}

fn to(cluster: &str) -> lds::Filter {
    tcp_filter(tcp::tcp_proxy::ClusterSpecifier::Cluster(cluster.into()))
}

fn split(clusters: &[(&str, u32)]) -> lds::Filter {
    tcp_filter(tcp::tcp_proxy::ClusterSpecifier::WeightedClusters(
        tcp::tcp_proxy::WeightedCluster {
            clusters: clusters
                .iter()
                .map(
                    |(name, weight)| tcp::tcp_proxy::weighted_cluster::ClusterWeight {
                        name: name.to_string(),
                        weight: *weight,
                        ..Default::default()
                    },
                )
                .collect(),
        },
    ))
}

fn sni_chain(names: &[&str], filter: lds::Filter) -> lds::FilterChain {
    lds::FilterChain {
        filter_chain_match: Some(lds::FilterChainMatch {
            server_names: names.iter().map(|n| n.to_string()).collect(),
            transport_protocol: "tls".into(),
            ..Default::default()
        }),
        filters: vec![filter],
        ..Default::default()
    }
}

/// A listener on 127.0.0.1 with the TLS inspector: `v1.echo.test` → v1, `*.echo.test` → v2,
/// anything else split 80/20 between v1 and v2.
fn l4_listener() -> lds::Listener {
    lds::Listener {
        name: "l4".into(),
        address: Some(socket("127.0.0.1:0".parse().unwrap())),
        listener_filters: vec![lds::ListenerFilter {
            name: TLS_INSPECTOR.into(),
            config_type: Some(lds::listener_filter::ConfigType::TypedConfig(any(
                &TlsInspector::default(),
            ))),
            ..Default::default()
        }],
        filter_chains: vec![
            sni_chain(&["v1.echo.test"], to("v1")),
            sni_chain(&["*.echo.test"], to("v2")),
            lds::FilterChain {
                filters: vec![split(&[("v1", 80), ("v2", 20)])],
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

/// A ClientHello for `server_name`, as a TLS client's first flight.
fn client_hello(server_name: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// Connects, sends `first`, and reads the greeting of whichever server the proxy chose.
async fn greeting(addr: SocketAddr, first: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(first).await.unwrap();
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        BufReader::new(stream).read_line(&mut line),
    )
    .await
    .expect("a greeting within 5 s")
    .unwrap();
    line.trim().to_string()
}

async fn setup() -> (Proxy, SocketAddr) {
    let (v1, v2) = (greeter("v1").await, greeter("v2").await);
    let mut proxy = Proxy::start();
    proxy
        .push(
            type_url::CLUSTER,
            vec![cluster("v1", false), cluster("v2", false)],
        )
        .unwrap();
    proxy
        .push(
            type_url::ENDPOINT,
            vec![endpoints("v1", &[v1]), endpoints("v2", &[v2])],
        )
        .unwrap();
    proxy
        .push(type_url::LISTENER, vec![any(&l4_listener())])
        .unwrap();
    let addr = proxy.store.local_addr("l4").expect("l4 bound");
    (proxy, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_clusters_split_connections_by_weight() {
    let (_proxy, addr) = setup().await;
    const N: usize = 1000;
    let mut v2 = 0;
    for _ in 0..N {
        match greeting(addr, b"hello\n").await.as_str() {
            "v1" => {}
            "v2" => v2 += 1,
            other => panic!("unexpected greeting {other:?}"),
        }
    }
    // 20 % of N within 3σ (σ = √(N·0.2·0.8) ≈ 12.6).
    let sigma = (N as f64 * 0.2 * 0.8).sqrt();
    println!(
        "weighted tcp_proxy: {v2} of {N} connections to v2 (expected 200 ± {:.0})",
        3.0 * sigma
    );
    assert!(
        (v2 as f64 - 0.2 * N as f64).abs() <= 3.0 * sigma,
        "{v2} of {N} to v2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_take_the_chain_of_their_server_name() {
    let (_proxy, addr) = setup().await;
    for _ in 0..20 {
        assert_eq!(greeting(addr, &client_hello("v1.echo.test")).await, "v1");
        assert_eq!(greeting(addr, &client_hello("other.echo.test")).await, "v2");
        assert_eq!(greeting(addr, &client_hello("a.b.echo.test")).await, "v2");
    }
    // `*.echo.test` does not match `echo.test`: the split takes it (both answer).
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..100 {
        seen.insert(greeting(addr, &client_hello("echo.test")).await);
    }
    assert_eq!(seen, ["v1".to_string(), "v2".to_string()].into());
}
