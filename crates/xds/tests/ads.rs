//! The real ADS client against the real ADS server, in process over `tokio::io::duplex`
//! (paused time).

mod common;

use weft_xds::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};

use common::*;

#[tokio::test(start_paused = true)]
async fn client_and_server_sync_push_and_resync_after_reconnect() {
    let harness = ServerHarness::new(base_snapshot());
    let dialer = Dialer::new(harness.server.clone().into_service());
    let handler = TestHandler::default();
    let client = dialer.spawn_client(handler.clone());

    wait_for("all four types ACKed", || {
        all_acked(&harness.server.status(), 4)
    })
    .await;
    {
        let state = handler.0.lock();
        assert_eq!(state.clusters.len(), 2);
        assert_eq!(state.endpoints, ["a", "b"]);
        assert_eq!(state.routes, ["outbound"], "only the listener's route");
    }
    assert_eq!(harness.type_status(ENDPOINT).resource_names, ["a", "b"]);
    assert_eq!(harness.type_status(ROUTE).resource_names, ["outbound"]);

    // A push that rejects: the proxy keeps its clusters, the server records the NACK.
    harness.publish(base_snapshot().with(CLUSTER, vec![cluster("a"), cluster("bad")]));
    wait_for("the NACK", || {
        harness.type_status(CLUSTER).last_nack.is_some()
    })
    .await;
    assert_eq!(handler.0.lock().clusters.len(), 2);

    // A push that drops cluster "b" and changes the listener's route.
    harness.publish(
        base_snapshot()
            .with(CLUSTER, vec![cluster("a")])
            .with(LISTENER, vec![listener("virtualInbound", "inbound|8080")]),
    );
    wait_for("the new names", || {
        let state = handler.0.lock();
        state.endpoints == ["a"] && state.routes == ["inbound|8080"]
    })
    .await;
    wait_for("all ACKed again", || all_acked(&harness.server.status(), 4)).await;
    assert_eq!(harness.type_status(ENDPOINT).resource_names, ["a"]);
    assert_eq!(harness.type_status(ROUTE).resource_names, ["inbound|8080"]);

    // The server goes away and comes back: the proxy resyncs, and identical content
    // keeps its version, so nothing is re-applied with a different version.
    let before = harness.proxy().types;
    dialer.go_down();
    wait_for("the proxy to leave", || harness.server.status().is_empty()).await;
    let applied_before = handler.0.lock().applied.len();
    dialer.come_back();
    wait_for("resync", || all_acked(&harness.server.status(), 4)).await;
    let after = harness.proxy().types;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.type_url, a.type_url);
        assert_eq!(b.sent_version, a.sent_version, "{}", a.type_url);
        assert_eq!(b.resource_names, a.resource_names, "{}", a.type_url);
    }
    let state = handler.0.lock();
    assert!(state.applied.len() > applied_before);
    assert_eq!(state.endpoints, ["a"]);
    drop(state);
    client.abort();
}

#[tokio::test(start_paused = true)]
async fn client_and_server_unsubscribe_and_resubscribe_routes() {
    let harness = ServerHarness::new(base_snapshot());
    let dialer = Dialer::new(harness.server.clone().into_service());
    let handler = TestHandler::default();
    let client = dialer.spawn_client(handler.clone());
    wait_for("all four types ACKed", || {
        all_acked(&harness.server.status(), 4)
    })
    .await;
    assert_eq!(harness.type_status(ROUTE).resource_names, ["outbound"]);
    assert!(!harness.type_status(ROUTE).wildcard);
    assert!(harness.type_status(LISTENER).wildcard);

    // No listener refers to a route any more: the client unsubscribes, the server agrees.
    harness.publish(base_snapshot().with(LISTENER, vec![listener("plain", "")]));
    wait_for("the RDS unsubscription", || {
        harness
            .server
            .status()
            .first()
            .and_then(|p| p.types.iter().find(|t| t.type_url == ROUTE))
            .is_some_and(|t| !t.wildcard && t.resource_names.is_empty())
    })
    .await;
    let sent = harness.type_status(ROUTE).sent_nonce;
    // Route changes are not pushed to a proxy that wants none.
    harness.publish(
        base_snapshot()
            .with(LISTENER, vec![listener("plain", "")])
            .with(
                ROUTE,
                vec![route("outbound"), route("inbound|8080"), route("x")],
            ),
    );
    wait_for("all ACKed", || all_acked(&harness.server.status(), 4)).await;
    assert_eq!(harness.type_status(ROUTE).sent_nonce, sent);

    // A listener names a route again: subscribed by name, and served.
    harness.publish(base_snapshot().with(LISTENER, vec![listener("l", "inbound|8080")]));
    wait_for("the new route", || {
        handler.0.lock().routes == ["inbound|8080"]
    })
    .await;
    wait_for("all ACKed again", || all_acked(&harness.server.status(), 4)).await;
    assert_eq!(harness.type_status(ROUTE).resource_names, ["inbound|8080"]);
    assert_eq!(
        harness.type_status(CLUSTER).acked_version,
        Some(harness.type_status(CLUSTER).sent_version)
    );
    assert_eq!(harness.type_status(ENDPOINT).resource_names, ["a", "b"]);
    client.abort();
}
