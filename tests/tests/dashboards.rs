//! Weft's Grafana dashboards (`charts/weft/dashboards/*.json`) against Weft itself.
//!
//! - Their shape: every file parses, uids are the stable ones, panel ids are unique, every
//!   panel and target queries `${datasource}`, every range is `[$__rate_interval]`, every
//!   variable a query uses is defined.
//! - Their metrics: a mesh with mutual TLS (real controller, sidecars, a TCP client) takes
//!   HTTP, TCP and admission-webhook traffic; every metric name a panel or a variable queries
//!   has a sample in the sidecars' `:15090/stats/prometheus` or the controller's `:15014/metrics`,
//!   except the few listed in [`WITHOUT_SAMPLES`] with the event that makes them.
//! - Their queries: a real Prometheus scraping that mesh accepts every expression (template
//!   variables substituted as Grafana would), and the main panels answer with data.
//! - The chart: one ConfigMap per dashboard, labelled for Grafana's dashboard sidecar, rendered
//!   by `helm template` and accepted by a real API server through `helm install`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use weft_e2e::k8s::{KubeCluster, KubeClusterOptions};
use weft_e2e::prom_text::parse;
use weft_e2e::prometheus::{Prometheus, Series, Target};
use weft_e2e::xds_peer::{Snapshot, XdsPeer, eds_cluster, endpoints};
use weft_e2e::{HttpClient, Mesh, MeshOptions, Net, Sidecar, eventually, split_vs, write_file};
use weft_xds::contract::{LISTENER, TCP_PROXY, TCP_PROXY_TYPE_URL};

const SERVICE: &str = "reviews.default.svc.cluster.local";

/// The dashboards by file, and their uids.
const DASHBOARDS: [(&str, &str); 4] = [
    ("weft-mesh.json", "weft-mesh"),
    ("weft-service.json", "weft-service"),
    ("weft-workload.json", "weft-workload"),
    ("weft-control-plane.json", "weft-control-plane"),
];

/// What Grafana would put in place of each variable, for this test's mesh.
const VARIABLES: [(&str, &str); 5] = [
    ("__rate_interval", "1m"),
    ("namespace", "default"),
    ("service", SERVICE),
    ("workload", "reviews-v1"),
    ("reporter", "destination"),
];

/// Metrics a dashboard queries that have no sample in this test's mesh: (name, the source
/// that registers it, why there is none). A family with labels shows in an exposition only
/// from its first sample on.
const WITHOUT_SAMPLES: &[(&str, &str, &str)] = &[(
    "pilot_total_xds_rejects",
    "crates/xds/src/metrics.rs",
    "counted per type when a proxy NACKs a response; weft-controller never generates config \
     its proxies reject (tests/tests/nack.rs needs hand-made config to see one); its unit test \
     checks the name as exposed",
)];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    repo().join("charts/weft")
}

/// Every dashboard: (file name, parsed JSON).
fn dashboards() -> Vec<(String, Value)> {
    let dir = chart().join("dashboards");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(&name)).expect("dashboard file");
            let value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
            (name, value)
        })
        .collect()
}

fn dashboard(uid: &str) -> Value {
    dashboards()
        .into_iter()
        .map(|(_, d)| d)
        .find(|d| d["uid"] == uid)
        .unwrap_or_else(|| panic!("no dashboard {uid}"))
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            all.extend(nested);
        }
    }
    all
}

/// Every query target: (panel title, refId, expr).
fn targets(dashboard: &Value) -> Vec<(String, String, String)> {
    panels(dashboard)
        .into_iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or_default().to_string();
            panel["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |t| {
                    (
                        title.clone(),
                        t["refId"].as_str().unwrap_or_default().to_string(),
                        t["expr"].as_str().unwrap_or_default().to_string(),
                    )
                })
        })
        .collect()
}

/// The series selector of each query variable (`label_values(<selector>, <label>)`), with
/// the variable's name and label.
fn variable_selectors(dashboard: &Value) -> Vec<(String, String, String)> {
    dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let name = v["name"].as_str().expect("variable name").to_string();
            let query = v["query"]["query"]
                .as_str()
                .or_else(|| v["query"].as_str())
                .unwrap_or_else(|| panic!("variable {name}: no query"));
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| panic!("variable {name}: not label_values(…): {query}"));
            let (selector, label) = inner
                .rsplit_once(',')
                .unwrap_or_else(|| panic!("variable {name}: label_values needs a selector"));
            (name, selector.trim().to_string(), label.trim().to_string())
        })
        .collect()
}

/// Skips a quoted string starting at `chars[i]`; the index after its closing quote.
fn skip_string(chars: &[char], i: usize) -> usize {
    let quote = chars[i];
    let mut j = i + 1;
    while j < chars.len() && chars[j] != quote {
        if chars[j] == '\\' && quote != '`' {
            j += 1;
        }
        j += 1;
    }
    j + 1
}

/// Skips from the opener at `chars[i]` to after its closer (`{}`, `[]`, `()`), strings inside
/// skipped whole.
fn skip_group(chars: &[char], i: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    let mut j = i;
    while j < chars.len() {
        match chars[j] {
            '"' | '\'' | '`' => {
                j = skip_string(chars, j);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    j
}

/// The metric names a PromQL expression selects: identifiers outside strings, label
/// matchers, ranges and grouping clauses that are neither functions (followed by `(`) nor
/// operators and keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
    ];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '{' {
            i = skip_group(&chars, i, '{', '}');
        } else if c == '[' {
            i = skip_group(&chars, i, '[', ']');
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let ident: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let paren = chars.get(next) == Some(&'(');
            if GROUPING.contains(&ident.as_str()) {
                if paren {
                    i = skip_group(&chars, next, '(', ')');
                }
            } else if !paren && !KEYWORDS.contains(&ident.to_ascii_lowercase().as_str()) {
                names.insert(ident);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The range selectors (`[…]` outside strings and label matchers) of an expression.
fn ranges(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '{' => i = skip_group(&chars, i, '{', '}'),
            '[' => {
                let end = skip_group(&chars, i, '[', ']');
                out.push(chars[i + 1..end - 1].iter().collect());
                i = end;
            }
            _ => i += 1,
        }
    }
    out
}

/// The Grafana variables (`$name`, `${name}`, `${name:format}`) a text uses.
fn variables_used(text: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let braced = rest.starts_with('{');
        let name: String = rest
            .trim_start_matches('{')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() || braced {
            used.insert(name);
        }
    }
    used
}

/// `expr` with the variables replaced as Grafana would for this test's mesh ([`VARIABLES`],
/// some of them given other values in `with`); fails on any left.
fn substitute(expr: &str, with: &[(&str, &str)]) -> String {
    let mut out = expr.to_string();
    for (name, value) in VARIABLES {
        let value = with
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(value, |(_, v)| *v);
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    assert!(!out.contains('$'), "a variable left in {out}");
    out
}

#[test]
fn promql_names_and_ranges_are_read_as_prometheus_would() {
    let expr = r#"histogram_quantile(0.99, sum by (le, destination_service) (rate(istio_request_duration_milliseconds_bucket{reporter=~"$reporter", x="a{b}[c] sum(d)"}[$__rate_interval]))) / on (x) group_left (y) up or vector(0) + sum(citadel_server_csr_count) - count without (type) (pilot_xds)"#;
    assert_eq!(
        metric_names(expr).into_iter().collect::<Vec<_>>(),
        vec![
            "citadel_server_csr_count",
            "istio_request_duration_milliseconds_bucket",
            "pilot_xds",
            "up",
        ]
    );
    assert_eq!(ranges(expr), vec!["$__rate_interval"]);
    assert_eq!(
        variables_used("a=~\"$reporter\" ${datasource} ${x:queryparam} [$__rate_interval]"),
        ["__rate_interval", "datasource", "reporter", "x"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        substitute(
            r#"rate(m{reporter=~"$reporter", s=~"${service}"}[$__rate_interval])"#,
            &[("reporter", "source")]
        ),
        format!(r#"rate(m{{reporter=~"source", s=~"{SERVICE}"}}[1m])"#)
    );
}

#[test]
fn dashboards_are_well_formed() {
    let all = dashboards();
    let files: Vec<&str> = all.iter().map(|(f, _)| f.as_str()).collect();
    let mut want: Vec<&str> = DASHBOARDS.iter().map(|(f, _)| *f).collect();
    want.sort();
    assert_eq!(files, want, "charts/weft/dashboards/ holds exactly these");
    let mut titles = BTreeSet::new();
    for (file, d) in &all {
        let uid = DASHBOARDS.iter().find(|(f, _)| f == file).expect("known").1;
        assert_eq!(d["uid"], uid, "{file}: uid");
        assert!(
            d["id"].is_null(),
            "{file}: id must be null (Grafana assigns it)"
        );
        assert!(
            d["schemaVersion"].as_u64().is_some_and(|v| v >= 39),
            "{file}: schemaVersion"
        );
        let title = d["title"].as_str().expect("title");
        assert!(title.starts_with("Weft / "), "{file}: {title}");
        assert!(
            titles.insert(title.to_string()),
            "{file}: title {title} twice"
        );
        assert!(
            d["tags"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("weft"))),
            "{file}: tag weft"
        );

        // The variables: `datasource` first (a Prometheus), then each defined once; each
        // query variable on `${datasource}`, using only variables defined before it.
        let vars = d["templating"]["list"].as_array().expect("templating.list");
        let ds = &vars[0];
        assert_eq!(
            (&ds["name"], &ds["type"], &ds["query"]),
            (
                &json!("datasource"),
                &json!("datasource"),
                &json!("prometheus")
            ),
            "{file}: the first variable is the Prometheus data source"
        );
        let mut defined: BTreeSet<String> = ["__rate_interval", "__url_time_range"]
            .map(String::from)
            .into();
        for var in vars {
            let name = var["name"].as_str().expect("variable name");
            if var["type"] == "query" {
                assert_eq!(var["datasource"]["uid"], "${datasource}", "{file}: {name}");
                let query = var["query"]["query"].as_str().expect("query");
                for used in variables_used(query) {
                    assert!(
                        defined.contains(&used),
                        "{file}: {name} uses ${used} before it is defined"
                    );
                }
            }
            assert!(
                defined.insert(name.to_string()),
                "{file}: variable {name} twice"
            );
        }

        // Panels: unique ids and titles, on the grid, every query on `${datasource}`.
        let mut ids = BTreeSet::new();
        let mut panel_titles = BTreeSet::new();
        for panel in panels(d) {
            let title = panel["title"].as_str().expect("panel title");
            let id = panel["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{file}: {title}: id"));
            assert!(ids.insert(id), "{file}: panel id {id} twice ({title})");
            let grid = &panel["gridPos"];
            let (x, w) = (
                grid["x"].as_u64().expect("x"),
                grid["w"].as_u64().expect("w"),
            );
            assert!(
                w > 0 && x + w <= 24 && grid["h"].as_u64().is_some_and(|h| h > 0),
                "{file}: {title}: {grid}"
            );
            if panel["type"] == "row" {
                assert!(
                    panel.get("targets").is_none(),
                    "{file}: row {title} has targets"
                );
                continue;
            }
            assert!(
                panel_titles.insert(title),
                "{file}: panel title {title} twice"
            );
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{file}: {title}"
            );
            assert!(
                panel["description"].as_str().is_some_and(|s| !s.is_empty()),
                "{file}: {title}: description"
            );
            let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
            let targets = targets.unwrap_or_else(|| panic!("{file}: {title}: no targets"));
            let mut refs = BTreeSet::new();
            for target in targets {
                let r = target["refId"].as_str().expect("refId");
                assert!(refs.insert(r), "{file}: {title}: refId {r} twice");
                assert_eq!(
                    target["datasource"]["uid"], "${datasource}",
                    "{file}: {title} {r}"
                );
                let expr = target["expr"].as_str().filter(|e| !e.trim().is_empty());
                let expr = expr.unwrap_or_else(|| panic!("{file}: {title} {r}: no expr"));
                assert!(!expr.contains("datasource"), "{file}: {title} {r}: {expr}");
                for used in variables_used(expr) {
                    assert!(
                        defined.contains(&used),
                        "{file}: {title} {r}: ${used} is not a variable"
                    );
                }
                for range in ranges(expr) {
                    assert_eq!(range, "$__rate_interval", "{file}: {title} {r}: {expr}");
                }
                assert!(
                    !metric_names(expr).is_empty(),
                    "{file}: {title} {r}: no metric in {expr}"
                );
            }
        }
    }
}

/// A TCP client sidecar of its own block, configured by xds-peer (weft-controller's local
/// mode gives proxies HTTP listeners only): an outbound `tcp_proxy` on `.10:9000` to the
/// reviews app at `upstream`, as the cluster of reviews' service.
async fn tcp_client(upstream: SocketAddr, dir: &Path) -> (XdsPeer, Sidecar, SocketAddr) {
    let net = Net::new();
    let listen = SocketAddr::new(net.ip(10), 9000);
    let cluster = format!("outbound|9080||{SERVICE}");
    let listener = json!({
        "@type": LISTENER,
        "name": "tcp-out",
        "trafficDirection": "OUTBOUND",
        "address": {"socketAddress": {"address": listen.ip().to_string(), "portValue": listen.port()}},
        // Istio's stats filter, as a TypedStruct (xds-peer's protobuf registry has Envoy's types
        // only), so that the chain records Istio's TCP metrics.
        "filterChains": [{"filters": [{
            "name": weft_xds::stats::STATS_FILTER,
            "typedConfig": {
                "@type": weft_xds::stats::TYPED_STRUCT_TYPE_URLS[0],
                "typeUrl": weft_xds::stats::STATS_TYPE_URL,
                "value": {"disableHostHeaderFallback": true},
            },
        }, {
            "name": TCP_PROXY,
            "typedConfig": {
                "@type": TCP_PROXY_TYPE_URL,
                "statPrefix": "tcp-out",
                "cluster": cluster,
            },
        }]}],
    });
    let snapshot = Snapshot {
        listeners: vec![listener],
        routes: vec![],
        clusters: vec![eds_cluster(&cluster)],
        endpoints: vec![endpoints(&cluster, &[upstream])],
    };
    let logs = dir.join("logs");
    let peer = XdsPeer::start(net, &snapshot, "1", &dir.join("tcp-client"), &logs).await;
    let sidecar = Sidecar::start(
        net.ip(10),
        &peer.ads_url(),
        "tcp-client",
        "app=tcp-client",
        None,
        &logs,
    )
    .await;
    (peer, sidecar, listen)
}

/// One TCP connection through the TCP client's listener: an HTTP/1.1 request as opaque bytes.
async fn tcp_exchange(addr: SocketAddr) -> Result<String, String> {
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: reviews:9080\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut reply))
        .await
        .map_err(|_| "no reply in 5s".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// One HTTPS request to the controller's webhook, trusting `root` (its CA's root issued the
/// webhook's certificate): the status code and body.
async fn webhook_call(addr: SocketAddr, root: &Path, path: &str, body: &[u8]) -> (u16, String) {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(root).expect("root file") {
        roots.add(cert.expect("cert")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("the webhook's certificate chains to the CA's root");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.expect("write");
    tls.write_all(body).await.expect("write");
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut reply))
        .await
        .expect("a reply within 10s")
        .expect("read");
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {reply:?}"));
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    (status, body.unwrap_or_default())
}

fn validation_review(weights: (i32, i32)) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "dash-1", "operation": "CREATE", "namespace": "default", "name": "reviews",
            "kind": {"group": "networking.istio.io", "version": "v1", "kind": "VirtualService"},
            "resource": {"group": "networking.istio.io", "version": "v1", "resource": "virtualservices"},
            "userInfo": {},
            "object": {
                "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": "reviews", "namespace": "default"},
                "spec": {"hosts": ["reviews"], "http": [{"route": [
                    {"destination": {"host": "reviews", "subset": "v1"}, "weight": weights.0},
                    {"destination": {"host": "reviews", "subset": "v2"}, "weight": weights.1},
                ]}]},
            },
        },
    }))
    .expect("json")
}

fn pod_review(annotations: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "dash-2", "operation": "CREATE", "namespace": "shop", "name": "",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "userInfo": {},
            "object": {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"generateName": "web-", "annotations": annotations},
                       "spec": {"containers": [{"name": "web", "image": "web:1"}]}},
        },
    }))
    .expect("json")
}

/// The query of panel `title`'s target `ref` in dashboard `uid`, variables substituted.
fn panel_query(uid: &str, title: &str, ref_id: &str, with: &[(&str, &str)]) -> String {
    let d = dashboard(uid);
    let (_, _, expr) = targets(&d)
        .into_iter()
        .find(|(t, r, _)| t == title && r == ref_id)
        .unwrap_or_else(|| panic!("{uid}: no panel {title:?} with target {ref_id}"));
    substitute(&expr, with)
}

fn label<'a>(series: &'a Series, key: &str) -> &'a str {
    series
        .labels
        .get(key)
        .map(String::as_str)
        .unwrap_or_default()
}

/// Whether some series with `key` = `value` is a positive number.
fn positive(series: &[Series], key: &str, value: &str) -> bool {
    series
        .iter()
        .any(|s| label(s, key) == value && s.value.is_finite() && s.value > 0.0)
}

/// Whether the answer is one positive number.
fn one_positive(series: &[Series]) -> bool {
    series.len() == 1 && series[0].value.is_finite() && series[0].value > 0.0
}

/// A key panel: (dashboard uid, panel title, refId, variables other than [`VARIABLES`]'
/// values, what its answer must show).
type Check = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    fn(&[Series]) -> bool,
);

const KEY_PANELS: &[Check] = &[
    ("weft-mesh", "Requests by response code", "A", &[], |s| {
        positive(s, "response_code", "200") && positive(s, "response_code", "500")
    }),
    ("weft-mesh", "p99 latency by service", "A", &[], |s| {
        s.iter().any(|s| {
            label(s, "destination_service") == SERVICE && s.value > 0.0 && s.value <= 1000.0
        })
    }),
    ("weft-mesh", "mTLS share of requests", "A", &[], |s| {
        s.len() == 1 && s[0].value == 1.0
    }),
    ("weft-mesh", "Services", "A", &[], |s| {
        positive(s, "destination_service", SERVICE)
    }),
    // Requests no route took: only the client's sidecar saw them.
    (
        "weft-mesh",
        "4xx by service",
        "A",
        &[("reporter", "source")],
        |s| positive(s, "response_code", "404"),
    ),
    // Only the TCP client's sidecar reports TCP here, as the source (which cannot tell mTLS).
    (
        "weft-mesh",
        "TCP bytes by security policy",
        "A",
        &[("reporter", "source")],
        |s| positive(s, "connection_security_policy", "unknown"),
    ),
    ("weft-service", "Requests by response code", "A", &[], |s| {
        positive(s, "response_code", "200") && positive(s, "response_code", "500")
    }),
    (
        "weft-service",
        "Incoming requests by source workload",
        "A",
        &[],
        |s| positive(s, "source_workload", "client"),
    ),
    ("weft-service", "Latency", "C", &[], one_positive),
    ("weft-service", "Response size", "C", &[], one_positive),
    (
        "weft-service",
        "TCP bytes by source workload",
        "A",
        &[("reporter", "source")],
        |s| positive(s, "source_workload", "tcp-client"),
    ),
    (
        "weft-workload",
        "Incoming requests by source workload",
        "A",
        &[],
        |s| positive(s, "source_workload", "client"),
    ),
    (
        "weft-workload",
        "Inbound p99 latency",
        "A",
        &[],
        one_positive,
    ),
    (
        "weft-workload",
        "Outgoing requests by destination service",
        "A",
        &[("workload", "client")],
        |s| positive(s, "destination_service", SERVICE),
    ),
    (
        "weft-workload",
        "Outbound responses with flags",
        "A",
        &[("workload", "client")],
        |s| positive(s, "response_flags", "NR"),
    ),
    ("weft-control-plane", "Connected proxies", "A", &[], |s| {
        s.len() == 1 && s[0].value == 3.0
    }),
    // Every type was pushed at the start, routes again for the VirtualService.
    ("weft-control-plane", "Pushes by type", "A", &[], |s| {
        ["cds", "eds", "lds"]
            .iter()
            .all(|t| s.iter().any(|s| label(s, "type") == *t))
            && positive(s, "type", "rds")
    }),
    (
        "weft-control-plane",
        "Proxy convergence time",
        "C",
        &[],
        one_positive,
    ),
    (
        "weft-control-plane",
        "Root certificate expires in",
        "A",
        &[],
        |s| s.len() == 1 && s[0].value > 86400.0,
    ),
    ("weft-control-plane", "Certificates issued", "A", &[], |s| {
        s.len() == 1 && s[0].value >= 3.0
    }),
    ("weft-control-plane", "Validation", "A", &[], |s| {
        positive(s, "resource", "virtualservices")
    }),
    ("weft-control-plane", "Validation", "B", &[], |s| {
        positive(s, "reason", "invalid_resource")
    }),
    (
        "weft-control-plane",
        "Sidecar injection",
        "B",
        &[],
        one_positive,
    ),
    ("weft-control-plane", "Webhook latency", "B", &[], |s| {
        positive(s, "webhook", "validate") && positive(s, "webhook", "inject")
    }),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_query_metrics_weft_exposes_and_answer_from_a_real_mesh() {
    let net = Net::new();
    let webhook = SocketAddr::new(net.ip(1), 15017);
    let mesh = Mesh::start_with(
        &["v1", "v2"],
        &[],
        &MeshOptions {
            net: Some(net),
            identity: true,
            controller: vec![
                "--webhook-cert-from-ca".into(),
                "--webhook-address".into(),
                webhook.to_string(),
            ],
            ..Default::default()
        },
    )
    .await;
    mesh.wait_for_routes(Duration::from_secs(10)).await;
    let (_peer, tcp_sidecar, tcp_listener) = tcp_client(mesh.apps[0].addr, mesh.dir.path()).await;

    let stats = |ip| SocketAddr::new(ip, 15090);
    let sidecars: Vec<SocketAddr> = [mesh.client.ip, tcp_sidecar.ip]
        .into_iter()
        .chain(mesh.sidecars.iter().map(|s| s.ip))
        .map(stats)
        .collect();
    let mut scrape_targets: Vec<Target> = sidecars
        .iter()
        .map(|addr| Target::new("envoy-stats", *addr, "/stats/prometheus"))
        .collect();
    scrape_targets.push(Target::new("istiod", mesh.controller.debug, "/metrics"));
    let prometheus = Prometheus::start(
        SocketAddr::new(mesh.net.ip(90), 19090),
        &scrape_targets,
        mesh.dir.path(),
    )
    .await;

    // Traffic of every kind the dashboards show, in two halves with a scrape between them:
    // a rate needs a series' increase after Prometheus first saw it.
    let root = mesh.dir.path().join("ca/root-cert.pem");
    let send = || async {
        for _ in 0..30 {
            assert_eq!(mesh.get("/", &[]).await.unwrap().status, 200);
        }
        for _ in 0..10 {
            assert_eq!(mesh.get("/?status=500", &[]).await.unwrap().status, 500);
        }
        for _ in 0..3 {
            let reply = mesh
                .http
                .request(mesh.client.outbound(), "GET", "nowhere:9080", "/", &[])
                .await
                .unwrap();
            assert_eq!(reply.status, 404, "no route: NR");
        }
        for _ in 0..3 {
            let reply = eventually(
                Duration::from_secs(10),
                "a reply through the TCP proxy",
                || async {
                    tcp_exchange(tcp_listener)
                        .await
                        .ok()
                        .filter(|r| r.starts_with("HTTP/1.1 200"))
                },
            )
            .await;
            assert!(reply.contains("reviews"), "{reply}");
        }
        let (status, body) =
            webhook_call(webhook, &root, "/validate", &validation_review((50, 50))).await;
        assert!(
            status == 200 && body.contains(r#""allowed":true"#),
            "{status} {body}"
        );
        let (status, body) =
            webhook_call(webhook, &root, "/validate", &validation_review((0, 0))).await;
        assert!(
            status == 200 && body.contains("total destination weight = 0"),
            "{status} {body}"
        );
        let (status, _) = webhook_call(webhook, &root, "/validate", b"{not a review").await;
        assert_eq!(status, 400);
        let (status, body) = webhook_call(webhook, &root, "/inject", &pod_review(json!({}))).await;
        assert!(
            status == 200 && body.contains(r#""patch":"#),
            "{status} {body}"
        );
        let opt_out = pod_review(json!({"sidecar.istio.io/inject": "false"}));
        assert_eq!(
            webhook_call(webhook, &root, "/inject", &opt_out).await.0,
            200
        );
    };
    send().await;
    // Every target scraped after the first half: its series have a first value to rise from.
    let sent = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    eventually(
        Duration::from_secs(15),
        "every target scraped after the first half",
        || async {
            let last = prometheus.try_query("min(timestamp(up))").await.ok()?;
            last.first().is_some_and(|s| s.value > sent).then_some(())
        },
    )
    .await;
    // A config change: routes pushed to every proxy, and their convergence.
    write_file(
        &mesh.config_dir(),
        "reviews-vs.yaml",
        &split_vs(&[("v1", 50), ("v2", 50)]),
    );
    send().await;

    // The key panels answer with data, as Grafana would ask for them.
    for (uid, title, ref_id, with, check) in KEY_PANELS {
        let query = panel_query(uid, title, ref_id, with);
        eventually(
            Duration::from_secs(30),
            &format!("{uid}: {title} ({ref_id}): {query}"),
            || async {
                let series = prometheus.try_query(&query).await.ok()?;
                check(&series).then_some(())
            },
        )
        .await;
    }
    // The variables list this mesh's namespace, service and workload.
    for (uid, variable, want) in [
        ("weft-service", "namespace", "default"),
        ("weft-service", "service", SERVICE),
        ("weft-workload", "namespace", "default"),
        ("weft-workload", "workload", "reviews-v1"),
    ] {
        let (_, selector, label_name) = variable_selectors(&dashboard(uid))
            .into_iter()
            .find(|(name, _, _)| name == variable)
            .unwrap_or_else(|| panic!("{uid}: no variable {variable}"));
        let query = format!("group by ({label_name}) ({})", substitute(&selector, &[]));
        let values: Vec<String> = prometheus
            .query(&query)
            .await
            .iter()
            .map(|s| label(s, &label_name).to_string())
            .collect();
        assert!(
            values.iter().any(|v| v == want),
            "{uid}: ${variable} from {query}: {values:?}"
        );
    }

    // Prometheus accepts every query of every panel, with either reporter; and every
    // variable's selector.
    let mut refused = Vec::new();
    let mut empty = Vec::new();
    for (file, d) in dashboards() {
        for reporter in ["destination", "source"] {
            for (title, ref_id, expr) in targets(&d) {
                if reporter == "source" && !expr.contains("$reporter") {
                    continue;
                }
                match prometheus
                    .try_query(&substitute(&expr, &[("reporter", reporter)]))
                    .await
                {
                    Ok(series) if series.is_empty() => {
                        empty.push(format!("{file}: {title} ({ref_id}, reporter {reporter})"))
                    }
                    Ok(_) => {}
                    Err(e) => refused.push(format!("{file}: {title} ({ref_id}): {e}")),
                }
            }
        }
        for (name, selector, _) in variable_selectors(&d) {
            if let Err(e) = prometheus.try_query(&substitute(&selector, &[])).await {
                refused.push(format!("{file}: variable {name}: {e}"));
            }
        }
    }
    assert!(
        refused.is_empty(),
        "Prometheus refused:\n{}",
        refused.join("\n")
    );
    // What stays empty here (no NACK, TCP only from the source, reviews calls nobody, …).
    eprintln!(
        "panels without data in this mesh:\n  {}",
        empty.join("\n  ")
    );

    // Every metric queried has a sample in an exposition, or is one of WITHOUT_SAMPLES,
    // still registered under that name.
    let client = HttpClient::new();
    let mut expositions = Vec::new();
    for addr in &sidecars {
        let url = format!("http://{addr}/stats/prometheus");
        expositions.push(client.get_url(&url).await.expect("sidecar stats").body);
    }
    let url = format!("http://{}/metrics", mesh.controller.debug);
    expositions.push(
        client
            .get_url(&url)
            .await
            .expect("controller /metrics")
            .body,
    );
    let sampled: BTreeSet<String> = expositions
        .iter()
        .flat_map(|text| parse(text))
        .map(|s| s.name)
        .collect();
    let mut queried = BTreeSet::new();
    for (_, d) in dashboards() {
        for (_, _, expr) in targets(&d) {
            queried.extend(metric_names(&expr));
        }
        for (_, selector, _) in variable_selectors(&d) {
            queried.extend(metric_names(&selector));
        }
    }
    let unknown: Vec<&String> = queried
        .iter()
        .filter(|name| {
            !sampled.contains(*name) && !WITHOUT_SAMPLES.iter().any(|(n, _, _)| n == name)
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "queried by a dashboard, exposed by neither the sidecars nor the controller: {unknown:?}"
    );
    for (name, source, why) in WITHOUT_SAMPLES {
        assert!(
            queried.contains(*name),
            "{name} is listed but no dashboard queries it"
        );
        assert!(
            !sampled.contains(*name),
            "{name} has samples now: take it off the list ({why})"
        );
        let code = std::fs::read_to_string(repo().join(source)).expect("the source");
        assert!(
            code.contains(&format!("\"{name}\"")),
            "{source} registers no {name} ({why})"
        );
    }
    // Metrics sampled here that no dashboard shows, apart from those left out on purpose:
    // printed (not enforced), for whoever adds a metric and looks for a panel to give it.
    const NOT_SHOWN: &[&str] = &[
        // istiod's own; Weft's weft_webhook_request_duration_seconds{webhook="inject"} is it.
        "sidecar_injection_time_seconds_bucket",
        "sidecar_injection_time_seconds_count",
        "sidecar_injection_time_seconds_sum",
        // Timestamps: the dashboards show the seconds left.
        "citadel_server_cert_chain_expiry_timestamp",
        "citadel_server_root_cert_expiry_timestamp",
    ];
    let unshown: Vec<&String> = sampled
        .iter()
        .filter(|name| {
            !queried.contains(*name)
                && !NOT_SHOWN.contains(&name.as_str())
                && !name.ends_with("_sum")
                && !name.ends_with("_count")
        })
        .collect();
    eprintln!("sampled but on no dashboard: {unshown:?}");
}

/// `helm template weft charts/weft` with `args`; its stdout.
fn template(args: &[&str]) -> String {
    let out = Command::new(&weft_e2e::k8s::k8s_bins().helm)
        .args(["template", "weft"])
        .arg(chart())
        .args(args)
        .output()
        .expect("helm template");
    assert!(
        out.status.success(),
        "helm template {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The rendered document defining ConfigMap `name`, and the JSON of its data key `key`
/// (a block scalar, indented four spaces).
fn rendered_configmap(rendered: &str, name: &str, key: &str) -> (String, Value) {
    let doc = rendered
        .split("\n---\n")
        .find(|doc| {
            doc.contains("\nkind: ConfigMap\n") && doc.contains(&format!("\n  name: {name}\n"))
        })
        .unwrap_or_else(|| panic!("no ConfigMap {name} in:\n{rendered}"))
        .to_string();
    let head = format!("\n  {key}: |-\n");
    let at = doc
        .find(&head)
        .unwrap_or_else(|| panic!("{name}: no data key {key}"));
    let body: Vec<&str> = doc[at + head.len()..]
        .lines()
        .take_while(|l| l.starts_with("    "))
        .map(|l| &l[4..])
        .collect();
    let json = serde_json::from_str(&body.join("\n"))
        .unwrap_or_else(|e| panic!("{name}: {key} is not the JSON: {e}"));
    (doc, json)
}

#[test]
fn the_chart_renders_a_configmap_per_dashboard() {
    let rendered = template(&[]);
    assert_eq!(
        rendered.matches("\n    grafana_dashboard: \"1\"\n").count(),
        4,
        "{rendered}"
    );
    for (file, uid) in DASHBOARDS {
        let (doc, json) = rendered_configmap(&rendered, &format!("{uid}-dashboard"), file);
        assert!(doc.contains("\n  namespace: weft-system\n"), "{doc}");
        assert!(!doc.contains("annotations:"), "{doc}");
        assert_eq!(json, dashboard(uid), "{file} as rendered");
    }
    // Elsewhere, with the sidecar's folder annotation and another label.
    let rendered = template(&[
        "--set",
        "dashboards.namespace=monitoring",
        "--set",
        "dashboards.annotations.grafana_folder=Weft",
        "--set",
        "dashboards.label=my_dashboards",
        "--set",
        "dashboards.labelValue=yes",
    ]);
    let (doc, _) = rendered_configmap(&rendered, "weft-mesh-dashboard", "weft-mesh.json");
    for line in [
        "\n  namespace: monitoring\n",
        "\n  annotations:\n    grafana_folder: Weft\n",
        "\n    my_dashboards: \"yes\"\n",
    ] {
        assert!(doc.contains(line), "{line:?} not in:\n{doc}");
    }
    assert!(!rendered.contains("grafana_dashboard"), "{rendered}");
    // Off: none, the rest of the chart unchanged.
    let off = template(&["--set", "dashboards.enabled=false"]);
    assert!(
        !off.contains("-dashboard\n") && !off.contains("grafana_dashboard"),
        "{off}"
    );
    assert!(off.contains("\nkind: Deployment\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_api_server_takes_the_dashboards_configmaps() {
    let cluster = KubeCluster::start(KubeClusterOptions::default()).await;
    cluster.kubectl_ok(&["create", "namespace", "monitoring"]);
    let out = cluster.helm(&[
        "install",
        "weft",
        &chart().to_string_lossy(),
        "--set",
        "dashboards.namespace=monitoring",
        "--set",
        "dashboards.annotations.grafana_folder=Weft",
    ]);
    assert!(
        out.status.success(),
        "helm install failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What Grafana's sidecar lists: ConfigMaps with the label, in its namespace.
    let list: Value = serde_json::from_str(&cluster.kubectl_ok(&[
        "get",
        "configmaps",
        "-n",
        "monitoring",
        "-l",
        "grafana_dashboard=1",
        "-o",
        "json",
    ]))
    .expect("kubectl's JSON");
    let items = list["items"].as_array().expect("items");
    let mut found = BTreeMap::new();
    for item in items {
        let name = item["metadata"]["name"].as_str().expect("name").to_string();
        assert_eq!(
            item["metadata"]["annotations"]["grafana_folder"], "Weft",
            "{name}"
        );
        let data = item["data"].as_object().expect("data");
        assert_eq!(data.len(), 1, "{name}: one dashboard each");
        let (key, text) = data.iter().next().expect("one key");
        let json: Value = serde_json::from_str(text.as_str().expect("string"))
            .unwrap_or_else(|e| panic!("{name}: {key}: {e}"));
        found.insert(name, (key.clone(), json));
    }
    assert_eq!(found.len(), DASHBOARDS.len(), "{:?}", found.keys());
    for (file, uid) in DASHBOARDS {
        let (key, json) = &found[&format!("{uid}-dashboard")];
        assert_eq!(key, file);
        assert_eq!(*json, dashboard(uid), "{file} as stored");
    }
}
