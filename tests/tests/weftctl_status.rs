//! `weftctl proxy-status` and `weftctl proxy-config` against the real controller and sidecars
//! in local mode (`--controller`, `--admin`): every proxy SYNCED; a VirtualService the proxies
//! reject shows them STALE on RDS with the proxy's own error, and the fix brings them back to
//! SYNCED; the proxy-config tables list the listeners, routes, clusters, endpoints (an
//! outlier-ejected one as FAILED) and the workload certificate.
//!
//! The proxies' own admin, as Envoy's tools read it: `proxy-config log` changes a logger's
//! level at run time (its debug lines appear, then stop after `--reset`); the NACK shows in
//! the health metrics (`weft_xds_update_rejected_total`, Envoy's `envoy_*` names) and in
//! `/config_dump`'s Envoy-shaped `error_state`, cleared once a fixed version is accepted;
//! `/clusters` lists each endpoint with its outlier verdict.
//!
//! The rejected config is a regex the controller accepts (Istio's validation compiles it with
//! the `regex` crate's 10 MiB default) but the proxy compiles with a 1 MiB limit, as Envoy
//! NACKs regexes over its RE2 program size while istiod accepts them.

use std::time::Duration;

use serde_json::Value;
use weft_e2e::prom_text::{self, Sample};
use weft_e2e::{Mesh, MeshOptions, REVIEWS_WITHOUT_RETRIES, bins, eventually, write_file};
use weft_xds::type_url;

const LIMIT: Duration = Duration::from_secs(15);

/// Every reviews request to subset v1.
const VS_V1: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
";

/// A route whose regex compiles to more than the proxy allows (1 MiB) but not more than the
/// controller's validation does (the `regex` crate's 10 MiB default): every proxy NACKs it.
/// That gap is a validation bug (issue 13: neither stricter nor looser than the proxy); when
/// it is closed, this test needs another way to make a proxy reject config. The contract test
/// skips `NACKED_` fixtures.
const NACKED_HUGE_REGEX: &str = r"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {regex: '/\w{100}'}}]
    route: [{destination: {host: reviews, subset: v1}}]
";

/// Runs weftctl: (exit status success, stdout, stderr).
async fn weftctl(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(&bins().weftctl)
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .await
        .expect("weftctl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `weftctl proxy-status --controller … -o json`: status by proxy name and type.
async fn statuses(controller: &str) -> Option<Value> {
    let (ok, out, _) = weftctl(&["proxy-status", "--controller", controller, "-o", "json"]).await;
    ok.then(|| serde_json::from_str(&out).ok()).flatten()
}

fn status_of<'a>(report: &'a Value, proxy: &str, short: &str) -> Option<&'a Value> {
    report["proxies"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == proxy)?["types"]
        .as_array()?
        .iter()
        .find(|t| t["type"] == short)
}

/// The rows of a table whose whitespace-separated cells are `cells`.
fn has_row(table: &str, cells: &[&str]) -> bool {
    table
        .lines()
        .any(|line| line.split_whitespace().collect::<Vec<_>>() == cells)
}

const PROXIES: [&str; 2] = ["client.default", "reviews-v1.default"];

const ADMIN_TYPE: &str = "type.googleapis.com/envoy.admin.v3.";

/// The proxy's `/config_dump`, parsed.
async fn config_dump(mesh: &Mesh, admin: &str) -> Option<Value> {
    let reply = mesh
        .http
        .get_url(&format!("{admin}/config_dump"))
        .await
        .ok()?;
    serde_json::from_str(&reply.body).ok()
}

/// The config of `/config_dump` whose `@type` is `envoy.admin.v3.<kind>`.
fn dump_config<'a>(dump: &'a Value, kind: &str) -> Option<&'a Value> {
    dump["configs"]
        .as_array()?
        .iter()
        .find(|c| c["@type"] == format!("{ADMIN_TYPE}{kind}"))
}

/// The `outbound` route configuration's entry in a `/config_dump`.
fn outbound_routes(dump: &Value) -> Option<&Value> {
    dump_config(dump, "RoutesConfigDump")?["dynamic_route_configs"]
        .as_array()?
        .iter()
        .find(|r| {
            r["route_config"]["name"] == "outbound"
                || r["error_state"]["failed_configuration"]["name"] == "outbound"
        })
}

/// The client sidecar's metrics (`:15090/stats/prometheus`).
async fn metrics(mesh: &Mesh) -> Option<Vec<Sample>> {
    prom_text::scrape(
        std::net::SocketAddr::new(mesh.client.ip, 15090),
        "/stats/prometheus",
    )
    .await
}

/// Lines of a log at debug level (the fmt layer's level column).
fn debug_lines(log: &str) -> usize {
    log.lines().filter(|l| l.contains("DEBUG")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_status_shows_a_nack_with_the_proxys_reason_until_the_fix() {
    let mesh = Mesh::start(&["v1"], &[("reviews-vs.yaml", VS_V1)]).await;
    let controller = format!("http://{}", mesh.controller.debug);

    // Every proxy, every type: SYNCED, in the table people read.
    let table = eventually(LIMIT, "every proxy SYNCED", || async {
        let (ok, out, _) = weftctl(&["proxy-status", "--controller", &controller]).await;
        let synced = PROXIES.iter().all(|proxy| {
            out.lines().any(|line| {
                let cells: Vec<&str> = line.split_whitespace().collect();
                cells.len() == 7 && cells[0] == *proxy && cells[1..5] == ["SYNCED"; 4]
            })
        });
        (ok && synced).then_some(out)
    })
    .await;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "CDS", "LDS", "EDS", "RDS", "CONTROLLER", "VERSION"],
        "{table}"
    );
    let controller_cell = mesh.controller.debug.to_string();
    assert!(
        table.lines().skip(1).all(
            |line| line.ends_with(&format!("{controller_cell}  {}", env!("CARGO_PKG_VERSION")))
        ),
        "every row names the controller and its version:\n{table}"
    );

    // `proxy-config log`: the loggers at the proxy's `--log` level; `config` to debug.
    let client_admin = format!("http://{}:15000", mesh.client.ip);
    let (ok, out, err) = weftctl(&["proxy-config", "log", "--admin", &client_admin]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("active loggers:\n"), "{out}");
    assert!(out.lines().any(|l| l.trim() == "config: info"), "{out}");
    assert_eq!(
        debug_lines(&mesh.client.process.log()),
        0,
        "info by default"
    );
    let (ok, out, err) = weftctl(&[
        "proxy-config",
        "log",
        "--admin",
        &client_admin,
        "--level",
        "config:debug,http:warning",
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.lines().any(|l| l.trim() == "config: debug"), "{out}");
    assert!(out.lines().any(|l| l.trim() == "http: warning"), "{out}");
    assert!(out.lines().any(|l| l.trim() == "upstream: info"), "{out}");
    let (ok, _, err) = weftctl(&[
        "proxy-config",
        "log",
        "--admin",
        &client_admin,
        "--level",
        "http:loud",
    ])
    .await;
    assert!(!ok);
    assert!(
        err.contains("answered 400") && err.contains("invalid level \"loud\" for logger \"http\""),
        "{err}"
    );
    let (ok, _, err) = weftctl(&[
        "proxy-config",
        "log",
        "--admin",
        &client_admin,
        "--level",
        "nope:debug",
    ])
    .await;
    assert!(!ok && err.contains("unknown logger \"nope\""), "{err}");
    let before = mesh
        .http
        .get_url(&format!("{client_admin}/config_dump"))
        .await
        .expect("config dump");
    assert_eq!(before.status, 200);
    let connected = eventually(LIMIT, "the health metrics", || async {
        let samples = metrics(&mesh).await?;
        (prom_text::sum(&samples, "envoy_control_plane_connected_state", &[]) == 1.0)
            .then_some(samples)
    })
    .await;
    let cds = [("type_url", type_url::CLUSTER)];
    assert!(prom_text::sum(&connected, "weft_xds_connects_total", &[]) >= 1.0);
    assert!(prom_text::sum(&connected, "envoy_cluster_manager_cds_update_success", &[]) >= 1.0);
    assert!(prom_text::sum(&connected, "weft_xds_update_success_total", &cds) >= 1.0);
    assert_eq!(
        prom_text::select(&connected, "weft_xds_config_version_info", &cds).count(),
        1,
        "one series per type"
    );
    let rds = [("type_url", type_url::ROUTE)];
    let rejected_before = prom_text::sum(&connected, "weft_xds_update_rejected_total", &rds);
    assert!(
        prom_text::sum(
            &connected,
            "envoy_cluster_membership_total",
            &[(
                "cluster_name",
                "outbound|9080||reviews.default.svc.cluster.local"
            )]
        ) >= 1.0,
        "per-cluster state"
    );

    // Config the proxies reject: RDS goes STALE with their error; the other types stay SYNCED.
    write_file(&mesh.config_dir(), "reviews-vs.yaml", NACKED_HUGE_REGEX);
    let report = eventually(LIMIT, "RDS STALE with the NACK", || async {
        let report = statuses(&controller).await?;
        PROXIES
            .iter()
            .all(|proxy| {
                status_of(&report, proxy, "RDS").is_some_and(|rds| {
                    rds["status"] == "STALE" && rds["nack"]["message"].is_string()
                })
            })
            .then_some(report)
    })
    .await;
    // The client's own view of the NACK: a counted rejection, and the rejected route
    // configuration in `/config_dump`'s `error_state` while the old one stays active.
    let samples = eventually(LIMIT, "the NACK counted", || async {
        let samples = metrics(&mesh).await?;
        (prom_text::sum(&samples, "weft_xds_update_rejected_total", &rds) > rejected_before)
            .then_some(samples)
    })
    .await;
    assert_eq!(
        prom_text::sum(&samples, "envoy_control_plane_connected_state", &[]),
        1.0
    );
    let dump = eventually(LIMIT, "error_state in /config_dump", || async {
        let dump = config_dump(&mesh, &client_admin).await?;
        outbound_routes(&dump)?["error_state"]["details"]
            .as_str()?
            .contains("Compiled regex exceeds size limit")
            .then_some(dump)
    })
    .await;
    let kinds: Vec<&str> = dump["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .filter_map(|c| c["@type"].as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "BootstrapConfigDump",
            "ClustersConfigDump",
            "ListenersConfigDump",
            "RoutesConfigDump",
            "SecretsConfigDump"
        ]
        .map(|k| format!("{ADMIN_TYPE}{k}")),
        "Envoy's configs in Envoy's order"
    );
    let outbound = outbound_routes(&dump).expect("outbound");
    let error = &outbound["error_state"];
    assert_eq!(
        error["failed_configuration"]["@type"],
        "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
    );
    assert!(error["last_update_attempt"].is_string(), "{error}");
    assert_ne!(
        error["version_info"], outbound["version_info"],
        "{outbound}"
    );
    assert_eq!(
        outbound["route_config"]["name"], "outbound",
        "the last good version still serves: {outbound}"
    );
    let clusters = dump_config(&dump, "ClustersConfigDump").expect("clusters");
    let reviews = clusters["dynamic_active_clusters"]
        .as_array()
        .expect("active clusters")
        .iter()
        .find(|c| c["cluster"]["name"] == "outbound|9080||reviews.default.svc.cluster.local")
        .unwrap_or_else(|| panic!("the reviews cluster: {clusters}"));
    assert_eq!(
        reviews["cluster"]["@type"],
        "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    );
    assert_eq!(reviews["cluster"]["type"], "EDS");
    assert!(reviews["version_info"].is_string() && reviews["last_updated"].is_string());
    let listener =
        &dump_config(&dump, "ListenersConfigDump").expect("listeners")["dynamic_listeners"][0];
    assert!(
        listener["active_state"]["listener"]["address"]["socket_address"]["port_value"].is_u64(),
        "{listener}"
    );
    // Envoy's query parameters.
    let reply = mesh
        .http
        .get_url(&format!(
            "{client_admin}/config_dump?resource=dynamic_active_clusters&mask=cluster.name&name_regex=reviews"
        ))
        .await
        .expect("config dump");
    let selected: Value = serde_json::from_str(&reply.body).expect("json");
    let selected = selected["configs"].as_array().expect("configs");
    assert!(!selected.is_empty());
    for c in selected {
        assert_eq!(
            c["@type"],
            format!("{ADMIN_TYPE}ClustersConfigDump.DynamicCluster")
        );
        assert!(
            c["cluster"]["name"]
                .as_str()
                .is_some_and(|n| n.contains("reviews"))
        );
        assert!(c.get("version_info").is_none(), "masked: {c}");
    }

    for proxy in PROXIES {
        for short in ["CDS", "LDS", "EDS"] {
            let status = status_of(&report, proxy, short).expect("a status");
            assert_eq!(status["status"], "SYNCED", "{proxy} {short}: {status}");
        }
        let rds = status_of(&report, proxy, "RDS").expect("RDS");
        let message = rds["nack"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("route config \"outbound\"")
                && message.contains("Compiled regex exceeds size limit"),
            "{proxy}: the proxy's own error: {rds}"
        );
        assert_eq!(rds["nack"]["version"], rds["sent_version"], "{rds}");
        assert_ne!(rds["acked_version"], rds["sent_version"], "{rds}");
    }
    let (ok, table, err) = weftctl(&["proxy-status", "--controller", &controller]).await;
    assert!(ok, "{err}");
    let client = table
        .lines()
        .find(|line| line.starts_with("client.default "))
        .unwrap_or_else(|| panic!("no client row:\n{table}"));
    assert!(
        client.contains(" ago; NACK: route config \"outbound\": virtual host"),
        "the table says why, and since when:\n{table}"
    );

    // The detail view has every type and the whole message.
    let (ok, detail, err) = weftctl(&[
        "proxy-status",
        "client.default",
        "--controller",
        &controller,
    ])
    .await;
    assert!(ok, "{err}");
    assert!(
        detail.starts_with("Proxy:       client.default\n"),
        "{detail}"
    );
    assert!(
        detail.lines().any(|l| l.starts_with("CDS   SYNCED")),
        "{detail}"
    );
    assert!(
        detail.lines().any(|l| l.starts_with("RDS   STALE")),
        "{detail}"
    );
    assert!(
        detail.contains("regex parse error: Compiled regex exceeds size limit of 1048576 bytes."),
        "{detail}"
    );

    // The fix: SYNCED again, the NACK gone (kept only as history).
    write_file(&mesh.config_dir(), "reviews-vs.yaml", VS_V1);
    let report = eventually(LIMIT, "RDS SYNCED after the fix", || async {
        let report = statuses(&controller).await?;
        PROXIES
            .iter()
            .all(|proxy| {
                ["CDS", "LDS", "EDS", "RDS"].iter().all(|short| {
                    status_of(&report, proxy, short).is_some_and(|t| t["status"] == "SYNCED")
                })
            })
            .then_some(report)
    })
    .await;
    let rds_status = status_of(&report, "client.default", "RDS").expect("RDS");
    assert!(rds_status["nack"].is_null(), "{rds_status}");
    assert!(rds_status["last_nack"].is_string(), "{rds_status}");
    // The fixed version accepted: the error_state is gone from the dump.
    eventually(LIMIT, "error_state cleared", || async {
        let dump = config_dump(&mesh, &client_admin).await?;
        let outbound = outbound_routes(&dump)?;
        (outbound.get("error_state").is_none() && outbound["route_config"].is_object())
            .then_some(())
    })
    .await;
    // `config` at debug: the xDS client's debug lines (its ACKs) are in the log; after
    // `--reset`, back at info.
    let log = eventually(LIMIT, "debug lines of the config logger", || async {
        let log = mesh.client.process.log();
        log.lines()
            .any(|l| l.contains("DEBUG") && l.contains("weft_xds"))
            .then_some(log)
    })
    .await;
    assert!(
        !log.lines()
            .any(|l| l.contains("DEBUG") && l.contains("weft_proxy::http")),
        "http stays above debug"
    );
    let (ok, out, err) =
        weftctl(&["proxy-config", "log", "--admin", &client_admin, "--reset"]).await;
    assert!(ok, "{err}");
    assert!(out.lines().any(|l| l.trim() == "config: info"), "{out}");

    // An unknown proxy, an unreachable controller: a clear error and a failing exit.
    let (ok, _, err) = weftctl(&["proxy-status", "nobody", "--controller", &controller]).await;
    assert!(!ok);
    assert!(
        err.contains("no proxy \"nobody\"") && err.contains("client.default"),
        "{err}"
    );
    let (ok, _, err) = weftctl(&[
        "proxy-status",
        "--controller",
        &format!("http://{}:1", mesh.net.ip(1)),
    ])
    .await;
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "cannot reach http://{}:1/debug/syncz",
            mesh.net.ip(1)
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_config_tables_show_what_the_proxy_applied() {
    let mut mesh = Mesh::start_with(
        &["v1", "v2"],
        &[("reviews-vs.yaml", REVIEWS_WITHOUT_RETRIES)],
        &MeshOptions {
            identity: true,
            traffic_policy: Some(
                "{outlierDetection: {consecutive5xxErrors: 3, interval: 100ms, baseEjectionTime: 60s, maxEjectionPercent: 50}}"
                    .into(),
            ),
            ..Default::default()
        },
    )
    .await;
    mesh.wait_for_routes(LIMIT).await;
    let controller = format!("http://{}", mesh.controller.debug);
    let client_admin = format!("http://{}:15000", mesh.client.ip);
    let reviews_ip = mesh.sidecars[0].ip.to_string();
    let reviews_admin = format!("http://{reviews_ip}:15000");
    let v1 = format!("{}:15006", mesh.sidecars[0].ip);
    let v2 = format!("{}:15006", mesh.sidecars[1].ip);
    let config = |what: &'static str, admin: String, with_controller: bool| {
        let controller = controller.clone();
        async move {
            let mut args = vec!["proxy-config", what, "--admin", &admin];
            if with_controller {
                args.extend(["--controller", controller.as_str()]);
            }
            let (ok, out, err) = weftctl(&args).await;
            assert!(ok, "proxy-config {what}: {err}");
            out
        }
    };

    let listeners = config("listeners", reviews_admin.clone(), false).await;
    assert!(
        has_row(
            &listeners,
            &[
                "virtualOutbound",
                &reviews_ip,
                "15001",
                "ALL",
                "no",
                "Route:",
                "outbound"
            ]
        ),
        "{listeners}"
    );
    assert!(
        has_row(
            &listeners,
            &[
                "virtualInbound",
                &reviews_ip,
                "15006",
                "Trans:",
                "tls",
                "yes",
                "Route:",
                "inbound|9080"
            ]
        ),
        "{listeners}"
    );

    let routes = config("routes", client_admin.clone(), true).await;
    assert!(
        routes
            .lines()
            .next()
            .is_some_and(|h| h.ends_with("VIRTUAL SERVICE")),
        "{routes}"
    );
    assert!(
        has_row(
            &routes,
            &[
                "outbound",
                "reviews.default.svc.cluster.local:9080",
                "reviews.default.svc.cluster.local:9080",
                "+7",
                "more",
                "/*",
                "reviews.default",
            ]
        ),
        "{routes}"
    );

    let clusters = config("clusters", client_admin.clone(), true).await;
    for subset in ["v1", "v2", "-"] {
        assert!(
            has_row(
                &clusters,
                &[
                    "reviews.default.svc.cluster.local",
                    "9080",
                    subset,
                    "outbound",
                    "EDS",
                    "reviews.default"
                ]
            ),
            "{clusters}"
        );
    }
    // Without the controller, the DestinationRule column is left out.
    let clusters = config("clusters", client_admin.clone(), false).await;
    assert!(
        has_row(
            &clusters,
            &[
                "reviews.default.svc.cluster.local",
                "9080",
                "v1",
                "outbound",
                "EDS"
            ]
        ),
        "{clusters}"
    );

    let secret = config("secret", client_admin.clone(), false).await;
    let starts = |cells: &[&str]| {
        secret
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>().starts_with(cells))
    };
    assert!(
        starts(&["default", "Cert", "Chain", "ACTIVE", "true"]),
        "{secret}"
    );
    assert!(starts(&["ROOTCA", "CA", "ACTIVE", "true"]), "{secret}");
    assert!(
        secret.contains("Identity: spiffe://cluster.local/ns/default/sa/client"),
        "{secret}"
    );

    // v2 answers 500 to everything: the client's outlier detection ejects it.
    mesh.restart_app(1, &["--fail-ratio", "1", "--fail-status", "500"])
        .await;
    let all = "outbound|9080||reviews.default.svc.cluster.local";
    let endpoints = eventually(LIMIT, "v2 ejected", || async {
        for _ in 0..10 {
            let _ = mesh.get("/", &[]).await;
        }
        let out = config("endpoints", client_admin.clone(), false).await;
        has_row(&out, &[&v2, "HEALTHY", "FAILED", all]).then_some(out)
    })
    .await;
    assert!(
        has_row(&endpoints, &[&v1, "HEALTHY", "OK", all]),
        "{endpoints}"
    );
    assert!(
        has_row(
            &endpoints,
            &[
                &v1,
                "HEALTHY",
                "OK",
                "outbound|9080|v1|reviews.default.svc.cluster.local"
            ]
        ),
        "{endpoints}"
    );

    // `/clusters` in Envoy's text format says the same, and so do Envoy's outlier gauges.
    let text = mesh
        .http
        .get_url(&format!("{client_admin}/clusters"))
        .await
        .expect("/clusters")
        .body;
    let has = |line: String| text.lines().any(|l| l == line);
    assert!(
        has(format!("{all}::{v2}::health_flags::/failed_outlier_check")),
        "{text}"
    );
    assert!(has(format!("{all}::{v1}::health_flags::healthy")), "{text}");
    assert!(has(format!("{all}::{v1}::weight::1")), "{text}");
    assert!(has(format!("{all}::added_via_api::true")), "{text}");
    let samples = metrics(&mesh).await.expect("metrics");
    let cluster = [("cluster_name", all)];
    assert_eq!(
        prom_text::sum(
            &samples,
            "envoy_cluster_outlier_detection_ejections_active",
            &cluster
        ),
        1.0
    );
    assert!(
        prom_text::sum(
            &samples,
            "envoy_cluster_outlier_detection_ejections_enforced_total",
            &cluster
        ) >= 1.0
    );
    assert_eq!(
        prom_text::sum(&samples, "envoy_cluster_membership_healthy", &cluster),
        1.0
    );
    // The workload certificate's expiry, from the certificate the proxy holds now.
    let left = prom_text::sum(&samples, "weft_workload_cert_seconds_until_expiry", &[]);
    let days = prom_text::sum(&samples, "envoy_server_days_until_first_cert_expiring", &[]);
    assert!(left > 3600.0, "{left}");
    assert_eq!(days, (left / 86_400.0).floor());
    let not_after = prom_text::sum(
        &samples,
        "weft_workload_cert_expiration_timestamp_seconds",
        &[],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!((not_after - now - left).abs() < 60.0, "{not_after} {left}");
}
