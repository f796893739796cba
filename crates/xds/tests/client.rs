//! The real ADS client against a fake server that the test drives request by request, over
//! `tokio::io::duplex` with paused time.

mod common;

use std::time::Duration;

use tokio::time::Instant;
use weft_xds::ClientConfig;
use weft_xds::type_url::{CLUSTER, ENDPOINT, LISTENER, NAME_TABLE, ROUTE};

use common::*;

#[tokio::test(start_paused = true)]
async fn client_subscribes_acks_nacks_and_follows_names() {
    let (dialer, mut streams) = fake_server();
    let handler = TestHandler::default();
    let client = dialer.spawn_client(handler.clone());
    let mut stream = next_stream(&mut streams).await;

    // Initial subscription: CDS then LDS, wildcard, node on the first request only.
    let cds_req = stream.next().await;
    assert_eq!(cds_req.type_url, CLUSTER);
    assert_eq!(cds_req.node.as_ref().map(|n| n.id.as_str()), Some(NODE_ID));
    assert!(cds_req.resource_names.is_empty());
    assert_eq!(cds_req.version_info, "");
    assert_eq!(cds_req.response_nonce, "");
    assert!(cds_req.error_detail.is_none());
    let lds_req = stream.next().await;
    assert_eq!(lds_req.type_url, LISTENER);
    assert!(lds_req.node.is_none());
    assert!(lds_req.resource_names.is_empty());
    stream.assert_quiet().await;

    // CDS v1 → ACK, then an EDS subscription for the clusters' service names.
    stream
        .respond(CLUSTER, "v1", "n1", vec![cluster("a"), cluster("b")])
        .await;
    let ack = stream.next().await;
    assert_eq!(ack.type_url, CLUSTER);
    assert_eq!(ack.version_info, "v1");
    assert_eq!(ack.response_nonce, "n1");
    assert!(ack.error_detail.is_none());
    assert!(ack.node.is_none());
    assert!(ack.resource_names.is_empty());
    let eds_req = stream.next().await;
    assert_eq!(eds_req.type_url, ENDPOINT);
    assert_eq!(eds_req.resource_names, ["a", "b"]);
    assert_eq!(eds_req.version_info, "");
    assert_eq!(eds_req.response_nonce, "");

    // EDS e1 → ACK carrying the subscribed names.
    stream
        .respond(ENDPOINT, "e1", "n2", vec![endpoints("a"), endpoints("b")])
        .await;
    let eds_ack = stream.next().await;
    assert_eq!(
        (
            eds_ack.type_url.as_str(),
            eds_ack.version_info.as_str(),
            eds_ack.response_nonce.as_str()
        ),
        (ENDPOINT, "e1", "n2")
    );
    assert_eq!(eds_ack.resource_names, ["a", "b"]);

    // CDS v2 is rejected → NACK with the last accepted version and INVALID_ARGUMENT;
    // the handler kept v1, so no EDS resubscription.
    stream
        .respond(CLUSTER, "v2", "n3", vec![cluster("a"), cluster("bad")])
        .await;
    let nack = stream.next().await;
    assert_eq!(nack.type_url, CLUSTER);
    assert_eq!(nack.version_info, "v1");
    assert_eq!(nack.response_nonce, "n3");
    let detail = nack.error_detail.expect("error_detail");
    assert_eq!(detail.code, 3);
    assert_eq!(detail.message, "cluster bad: unsupported");
    stream.assert_quiet().await;
    assert_eq!(handler.0.lock().clusters.len(), 2);

    // CDS v3 drops cluster "b": ACK, then EDS resubscription with the last EDS version
    // and nonce.
    stream
        .respond(CLUSTER, "v3", "n4", vec![cluster("a")])
        .await;
    let ack = stream.next().await;
    assert_eq!(
        (ack.version_info.as_str(), ack.response_nonce.as_str()),
        ("v3", "n4")
    );
    let eds_req = stream.next().await;
    assert_eq!(eds_req.type_url, ENDPOINT);
    assert_eq!(eds_req.resource_names, ["a"]);
    assert_eq!(eds_req.version_info, "e1");
    assert_eq!(eds_req.response_nonce, "n2");
    assert!(eds_req.error_detail.is_none());

    // LDS → ACK, then an RDS subscription.
    stream
        .respond(
            LISTENER,
            "l1",
            "n5",
            vec![listener("virtualOutbound", "outbound")],
        )
        .await;
    let ack = stream.next().await;
    assert_eq!(
        (ack.type_url.as_str(), ack.version_info.as_str()),
        (LISTENER, "l1")
    );
    let rds_req = stream.next().await;
    assert_eq!(rds_req.type_url, ROUTE);
    assert_eq!(rds_req.resource_names, ["outbound"]);

    // The same CDS content again does not resubscribe EDS.
    stream
        .respond(CLUSTER, "v3", "n6", vec![cluster("a")])
        .await;
    let ack = stream.next().await;
    assert_eq!(ack.response_nonce, "n6");
    stream.assert_quiet().await;
    client.abort();
}

#[tokio::test(start_paused = true)]
async fn client_reconnects_and_resends_accepted_versions() {
    capture_logs();
    let (dialer, mut streams) = fake_server();
    let handler = TestHandler::default();
    let client = dialer.spawn_client(handler.clone());

    let mut stream = next_stream(&mut streams).await;
    stream.next().await; // CDS
    stream.next().await; // LDS
    stream
        .respond(CLUSTER, "v1", "n1", vec![cluster("a")])
        .await;
    stream.next().await; // ACK
    stream.next().await; // EDS subscribe
    stream
        .respond(ENDPOINT, "e1", "n2", vec![endpoints("a")])
        .await;
    stream.next().await; // ACK
    // A rejected CDS version must not count as accepted.
    stream
        .respond(CLUSTER, "v2", "n3", vec![cluster("bad")])
        .await;
    assert!(stream.next().await.error_detail.is_some());

    // The server goes away; the client retries while it is down, then comes back.
    dialer.go_down();
    drop(stream);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        streams.try_recv().is_err(),
        "no stream while the server is down"
    );
    dialer.come_back();

    let mut stream = next_stream(&mut streams).await;
    let cds = stream.next().await;
    assert_eq!(cds.type_url, CLUSTER);
    assert_eq!(cds.version_info, "v1");
    assert_eq!(cds.response_nonce, "");
    assert_eq!(cds.node.as_ref().map(|n| n.id.as_str()), Some(NODE_ID));
    let eds = stream.next().await;
    assert_eq!(eds.type_url, ENDPOINT);
    assert_eq!(eds.version_info, "e1");
    assert_eq!(eds.resource_names, ["a"]);
    assert!(eds.node.is_none());
    let lds = stream.next().await;
    assert_eq!(lds.type_url, LISTENER);
    assert_eq!(lds.version_info, "");
    stream.assert_quiet().await;

    // A server that closes the stream cleanly is reconnected to as well.
    drop(stream);
    let mut stream = next_stream(&mut streams).await;
    assert_eq!(stream.next().await.version_info, "v1");
    client.abort();

    let text = logs();
    let line = |needle: &str, level: &str| {
        text.lines()
            .any(|l| l.contains(level) && l.contains(needle))
    };
    assert!(
        line("connected to xDS server http://in-process", "INFO"),
        "{text}"
    );
    assert!(
        line(
            "disconnected from xDS server http://in-process: cannot connect: server down",
            "WARN"
        ),
        "{text}"
    );
    assert!(
        line(
            "disconnected from xDS server http://in-process: the server closed the stream",
            "WARN"
        ),
        "{text}"
    );
    assert!(
        line(
            "rejected CDS version v2 from the xDS server: cluster bad: unsupported",
            "WARN"
        ),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn client_nacks_a_resource_packed_with_another_type_url() {
    let (dialer, mut streams) = fake_server();
    let handler = TestHandler::default();
    let client = dialer.spawn_client(handler.clone());
    let mut stream = next_stream(&mut streams).await;
    stream.next().await; // CDS
    stream.next().await; // LDS

    let mut misfiled = cluster("b").body;
    misfiled.type_url = ROUTE.to_string();
    stream
        .respond_any(CLUSTER, "v1", "n1", vec![cluster("a").body, misfiled])
        .await;
    let nack = stream.next().await;
    assert_eq!(nack.type_url, CLUSTER);
    assert_eq!(nack.version_info, "", "nothing was accepted yet");
    assert_eq!(nack.response_nonce, "n1");
    let detail = nack.error_detail.expect("a NACK");
    assert_eq!(detail.code, 3);
    assert_eq!(
        detail.message,
        format!(
            "resource 1: type URL {ROUTE:?} does not match the response's type URL {CLUSTER:?}"
        )
    );
    assert!(
        handler.0.lock().applied.is_empty(),
        "the handler never saw the response"
    );

    // The same resources, correctly packed, are accepted.
    stream
        .respond(CLUSTER, "v2", "n2", vec![cluster("a"), cluster("b")])
        .await;
    let ack = stream.next().await;
    assert_eq!((ack.version_info.as_str(), ack.error_detail), ("v2", None));
    client.abort();
}

#[tokio::test(start_paused = true)]
async fn client_subscribes_by_name_only_with_names_and_unsubscribes_with_an_empty_list() {
    let (dialer, mut streams) = fake_server();
    let handler = TestHandler::default();
    let client = dialer.spawn_client(handler.clone());
    let mut stream = next_stream(&mut streams).await;
    assert_eq!(stream.next().await.type_url, CLUSTER);
    assert_eq!(stream.next().await.type_url, LISTENER);

    // Listeners without routes and clusters without EDS: no RDS/EDS request at all (an
    // empty first request would be a wildcard).
    stream
        .respond(LISTENER, "l1", "n1", vec![listener("plain", "")])
        .await;
    assert_eq!(stream.next().await.response_nonce, "n1");
    stream.respond(CLUSTER, "c1", "n2", vec![]).await;
    assert_eq!(stream.next().await.response_nonce, "n2");
    stream.assert_quiet().await;

    // A listener with a route: the first RDS request names it.
    stream
        .respond(LISTENER, "l2", "n3", vec![listener("plain", "r1")])
        .await;
    assert_eq!(stream.next().await.response_nonce, "n3");
    let rds = stream.next().await;
    assert_eq!(
        (rds.type_url.as_str(), rds.resource_names.as_slice()),
        (ROUTE, ["r1".to_string()].as_slice())
    );
    assert_eq!(
        (rds.version_info.as_str(), rds.response_nonce.as_str()),
        ("", "")
    );
    stream.respond(ROUTE, "r-v1", "n4", vec![route("r1")]).await;
    let ack = stream.next().await;
    assert_eq!(ack.resource_names, ["r1"]);

    // The route goes away: an RDS request with no names, the last version and nonce.
    stream
        .respond(LISTENER, "l3", "n5", vec![listener("plain", "")])
        .await;
    assert_eq!(stream.next().await.response_nonce, "n5");
    let unsubscribe = stream.next().await;
    assert_eq!(unsubscribe.type_url, ROUTE);
    assert!(unsubscribe.resource_names.is_empty());
    assert_eq!(unsubscribe.version_info, "r-v1");
    assert_eq!(unsubscribe.response_nonce, "n4");
    assert!(unsubscribe.error_detail.is_none());

    // Still no names: nothing more to say.
    stream
        .respond(LISTENER, "l4", "n6", vec![listener("plain", "")])
        .await;
    assert_eq!(stream.next().await.response_nonce, "n6");
    stream.assert_quiet().await;

    // After a reconnect, the empty RDS subscription is not requested at all.
    drop(stream);
    let mut stream = next_stream(&mut streams).await;
    assert_eq!(stream.next().await.type_url, CLUSTER);
    assert_eq!(stream.next().await.type_url, LISTENER);
    stream.assert_quiet().await;
    client.abort();
}

#[tokio::test(start_paused = true)]
async fn client_ignores_rds_and_eds_resources_it_did_not_ask_for() {
    let (dialer, mut streams) = fake_server();
    let handler = TestHandler::default();
    let client = dialer.spawn_client(handler.clone());
    let mut stream = next_stream(&mut streams).await;
    stream.next().await; // CDS
    stream.next().await; // LDS
    stream
        .respond(LISTENER, "l1", "n1", vec![listener("l", "wanted")])
        .await;
    stream.next().await; // ACK
    assert_eq!(stream.next().await.resource_names, ["wanted"]);

    stream
        .respond(
            ROUTE,
            "r1",
            "n2",
            vec![route("wanted"), route("unasked"), route("bad")],
        )
        .await;
    let ack = stream.next().await;
    assert!(
        ack.error_detail.is_none(),
        "\"bad\" was dropped unseen: {ack:?}"
    );
    assert_eq!(handler.0.lock().routes, ["wanted"]);
    client.abort();
}

/// Less than any backoff: "at once" in virtual time.
const AT_ONCE: Duration = Duration::from_millis(1);

/// Sends a CDS response of clusters `names` and returns how long the client took to NACK it.
async fn time_to_nack(
    stream: &mut FakeStream,
    version: &str,
    nonce: &str,
    names: &[&str],
) -> Duration {
    let start = Instant::now();
    stream
        .respond(
            CLUSTER,
            version,
            nonce,
            names.iter().map(|n| cluster(n)).collect(),
        )
        .await;
    let nack = stream.next_within(Duration::from_secs(60)).await;
    assert_eq!(nack.response_nonce, nonce, "{nack:?}");
    assert!(nack.error_detail.is_some(), "expected a NACK: {nack:?}");
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn resent_rejected_content_is_nacked_with_backoff_and_logged_once() {
    capture_logs();
    let (dialer, mut streams) = fake_server();
    let config = ClientConfig {
        nack_initial_backoff: Duration::from_millis(100),
        nack_max_backoff: Duration::from_secs(30),
        ..client_config()
    };
    let client = dialer.spawn_client_with(config, TestHandler::default());
    let mut stream = next_stream(&mut streams).await;
    stream.next().await; // CDS
    stream.next().await; // LDS

    // The first rejection is NACKed at once.
    let bad = ["a", "bad"];
    assert!(time_to_nack(&mut stream, "v1", "n1", &bad).await < AT_ONCE);

    // The server resends it (new version and nonce, same resources): the NACKs come after
    // doubling, jittered delays ([d/2, d)), capped at 30 s. Tokio's timer rounds a sleep up to
    // the next millisecond, so a delay just under d is seen as d.
    let mut upper = Duration::from_millis(100);
    for i in 2..14 {
        let delay = time_to_nack(&mut stream, &format!("v{i}"), &format!("n{i}"), &bad).await;
        assert!(
            delay >= upper / 2 && delay <= upper,
            "resend {i}: {delay:?} not in [{:?}, {upper:?}]",
            upper / 2
        );
        upper = (upper * 2).min(Duration::from_secs(30));
    }

    // Different content is NACKed at once and resets the backoff.
    let other = ["bad"];
    assert!(time_to_nack(&mut stream, "w1", "m1", &other).await < AT_ONCE);
    let delay = time_to_nack(&mut stream, "w2", "m2", &other).await;
    // [50 ms, 100 ms), a delay just under 100 ms seen as 100 ms (the timer's rounding above).
    assert!(
        delay >= Duration::from_millis(50) && delay <= Duration::from_millis(100),
        "{delay:?}"
    );

    // A delayed NACK is dropped when a newer response arrives before it is due.
    stream
        .respond(
            CLUSTER,
            "w3",
            "m3",
            other.iter().map(|n| cluster(n)).collect(),
        )
        .await;
    stream
        .respond(CLUSTER, "ok", "m4", vec![cluster("a")])
        .await;
    let ack = stream.next().await;
    assert_eq!(
        (ack.response_nonce.as_str(), ack.error_detail),
        ("m4", None)
    );
    assert_eq!(stream.next().await.type_url, ENDPOINT, "EDS for cluster a");
    stream.assert_quiet().await;

    // After an accepted response the same bad content is a fresh rejection again.
    assert!(time_to_nack(&mut stream, "v1", "k1", &bad).await < AT_ONCE);
    client.abort();

    // One warning per distinct error, the repeats at debug with a count.
    let text = logs();
    let warned = |needle: &str| {
        text.lines()
            .filter(|l| l.contains("WARN") && l.contains(needle))
            .count()
    };
    assert_eq!(
        warned("from the xDS server: cluster bad: unsupported"),
        2,
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("DEBUG")
            && l.contains("rejected CDS version v13 from the xDS server again (13 times): cluster bad: unsupported")),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiting_nack_goes_out_with_a_subscription_change() {
    let (dialer, mut streams) = fake_server();
    let client = dialer.spawn_client(TestHandler::default());
    let mut stream = next_stream(&mut streams).await;
    stream.next().await; // CDS
    stream.next().await; // LDS
    stream
        .respond(LISTENER, "l1", "n1", vec![listener("l", "bad")])
        .await;
    stream.next().await; // ACK
    assert_eq!(stream.next().await.resource_names, ["bad"]);

    // Rejected, resent: the second NACK waits for its backoff...
    stream.respond(ROUTE, "r1", "n2", vec![route("bad")]).await;
    assert_eq!(stream.next_nack("n2").await, "route bad: unsupported");
    stream.respond(ROUTE, "r2", "n3", vec![route("bad")]).await;

    // ...but the listener changes first: the RDS request for the new names carries it.
    stream
        .respond(LISTENER, "l2", "n4", vec![listener("l", "good")])
        .await;
    assert_eq!(stream.next().await.response_nonce, "n4");
    let request = stream.next().await;
    assert_eq!(request.type_url, ROUTE);
    assert_eq!(request.resource_names, ["good"]);
    assert_eq!(request.response_nonce, "n3");
    assert_eq!(request.version_info, "", "nothing accepted yet");
    assert_eq!(
        request.error_detail.map(|e| e.message).as_deref(),
        Some("route bad: unsupported")
    );
    // The waiting NACK is not sent again later.
    stream.assert_quiet().await;
    client.abort();
}

#[tokio::test(start_paused = true)]
async fn client_subscribes_to_extra_wildcard_types_and_resends_their_versions() {
    let (dialer, mut streams) = fake_server();
    let handler = TestHandler::default();
    let config = client_config().with_type(NAME_TABLE).with_type(NAME_TABLE);
    let client = dialer.spawn_client_with(config, handler.clone());
    let mut stream = next_stream(&mut streams).await;

    // CDS, LDS, then NDS (once, though configured twice): wildcard, no names.
    let types: Vec<String> = [
        stream.next().await,
        stream.next().await,
        stream.next().await,
    ]
    .into_iter()
    .map(|r| {
        assert!(r.resource_names.is_empty());
        r.type_url
    })
    .collect();
    assert_eq!(types, [CLUSTER, LISTENER, NAME_TABLE]);
    stream.assert_quiet().await;

    let table = weft_xds::Resource::new(
        weft_xds::nds::NAME_TABLE_RESOURCE,
        &weft_xds::nds::NameTable::default(),
    );
    stream.respond(NAME_TABLE, "t1", "n1", vec![table]).await;
    let ack = stream.next().await;
    assert_eq!(
        (
            ack.type_url.as_str(),
            ack.version_info.as_str(),
            ack.response_nonce.as_str()
        ),
        (NAME_TABLE, "t1", "n1")
    );
    assert!(ack.error_detail.is_none());
    assert!(
        handler
            .0
            .lock()
            .applied
            .contains(&("NDS".to_string(), "t1".to_string()))
    );

    // A new stream resubscribes with the accepted version.
    dialer.go_down();
    drop(stream);
    dialer.come_back();
    let mut stream = next_stream(&mut streams).await;
    let mut nds = None;
    for _ in 0..3 {
        let request = stream.next().await;
        if request.type_url == NAME_TABLE {
            nds = Some(request);
        }
    }
    assert_eq!(nds.expect("an NDS request").version_info, "t1");
    client.abort();
}
