//! How weftctl reaches a controller's debug port (15014) or a proxy's admin port (15000):
//! directly (`--controller`, `--admin`: local mode, or a port-forward), or through the
//! Kubernetes API server's proxy (`/api/v1/namespaces/<ns>/pods/<pod>:<port>/proxy/<path>`,
//! the same for `services/<svc>:<port name>`), so no port-forward is needed. Every error names
//! the address that failed and what failed.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;

/// The controller's Service (the chart's `templates/controller.yaml`).
pub const CONTROLLER_SERVICE: &str = "weft-controller";
/// The name of the controller's debug port, on its Service and its pods.
pub const DEBUG_PORT_NAME: &str = "http-debug";
/// Where the controller is looked for without `--controller-namespace`: the chart's default
/// namespace, then Istio's.
pub const CONTROLLER_NAMESPACES: [&str; 2] = ["weft-system", "istio-system"];

/// How much of an error response's body an error message quotes.
const MAX_QUOTED: usize = 500;

/// Where Kubernetes is.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KubeArgs {
    /// The kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else the in-cluster
    /// service account).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

/// Where the controller is.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ControllerArgs {
    /// The controller's debug address, `http://HOST:15014` (local mode, or a port-forward).
    /// Without it the controller is found in Kubernetes and asked through the API server.
    #[arg(long, value_name = "URL")]
    pub controller: Option<String>,
    /// The controller's namespace in Kubernetes (default: weft-system, the chart's, then
    /// istio-system).
    #[arg(long, short = 'i', value_name = "NAMESPACE")]
    pub controller_namespace: Option<String>,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Why weftctl could not read what it needed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{given:?} is not an address weftctl can use: {reason} (expected http://HOST:PORT)")]
    BadAddress { given: String, reason: String },
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} did not answer within {}s (--timeout)", .after.as_secs_f64())]
    Timeout { url: String, after: Duration },
    #[error("{url} answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url} did not answer the JSON weftctl expects: {source}")]
    Json {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "no Kubernetes config: {reason}; for a mesh without Kubernetes give the address \
         ({flag} http://HOST:PORT)"
    )]
    KubeConfig { reason: String, flag: &'static str },
    #[error(
        "no ready endpoint of Service {CONTROLLER_SERVICE} in namespace {namespaces} at {cluster}; \
         is the controller running? (--controller-namespace names its namespace, --controller \
         its address)"
    )]
    NoController { namespaces: String, cluster: String },
}

impl RemoteError {
    /// The HTTP status the server answered, if it answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// One HTTP server weftctl reads JSON from.
#[derive(Clone, Debug)]
pub enum Remote {
    /// Plain HTTP to `base` (`http://host:port`, no trailing slash).
    Direct { base: String },
    /// Through the Kubernetes API server: `prefix` is the API path the server's paths follow
    /// (`/api/v1/namespaces/<ns>/pods/<pod>:<port>/proxy`).
    Kube { api: KubeApi, prefix: String },
}

impl Remote {
    /// A server given on the command line (`--controller`, `--admin`): `http://HOST:PORT`,
    /// or `HOST:PORT`.
    pub fn direct(given: &str) -> Result<Self, RemoteError> {
        let bad = |reason: &str| RemoteError::BadAddress {
            given: given.to_string(),
            reason: reason.to_string(),
        };
        let text = given.trim().trim_end_matches('/');
        let text = if text.contains("://") {
            text.to_string()
        } else {
            format!("http://{text}")
        };
        let uri: http::Uri = text.parse().map_err(|e| bad(&format!("{e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad("the debug and admin ports speak plain HTTP, not https"));
            }
            _ => return Err(bad("only http:// is supported")),
        }
        let Some(authority) = uri.authority() else {
            return Err(bad("no host"));
        };
        if authority.port_u16().is_none() {
            return Err(bad("no port"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("give only the scheme, host and port"));
        }
        Ok(Self::Direct {
            base: format!("http://{authority}"),
        })
    }

    /// The full URL of `path` (which starts with `/`), for messages.
    pub fn url(&self, path: &str) -> String {
        match self {
            Self::Direct { base } => format!("{base}{path}"),
            Self::Kube { api, prefix } => format!("{}{prefix}{path}", api.cluster),
        }
    }

    /// The server, as a table shows it: `host:port`, or the API path's pod or service.
    pub fn label(&self) -> String {
        match self {
            Self::Direct { base } => base.trim_start_matches("http://").to_string(),
            Self::Kube { prefix, .. } => prefix.clone(),
        }
    }

    /// GETs `path` and decodes its JSON.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<T, RemoteError> {
        let body = self.get(path, timeout).await?;
        serde_json::from_slice(&body).map_err(|source| RemoteError::Json {
            url: self.url(path),
            source,
        })
    }

    /// GETs `path`; an answer other than 2xx is an error quoting the body.
    pub async fn get(&self, path: &str, timeout: Duration) -> Result<Bytes, RemoteError> {
        self.request(http::Method::GET, path, timeout).await
    }

    /// POSTs to `path` (with an empty body: the admin port's changes are in the query); an
    /// answer other than 2xx is an error quoting the body.
    pub async fn post(&self, path: &str, timeout: Duration) -> Result<Bytes, RemoteError> {
        self.request(http::Method::POST, path, timeout).await
    }

    async fn request(
        &self,
        method: http::Method,
        path: &str,
        timeout: Duration,
    ) -> Result<Bytes, RemoteError> {
        let url = self.url(path);
        let exchange = async {
            match self {
                Self::Direct { .. } => direct_send(method, &url).await,
                Self::Kube { api, prefix } => {
                    api.send(method, &format!("{prefix}{path}"), &url).await
                }
            }
        };
        let (status, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| RemoteError::Timeout {
                url: url.clone(),
                after: timeout,
            })??;
        if status.is_success() {
            return Ok(body);
        }
        let mut message = error_message(&body);
        if status == http::StatusCode::FORBIDDEN && matches!(self, Self::Kube { .. }) {
            message.push_str(
                " (weftctl reads through the API server's proxy: your user needs `get` on \
                 pods/proxy and services/proxy, and `list` on endpointslices, in that namespace)",
            );
        }
        Err(RemoteError::Status {
            url,
            status: status.as_u16(),
            message,
        })
    }
}

async fn direct_send(
    method: http::Method,
    url: &str,
) -> Result<(http::StatusCode, Bytes), RemoteError> {
    let unreachable = |e: &dyn std::error::Error| RemoteError::Unreachable {
        url: url.to_string(),
        reason: chain(e),
    };
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .body(Empty::<Bytes>::new())
        .map_err(|e| unreachable(&e))?;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.map_err(|e| unreachable(&e))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(&e))?
        .to_bytes();
    Ok((status, body))
}

/// The message of an error answer: a Kubernetes `Status`'s `message`, else the body's text.
fn error_message(body: &[u8]) -> String {
    if let Ok(status) = serde_json::from_slice::<serde_json::Value>(body)
        && status["kind"] == "Status"
        && let Some(message) = status["message"].as_str()
    {
        return message.to_string();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(no body)".to_string();
    }
    crate::table::shorten(&text.replace('\n', " "), MAX_QUOTED)
}

/// An error and its sources, `: `-separated (hyper's own message alone is "client error").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        let more = next.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = next.source();
    }
    text
}

/// A Kubernetes API server, as the kubeconfig says how to reach it.
#[derive(Clone)]
pub struct KubeApi {
    client: kube::Client,
    /// The server's URL, for messages.
    cluster: String,
    /// The kubeconfig context's namespace (`default` when it names none).
    pub default_namespace: String,
}

impl std::fmt::Debug for KubeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeApi")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl KubeApi {
    /// Reads the kubeconfig (`--kubeconfig`, else `KUBECONFIG`, else `~/.kube/config`, else the
    /// in-cluster service account). `flag` is the option that avoids Kubernetes, for the message
    /// when there is no config.
    pub async fn connect(args: &KubeArgs, flag: &'static str) -> Result<Self, RemoteError> {
        let failed = |reason: String| RemoteError::KubeConfig { reason, flag };
        let options = kube::config::KubeConfigOptions {
            context: args.context.clone(),
            ..Default::default()
        };
        let config = match &args.kubeconfig {
            Some(path) => {
                let file = kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| failed(format!("{}: {}", path.display(), chain(&e))))?;
                kube::Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| failed(format!("{}: {}", path.display(), chain(&e))))?
            }
            None if args.context.is_some() => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| failed(chain(&e)))?,
            None => kube::Config::infer().await.map_err(|e| failed(chain(&e)))?,
        };
        let cluster = config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string();
        let default_namespace = config.default_namespace.clone();
        let client = kube::Client::try_from(config).map_err(|e| failed(chain(&e)))?;
        Ok(Self {
            client,
            cluster,
            default_namespace,
        })
    }

    /// The client, for the API server's own resources (lists, access reviews).
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The server's URL, for messages.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Port `port` of pod `namespace/pod`, through the API server's pod proxy.
    pub fn pod(&self, namespace: &str, pod: &str, port: u16) -> Remote {
        Remote::Kube {
            api: self.clone(),
            prefix: format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy"),
        }
    }

    /// Port `port` (a name or number) of Service `namespace/service`, through the API
    /// server's service proxy: one of its ready endpoints answers.
    pub fn service(&self, namespace: &str, service: &str, port: &str) -> Remote {
        Remote::Kube {
            api: self.clone(),
            prefix: format!("/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy"),
        }
    }

    /// The API server itself, for its own paths.
    fn root(&self) -> Remote {
        Remote::Kube {
            api: self.clone(),
            prefix: String::new(),
        }
    }

    async fn send(
        &self,
        method: http::Method,
        path: &str,
        url: &str,
    ) -> Result<(http::StatusCode, Bytes), RemoteError> {
        let unreachable = |e: &dyn std::error::Error| RemoteError::Unreachable {
            url: url.to_string(),
            reason: chain(e),
        };
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .body(kube::client::Body::from(Vec::new()))
            .map_err(|e| unreachable(&e))?;
        let response = self
            .client
            .send(request)
            .await
            .map_err(|e| unreachable(&e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect_bytes()
            .await
            .map_err(|e| unreachable(&e))?;
        Ok((status, body))
    }

    /// Every ready controller pod, each reached on its debug port: the endpoints of the
    /// controller's Service in the first of `namespaces` that has any. With several replicas
    /// each proxy is connected to one of them, so every one is asked.
    ///
    /// A user who may not list EndpointSlices gets the Service's proxy instead (a warning
    /// says that only one replica, picked by the API server, answers).
    pub async fn controllers(
        &self,
        namespaces: &[String],
        timeout: Duration,
    ) -> Result<Vec<Controller>, RemoteError> {
        for namespace in namespaces {
            let path = format!(
                "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices\
                 ?labelSelector=kubernetes.io%2Fservice-name%3D{CONTROLLER_SERVICE}"
            );
            let slices = match self.root().get_json::<SliceList>(&path, timeout).await {
                Ok(slices) => slices,
                Err(error) if error.status() == Some(403) => {
                    eprintln!(
                        "weftctl: warning: {error}\nweftctl: asking the controller through its \
                         Service instead: with several replicas, only the proxies of the one \
                         that answers are shown"
                    );
                    return Ok(vec![Controller {
                        name: format!("{CONTROLLER_SERVICE}.{namespace}"),
                        remote: self.service(namespace, CONTROLLER_SERVICE, DEBUG_PORT_NAME),
                    }]);
                }
                Err(error) => return Err(error),
            };
            let pods = ready_pods(&slices.items, DEBUG_PORT_NAME);
            if !pods.is_empty() {
                return Ok(pods
                    .into_iter()
                    .map(|(pod, port)| Controller {
                        name: format!("{pod}.{namespace}"),
                        remote: self.pod(namespace, &pod, port),
                    })
                    .collect());
            }
        }
        Err(RemoteError::NoController {
            namespaces: namespaces.join(" or "),
            cluster: self.cluster.clone(),
        })
    }
}

/// An EndpointSlice list, whatever its `apiVersion` and `kind` say.
#[derive(serde::Deserialize)]
struct SliceList {
    #[serde(default)]
    items: Vec<EndpointSlice>,
}

/// The ready pods behind EndpointSlices, with their port named `port_name`, sorted.
pub fn ready_pods(slices: &[EndpointSlice], port_name: &str) -> Vec<(String, u16)> {
    let mut pods = Vec::new();
    for slice in slices {
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(port_name))
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            // A missing condition means ready (the EndpointSlice API's rule).
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            let pod = endpoint
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| r.name.clone());
            if let (true, Some(pod)) = (ready, pod) {
                pods.push((pod, port));
            }
        }
    }
    pods.sort();
    pods.dedup();
    pods
}

/// A controller to ask, and its name in tables.
#[derive(Clone, Debug)]
pub struct Controller {
    /// `host:port` (direct), `<pod>.<namespace>` (Kubernetes).
    pub name: String,
    pub remote: Remote,
}

/// The controllers `args` point at: `--controller`, else every ready controller pod in
/// Kubernetes.
pub async fn controllers(
    args: &ControllerArgs,
    timeout: Duration,
) -> Result<Vec<Controller>, RemoteError> {
    if let Some(given) = &args.controller {
        let remote = Remote::direct(given)?;
        return Ok(vec![Controller {
            name: remote.label(),
            remote,
        }]);
    }
    let api = KubeApi::connect(&args.kube, "--controller").await?;
    let namespaces: Vec<String> = match &args.controller_namespace {
        Some(namespace) => vec![namespace.clone()],
        None => CONTROLLER_NAMESPACES.map(String::from).to_vec(),
    };
    api.controllers(&namespaces, timeout).await
}

/// Parses `--timeout`: a number with `ms`, `s` or `m`.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 10s or 1m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!(
            "{text:?} is not a duration such as 500ms, 10s or 1m"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_addresses_are_plain_http_host_and_port() {
        let base = |given: &str| match Remote::direct(given) {
            Ok(Remote::Direct { base }) => base,
            other => panic!("{given}: {other:?}"),
        };
        assert_eq!(base("http://127.0.0.1:15014"), "http://127.0.0.1:15014");
        assert_eq!(base("http://127.0.0.1:15014/"), "http://127.0.0.1:15014");
        assert_eq!(base("localhost:15000"), "http://localhost:15000");
        for (given, reason) in [
            ("https://10.0.0.1:15014", "plain HTTP"),
            ("http://10.0.0.1", "no port"),
            ("http://10.0.0.1:15014/debug/syncz", "only the scheme"),
            ("ftp://10.0.0.1:21", "only http://"),
        ] {
            let error = Remote::direct(given).expect_err(given).to_string();
            assert!(
                error.contains(given) && error.contains(reason),
                "{given}: {error}"
            );
        }
    }

    #[test]
    fn error_answers_quote_a_kubernetes_status_message_or_the_body() {
        let status =
            br#"{"kind":"Status","status":"Failure","message":"pods \"x\" not found","code":404}"#;
        assert_eq!(error_message(status), "pods \"x\" not found");
        assert_eq!(
            error_message(b"no debug endpoint /x\n"),
            "no debug endpoint /x"
        );
        assert_eq!(error_message(b""), "(no body)");
    }

    #[test]
    fn ready_pods_come_from_slices_with_the_named_port() {
        let slices: Vec<EndpointSlice> = serde_json::from_value(serde_json::json!([
            {
                "metadata": {"name": "weft-controller-abc"},
                "addressType": "IPv4",
                "ports": [{"name": "grpc-xds", "port": 15010}, {"name": "http-debug", "port": 15014}],
                "endpoints": [
                    {"addresses": ["10.0.0.1"], "conditions": {"ready": true},
                     "targetRef": {"kind": "Pod", "name": "weft-controller-2"}},
                    {"addresses": ["10.0.0.2"], "conditions": {"ready": false},
                     "targetRef": {"kind": "Pod", "name": "weft-controller-3"}},
                    {"addresses": ["10.0.0.3"],
                     "targetRef": {"kind": "Pod", "name": "weft-controller-1"}}
                ]
            },
            {
                "metadata": {"name": "other"},
                "addressType": "IPv4",
                "ports": [{"name": "grpc-xds", "port": 15010}],
                "endpoints": [{"addresses": ["10.0.0.4"], "targetRef": {"kind": "Pod", "name": "x"}}]
            }
        ]))
        .expect("slices");
        assert_eq!(
            ready_pods(&slices, DEBUG_PORT_NAME),
            [
                ("weft-controller-1".to_string(), 15014),
                ("weft-controller-2".to_string(), 15014)
            ]
        );
    }

    #[test]
    fn timeouts_parse_with_units() {
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_timeout("10").is_err());
        assert!(parse_timeout("soon").is_err());
    }
}
