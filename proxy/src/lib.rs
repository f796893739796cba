//! weft-proxy: Weft's sidecar proxy. xDS config in, HTTP/1.1 and HTTP/2 traffic through.
//!
//! ```text
//!  AdsClient ─► ConfigStore (config/) ─watch─► listeners.rs ─► http/ (filters: authn/ authz/ ─► router ─► policy) ─► upstream/ (balancer ─► endpoint ─► pool)
//!                                       ├────► admin/ (/ready, /config_dump, /clusters, /logging, /healthz/ready, /quitquitquit, /drain_listeners, :15090 /stats/prometheus)
//!  requests and connections ─► metrics/ (Istio's istio_* metrics, peer metadata exchange)
//!                                       └─NDS─► dns.rs: weft-dns DNS proxy on 127.0.0.1 and [::1]:15053 (--dns-capture)
//!  kubelet ─► app_health.rs (:15020 /app-health/<container>/…: the app's original probes, run from inside the pod)
//!  SIGTERM │ /quitquitquit ─► drain.rs ─► listeners stop, connections close after their requests ─► exit 0
//! ```

pub mod access_log;
pub mod admin;
pub mod app_health;
pub mod args;
pub mod authn;
pub mod authz;
pub mod capture;
pub mod config;
pub mod dns;
pub mod drain;
pub mod error;
pub mod http;
pub mod identity;
pub mod limits;
pub mod listeners;
pub mod logging;
pub mod metrics;
pub mod response_flags;
pub mod tcp;
pub mod tls;
pub mod trace;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

pub use args::Args;
pub use config::{ConfigStore, ProxyConfig};
pub use drain::Drain;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid identity flags: {0}")]
    Identity(String),
    #[error("--app-probers: {0}")]
    AppProbers(app_health::ProbersError),
    #[error("DNS proxy: {0}")]
    Dns(String),
    #[error("cannot bind the {what} server on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the proxy: admin and health servers, then the ADS client, until SIGTERM, Ctrl-C or
/// `POST /quitquitquit`; then drains and returns. `logs` changes the log levels (`/logging`).
pub async fn run(args: Args, logs: Option<Arc<logging::LogControl>>) -> Result<(), StartError> {
    let limits = args.downstream_limits();
    tracing::info!(
        max_connections_per_listener = limits.max_connections_per_listener,
        admin_max_connections = limits.admin_max_connections,
        max_downstream_connections = limits.budget.total(),
        header_read_timeout = ?limits.header_read_timeout,
        "downstream limits"
    );
    let app_probers = app_health::AppProbers::from_flag(args.app_probers.as_deref())
        .map_err(StartError::AppProbers)?;
    let drain = Drain::new(args.drain_period());
    let quit = tokio_util::sync::CancellationToken::new();
    let identity = match args.identity_config() {
        Some(config) => {
            let config = config.map_err(StartError::Identity)?;
            tracing::info!(
                identity = %config.id,
                ca = %config.ca_address,
                server_name = %config.server_name,
                root_cert = %config.root_cert.display(),
                token_file = %config.token_file.display(),
                "workload identity enabled"
            );
            Some(identity::spawn(config))
        }
        None => {
            tracing::info!("no --ca-address: no workload identity (no mutual TLS)");
            None
        }
    };
    let identity_rx = identity.as_ref().map(|(rx, _)| rx.clone());
    let metrics_settings = args.metrics_settings();
    tracing::info!(
        enabled = metrics_settings.enabled,
        workload = %metrics_settings.local.workload,
        namespace = %metrics_settings.local.namespace,
        canonical_service = %metrics_settings.local.canonical_service,
        canonical_revision = %metrics_settings.local.canonical_revision,
        cluster = %metrics_settings.local.cluster,
        max_series = metrics_settings.max_series,
        "Istio metrics"
    );
    // Istio's service cluster: the service of spans whose collector names none (Zipkin's).
    let service_cluster = format!(
        "{}.{}",
        metrics_settings.local.canonical_service, metrics_settings.local.namespace
    );
    let istio_metrics = Arc::new(metrics::Metrics::new(metrics_settings));
    let (tracer, export_task) = trace::Tracer::new(trace::Settings {
        flush_interval: args.trace_flush_interval,
        node_id: args.node_id(),
        service_cluster,
    });
    let mut store = ConfigStore::with_limits(drain.clone(), limits.clone())
        .with_tls(tls::MeshTls::new(identity_rx.clone()))
        .with_metrics(istio_metrics.clone())
        .with_tracer(tracer.clone());
    if args.dns_capture {
        store = store.with_name_table(args.namespace.clone());
    }
    let dns_shutdown = tokio_util::sync::CancellationToken::new();
    let mut dns_stats = Vec::new();
    if let Some(table) = store.name_table() {
        for server in dns::start(&args, table, &limits).await? {
            dns_stats.push(server.stats());
            tokio::spawn(server.run(dns_shutdown.clone()));
        }
    }
    let rx = store.subscribe();
    tokio::spawn(export_task.run(rx.clone()));
    // Istio's metrics under their own names; the proxy's own under `weft_`.
    let mut registry = prometheus_client::registry::Registry::default();
    istio_metrics.register(&mut registry);
    // The proxy's health (xDS, certificate, clusters) under Envoy's names, read at scrape time.
    let xds_state = store.xds_state();
    registry.register_collector(Box::new(metrics::health::ProxyHealth {
        xds: xds_state.clone(),
        config: rx.clone(),
        identity: identity_rx.clone(),
    }));
    {
        let own = registry.sub_registry_with_prefix("weft");
        store.listener_stats().register(own);
        own.register_collector(Box::new(trace::export::Collector(tracer.stats.clone())));
        if !dns_stats.is_empty() {
            own.register_collector(Box::new(dns::Metrics::new(dns_stats)));
        }
    }
    let registry = Arc::new(registry);
    let bootstrap = Arc::new(admin::config_dump::bootstrap(
        args.node(),
        SocketAddr::new(args.instance_ip, args.admin_port),
    ));
    let servers = [
        Some(("admin", args.admin_port, admin::Kind::Admin)),
        Some(("health", args.health_port, admin::Kind::Health)),
        (args.stats_port != 0).then_some(("stats", args.stats_port, admin::Kind::Stats)),
    ];
    for (what, port, kind) in servers.into_iter().flatten() {
        let addr = SocketAddr::new(args.instance_ip, port);
        let bind = |addr| {
            let socket = weft_net::bind(addr)?;
            tokio::net::TcpListener::from_std(socket)
        };
        let listener = bind(addr).map_err(|source| StartError::Bind { what, addr, source })?;
        tracing::info!(%addr, max_connections = limits.admin_max_connections, "{what} server listening");
        let listener = weft_net::BoundedListener::new(
            listener,
            what,
            limits.admin(),
            Some(limits.budget.clone()),
        );
        let ctl = admin::Control {
            drain: drain.clone(),
            quit: quit.clone(),
            identity: identity_rx.clone(),
            metrics: Some(registry.clone()),
            logs: logs.clone(),
            xds: Some(xds_state.clone()),
            bootstrap: Some(bootstrap.clone()),
        };
        tokio::spawn(admin::serve(
            listener,
            kind,
            rx.clone(),
            ctl,
            limits.header_read_timeout,
        ));
    }
    // The same quit as the admin port's: `POST localhost:15020/quitquitquit` stops the proxy.
    let status_ctl = admin::Control {
        drain: drain.clone(),
        quit: quit.clone(),
        identity: identity_rx.clone(),
        ..Default::default()
    };
    app_health::spawn(&args, &limits, app_probers, rx.clone(), status_ctl)?;
    let mut client_config = weft_xds::ClientConfig::new(args.xds_address.clone(), args.node());
    if args.dns_capture {
        client_config = client_config.with_type(weft_xds::type_url::NAME_TABLE);
    }
    let client = weft_xds::AdsClient::new(client_config, store);
    let xds = if args.xds_address.starts_with("https://") {
        let Some(identity) = identity_rx.clone() else {
            return Err(StartError::Identity(format!(
                "--xds-address {} is TLS: it needs a workload certificate, so --ca-address",
                args.xds_address
            )));
        };
        tokio::spawn(run_ads_over_tls(
            client,
            args.xds_address.clone(),
            args.xds_server_name.clone(),
            identity,
        ))
    } else {
        tokio::spawn(async move { match client.run().await {} })
    };
    tokio::select! {
        () = shutdown_signal() => {}
        () = quit.cancelled() => tracing::info!("POST /quitquitquit (admin or status port): shutting down"),
    }
    drain.start();
    let open = drain.open_connections();
    if drain.wait().await {
        tracing::info!(connections = open, "drained; exiting");
    } else {
        tracing::warn!(
            still_open = drain.open_connections(),
            period = ?drain.period(),
            "drain period over with connections still open; exiting"
        );
    }
    xds.abort();
    dns_shutdown.cancel();
    if let Some((_, task)) = identity {
        task.abort();
    }
    Ok(())
}

/// ADS over TLS (15012): each connection waits for the workload certificate and presents
/// the current one; the control plane serves the config of the identity it proves.
async fn run_ads_over_tls(
    client: weft_xds::AdsClient<ConfigStore>,
    address: String,
    server_name: String,
    identity: identity::Identity,
) {
    let connect = move || {
        let mut identity = identity.clone();
        let address = address.clone();
        let server_name = server_name.clone();
        async move {
            let state = identity
                .wait_for(|state| state.cert.is_some() && state.bundle.is_some())
                .await
                .map_err(|_| "the identity task stopped".to_string())?
                .clone();
            let (Some(cert), Some(bundle)) = (&state.cert, &state.bundle) else {
                return Err("no workload certificate yet".to_string());
            };
            let tls =
                identity::channel::client_config(bundle, Some(cert)).map_err(|e| e.to_string())?;
            identity::channel::connect(&address, &server_name, tls)
                .await
                .map_err(|e| e.to_string())
        }
    };
    match client.run_with_channel_factory(connect).await {}
}

/// SIGTERM (Kubernetes) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the proxy");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
