//! Mutual TLS between two proxies in one process: client sidecar A (outbound, auto mTLS by
//! endpoint metadata) → server sidecar B (inbound, STRICT or PERMISSIVE) → app. Identities
//! come from a real CA (weft-identity) through the proxies' identity watch.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use envoy_types::pb::envoy::config::cluster::v3 as cds;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3 as eds;
use envoy_types::pb::envoy::config::listener::v3 as lds;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls;
use envoy_types::pb::google::protobuf::{Any, BoolValue, Struct, Value, value::Kind};
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use weft_identity::{CertificateAuthority, TrustBundle};
use weft_proxy::ConfigStore;
use weft_proxy::tls::MeshTls;
use weft_xds::type_url;

use common::mesh::{ca, identity, mesh_common, state, tls_socket};

/// An EDS cluster with Istio's auto-mTLS transport socket matches.
fn auto_mtls_cluster(name: &str, h2: bool, sans: &[&str]) -> Any {
    let mut cluster = cds::Cluster::decode(cluster(name, h2).value.as_slice()).unwrap();
    let upstream = tls::UpstreamTlsContext {
        sni: format!("outbound_.80_._.{name}"),
        common_tls_context: Some(mesh_common(&["istio-peer-exchange", "istio"], sans)),
        ..Default::default()
    };
    cluster.transport_socket_matches = vec![
        cds::cluster::TransportSocketMatch {
            name: "tlsMode-istio".into(),
            r#match: Some(Struct {
                fields: [("tlsMode".to_string(), string_value("istio"))]
                    .into_iter()
                    .collect(),
            }),
            transport_socket: Some(tls_socket(any(&upstream))),
        },
        cds::cluster::TransportSocketMatch {
            name: "tlsMode-disabled".into(),
            r#match: Some(Struct::default()),
            transport_socket: Some(core::TransportSocket {
                name: "envoy.transport_sockets.raw_buffer".into(),
                config_type: None,
            }),
        },
    ];
    any(&cluster)
}

fn string_value(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

/// Endpoints, each with `tlsMode: istio` metadata when `sidecar`.
fn labelled_endpoints(name: &str, addrs: &[SocketAddr], sidecar: bool) -> Any {
    let mut cla =
        eds::ClusterLoadAssignment::decode(endpoints(name, addrs).value.as_slice()).unwrap();
    if sidecar {
        for ep in &mut cla.endpoints[0].lb_endpoints {
            ep.metadata = Some(core::Metadata {
                filter_metadata: [(
                    "envoy.transport_socket_match".to_string(),
                    Struct {
                        fields: [("tlsMode".to_string(), string_value("istio"))]
                            .into_iter()
                            .collect(),
                    },
                )]
                .into_iter()
                .collect(),
                ..Default::default()
            });
        }
    }
    any(&cla)
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Strict,
    Permissive,
}

/// Listener "inbound" with the mTLS chains of `mode`, RDS "outbound" (Proxy's route table).
fn inbound_listener(addr: SocketAddr, mode: Mode) -> Any {
    let base =
        lds::Listener::decode(listener("inbound", addr, "outbound").value.as_slice()).unwrap();
    let plain_chain = base.filter_chains[0].clone();
    let downstream = tls::DownstreamTlsContext {
        require_client_certificate: Some(BoolValue { value: true }),
        common_tls_context: Some(mesh_common(&["h2", "http/1.1"], &[])),
        ..Default::default()
    };
    let mut tls_chain = plain_chain.clone();
    tls_chain.filter_chain_match = Some(lds::FilterChainMatch {
        transport_protocol: "tls".into(),
        ..Default::default()
    });
    tls_chain.transport_socket = Some(tls_socket(any(&downstream)));
    let mut raw_chain = plain_chain;
    raw_chain.filter_chain_match = Some(lds::FilterChainMatch {
        transport_protocol: "raw_buffer".into(),
        ..Default::default()
    });
    let chains = match mode {
        Mode::Strict => vec![tls_chain],
        Mode::Permissive => vec![tls_chain, raw_chain],
    };
    let mode_name = if mode == Mode::Strict {
        "STRICT"
    } else {
        "PERMISSIVE"
    };
    any(&lds::Listener {
        filter_chains: chains,
        listener_filters: vec![lds::ListenerFilter {
            name: "envoy.filters.listener.tls_inspector".into(),
            ..Default::default()
        }],
        metadata: Some(core::Metadata {
            filter_metadata: [(
                "weft.mtls".to_string(),
                Struct {
                    fields: [
                        ("mode".to_string(), string_value(mode_name)),
                        ("policy".to_string(), string_value("istio-system/default")),
                    ]
                    .into_iter()
                    .collect(),
                },
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        }),
        ..base
    })
}

/// Server sidecar B: inbound listener in `mode` routing everything to `app`.
fn server_sidecar(tls: MeshTls, app: SocketAddr, mode: Mode) -> (ConfigStore, SocketAddr) {
    let mut store = ConfigStore::new().with_tls(tls);
    store
        .apply_response(type_url::CLUSTER, "1", vec![cluster("app", false)])
        .unwrap();
    store
        .apply_response(type_url::ENDPOINT, "1", vec![endpoints("app", &[app])])
        .unwrap();
    store
        .apply_response(
            type_url::LISTENER,
            "1",
            vec![inbound_listener("127.0.0.1:0".parse().unwrap(), mode)],
        )
        .unwrap();
    store
        .apply_response(
            type_url::ROUTE,
            "1",
            vec![route_config(
                "outbound",
                vec![vhost(
                    "all",
                    &["*"],
                    vec![to_cluster(prefix("/"), "app", None)],
                )],
            )],
        )
        .unwrap();
    let addr = store.local_addr("inbound").unwrap();
    (store, addr)
}

/// Client sidecar A: outbound listener, cluster "reviews" → B with auto mTLS.
fn client_sidecar(
    tls: MeshTls,
    server: SocketAddr,
    h2: bool,
    sidecar: bool,
    sans: &[&str],
) -> (ConfigStore, SocketAddr) {
    let mut store = ConfigStore::new().with_tls(tls);
    store
        .apply_response(
            type_url::LISTENER,
            "1",
            vec![listener(
                "outbound",
                "127.0.0.1:0".parse().unwrap(),
                "outbound",
            )],
        )
        .unwrap();
    store
        .apply_response(
            type_url::CLUSTER,
            "1",
            vec![auto_mtls_cluster("reviews", h2, sans)],
        )
        .unwrap();
    store
        .apply_response(
            type_url::ENDPOINT,
            "1",
            vec![labelled_endpoints("reviews", &[server], sidecar)],
        )
        .unwrap();
    store
        .apply_response(
            type_url::ROUTE,
            "1",
            vec![route_config(
                "outbound",
                vec![vhost(
                    "reviews",
                    &["reviews"],
                    vec![to_cluster(prefix("/"), "reviews", None)],
                )],
            )],
        )
        .unwrap();
    let addr = store.local_addr("outbound").unwrap();
    (store, addr)
}

async fn ready(store: &ConfigStore) {
    let rx = store.subscribe();
    eventually("the proxy ready", Duration::from_secs(10), || {
        rx.borrow().ready()
    })
    .await;
}

const REVIEWS_SA: &str = "spiffe://cluster.local/ns/default/sa/reviews";

#[tokio::test]
async fn sidecars_speak_mutual_tls_and_strict_refuses_plaintext() {
    let ca = ca();
    let app = upstream("app").await;
    let b_id = identity(&ca, "reviews");
    let (b, b_addr) = server_sidecar(MeshTls::new(Some(b_id.subscribe())), app, Mode::Strict);
    let a_id = identity(&ca, "productpage");
    for h2 in [false, true] {
        let (a, a_addr) = client_sidecar(
            MeshTls::new(Some(a_id.subscribe())),
            b_addr,
            h2,
            true,
            &[REVIEWS_SA],
        );
        ready(&a).await;
        ready(&b).await;
        let (status, flags, body) = get(&h1_client(), a_addr, "reviews", "/hello", &[]).await;
        assert_eq!((status, flags.as_str()), (200, ""), "h2={h2}: {body}");
        assert!(body.starts_with("app "), "{body}");
        assert!(body.contains("/hello"), "{body}");
    }

    // A plaintext client straight to B's STRICT port: closed before any HTTP.
    let mut raw = tokio::net::TcpStream::connect(b_addr).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: reviews\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut buf))
        .await
        .expect("closed within 10s")
        .unwrap_or(0);
    assert_eq!(
        n,
        0,
        "STRICT answered plaintext: {:?}",
        String::from_utf8_lossy(&buf)
    );
}

#[tokio::test]
async fn permissive_serves_tls_and_plaintext_on_one_port() {
    let ca = ca();
    let app = upstream("app").await;
    let b_id = identity(&ca, "reviews");
    let (b, b_addr) = server_sidecar(MeshTls::new(Some(b_id.subscribe())), app, Mode::Permissive);
    ready(&b).await;
    let (status, _, body) = get(&h1_client(), b_addr, "reviews", "/plain", &[]).await;
    assert_eq!(status, 200, "plaintext on PERMISSIVE: {body}");
    let a_id = identity(&ca, "productpage");
    let (a, a_addr) = client_sidecar(
        MeshTls::new(Some(a_id.subscribe())),
        b_addr,
        false,
        true,
        &[REVIEWS_SA],
    );
    ready(&a).await;
    let (status, _, body) = get(&h1_client(), a_addr, "reviews", "/tls", &[]).await;
    assert_eq!(status, 200, "mTLS on PERMISSIVE: {body}");
    // An endpoint without a sidecar gets plaintext from the same cluster.
    let (c, c_addr) = client_sidecar(
        MeshTls::new(Some(a_id.subscribe())),
        b_addr,
        false,
        false,
        &[REVIEWS_SA],
    );
    ready(&c).await;
    let (status, _, body) = get(&h1_client(), c_addr, "reviews", "/no-sidecar", &[]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_server_with_the_wrong_identity_or_no_identity_fails_the_request() {
    let ca = ca();
    let app = upstream("app").await;
    let b_id = identity(&ca, "ratings");
    let (b, b_addr) = server_sidecar(MeshTls::new(Some(b_id.subscribe())), app, Mode::Strict);
    ready(&b).await;
    let a_id = identity(&ca, "productpage");
    let (a, a_addr) = client_sidecar(
        MeshTls::new(Some(a_id.subscribe())),
        b_addr,
        false,
        true,
        &[REVIEWS_SA],
    );
    ready(&a).await;
    let (status, flags, _) = get(&h1_client(), a_addr, "reviews", "/", &[]).await;
    assert_eq!(
        (status, flags.as_str()),
        (503, "UF"),
        "ratings is not reviews"
    );

    // A client without identity cannot do mTLS: 503, no plaintext fallback.
    let (c, c_addr) = client_sidecar(MeshTls::new(None), b_addr, false, true, &[]);
    ready(&c).await;
    let (status, flags, _) = get(&h1_client(), c_addr, "reviews", "/", &[]).await;
    assert_eq!((status, flags.as_str()), (503, "UF"));

    // A client of another root is refused by B.
    let other = ca_other();
    let d_id = identity(&other, "productpage");
    let (d, d_addr) = client_sidecar(
        MeshTls::new(Some(d_id.subscribe())),
        b_addr,
        false,
        true,
        &[],
    );
    ready(&d).await;
    let (status, flags, _) = get(&h1_client(), d_addr, "reviews", "/", &[]).await;
    assert_eq!((status, flags.as_str()), (503, "UF"));
}

fn ca_other() -> CertificateAuthority {
    ca()
}

#[tokio::test]
async fn a_renewed_certificate_serves_new_connections() {
    let ca = ca();
    let app = upstream("app").await;
    let b_id = identity(&ca, "reviews");
    let (b, b_addr) = server_sidecar(MeshTls::new(Some(b_id.subscribe())), app, Mode::Strict);
    ready(&b).await;
    let a_id = identity(&ca, "productpage");
    let (a, a_addr) = client_sidecar(
        MeshTls::new(Some(a_id.subscribe())),
        b_addr,
        false,
        true,
        &[REVIEWS_SA],
    );
    ready(&a).await;
    assert_eq!(get(&h1_client(), a_addr, "reviews", "/", &[]).await.0, 200);
    // Root rotation: a new root, both trusted, then both sides renewed from the new root.
    let new_ca = ca_other();
    let both = TrustBundle::from_pem(
        "both",
        format!(
            "{}{}",
            ca.trust_bundle().to_pem(),
            new_ca.trust_bundle().to_pem()
        )
        .as_bytes(),
    )
    .unwrap();
    for (tx, sa) in [(&b_id, "reviews"), (&a_id, "productpage")] {
        let mut next = state(&new_ca, sa);
        next.bundle = Some(Arc::new(both.clone()));
        tx.send_replace(Arc::new(next));
    }
    for i in 0..20 {
        let (status, flags, body) =
            get(&h1_client(), a_addr, "reviews", &format!("/{i}"), &[]).await;
        assert_eq!((status, flags.as_str()), (200, ""), "{body}");
    }
    // A fresh connection now needs the new root: drop the old one and cut the old root.
    for (tx, sa) in [(&b_id, "reviews"), (&a_id, "productpage")] {
        tx.send_replace(Arc::new(state(&new_ca, sa)));
    }
    let (c, c_addr) = client_sidecar(
        MeshTls::new(Some(a_id.subscribe())),
        b_addr,
        false,
        true,
        &[REVIEWS_SA],
    );
    ready(&c).await;
    assert_eq!(get(&h1_client(), c_addr, "reviews", "/", &[]).await.0, 200);
}
