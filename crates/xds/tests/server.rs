//! The real ADS server, driven by raw gRPC requests over `tokio::io::duplex` (paused time).

mod common;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Status;
use weft_xds::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use weft_xds::{Resource, version_of};

use common::*;

#[tokio::test(start_paused = true)]
async fn initial_subscription_gets_full_set_even_when_empty() {
    let harness =
        ServerHarness::new(TestGen::default().with(CLUSTER, vec![cluster("b"), cluster("a")]));
    let mut stream = harness.open().await;

    stream.subscribe(CLUSTER, &[]);
    let cds = stream.next().await;
    assert_eq!(cds.type_url, CLUSTER);
    assert_eq!(names_of(&cds), ["a", "b"], "sorted by name");
    assert_eq!(cds.version_info, version_of(&[cluster("a"), cluster("b")]));
    assert!(!cds.nonce.is_empty());

    // No listeners at all: the initial request is still answered, with an empty set.
    stream.subscribe(LISTENER, &[]);
    let lds = stream.next().await;
    assert_eq!(lds.type_url, LISTENER);
    assert!(lds.resources.is_empty());
    assert_eq!(lds.version_info, version_of(&[]));
    assert_ne!(lds.nonce, cds.nonce, "nonces are unique on a stream");

    let proxy = harness.proxy();
    assert_eq!(proxy.id, NODE_ID);
    let types: Vec<&str> = proxy.types.iter().map(|t| t.type_url.as_str()).collect();
    assert_eq!(types, [CLUSTER, LISTENER]);
    let cds_status = harness.type_status(CLUSTER);
    assert_eq!(cds_status.sent_version, cds.version_info);
    assert_eq!(cds_status.sent_nonce, cds.nonce);
    assert_eq!(cds_status.resource_count, 2);
    assert_eq!(cds_status.acked_version, None);
    serde_json::to_string(&harness.server.status()).expect("status serializes");
}

#[tokio::test(start_paused = true)]
async fn version_is_the_same_across_streams_for_the_same_content() {
    let harness = ServerHarness::new(base_snapshot());
    let mut first = harness.open().await;
    first.subscribe(CLUSTER, &[]);
    let v1 = first.next().await.version_info;
    drop(first);
    let mut second = harness.open().await;
    second.subscribe(CLUSTER, &[]);
    assert_eq!(second.next().await.version_info, v1);
}

#[tokio::test(start_paused = true)]
async fn ack_is_recorded_in_status() {
    let harness = ServerHarness::new(base_snapshot());
    let mut stream = harness.open().await;
    stream.subscribe(CLUSTER, &[]);
    let cds = stream.next().await;
    stream.ack(&cds, &[]);
    harness
        .wait_status("the ACK", |s| {
            s.first()
                .and_then(|p| p.types.first())
                .and_then(|t| t.acked_version.clone())
                == Some(cds.version_info.clone())
        })
        .await;
    // An ACK with unchanged names gets no response.
    stream.assert_quiet().await;
    assert_eq!(harness.type_status(CLUSTER).last_nack, None);
}

#[tokio::test(start_paused = true)]
async fn nack_is_logged_recorded_and_content_not_resent() {
    capture_logs();
    let harness = ServerHarness::new(base_snapshot());
    let mut stream = harness.open().await;
    stream.subscribe(CLUSTER, &[]);
    let v1 = stream.next().await;
    stream.ack(&v1, &[]);
    harness
        .wait_status("the ACK", |s| {
            s.first()
                .and_then(|p| p.types.first())
                .and_then(|t| t.acked_version.clone())
                == Some(v1.version_info.clone())
        })
        .await;

    // v2 adds a cluster the proxy rejects.
    harness.publish(base_snapshot().with(CLUSTER, vec![cluster("a"), cluster("bad")]));
    let v2 = stream.next().await;
    assert_eq!(names_of(&v2), ["a", "bad"]);
    stream.nack(&v2, &v1.version_info, "cluster bad: unsupported lb_policy");

    harness
        .wait_status("the NACK", |s| {
            s.first()
                .and_then(|p| p.types.first())
                .is_some_and(|t| t.last_nack.is_some())
        })
        .await;
    let status = harness.type_status(CLUSTER);
    let nack = status.last_nack.expect("nack recorded");
    assert!(
        nack.contains("cluster bad: unsupported lb_policy"),
        "{nack}"
    );
    assert!(nack.contains(&v2.version_info), "{nack}");
    assert_eq!(status.acked_version, Some(v1.version_info.clone()));
    assert_eq!(status.sent_version, v2.version_info);
    let expected = format!(
        "proxy {NODE_ID} rejected CDS version {}: cluster bad: unsupported lb_policy",
        v2.version_info
    );
    let text = logs();
    assert!(
        text.lines()
            .any(|l| l.contains("WARN") && l.contains(&expected)),
        "missing warn log {expected:?} in:\n{text}"
    );

    // The rejected content is not sent again: not for the NACK, not for an unrelated
    // snapshot change that regenerates the same clusters.
    stream.assert_quiet().await;
    harness.publish(
        base_snapshot()
            .with(CLUSTER, vec![cluster("a"), cluster("bad")])
            .with(LISTENER, vec![]),
    );
    stream.assert_quiet().await;

    // Fixed content is pushed, and the stream keeps working. The fix restores v1: it goes
    // out with v1's version, and until the proxy answers it, the ACK on record (of v1, on
    // the first nonce) answers an older push.
    harness.publish(base_snapshot());
    let v3 = stream.next().await;
    assert_eq!(names_of(&v3), ["a", "b"]);
    assert_eq!(v3.version_info, v1.version_info);
    let status = harness.type_status(CLUSTER);
    assert_eq!(status.acked_version, Some(v3.version_info.clone()));
    assert_eq!(status.acked_nonce, Some(v1.nonce.clone()));
    assert_eq!(status.sent_nonce, v3.nonce);
    assert!(status.nack.is_some(), "{status:?}");
    stream.ack(&v3, &[]);
    harness
        .wait_status("the ACK after the NACK", |s| {
            s.first()
                .and_then(|p| p.types.first())
                .and_then(|t| t.acked_nonce.clone())
                == Some(v3.nonce.clone())
        })
        .await;
    let status = harness.type_status(CLUSTER);
    assert_eq!(status.acked_version, Some(v3.version_info.clone()));
    assert_eq!(status.nack, None);
}

/// What `/debug/syncz` shows of a type: how long ago it was sent and ACKed, and the NACK the
/// proxy has not got past (rejected version, message, age), kept through an ACK of the older
/// version and cleared once the proxy ACKs the version last sent.
#[tokio::test(start_paused = true)]
async fn status_tells_ages_and_the_outstanding_nack_until_a_later_ack() {
    let harness = ServerHarness::new(base_snapshot());
    let mut stream = harness.open().await;
    stream.subscribe(CLUSTER, &[]);
    let v1 = stream.next().await;
    let status = harness.type_status(CLUSTER);
    assert_eq!(status.short_name, "CDS");
    assert!(status.sent_ago_ms.is_some());
    assert_eq!(status.acked_ago_ms, None);
    let json = serde_json::to_value(&status).expect("serializes");
    assert_eq!(json["type"], "CDS");
    assert!(json["nack"].is_null());

    stream.ack(&v1, &[]);
    harness
        .wait_status("the ACK", |s| {
            s[0].types[0].acked_version.as_deref() == Some(v1.version_info.as_str())
        })
        .await;
    tokio::time::advance(Duration::from_secs(7)).await;
    let status = harness.type_status(CLUSTER);
    assert!(status.acked_ago_ms >= Some(7_000), "{status:?}");
    assert!(status.sent_ago_ms >= Some(7_000), "{status:?}");
    assert_eq!(status.nack, None);

    harness.publish(base_snapshot().with(CLUSTER, vec![cluster("a"), cluster("bad")]));
    let v2 = stream.next().await;
    stream.nack(&v2, &v1.version_info, "cluster bad: unsupported lb_policy");
    harness
        .wait_status("the NACK", |s| s[0].types[0].nack.is_some())
        .await;
    tokio::time::advance(Duration::from_secs(3)).await;
    let status = harness.type_status(CLUSTER);
    let nack = status.nack.clone().expect("the NACK is outstanding");
    assert_eq!(nack.version, v2.version_info);
    assert_eq!(nack.message, "cluster bad: unsupported lb_policy");
    assert!(nack.ago_ms >= 3_000, "{nack:?}");
    assert!(status.sent_ago_ms >= Some(3_000), "{status:?}");
    assert!(status.acked_ago_ms >= Some(10_000), "{status:?}");
    assert_eq!(
        status.acked_version.as_deref(),
        Some(v1.version_info.as_str())
    );

    // A request on the NACKed nonce without an error (as a change of names sends) ACKs the
    // older version again: the rejection still stands.
    stream.send(DiscoveryRequest {
        version_info: v1.version_info.clone(),
        type_url: CLUSTER.to_string(),
        response_nonce: v2.nonce.clone(),
        ..Default::default()
    });
    harness
        .wait_status("the ACK of the older version", |s| {
            s[0].types[0].acked_ago_ms < Some(1_000)
        })
        .await;
    let status = harness.type_status(CLUSTER);
    assert_eq!(status.acked_nonce.as_deref(), Some(v2.nonce.as_str()));
    assert_eq!(
        status.acked_version.as_deref(),
        Some(v1.version_info.as_str())
    );
    let still = status.nack.expect("the NACK still stands");
    assert_eq!((still.version, still.message), (nack.version, nack.message));

    // A fixed version, ACKed: the NACK is cleared, the history keeps it.
    harness.publish(base_snapshot().with(CLUSTER, vec![cluster("a"), cluster("c")]));
    let v3 = stream.next().await;
    stream.ack(&v3, &[]);
    harness
        .wait_status("the ACK of the fix", |s| {
            s[0].types[0].acked_version.as_deref() == Some(v3.version_info.as_str())
        })
        .await;
    let status = harness.type_status(CLUSTER);
    assert_eq!(status.nack, None);
    assert!(
        status
            .last_nack
            .as_deref()
            .is_some_and(|n| n.contains("unsupported lb_policy")),
        "{status:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn snapshot_change_pushes_only_changed_types_in_order() {
    let harness = ServerHarness::new(base_snapshot());
    let mut stream = harness.open().await;
    // Subscribe in the "wrong" order; pushes still follow CDS, EDS, LDS, RDS.
    stream.subscribe(ROUTE, &["outbound"]);
    let rds = stream.next().await;
    stream.ack(&rds, &["outbound"]);
    stream.subscribe(LISTENER, &[]);
    let lds = stream.next().await;
    stream.ack(&lds, &[]);
    stream.subscribe(ENDPOINT, &["a", "b"]);
    let eds = stream.next().await;
    stream.ack(&eds, &["a", "b"]);
    stream.subscribe(CLUSTER, &[]);
    let cds = stream.next().await;
    stream.ack(&cds, &[]);

    // Only clusters change.
    harness.publish(base_snapshot().with(CLUSTER, vec![cluster("a"), cluster("b"), cluster("c")]));
    let push = stream.next().await;
    assert_eq!(push.type_url, CLUSTER);
    assert_eq!(names_of(&push), ["a", "b", "c"]);
    stream.ack(&push, &[]);
    stream.assert_quiet().await;

    // A change that leaves the generated content identical pushes nothing.
    harness.publish(base_snapshot().with(CLUSTER, vec![cluster("c"), cluster("b"), cluster("a")]));
    stream.assert_quiet().await;

    // Everything changes: all four, in push order.
    harness.publish(
        TestGen::default()
            .with(CLUSTER, vec![cluster("x")])
            .with(ENDPOINT, vec![endpoints("a")])
            .with(LISTENER, vec![listener("virtualInbound", "inbound|8080")])
            .with(
                ROUTE,
                vec![
                    Resource::new(
                        "outbound",
                        &RouteConfiguration {
                            name: "outbound".into(),
                            most_specific_header_mutations_wins: true,
                            ..Default::default()
                        },
                    ),
                    route("other"),
                ],
            ),
    );
    let mut order = Vec::new();
    for _ in 0..4 {
        let response = stream.next().await;
        order.push(response.type_url.clone());
        if response.type_url == ENDPOINT {
            assert_eq!(names_of(&response), ["a"]);
        }
    }
    assert_eq!(order, [CLUSTER, ENDPOINT, LISTENER, ROUTE]);
    stream.assert_quiet().await;
}

#[tokio::test(start_paused = true)]
async fn stale_nonce_is_ignored() {
    let harness = ServerHarness::new(base_snapshot());
    let mut stream = harness.open().await;
    stream.subscribe(ENDPOINT, &["a"]);
    let first = stream.next().await;
    assert_eq!(names_of(&first), ["a"]);

    // The server pushes a newer version before the proxy answered the first one.
    harness.publish(base_snapshot().with(
        ENDPOINT,
        vec![
            Resource::new(
                "a",
                &ClusterLoadAssignment {
                    cluster_name: "a".into(),
                    policy: Some(Default::default()),
                    ..Default::default()
                },
            ),
            endpoints("b"),
        ],
    ));
    let second = stream.next().await;
    assert_ne!(second.nonce, first.nonce);
    assert_ne!(second.version_info, first.version_info);

    // A request answering the old nonce, even one changing names or NACKing, is stale.
    stream.ack(&first, &["a", "b"]);
    stream.nack(&first, "", "too late");
    stream.assert_quiet().await;
    let status = harness.type_status(ENDPOINT);
    assert_eq!(status.resource_names, ["a"]);
    assert_eq!(status.acked_version, None);
    assert_eq!(status.last_nack, None);

    // The current nonce is honoured.
    stream.ack(&second, &["a", "b"]);
    let third = stream.next().await;
    assert_eq!(names_of(&third), ["a", "b"]);
    harness
        .wait_status("the ACK of the current nonce", |s| {
            s.first()
                .and_then(|p| p.types.first())
                .and_then(|t| t.acked_version.clone())
                == Some(second.version_info.clone())
        })
        .await;
}

#[tokio::test(start_paused = true)]
async fn rds_and_eds_are_filtered_by_name_and_follow_name_changes() {
    let harness = ServerHarness::new(base_snapshot());
    let mut stream = harness.open().await;

    stream.subscribe(ROUTE, &["outbound", "missing"]);
    let rds = stream.next().await;
    assert_eq!(
        names_of(&rds),
        ["outbound"],
        "unknown names are simply absent"
    );

    stream.subscribe(ENDPOINT, &["b"]);
    let eds = stream.next().await;
    assert_eq!(names_of(&eds), ["b"]);

    // The proxy now wants more routes: the ACK carries the new names and is answered.
    stream.ack(&rds, &["outbound", "inbound|8080"]);
    let rds2 = stream.next().await;
    assert_eq!(rds2.type_url, ROUTE);
    assert_eq!(names_of(&rds2), ["inbound|8080", "outbound"]);
    assert_eq!(
        harness.type_status(ROUTE).resource_names,
        ["inbound|8080", "outbound"]
    );

    // Names that change without changing content are still answered.
    stream.ack(&eds, &["b", "not-there"]);
    let eds2 = stream.next().await;
    assert_eq!(names_of(&eds2), ["b"]);
    assert_eq!(eds2.version_info, eds.version_info);

    // Reordered names are not a change.
    stream.ack(&rds2, &["outbound", "inbound|8080"]);
    stream.assert_quiet().await;

    // "*" subscribes to everything, explicit names to those names, whatever the type.
    stream.subscribe(CLUSTER, &["*"]);
    assert_eq!(names_of(&stream.next().await), ["a", "b"]);
    stream.subscribe(LISTENER, &["nope"]);
    assert!(stream.next().await.resources.is_empty());
}

#[tokio::test(start_paused = true)]
async fn empty_first_request_is_a_wildcard_that_acks_keep() {
    let harness = ServerHarness::new(base_snapshot());
    let mut stream = harness.open().await;

    // LDS/CDS as Envoy and weft-xds's client ask for them: no names, ever.
    stream.subscribe(CLUSTER, &[]);
    let cds = stream.next().await;
    assert_eq!(names_of(&cds), ["a", "b"]);
    assert!(harness.type_status(CLUSTER).wildcard);
    stream.ack(&cds, &[]);
    stream.assert_quiet().await;
    harness.publish(base_snapshot().with(CLUSTER, vec![cluster("a"), cluster("c")]));
    let push = stream.next().await;
    assert_eq!(
        names_of(&push),
        ["a", "c"],
        "still wildcard after an empty ACK"
    );
    stream.ack(&push, &[]);

    // An empty first request is a wildcard for a by-name type too.
    stream.subscribe(ROUTE, &[]);
    let rds = stream.next().await;
    assert_eq!(names_of(&rds), ["inbound|8080", "outbound"]);
    let status = harness.type_status(ROUTE);
    assert!(status.wildcard);
    assert!(status.resource_names.is_empty());
    stream.ack(&rds, &[]);
    stream.assert_quiet().await;

    // Naming resources ends the legacy wildcard...
    stream.ack(&rds, &["outbound"]);
    let named = stream.next().await;
    assert_eq!(names_of(&named), ["outbound"]);
    let status = harness.type_status(ROUTE);
    assert!(!status.wildcard);
    assert_eq!(status.resource_names, ["outbound"]);

    // ...so an empty list now unsubscribes: nothing is sent, not even on a change.
    stream.ack(&named, &[]);
    stream.assert_quiet().await;
    let status = harness.type_status(ROUTE);
    assert!(!status.wildcard);
    assert!(status.resource_names.is_empty());
    harness.publish(
        base_snapshot()
            .with(CLUSTER, vec![cluster("a"), cluster("c")])
            .with(ROUTE, vec![route("outbound"), route("new")]),
    );
    stream.assert_quiet().await;

    // An explicit "*" subscribes to everything again.
    stream.ack(&named, &["*"]);
    let all = stream.next().await;
    assert_eq!(names_of(&all), ["new", "outbound"]);
    assert!(harness.type_status(ROUTE).wildcard);
}

#[tokio::test(start_paused = true)]
async fn unsubscribed_type_gets_nothing_until_resubscribed() {
    let harness = ServerHarness::new(base_snapshot());
    let mut stream = harness.open().await;
    stream.subscribe(ENDPOINT, &["a"]);
    let eds = stream.next().await;
    assert_eq!(names_of(&eds), ["a"]);
    stream.ack(&eds, &["a"]);

    // Unsubscribe: no response, and no push when the endpoints change.
    stream.ack(&eds, &[]);
    stream.assert_quiet().await;
    let changed = || {
        base_snapshot().with(
            ENDPOINT,
            vec![
                Resource::new(
                    "a",
                    &ClusterLoadAssignment {
                        cluster_name: "a".into(),
                        policy: Some(Default::default()),
                        ..Default::default()
                    },
                ),
                endpoints("b"),
            ],
        )
    };
    harness.publish(changed());
    stream.assert_quiet().await;

    // A repeated initial request (no nonce) with no names does not resubscribe either.
    stream.subscribe(ENDPOINT, &[]);
    stream.assert_quiet().await;

    // Resubscribing by name gets the current content, also of a name asked for before.
    stream.ack(&eds, &["a", "b"]);
    let again = stream.next().await;
    assert_eq!(names_of(&again), ["a", "b"]);
    assert_ne!(again.version_info, eds.version_info);
    stream.ack(&again, &["a", "b"]);
    harness
        .wait_status("the ACK after resubscribing", |s| {
            s.first()
                .and_then(|p| p.types.first())
                .and_then(|t| t.acked_version.clone())
                == Some(again.version_info.clone())
        })
        .await;
}

#[tokio::test(start_paused = true)]
async fn node_without_id_is_refused_and_delta_is_unimplemented() {
    let harness = ServerHarness::new(base_snapshot());
    let mut stream = harness.open().await;
    stream.send(DiscoveryRequest {
        node: Some(Node::default()),
        type_url: CLUSTER.to_string(),
        ..Default::default()
    });
    let status = tokio::time::timeout(WAIT, stream.responses.message())
        .await
        .expect("in time")
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "node.id is empty");
    assert!(harness.server.status().is_empty());

    let (channel, _link) = connect_in_process(harness.server.clone().into_service()).await;
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let status = client
        .delta_aggregated_resources(futures::stream::empty::<DeltaDiscoveryRequest>())
        .await
        .expect_err("delta is not served");
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    assert!(status.message().contains("state-of-the-world"));
}

#[tokio::test(start_paused = true)]
async fn proxy_leaves_status_when_its_stream_ends() {
    let harness = ServerHarness::new(base_snapshot());
    let mut stream = harness.open().await;
    stream.subscribe(CLUSTER, &[]);
    stream.next().await;
    assert_eq!(harness.server.status().len(), 1);
    drop(stream);
    harness
        .wait_status("the proxy to leave", |s| s.is_empty())
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_stuck_stream_does_not_block_others() {
    let harness = ServerHarness::new(base_snapshot());

    // A stream whose responses nobody reads: its task fills its buffer and blocks.
    let (stuck_tx, stuck_rx) = mpsc::unbounded_channel::<Result<DiscoveryRequest, Status>>();
    let _stuck_responses = harness
        .server
        .serve_stream(UnboundedReceiverStream::new(stuck_rx));
    stuck_tx
        .send(Ok(DiscoveryRequest {
            node: Some(Node {
                id: "stuck".into(),
                ..Default::default()
            }),
            type_url: CLUSTER.to_string(),
            ..Default::default()
        }))
        .unwrap();

    let mut live = harness.open().await;
    live.subscribe(CLUSTER, &[]);
    live.next().await;
    for i in 0..50 {
        harness.publish(base_snapshot().with(CLUSTER, vec![cluster(&format!("c{i}"))]));
        let push = live.next().await;
        assert_eq!(names_of(&push), [format!("c{i}")]);
    }
    assert_eq!(harness.server.status().len(), 2);
}
