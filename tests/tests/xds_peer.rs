//! The real `weft-proxy` against an ADS server that is not ours: xds-peer, built on
//! envoyproxy/go-control-plane's state-of-the-world server and snapshot cache
//! (`tests/xds-peer/`). weft-xds's server and client could agree on the same misreading of
//! the protocol; go-control-plane's reading is independent.
//!
//! Every test runs the peer, two `weftctl demo-app` upstreams (v1 and v2) and one sidecar on
//! its own loopback block, and checks both what the proxy routes and what the peer saw.

use std::net::SocketAddr;
use std::time::Duration;

use weft_e2e::xds_peer::{
    Snapshot, Stats, XdsPeer, eds_cluster, endpoints, listener, prefix_route, regex_route,
    route_config,
};
use weft_e2e::{App, HttpClient, Net, Reply, Sidecar, TempDir, eventually};
use weft_xds::contract::{CLUSTER, ENDPOINT, LISTENER, ROUTE};

/// How long the proxy may take to apply a pushed snapshot.
const APPLY: Duration = Duration::from_secs(10);

/// A test's processes: the peer, the upstreams, the sidecar under test.
struct World {
    net: Net,
    _dir: TempDir,
    peer: XdsPeer,
    v1: App,
    v2: App,
    sidecar: Sidecar,
    http: HttpClient,
}

impl World {
    /// Starts everything, the peer serving `initial(world addresses)` as version "1", and
    /// waits until the sidecar is ready (listeners and clusters applied).
    async fn start(initial: impl FnOnce(&Addrs) -> Snapshot) -> Self {
        let net = Net::new();
        let dir = tempfile::tempdir().expect("temp dir");
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).expect("log dir");
        let v1 = App::start(SocketAddr::new(net.ip(11), 9080), "app", "v1", &logs).await;
        let v2 = App::start(SocketAddr::new(net.ip(12), 9080), "app", "v2", &logs).await;
        let addrs = Addrs {
            proxy: net.ip(10),
            v1: v1.addr,
            v2: v2.addr,
        };
        let peer = XdsPeer::start(net, &initial(&addrs), "1", dir.path(), &logs).await;
        let sidecar = Sidecar::start(
            net.ip(10),
            &peer.ads_url(),
            "client",
            "app=client",
            None,
            &logs,
        )
        .await;
        Self {
            net,
            _dir: dir,
            peer,
            v1,
            v2,
            sidecar,
            http: HttpClient::new(),
        }
    }

    fn addrs(&self) -> Addrs {
        Addrs {
            proxy: self.net.ip(10),
            v1: self.v1.addr,
            v2: self.v2.addr,
        }
    }

    /// `GET path` through the sidecar's listener on `port`.
    async fn get(&self, port: u16, path: &str) -> Result<Reply, String> {
        let via = SocketAddr::new(self.sidecar.ip, port);
        self.http.request(via, "GET", "anything", path, &[]).await
    }

    /// Waits until `GET path` on `port` is answered by app `version`, ten times in a row.
    async fn wait_for_version(&self, port: u16, path: &str, version: &str) {
        eventually(
            APPLY,
            &format!("{path} on :{port} to reach {version}"),
            || async {
                for _ in 0..10 {
                    match self.get(port, path).await {
                        Ok(reply) if reply.version.as_deref() == Some(version) => {}
                        _ => return None,
                    }
                }
                Some(())
            },
        )
        .await
    }

    /// Asserts that `GET path` on `port` is answered by `version`, `n` times.
    async fn assert_version(&self, port: u16, path: &str, version: &str, n: usize) {
        for i in 0..n {
            let reply = self
                .get(port, path)
                .await
                .unwrap_or_else(|e| panic!("request {i} to {path} on :{port}: {e}"));
            assert_eq!(
                reply.version.as_deref(),
                Some(version),
                "request {i} to {path} on :{port}: {} {}",
                reply.status,
                reply.body
            );
        }
    }

    /// Waits until the peer's stats satisfy `ok`, and returns them.
    async fn wait_stats(&self, what: &str, ok: impl Fn(&Stats) -> bool) -> Stats {
        eventually(APPLY, what, || async {
            let stats = self.peer.stats().await;
            ok(&stats).then_some(stats)
        })
        .await
    }

    /// Waits until the peer saw `version` ACKed for every type.
    async fn wait_all_acked(&self, version: &str) -> Stats {
        self.wait_stats(&format!("version {version} ACKed for every type"), |s| {
            [CLUSTER, ENDPOINT, LISTENER, ROUTE]
                .iter()
                .all(|t| s.get(t).acked_version == version)
        })
        .await
    }
}

/// Addresses the snapshots refer to.
struct Addrs {
    proxy: std::net::IpAddr,
    v1: SocketAddr,
    v2: SocketAddr,
}

/// The outbound listener (:15001, routes "outbound"), clusters `app-v1`/`app-v2` with their
/// endpoints, and route configuration "outbound" made of `routes`.
fn config(addrs: &Addrs, routes: Vec<serde_json::Value>) -> Snapshot {
    Snapshot {
        listeners: vec![listener(
            "virtualOutbound",
            SocketAddr::new(addrs.proxy, 15001),
            "outbound",
        )],
        routes: vec![route_config("outbound", routes)],
        clusters: vec![eds_cluster("app-v1"), eds_cluster("app-v2")],
        endpoints: vec![
            endpoints("app-v1", &[addrs.v1]),
            endpoints("app-v2", &[addrs.v2]),
        ],
    }
}

/// `/v2…` to v2, everything else to v1.
fn split(addrs: &Addrs) -> Snapshot {
    config(
        addrs,
        vec![prefix_route("/v2", "app-v2"), prefix_route("/", "app-v1")],
    )
}

/// Only paths matching `regex` (to v2).
fn regex_only(addrs: &Addrs, regex: &str) -> Snapshot {
    config(addrs, vec![regex_route(regex, "app-v2")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_control_plane_config_is_acked_routed_and_updated() {
    let world = World::start(split).await;

    // (a) Traffic goes where the served config says.
    world.wait_for_version(15001, "/", "v1").await;
    world.assert_version(15001, "/v2/page", "v2", 5).await;
    world.assert_version(15001, "/other", "v1", 5).await;

    // Every type was ACKed at version 1, without a NACK; RDS and EDS by name, LDS and CDS
    // as wildcards.
    let stats = world.wait_all_acked("1").await;
    for t in [CLUSTER, ENDPOINT, LISTENER, ROUTE] {
        let s = stats.get(t);
        assert!(s.last_nack.is_none(), "{t}: {:?}", s.last_nack);
        assert!(s.responses >= 1, "{t}: {s:?}");
    }
    assert!(stats.get(LISTENER).resource_names.is_empty());
    assert!(stats.get(CLUSTER).resource_names.is_empty());
    assert_eq!(stats.get(ROUTE).resource_names, ["outbound"]);
    let mut eds = stats.get(ENDPOINT).resource_names;
    eds.sort();
    assert_eq!(eds, ["app-v1", "app-v2"]);
    assert_eq!(stats.streams_open, 1);

    // (b) A new snapshot is applied: everything goes to v2 now.
    let addrs = world.addrs();
    world
        .peer
        .push(&config(&addrs, vec![prefix_route("/", "app-v2")]), "2")
        .await;
    world.wait_for_version(15001, "/", "v2").await;
    world.assert_version(15001, "/other", "v2", 5).await;
    let stats = world.wait_all_acked("2").await;
    assert!(stats.get(ROUTE).last_nack.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_regex_is_nacked_and_the_old_route_keeps_serving() {
    let world = World::start(split).await;
    world.wait_for_version(15001, "/hello", "v1").await;
    world.wait_all_acked("1").await;

    // (c) A route whose regex does not compile.
    let addrs = world.addrs();
    world.peer.push(&regex_only(&addrs, "/hel(lo"), "2").await;
    let stats = world
        .wait_stats("the RDS NACK", |s| s.get(ROUTE).last_nack.is_some())
        .await;
    let rds = stats.get(ROUTE);
    let nack = rds.last_nack.expect("a NACK");
    assert!(
        nack.error.contains("outbound"),
        "names the config: {nack:?}"
    );
    assert!(
        nack.error.to_lowercase().contains("regex"),
        "says what is wrong: {nack:?}"
    );
    assert_eq!(
        nack.version, "1",
        "the NACK carries the last accepted version"
    );
    assert_eq!(rds.acked_version, "1");
    assert_eq!(rds.sent_version, "2");

    // The old routes keep serving; by default the peer does not resend the rejected
    // content, so there is exactly one NACK.
    world.assert_version(15001, "/hello", "v1", 20).await;
    world.assert_version(15001, "/v2", "v2", 5).await;
    assert_eq!(world.peer.stats().await.get(ROUTE).nack_count, 1);

    // A fixed route is accepted.
    world.peer.push(&regex_only(&addrs, "/hel+o"), "3").await;
    world.wait_all_acked("3").await;
    world.wait_for_version(15001, "/hello", "v2").await;
    let reply = world.get(15001, "/other").await.expect("a reply");
    assert_eq!(reply.status, 404, "only /hel+o matches now: {}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_rejected_content_gets_nacks_with_growing_gaps() {
    let world = World::start(split).await;
    world.wait_for_version(15001, "/", "v1").await;
    world.wait_all_acked("1").await;

    // (d) go-control-plane's snapshot cache answers a NACK (which carries the previous
    // version) with the current snapshot: the same rejected route, again and again.
    world.peer.resend_nacked(true).await;
    let addrs = world.addrs();
    world.peer.push(&regex_only(&addrs, "/hel(lo"), "2").await;
    let first = world
        .wait_stats("the first NACK", |s| s.get(ROUTE).last_nack.is_some())
        .await
        .get(ROUTE)
        .nacks[0]
        .at_ms;
    // Watch for 3 s of the peer's clock (polling, not sleeping).
    let window = 3000.0;
    let stats = eventually(Duration::from_secs(10), "3 s of resends", || async {
        let stats = world.peer.stats().await;
        (stats.now_ms >= first + window).then_some(stats)
    })
    .await;
    let times: Vec<f64> = stats
        .get(ROUTE)
        .nacks
        .iter()
        .map(|n| n.at_ms)
        .filter(|t| *t <= first + window)
        .collect();
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        times.len() >= 4 && times.len() < 8,
        "{} NACKs in 3 s (gaps {gaps:?} ms)",
        times.len()
    );
    assert!(
        gaps[0] >= 40.0,
        "the first repeat waits for the backoff: {gaps:?}"
    );
    for pair in gaps.windows(2) {
        // Each delay is jittered within [d/2, d) of a doubling d, so never shorter than the
        // previous one; the slack covers scheduling noise in the round trips.
        assert!(pair[1] + 25.0 >= pair[0], "gaps do not grow: {gaps:?}");
    }
    assert!(
        gaps[gaps.len() - 1] >= 3.0 * gaps[0],
        "gaps grow exponentially: {gaps:?}"
    );
    // Every NACK carries the same error, and the old route still serves.
    let rds = stats.get(ROUTE);
    assert!(rds.nacks.iter().all(|n| n.error == rds.nacks[0].error));
    world.assert_version(15001, "/", "v1", 10).await;

    // Back to normal: a fixed route is accepted (after the pending, delayed NACK).
    world.peer.resend_nacked(false).await;
    world.peer.push(&split(&addrs), "3").await;
    eventually(Duration::from_secs(40), "version 3 ACKed", || async {
        (world.peer.stats().await.get(ROUTE).acked_version == "3").then_some(())
    })
    .await;
    world.assert_version(15001, "/v2", "v2", 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rds_response_omitting_a_subscribed_route_config_keeps_it() {
    // Two listeners, two route configurations: "outbound" on :15001, "extra" on :15002.
    let two = |addrs: &Addrs, outbound_to: &str, with_extra: bool| {
        let mut snapshot = config(addrs, vec![prefix_route("/", outbound_to)]);
        snapshot.listeners.push(listener(
            "extra",
            SocketAddr::new(addrs.proxy, 15002),
            "extra",
        ));
        if with_extra {
            snapshot
                .routes
                .push(route_config("extra", vec![prefix_route("/", "app-v2")]));
        }
        snapshot
    };
    let world = World::start(|a| two(a, "app-v1", true)).await;
    world.wait_for_version(15001, "/", "v1").await;
    world.wait_for_version(15002, "/", "v2").await;
    let stats = world.wait_all_acked("1").await;
    let mut names = stats.get(ROUTE).resource_names;
    names.sort();
    assert_eq!(names, ["extra", "outbound"]);

    // (e) Version 2 changes "outbound" and has no "extra": go-control-plane answers the
    // subscription to both with "outbound" alone. For RDS a missing resource is not a
    // deletion (only LDS and CDS responses are complete), so "extra" keeps working.
    let addrs = world.addrs();
    world.peer.push(&two(&addrs, "app-v2", false), "2").await;
    let stats = world.wait_all_acked("2").await;
    assert_eq!(stats.get(ROUTE).sent_resources, ["outbound"]);
    world.wait_for_version(15001, "/", "v2").await;
    for i in 0..20 {
        let reply = world.get(15002, "/").await.expect("a reply");
        assert_eq!(
            reply.version.as_deref(),
            Some("v2"),
            "request {i} on the listener whose route config was omitted: {} {}",
            reply.status,
            reply.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_with_a_mismatched_type_url_is_nacked() {
    let world = World::start(split).await;
    world.wait_for_version(15001, "/", "v1").await;
    world.wait_all_acked("1").await;

    // The next RDS response packs its route configuration as a Cluster.
    world.peer.mismatch_next(ROUTE, CLUSTER).await;
    let addrs = world.addrs();
    world
        .peer
        .push(&config(&addrs, vec![prefix_route("/", "app-v2")]), "2")
        .await;
    let stats = world
        .wait_stats("the RDS NACK", |s| s.get(ROUTE).last_nack.is_some())
        .await;
    let nack = stats.get(ROUTE).last_nack.expect("a NACK");
    assert!(nack.error.contains("resource 0"), "{nack:?}");
    assert!(nack.error.contains(CLUSTER), "{nack:?}");
    assert!(nack.error.contains(ROUTE), "{nack:?}");
    assert_eq!(stats.get(ROUTE).acked_version, "1");
    world.assert_version(15001, "/", "v1", 10).await;

    // The fault was for one response: the next version is accepted.
    world
        .peer
        .push(&config(&addrs, vec![prefix_route("/", "app-v2")]), "3")
        .await;
    world.wait_all_acked("3").await;
    world.wait_for_version(15001, "/", "v2").await;
}
