//! Routing end to end: real controller, real sidecars, real apps on loopback.

use std::time::Duration;

use weft_e2e::{Mesh, split_vs, write_file};

const ROUTES: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews]
  http:
  - name: jason
    match:
    - headers:
        end-user: {exact: jason}
    route:
    - destination: {host: reviews, subset: v3}
  - name: v2-paths
    match:
    - uri: {prefix: /v2/}
    - uri: {exact: /two}
    route:
    - destination: {host: reviews, subset: v2}
  - name: regex-and-method
    match:
    - uri: {regex: '/r[0-9]+'}
      method: {exact: POST}
    route:
    - destination: {host: reviews, subset: v3}
  - route:
    - destination: {host: reviews, subset: v1}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_header_and_method_routing() {
    let mesh = Mesh::start(&["v1", "v2", "v3"], &[("reviews-vs.yaml", ROUTES)]).await;
    // The VirtualService is in the first config the sidecar gets: any answer means it is in force.
    mesh.wait_for_routes(Duration::from_secs(5)).await;

    /// (method, path, headers, the version that must answer)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        ("GET", "/", &[("end-user", "jason")], "v3"),
        ("GET", "/", &[("end-user", "bob")], "v1"),
        ("GET", "/v2/anything", &[], "v2"),
        ("GET", "/two", &[], "v2"),
        ("GET", "/two/more", &[], "v1"), // exact does not match a longer path
        ("GET", "/V2/anything", &[], "v1"), // paths are case-sensitive by default
        ("POST", "/r42", &[], "v3"),
        ("GET", "/r42", &[], "v1"),  // method must match too
        ("POST", "/r4x", &[], "v1"), // the regex must match the whole path
        ("GET", "/", &[], "v1"),
    ];
    for (method, path, headers, want) in cases {
        let reply = mesh
            .http
            .request(
                mesh.client.outbound(),
                method,
                "reviews:9080",
                path,
                headers,
            )
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(
            reply.status, 200,
            "{method} {path} {headers:?}: {}",
            reply.body
        );
        assert_eq!(
            reply.version.as_deref(),
            Some(*want),
            "{method} {path} {headers:?}"
        );
    }

    // The app sees the original Host, and the proxy-style absolute form works too.
    let reply = mesh.get("/", &[]).await.unwrap();
    assert!(reply.body.contains("host=reviews:9080"), "{}", reply.body);
    let reply = mesh
        .http
        .get_url(&format!("http://{}/", mesh.client.outbound()))
        .await
        .unwrap();
    assert_eq!(
        reply.status, 404,
        "a host no service claims gets 404: {reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eighty_twenty_split_over_5000_requests() {
    let mesh = Mesh::start(
        &["v1", "v2"],
        &[("reviews-vs.yaml", &split_vs(&[("v1", 80), ("v2", 20)]))],
    )
    .await;
    // The VirtualService is in the first config the sidecar gets: any answer means it is in force.
    mesh.wait_for_routes(Duration::from_secs(5)).await;
    let load = mesh.load(5000, 16, &[]).await;
    assert!(
        load.failures.is_empty(),
        "failures: {:?}",
        &load.failures[..load.failures.len().min(5)]
    );
    assert_eq!(load.total(), 5000);
    let v1 = load.share("v1");
    let v2 = load.share("v2");
    eprintln!("80/20 split: v1 {v1:.2}% v2 {v2:.2}%");
    assert!(
        (v1 - 80.0).abs() <= 3.0,
        "v1 share {v1:.2}% not within 80±3"
    );
    assert!(
        (v2 - 20.0).abs() <= 3.0,
        "v2 share {v2:.2}% not within 20±3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_virtual_service_traffic_reaches_every_instance() {
    let mesh = Mesh::start(&["v1", "v2"], &[]).await;
    mesh.wait_for_routes(Duration::from_secs(5)).await;
    let load = mesh.load(400, 4, &[]).await;
    assert!(load.failures.is_empty(), "{:?}", load.failures);
    assert!(
        load.share("v1") > 25.0 && load.share("v2") > 25.0,
        "{:?}",
        load.by_version
    );
    // And a VirtualService added later takes over.
    write_file(&mesh.config_dir(), "vs.yaml", &split_vs(&[("v2", 100)]));
    mesh.wait_for_version("/", &[], "v2", Duration::from_secs(10))
        .await;
    let load = mesh.load(200, 4, &[]).await;
    assert_eq!(load.by_version.get("v2"), Some(&200), "{load:?}");
}
