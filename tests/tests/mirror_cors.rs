//! Mirroring, CORS and regex rewrites end to end: real controller, real sidecars, demo apps.
//! Mirrors are counted at the mirror's app (`/__demo/stats`); a mirror that never answers
//! (`weftctl demo-app --hang-ratio 1`) must not slow the caller.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use weft_e2e::{App, Mesh, MeshOptions, Net, eventually};

/// Reviews `v1` serves; `v2` only receives the mirrors.
fn mirror_vs(percentage: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - route: [{{destination: {{host: reviews, subset: v1}}}}]
    mirror: {{host: reviews, subset: v2}}
    mirrorPercentage: {{value: {percentage}}}
"
    )
}

/// Requests the app has seen, once the count stops moving (shadows are sent in the
/// background: the last ones may land just after the callers' responses).
async fn settled_total(app: &App) -> u64 {
    let last = std::cell::Cell::new(u64::MAX);
    let last = &last;
    eventually(
        Duration::from_secs(10),
        "the mirror's count to settle",
        || async move {
            let now = app.stats().await["total"];
            let stable = now == last.get();
            last.set(now);
            stable.then_some(now)
        },
    )
    .await
}

/// The median latency of 200 requests sent one at a time, each answered 200 by v1.
async fn median_latency(mesh: &Mesh, headers: &[(&str, &str)]) -> Duration {
    let mut latencies = Vec::with_capacity(200);
    for _ in 0..200 {
        let started = Instant::now();
        let reply = mesh.get("/", headers).await.expect("a reply");
        latencies.push(started.elapsed());
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    latencies.sort();
    latencies[latencies.len() / 2]
}

async fn reset_stats(mesh: &Mesh, app: &App) {
    mesh.http
        .request(app.addr, "POST", "reviews", "/__demo/stats/reset", &[])
        .await
        .expect("stats reset");
}

/// `mirrorPercentage: 30`: the mirror's app sees 30 % (±2 points) of 5,000 requests, while
/// the callers are all served by v1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_percentage_holds_over_five_thousand_requests() {
    let mesh = Mesh::start(&["v1", "v2"], &[("reviews-vs.yaml", &mirror_vs("30"))]).await;
    mesh.wait_for_routes(Duration::from_secs(5)).await;
    // The routes are in force once a request is mirrored.
    eventually(Duration::from_secs(5), "the first mirror", || async {
        mesh.get("/", &[]).await.ok()?;
        (mesh.apps[1].stats().await["total"] > 0).then_some(())
    })
    .await;
    settled_total(&mesh.apps[1]).await;
    reset_stats(&mesh, &mesh.apps[1]).await;
    let n = 5000;
    let load = mesh.load(n, 8, &[]).await;
    assert!(
        load.failures.is_empty(),
        "{:?}",
        &load.failures[..3.min(load.failures.len())]
    );
    assert_eq!(
        load.by_version.get("v1"),
        Some(&n),
        "the callers are served by v1 only"
    );
    let mirrored = settled_total(&mesh.apps[1]).await;
    let share = mirrored as f64 / n as f64;
    eprintln!("mirrored {mirrored}/{n} = {share:.4}");
    assert!((0.28..=0.32).contains(&share), "mirrored share {share:.4}");
}

/// A mirror target that never answers: the caller's requests are as fast with the mirror as
/// without it, and the shadows in flight stop at the proxy's cap (1024).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_mirror_does_not_slow_the_caller() {
    let net = Net::new();
    let hanging_ip = net.ip(30);
    let vs = format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: shadow, namespace: default}}
spec:
  hosts: [shadow.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  endpoints: [{{address: {hanging_ip}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - match: [{{headers: {{x-mirror: {{exact: 'on'}}}}}}]
    route: [{{destination: {{host: reviews}}}}]
    mirror: {{host: shadow}}
  - route: [{{destination: {{host: reviews}}}}]
"
    );
    let mesh = Mesh::start_with(
        &["v1"],
        &[("reviews-vs.yaml", &vs)],
        &MeshOptions {
            net: Some(net),
            ..Default::default()
        },
    )
    .await;
    let hanging = App::start_with(
        SocketAddr::new(hanging_ip, 9080),
        "shadow",
        "v1",
        &mesh.log_dir(),
        &["--hang-ratio".to_string(), "1".to_string()],
    )
    .await;
    mesh.wait_for_routes(Duration::from_secs(5)).await;
    eventually(
        Duration::from_secs(5),
        "the first shadow to hang",
        || async {
            mesh.get("/", &[("x-mirror", "on")]).await.ok()?;
            (hanging.stats().await["hung"] > 0).then_some(())
        },
    )
    .await;

    // One request at a time, without the mirror then with it (every shadow sent and hanging):
    // the median latency must not move beyond noise.
    let without = median_latency(&mesh, &[]).await;
    let with = median_latency(&mesh, &[("x-mirror", "on")]).await;
    eprintln!("median latency: {without:?} without the mirror, {with:?} with a hanging one");
    assert!(
        with < without * 2 + Duration::from_millis(5),
        "the hanging mirror slowed the caller: {with:?} against {without:?}"
    );
    // Those 200 shadows were sent, and hang.
    eventually(Duration::from_secs(10), "the shadows to hang", || async {
        (hanging.stats().await["hung"] > 200).then_some(())
    })
    .await;
    // Then more shadows than the cap (1024): every caller still served.
    let n = 1500;
    let mirrored = mesh.load(n, 8, &[("x-mirror", "on")]).await;
    assert!(
        mirrored.failures.is_empty(),
        "the caller never fails because of its mirror: {:?}",
        &mirrored.failures[..3.min(mirrored.failures.len())]
    );
    let hung = eventually(
        Duration::from_secs(10),
        "the shadows to reach the cap",
        || async {
            let hung = hanging.stats().await["hung"];
            (hung >= 1000).then_some(hung)
        },
    )
    .await;
    assert!(
        hung <= 1024 + 1,
        "{hung} shadows in flight: the proxy's cap is 1024"
    );
}

/// CORS: a preflight from an allowed origin is answered by the caller's sidecar (the app never
/// sees it); an actual request's response carries the allow-origin header; an unknown origin
/// gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_are_answered_by_the_proxy() {
    let vs = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
    corsPolicy:
      allowOrigins: [{exact: 'https://shop.example'}, {regex: 'https://.*\\.trusted\\.example'}]
      allowMethods: [GET, POST]
      allowHeaders: [x-custom]
      exposeHeaders: [x-weft-version]
      maxAge: 10m
      allowCredentials: true
";
    let mesh = Mesh::start(&["v1"], &[("reviews-vs.yaml", vs)]).await;
    let via = mesh.client.outbound();
    let preflight = |origin: &'static str| {
        let http = mesh.http.clone();
        async move {
            http.request(
                via,
                "OPTIONS",
                "reviews:9080",
                "/",
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                ],
            )
            .await
        }
    };
    let answered = eventually(Duration::from_secs(5), "the CORS policy", || async {
        preflight("https://shop.example")
            .await
            .ok()
            .filter(|r| r.headers.contains_key("access-control-allow-origin"))
    })
    .await;
    reset_stats(&mesh, &mesh.apps[0]).await;
    let answered_again = preflight("https://a.trusted.example")
        .await
        .expect("preflight");
    for (reply, origin) in [
        (&answered, "https://shop.example"),
        (&answered_again, "https://a.trusted.example"),
    ] {
        assert_eq!(reply.status, 200);
        assert_eq!(reply.headers["access-control-allow-origin"], origin);
        assert_eq!(reply.headers["access-control-allow-methods"], "GET,POST");
        assert_eq!(reply.headers["access-control-allow-headers"], "x-custom");
        assert_eq!(reply.headers["access-control-max-age"], "600");
        assert_eq!(reply.headers["access-control-allow-credentials"], "true");
        assert!(
            reply.version.is_none(),
            "answered by the proxy, not the app"
        );
    }
    assert_eq!(
        mesh.apps[0].stats().await["total"],
        0,
        "preflights never reach the app"
    );
    let actual = mesh
        .http
        .request(
            via,
            "GET",
            "reviews:9080",
            "/",
            &[("origin", "https://shop.example")],
        )
        .await
        .expect("actual request");
    assert_eq!(actual.status, 200);
    assert_eq!(actual.version.as_deref(), Some("v1"));
    assert_eq!(
        actual.headers["access-control-allow-origin"],
        "https://shop.example"
    );
    assert_eq!(
        actual.headers["access-control-expose-headers"],
        "x-weft-version"
    );
    let foreign = mesh
        .http
        .request(
            via,
            "GET",
            "reviews:9080",
            "/",
            &[("origin", "https://evil.example")],
        )
        .await
        .expect("foreign request");
    assert_eq!(foreign.status, 200);
    assert!(!foreign.headers.contains_key("access-control-allow-origin"));
}

/// `uriRegexRewrite`: the app sees the rewritten path (the echo app's body names it), the
/// query kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_rewrites_reach_the_app() {
    let vs = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /service/}}]
    rewrite: {uriRegexRewrite: {match: "^/service/([^/]+)(/.*)$", rewrite: "\\2/instance/\\1"}}
    route: [{destination: {host: reviews}}]
  - route: [{destination: {host: reviews}}]
"#;
    let mesh = Mesh::start(&["v1"], &[("reviews-vs.yaml", vs)]).await;
    let reply = eventually(Duration::from_secs(5), "the rewrite", || async {
        mesh.get("/service/foo/v1/api?x=1", &[])
            .await
            .ok()
            .filter(|r| r.body.contains("path=/v1/api/instance/foo"))
    })
    .await;
    assert_eq!(reply.version.as_deref(), Some("v1"), "{}", reply.body);
}
