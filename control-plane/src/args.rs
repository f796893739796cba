//! Command-line flags and environment variables of `weft-controller`, all in one place.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use weft_api::networking::OutboundTrafficPolicyMode;

/// Weft's control plane: reads Istio configuration and serves Envoy xDS (ADS) to proxies.
///
/// Local mode with `--config-dir`; otherwise Kubernetes mode (the API server from
/// `--kubeconfig`, else `KUBECONFIG` / `~/.kube/config`, else the in-cluster config).
#[derive(Debug, Clone, Parser)]
#[command(name = "weft-controller", version, about, long_about = None)]
pub struct Args {
    /// Directory of Istio YAML files (`*.yaml`, `*.yml`, not recursive) to serve (local
    /// mode). Without it the controller runs in Kubernetes mode.
    #[arg(long, env = "WEFT_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    /// Kubernetes mode: kubeconfig file to use (default: `KUBECONFIG`, `~/.kube/config`,
    /// then the in-cluster service account).
    #[arg(long, env = "WEFT_KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubernetes mode: watch only this namespace (default: all namespaces).
    #[arg(long, env = "WEFT_WATCH_NAMESPACE", value_name = "NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Address of the admission webhooks (HTTPS: `POST /validate`, `POST /inject`, `GET /ready`).
    #[arg(long, env = "WEFT_WEBHOOK_ADDRESS", default_value = "0.0.0.0:15017")]
    pub webhook_address: SocketAddr,

    /// PEM certificate chain of the webhook, re-read when the file changes. The webhook is
    /// served with this and `--webhook-key`, or with `--webhook-cert-from-ca`, else not at all.
    #[arg(
        long,
        env = "WEFT_WEBHOOK_CERT",
        value_name = "PATH",
        requires = "webhook_key",
        conflicts_with = "webhook_cert_from_ca"
    )]
    pub webhook_cert: Option<PathBuf>,

    /// PEM private key of the webhook.
    #[arg(
        long,
        env = "WEFT_WEBHOOK_KEY",
        value_name = "PATH",
        requires = "webhook_cert"
    )]
    pub webhook_key: Option<PathBuf>,

    /// Serve the webhook with the controller's own certificate, issued by its CA for
    /// `weft-controller.<namespace>.svc` and `istiod.<namespace>.svc` and renewed with it (as
    /// istiod does). The API server then trusts it through the `caBundle` the controller
    /// writes into `--injector-webhook-config` and `--validator-webhook-config`.
    #[arg(long, env = "WEFT_WEBHOOK_CERT_FROM_CA")]
    pub webhook_cert_from_ca: bool,

    /// Kubernetes mode: a MutatingWebhookConfiguration whose webhooks get the CA's trust
    /// bundle as their `caBundle`, kept so when the CA or the object changes (repeatable).
    #[arg(
        long,
        env = "WEFT_INJECTOR_WEBHOOK_CONFIG",
        value_name = "NAME",
        value_delimiter = ',',
        conflicts_with = "config_dir"
    )]
    pub injector_webhook_config: Vec<String>,

    /// Kubernetes mode: a ValidatingWebhookConfiguration kept the same way (repeatable).
    #[arg(
        long,
        env = "WEFT_VALIDATOR_WEBHOOK_CONFIG",
        value_name = "NAME",
        value_delimiter = ',',
        conflicts_with = "config_dir"
    )]
    pub validator_webhook_config: Vec<String>,

    /// Address of the ADS gRPC server (plaintext, Istio's port 15010).
    #[arg(long, env = "WEFT_XDS_ADDRESS", default_value = "0.0.0.0:15010")]
    pub xds_address: SocketAddr,

    /// Address of the TLS gRPC server (istiod's port 15012): Istio's CA API
    /// (`IstioCertificateService`, callers authenticated by token) and ADS for proxies that
    /// present their workload certificate (each gets only its proven namespace's config).
    /// Default: `--xds-address`'s IP, port 15012 (port 0 when `--xds-address` has port 0).
    #[arg(long, env = "WEFT_SECURE_XDS_ADDRESS")]
    pub secure_xds_address: Option<SocketAddr>,

    /// The controller's own namespace (Kubernetes mode: where the CA's Secret lives; its TLS
    /// certificate names `istiod.<namespace>.svc`). Istio's default, `istio-system`.
    #[arg(long, env = "POD_NAMESPACE", default_value = "istio-system")]
    pub namespace: String,

    /// Local mode: the directory that holds the CA in Istio's `cacerts` layout
    /// (`ca-cert.pem`, `ca-key.pem`, `root-cert.pem`, `cert-chain.pem`). Files an operator put
    /// there are used; else a self-signed root is created and written there, so it survives
    /// restarts. Changes are picked up within 2 s (a root rotation needs no restart).
    /// Without it the CA lives in memory and a restart makes a new root.
    #[arg(long, env = "WEFT_CA_DIR", value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,

    /// Local mode: bootstrap tokens that authenticate CA callers. `DIR/<namespace>/<service
    /// account>` holds the token (its whole content, trimmed) that proves that identity; a
    /// proxy sends it as `authorization: Bearer <token>`. Without it no certificate is issued
    /// in local mode.
    #[arg(long, env = "WEFT_CA_TOKEN_DIR", value_name = "DIR")]
    pub ca_token_dir: Option<PathBuf>,

    /// Kubernetes mode: the audience a caller's ServiceAccount token must carry (TokenReview);
    /// Istio's `istio-ca`.
    #[arg(long, env = "WEFT_CA_TOKEN_AUDIENCE", default_value = "istio-ca")]
    pub ca_token_audience: String,

    /// Lifetime of workload certificates when the caller asks for none (Istio's
    /// `DEFAULT_WORKLOAD_CERT_TTL`, 24h).
    #[arg(long, env = "WEFT_WORKLOAD_CERT_TTL", default_value = "24h", value_parser = parse_positive_duration)]
    pub workload_cert_ttl: Duration,

    /// The longest lifetime a caller may ask for (Istio's `MAX_WORKLOAD_CERT_TTL`, 90 days).
    #[arg(long, env = "WEFT_MAX_WORKLOAD_CERT_TTL", default_value = "2160h", value_parser = parse_positive_duration)]
    pub max_workload_cert_ttl: Duration,

    /// Address of the debug HTTP server (`/ready`, `/debug/syncz`, `/debug/configz`).
    #[arg(long, env = "WEFT_DEBUG_ADDRESS", default_value = "127.0.0.1:15014")]
    pub debug_address: SocketAddr,

    /// Cluster DNS domain used to resolve short host names (`reviews` → `reviews.<ns>.svc.<domain>`).
    #[arg(long, env = "WEFT_DOMAIN", default_value = "cluster.local")]
    pub domain: String,

    /// The mesh's root namespace (Istio's `rootNamespace`): security policies
    /// (PeerAuthentication, AuthorizationPolicy, RequestAuthentication) in it apply to every
    /// workload. Istio's default is the control plane's namespace, `istio-system`.
    #[arg(long, env = "WEFT_ROOT_NAMESPACE", default_value = "istio-system")]
    pub root_namespace: String,

    /// The trust domain of workload identities: certificates carry
    /// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
    #[arg(long, env = "WEFT_TRUST_DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,

    /// The proxy image the sidecar injector adds to pods (`POST /inject` on the webhook).
    #[arg(long, env = "WEFT_PROXY_IMAGE", default_value = concat!("ghcr.io/weft-mesh/weft-proxy:", env!("CARGO_PKG_VERSION")))]
    pub proxy_image: String,

    /// Injected pods capture their DNS and their sidecars answer mesh host names (Istio's
    /// proxy metadata `ISTIO_META_DNS_CAPTURE`; chart value
    /// `meshConfig.defaultConfig.proxyMetadata.ISTIO_META_DNS_CAPTURE`).
    #[arg(long, env = "WEFT_DNS_CAPTURE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub dns_capture: bool,

    /// Worker threads of injected proxies (Istio's `defaultConfig.concurrency`; 0: one per
    /// CPU). A pod's `proxy.istio.io/config` `concurrency` wins.
    #[arg(long, env = "WEFT_PROXY_CONCURRENCY", default_value_t = 2, value_parser = clap::value_parser!(u16).range(0..=256))]
    pub proxy_concurrency: u16,

    /// An environment variable of every injected proxy, `NAME=VALUE` (repeatable; Istio's
    /// `defaultConfig.proxyMetadata`). A pod's `proxy.istio.io/config` `proxyMetadata` wins
    /// name by name; `ISTIO_META_DNS_CAPTURE=true` here is `--dns-capture`.
    #[arg(long = "proxy-metadata", value_name = "NAME=VALUE", value_parser = parse_proxy_metadata)]
    pub proxy_metadata: Vec<(String, String)>,

    /// CPU request of injected proxies (Istio's `global.proxy.resources`); a pod's
    /// `sidecar.istio.io/proxyCPU` wins.
    #[arg(long, env = "WEFT_PROXY_CPU", default_value = "100m", value_parser = parse_quantity)]
    pub proxy_cpu: String,

    /// Memory request of injected proxies; a pod's `sidecar.istio.io/proxyMemory` wins.
    #[arg(long, env = "WEFT_PROXY_MEMORY", default_value = "128Mi", value_parser = parse_quantity)]
    pub proxy_memory: String,

    /// CPU limit of injected proxies; a pod's `sidecar.istio.io/proxyCPULimit` wins.
    #[arg(long, env = "WEFT_PROXY_CPU_LIMIT", default_value = "2000m", value_parser = parse_quantity)]
    pub proxy_cpu_limit: String,

    /// Memory limit of injected proxies; a pod's `sidecar.istio.io/proxyMemoryLimit` wins.
    #[arg(long, env = "WEFT_PROXY_MEMORY_LIMIT", default_value = "1024Mi", value_parser = parse_quantity)]
    pub proxy_memory_limit: String,

    /// The injector rewrites app probes through the sidecar's status port 15020 (Istio's
    /// `rewriteAppHTTPProbe`; a pod opts out with `sidecar.istio.io/rewriteAppHTTPProbers`).
    #[arg(long, env = "WEFT_REWRITE_APP_PROBES", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub rewrite_app_probes: bool,

    /// How the injector adds the proxy: `true` as a native sidecar (an init container with
    /// `restartPolicy: Always`, Kubernetes 1.29+); `false` as the first container, whose
    /// `postStart` hook holds the app until the proxy is ready (Istio's fallback for older
    /// API servers); `auto` asks the API server's version once at start (local mode: native).
    #[arg(long, env = "WEFT_NATIVE_SIDECARS", value_enum, default_value_t = NativeSidecars::Auto)]
    pub native_sidecars: NativeSidecars,

    /// PEM bundle of the CA certificates trusted when fetching `jwksUri` key sets
    /// (RequestAuthentication) over HTTPS, in addition to `/etc/ssl/certs/ca-certificates.crt`
    /// when that file exists.
    #[arg(long, env = "WEFT_JWKS_CA_FILE", value_name = "PATH")]
    pub jwks_ca_file: Option<PathBuf>,

    /// How long to wait for more changes (files, or Kubernetes objects) before rebuilding
    /// the model, e.g. `100ms`, `1s`.
    #[arg(long, env = "WEFT_DEBOUNCE", default_value = "100ms", value_parser = parse_duration)]
    pub debounce: Duration,

    /// How often proxies re-resolve the host names of DNS clusters (ServiceEntries with
    /// `resolution: DNS` or `DNS_ROUND_ROBIN`), in Go duration syntax (`60s`, `1m30s`,
    /// `500ms`); Istio's MeshConfig `dnsRefreshRate`. Must be longer than 1ms.
    #[arg(long, env = "WEFT_DNS_REFRESH_RATE", default_value = "60s", value_parser = parse_dns_refresh_rate)]
    pub dns_refresh_rate: Duration,

    /// `stream_idle_timeout` of every proxy's HTTP connection managers: a request on which
    /// no byte moves either way for this long ends (504/408 `SI`). Envoy's default 5m;
    /// `0s` disables it, as Istio does.
    #[arg(long, env = "WEFT_STREAM_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub stream_idle_timeout: Duration,

    /// Where proxies that capture their pod's traffic send connections to destinations the
    /// mesh does not know (Istio's MeshConfig `outboundTrafficPolicy.mode`): `ALLOW_ANY` to
    /// the original destination, `REGISTRY_ONLY` nowhere. A Sidecar's
    /// `outboundTrafficPolicy` overrides it for its workloads.
    #[arg(long, env = "WEFT_OUTBOUND_TRAFFIC_POLICY", default_value = "ALLOW_ANY", value_parser = parse_outbound_traffic_policy)]
    pub outbound_traffic_policy: OutboundTrafficPolicyMode,

    /// How long proxies that capture their pod's traffic wait for a connection's first bytes
    /// to tell its protocol (TLS, HTTP) before treating it as opaque TCP (Istio's MeshConfig
    /// `protocolDetectionTimeout`); `0s` waits as long as it takes.
    #[arg(long, env = "WEFT_PROTOCOL_DETECTION_TIMEOUT", default_value = "100ms", value_parser = parse_duration)]
    pub protocol_detection_timeout: Duration,

    /// Where proxies write their access logs (Istio's MeshConfig `accessLogFile`), e.g.
    /// `/dev/stdout`; empty: no access logs unless a Telemetry resource asks for them (then
    /// they go to `/dev/stdout`).
    #[arg(long, env = "WEFT_ACCESS_LOG_FILE", default_value = "")]
    pub access_log_file: String,

    /// How access log lines are written (MeshConfig `accessLogEncoding`): `TEXT` or `JSON`.
    #[arg(long, env = "WEFT_ACCESS_LOG_ENCODING", default_value = "TEXT", value_parser = ["TEXT", "JSON"])]
    pub access_log_encoding: String,

    /// The access log format (MeshConfig `accessLogFormat`): Envoy's format string for TEXT,
    /// a JSON object of field names to format strings for JSON; empty: Istio's default.
    #[arg(long, env = "WEFT_ACCESS_LOG_FORMAT", default_value = "")]
    pub access_log_format: String,

    /// Istio's MeshConfig YAML (the chart's `weft` ConfigMap, key `mesh`), read at start and
    /// again every 2 s for its telemetry: `enableTracing`, `defaultConfig.tracing`,
    /// `extensionProviders`, `defaultProviders.tracing` and `.metrics`. Its other fields come
    /// from the flags above.
    #[arg(long, env = "WEFT_MESH_CONFIG", value_name = "FILE")]
    pub mesh_config: Option<std::path::PathBuf>,

    /// ADS connections served at once; one more is accepted and closed at once, with a
    /// warning at most every 10 s.
    #[arg(long, env = "WEFT_MAX_XDS_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_xds_connections: u32,

    /// Connections the debug server and the webhook each serve at once.
    #[arg(long, env = "WEFT_MAX_HTTP_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_http_connections: u32,

    /// Time a client has to send its first byte (every listener), and each request's
    /// headers (debug, webhook; HTTP/1 also between requests) before the connection is
    /// closed; `0s` disables it.
    #[arg(long, env = "WEFT_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// How often an HTTP/2 keepalive ping goes to each ADS connection (istiod's gRPC
    /// keepalive time); a proxy that stopped answering is noticed this way.
    #[arg(long, env = "WEFT_XDS_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = parse_positive_duration)]
    pub xds_keepalive_interval: Duration,

    /// How long a proxy has to answer a keepalive ping before its connection is closed.
    #[arg(long, env = "WEFT_XDS_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub xds_keepalive_timeout: Duration,

    /// On SIGTERM: how long ADS streams and open connections get to close before the
    /// controller exits anyway.
    #[arg(long, env = "WEFT_SHUTDOWN_GRACE_PERIOD", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace_period: Duration,

    /// Log filter in `tracing_subscriber::EnvFilter` syntax (`info`, `weft_controller=debug`, …).
    #[arg(long, env = "WEFT_LOG", default_value = "info")]
    pub log: String,
}

/// `--native-sidecars`: the injector's choice, or `auto` to ask the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NativeSidecars {
    Auto,
    True,
    False,
}

/// `NAME=VALUE`, with an environment variable's name.
fn parse_proxy_metadata(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=VALUE"))?;
    if !weft_injector::proxy_config::is_env_name(name) {
        return Err(format!(
            "{name:?} is not an environment variable name (letters, digits and _, not starting with a digit)"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

/// A Kubernetes resource quantity (`100m`, `128Mi`, `1.5`).
fn parse_quantity(text: &str) -> Result<String, String> {
    if weft_injector::config::is_quantity(text) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a resource quantity such as 100m or 128Mi"
        ))
    }
}

impl Args {
    /// Whether the admission webhooks are served: with an operator's certificate or the CA's.
    pub fn webhook_enabled(&self) -> bool {
        self.webhook_cert.is_some() || self.webhook_cert_from_ca
    }

    /// `--secure-xds-address`, or its default: `--xds-address`'s IP at port 15012 (0 when
    /// `--xds-address` asks for any free port, so tests never collide).
    pub fn secure_xds_address(&self) -> SocketAddr {
        self.secure_xds_address.unwrap_or_else(|| {
            let port = if self.xds_address.port() == 0 {
                0
            } else {
                15012
            };
            SocketAddr::new(self.xds_address.ip(), port)
        })
    }
}

/// Parses a Go duration (`100ms`, `2s`, `1m30s`) with weft-api's parser, the one Istio's
/// syntax is checked with everywhere in Weft.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    weft_api::duration::parse_std(text.trim()).map_err(|err| err.to_string())
}

/// Parses a Go duration that must not be zero.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!("{text:?}: must be longer than 0s"));
    }
    Ok(duration)
}

/// Parses `--dns-refresh-rate`: a Go duration (weft-api's parser, as Istio's MeshConfig)
/// longer than 1ms, Envoy's minimum for `dns_refresh_rate`.
pub fn parse_dns_refresh_rate(text: &str) -> Result<Duration, String> {
    // clap names the flag (or its environment variable) around these messages.
    let rate = weft_api::Duration::parse(text.trim())
        .map_err(|err| err.to_string())?
        .as_std();
    if rate <= Duration::from_millis(1) {
        return Err(format!(
            "{text:?} is too short: the DNS refresh rate must be longer than 1ms (Envoy's minimum)"
        ));
    }
    Ok(rate)
}

/// Parses `--outbound-traffic-policy`: `ALLOW_ANY` or `REGISTRY_ONLY`, as Istio spells them.
pub fn parse_outbound_traffic_policy(text: &str) -> Result<OutboundTrafficPolicyMode, String> {
    match text.trim() {
        "ALLOW_ANY" => Ok(OutboundTrafficPolicyMode::AllowAny),
        "REGISTRY_ONLY" => Ok(OutboundTrafficPolicyMode::RegistryOnly),
        other => Err(format!(
            "{other:?} is not an outbound traffic policy mode: ALLOW_ANY or REGISTRY_ONLY"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("3h"), Ok(Duration::from_secs(3 * 3600)));
        assert!(parse_duration("fast").is_err());
        // Go durations need a unit (only a bare 0 has none).
        assert!(parse_duration("250").is_err());
    }

    #[test]
    fn defaults() {
        let args =
            Args::try_parse_from(["weft-controller", "--config-dir", "/tmp/x"]).expect("parses");
        assert_eq!(args.xds_address.port(), 15010);
        assert_eq!(args.debug_address.to_string(), "127.0.0.1:15014");
        assert_eq!(args.domain, "cluster.local");
        assert_eq!(args.debounce, Duration::from_millis(100));
        assert_eq!(args.webhook_address.to_string(), "0.0.0.0:15017");
        assert_eq!(args.dns_refresh_rate, Duration::from_secs(60));
        assert!(args.webhook_cert.is_none() && args.kubeconfig.is_none());
        assert_eq!(args.max_xds_connections, 10_000);
        assert_eq!(args.max_http_connections, 1024);
        assert_eq!(args.header_read_timeout, Duration::from_secs(30));
        assert_eq!(args.shutdown_grace_period, Duration::from_secs(5));
        assert_eq!(args.stream_idle_timeout, Duration::from_secs(300));
        assert_eq!(args.xds_keepalive_interval, Duration::from_secs(30));
        assert_eq!(args.xds_keepalive_timeout, Duration::from_secs(10));
        assert_eq!(args.native_sidecars, NativeSidecars::Auto);
        assert!(parse_positive_duration("0s").is_err());
    }

    #[test]
    fn dns_refresh_rate_takes_go_durations() {
        let parse = |value: &str| {
            Args::try_parse_from(["weft-controller", &format!("--dns-refresh-rate={value}")])
                .map(|args| args.dns_refresh_rate)
        };
        assert_eq!(parse("1m30s").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse("500ms").ok(), Some(Duration::from_millis(500)));
        assert_eq!(parse("2h").ok(), Some(Duration::from_secs(7200)));
        for bad in ["60", "fast", "-5s", "1ms", "0s"] {
            let err = parse(bad).expect_err(bad).to_string();
            assert!(err.contains("--dns-refresh-rate"), "{bad}: {err}");
        }
        assert_eq!(
            parse_dns_refresh_rate("0.5ms"),
            Err(
                "\"0.5ms\" is too short: the DNS refresh rate must be longer than 1ms (Envoy's minimum)"
                    .to_string()
            )
        );
    }

    #[test]
    fn capture_flags() {
        let args = Args::try_parse_from(["weft-controller"]).expect("parses");
        assert_eq!(
            args.outbound_traffic_policy,
            OutboundTrafficPolicyMode::AllowAny
        );
        assert_eq!(args.protocol_detection_timeout, Duration::from_millis(100));
        let args = Args::try_parse_from([
            "weft-controller",
            "--outbound-traffic-policy",
            "REGISTRY_ONLY",
            "--protocol-detection-timeout",
            "0s",
        ])
        .expect("parses");
        assert_eq!(
            args.outbound_traffic_policy,
            OutboundTrafficPolicyMode::RegistryOnly
        );
        assert_eq!(args.protocol_detection_timeout, Duration::ZERO);
        for bad in ["allow_any", "DENY", ""] {
            let err = Args::try_parse_from([
                "weft-controller",
                &format!("--outbound-traffic-policy={bad}"),
            ])
            .expect_err(bad)
            .to_string();
            assert!(err.contains("ALLOW_ANY or REGISTRY_ONLY"), "{bad}: {err}");
        }
        assert!(
            Args::try_parse_from(["weft-controller", "--protocol-detection-timeout", "fast"])
                .is_err()
        );
    }

    #[test]
    fn webhook_certificate_from_files_or_from_the_ca() {
        let args = Args::try_parse_from([
            "weft-controller",
            "--webhook-cert-from-ca",
            "--injector-webhook-config=inject-a,inject-b",
            "--validator-webhook-config",
            "validate",
        ])
        .expect("parses");
        assert!(args.webhook_cert_from_ca);
        assert_eq!(args.injector_webhook_config, ["inject-a", "inject-b"]);
        assert_eq!(args.validator_webhook_config, ["validate"]);
        // One source of certificate; patching needs the API server (and the CA's certificate:
        // `crate::check_webhook_flags`).
        for bad in [
            &[
                "--webhook-cert-from-ca",
                "--webhook-cert=/c",
                "--webhook-key=/k",
            ][..],
            &[
                "--webhook-cert-from-ca",
                "--validator-webhook-config=v",
                "--config-dir=/d",
            ][..],
        ] {
            let argv = std::iter::once("weft-controller").chain(bad.iter().copied());
            assert!(Args::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn proxy_defaults_for_injection() {
        let args = Args::try_parse_from([
            "weft-controller",
            "--proxy-concurrency=0",
            "--proxy-metadata=ISTIO_META_DNS_CAPTURE=true",
            "--proxy-metadata",
            "EXTRA=a=b",
            "--proxy-cpu=250m",
            "--proxy-memory-limit=2Gi",
        ])
        .expect("parses");
        assert_eq!(args.proxy_concurrency, 0);
        assert_eq!(
            args.proxy_metadata,
            [
                ("ISTIO_META_DNS_CAPTURE".to_string(), "true".to_string()),
                ("EXTRA".to_string(), "a=b".to_string())
            ]
        );
        assert_eq!(
            (args.proxy_cpu.as_str(), args.proxy_memory.as_str()),
            ("250m", "128Mi")
        );
        assert_eq!(args.proxy_memory_limit, "2Gi");
        for (flag, reason) in [
            ("--proxy-metadata=NOEQUALS", "is not NAME=VALUE"),
            ("--proxy-metadata=1X=a", "not an environment variable name"),
            ("--proxy-cpu=lots", "not a resource quantity"),
            ("--proxy-concurrency=300", "300"),
        ] {
            let err = Args::try_parse_from(["weft-controller", flag])
                .expect_err(flag)
                .to_string();
            assert!(err.contains(reason), "{flag}: {err}");
        }
    }

    #[test]
    fn native_sidecars_is_auto_true_or_false() {
        let parse = |value: &str| {
            Args::try_parse_from(["weft-controller", &format!("--native-sidecars={value}")])
                .map(|args| args.native_sidecars)
        };
        assert_eq!(parse("auto").ok(), Some(NativeSidecars::Auto));
        assert_eq!(parse("true").ok(), Some(NativeSidecars::True));
        assert_eq!(parse("false").ok(), Some(NativeSidecars::False));
        let err = parse("yes").expect_err("yes").to_string();
        assert!(
            err.contains("--native-sidecars") && err.contains("auto, true, false"),
            "{err}"
        );
    }

    #[test]
    fn kubernetes_mode_flags() {
        let args = Args::try_parse_from([
            "weft-controller",
            "--kubeconfig",
            "/k/config",
            "--watch-namespace",
            "prod",
            "--webhook-cert",
            "/c.pem",
            "--webhook-key",
            "/k.pem",
            "--webhook-address",
            "127.0.0.1:9443",
        ])
        .expect("parses");
        assert!(args.config_dir.is_none());
        assert_eq!(args.watch_namespace.as_deref(), Some("prod"));
        assert_eq!(args.webhook_address.port(), 9443);
        // A certificate without its key (or the reverse) is an error.
        assert!(Args::try_parse_from(["weft-controller", "--webhook-cert", "/c.pem"]).is_err());
        assert!(Args::try_parse_from(["weft-controller", "--webhook-key", "/k.pem"]).is_err());
    }
}
