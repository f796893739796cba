//! A ServiceEntry with `resolution: DNS` serves traffic: the controller sends a STRICT_DNS
//! cluster with the endpoint's host name, and the sidecar resolves it.

use std::net::SocketAddr;
use std::time::Duration;

use weft_e2e::{App, Mesh, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_resolved_service_entry_endpoint_serves_traffic() {
    // An app outside the mesh, reachable as `localhost:<port>`.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mesh = Mesh::start(
        &["v1"],
        &[(
            "external.yaml",
            &format!(
                "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: external, namespace: default}}
spec:
  hosts: [external.example]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  endpoints:
  - address: localhost
    ports: {{http: {port}}}
"
            ),
        )],
    )
    .await;
    let _app = App::start(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "external",
        "ext",
        &mesh.log_dir(),
    )
    .await;
    let reply = eventually(
        Duration::from_secs(10),
        "external.example answers",
        || async {
            mesh.http
                .request(
                    mesh.client.outbound(),
                    "GET",
                    "external.example:9080",
                    "/",
                    &[],
                )
                .await
                .ok()
                .filter(|r| r.status == 200)
        },
    )
    .await;
    assert_eq!(reply.version.as_deref(), Some("ext"), "{}", reply.body);
    let dump = mesh
        .http
        .get_url(&format!("http://{}:15000/config_dump", mesh.client.ip))
        .await
        .expect("config dump");
    assert!(
        dump.body.contains("STRICT_DNS"),
        "the cluster is DNS-resolved: {}",
        dump.body
    );
}
