//! Weft's control plane: Istio config from a source, built into a [`model::Model`],
//! served as Envoy xDS over ADS by `weft-xds`.
//!
//! Modules depend on one another in one direction only (sources produce objects, the
//! model is built from them, xDS reads the model):
//!
//! ```text
//! object       identity of config objects, warnings      (no crate dependency)
//! locality     region/zone/subzone, Istio's rules on them (no crate dependency)
//! service      services, ports, endpoints                → object, locality
//! source       snapshots: Istio objects + registry       → locality, object, service
//! unsupported  per-object unsupported-field checks       → object
//! jwks         fetches RequestAuthentication key sets     → args, source
//! model        the model built from a snapshot           → object, locality, service, source, unsupported, jwks
//! xds          Envoy resources from the model            → locality, model, service
//! readiness    what /ready waits for                     (no crate dependency)
//! listen       listener limits (weft-net) from the flags (no crate dependency)
//! debug        /ready, /debug/syncz, /debug/configz      → readiness, source, xds
//! webhook      the admission webhooks (validate, inject)  → source, injection
//! injection    sidecar injection: pod reviews → JSONPatch → args (and weft-injector)
//! ca           the CA (Istio's CA API) and the 15012 TLS listener (no crate dependency)
//! ```
//!
//! `lib.rs` wires them together and owns the one task that rebuilds the model.

pub mod args;
pub mod ca;
pub mod debug;
pub mod injection;
pub mod jwks;
pub mod listen;
pub mod locality;
pub mod mesh_config;
pub mod model;
pub mod object;
pub mod readiness;
pub mod service;
pub mod source;
pub mod unsupported;
pub mod webhook;
pub mod xds;

#[cfg(test)]
pub(crate) mod testing;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

pub use args::Args;
use model::{MeshSettings, Model};
use object::{ObjectKey, Warning};
use readiness::Readiness;
use source::kube::KubeSource;
use source::local::{LocalSource, LocalSourceError};
use source::{ConfigSet, Snapshot};
use webhook::WebhookError;
use webhook::ca_bundle;
use webhook::tls::CertSource;
use xds::XdsGenerator;

/// Why the controller could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Source(#[from] LocalSourceError),
    #[error("Kubernetes mode (no --config-dir): cannot load the Kubernetes client config: {0}")]
    KubeConfig(String),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error(transparent)]
    Jwks(#[from] jwks::JwksError),
    #[error("cannot listen for xDS on {address}: {source}")]
    BindXds {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen for xDS and the CA (TLS) on {address}: {source}")]
    BindSecureXds {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Ca(#[from] ca::CaStartError),
    #[error("cannot listen for debug HTTP on {address}: {source}")]
    BindDebug {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("xDS server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("controller task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    #[error(transparent)]
    AccessLog(#[from] xds::access_log::MeshAccessLogError),
    #[error("--mesh-config {path}: {reason}")]
    MeshConfig { path: String, reason: String },
}

/// Runs the controller until Ctrl-C / SIGTERM.
pub async fn run(args: Args) -> Result<(), Error> {
    start(args).await?.run_until(shutdown_signal()).await
}

/// A started controller: its bound addresses and the task serving them.
#[derive(Debug)]
pub struct Controller {
    /// The address ADS is served on (useful with port 0).
    pub xds_address: SocketAddr,
    /// The TLS address of the CA API and of ADS for proxies with a workload certificate.
    pub secure_xds_address: SocketAddr,
    /// The address of the debug HTTP server.
    pub debug_address: SocketAddr,
    /// The address of the admission webhook, when it is enabled.
    pub webhook_address: Option<SocketAddr>,
    ads: weft_xds::AdsServer<XdsGenerator>,
    /// The debug and webhook servers: stopped first on shutdown.
    listeners: Vec<JoinHandle<()>>,
    grace_period: std::time::Duration,
    stop: watch::Sender<bool>,
    server: JoinHandle<Result<(), Error>>,
}

impl Controller {
    /// Serves until `shutdown` completes (or the server fails), then stops: the listeners
    /// close, every ADS stream ends with `UNAVAILABLE` so its proxy reconnects elsewhere or
    /// later, and the connections get the grace period to close before they are dropped.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let mut server = self.server;
        tokio::select! {
            result = &mut server => return result.map_err(Error::Task)?,
            () = shutdown => {}
        }
        info!(grace_period = ?self.grace_period, "stopping: closing listeners and ending ADS streams");
        for task in &self.listeners {
            task.abort();
        }
        self.ads.shutdown();
        let _ = self.stop.send(true);
        match tokio::time::timeout(self.grace_period, &mut server).await {
            Ok(result) => result.map_err(Error::Task)?,
            Err(_) => {
                server.abort();
                warn!(
                    grace_period = ?self.grace_period,
                    "connections still open at the end of the grace period: closed"
                );
                info!("weft-controller stopped");
                Ok(())
            }
        }
    }

    /// Stops the controller and waits for it.
    pub async fn stop(self) -> Result<(), Error> {
        self.run_until(std::future::ready(())).await
    }
}

/// The caBundle the controller writes is its CA's: only its CA's certificate chains to it.
fn check_webhook_flags(args: &Args) -> Result<(), WebhookError> {
    let patches =
        !args.injector_webhook_config.is_empty() || !args.validator_webhook_config.is_empty();
    if patches && !args.webhook_cert_from_ca {
        return Err(WebhookError::PatchNeedsCaCert);
    }
    Ok(())
}

/// Binds the servers, starts the source (local directory, or Kubernetes when there is no
/// `--config-dir`), builds the first model and starts serving in the background.
pub async fn start(args: Args) -> Result<Controller, Error> {
    // kube's client and the webhook use rustls with ring; make it the process default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mode = if args.config_dir.is_some() {
        "local"
    } else {
        "Kubernetes"
    };
    info!(
        config_dir = ?args.config_dir,
        kubeconfig = ?args.kubeconfig,
        watch_namespace = ?args.watch_namespace,
        xds_address = %args.xds_address,
        secure_xds_address = %args.secure_xds_address(),
        debug_address = %args.debug_address,
        webhook_address = %args.webhook_address,
        domain = %args.domain,
        debounce = ?args.debounce,
        dns_refresh_rate = ?args.dns_refresh_rate,
        stream_idle_timeout = ?args.stream_idle_timeout,
        outbound_traffic_policy = ?args.outbound_traffic_policy,
        protocol_detection_timeout = ?args.protocol_detection_timeout,
        access_log_file = %args.access_log_file,
        access_log_encoding = %args.access_log_encoding,
        log = %args.log,
        "starting weft-controller ({mode} mode)"
    );

    let jwks_options = jwks::JwksOptions::from_args(&args);
    let jwks_fetcher = jwks::Fetcher::new(&jwks_options)?;

    let limits = listen::Limits::from_args(&args);
    info!(
        max_xds_connections = limits.xds.max_connections,
        max_http_connections = limits.http.max_connections,
        max_connections = limits.budget.total(),
        header_read_timeout = ?limits.header_read_timeout,
        shutdown_grace_period = ?args.shutdown_grace_period,
        "listener limits"
    );
    // Kubernetes mode: the client first, before anything is bound: the injector's pod shape
    // depends on the API server's version, and the CA keeps its root in a Secret.
    let kube = match &args.config_dir {
        Some(_) => None,
        None => Some(kube_client(args.kubeconfig.as_deref()).await?),
    };
    let bind_xds = |source| Error::BindXds {
        address: args.xds_address,
        source,
    };
    let xds_listener = listen::bind(args.xds_address).map_err(bind_xds)?;
    let xds_address = xds_listener.local_addr().map_err(bind_xds)?;
    let incoming = limits
        .listener(xds_listener, "ads", limits.xds)
        .into_stream();
    let bind_secure = |source| Error::BindSecureXds {
        address: args.secure_xds_address(),
        source,
    };
    let secure_listener = listen::bind(args.secure_xds_address()).map_err(bind_secure)?;
    let secure_xds_address = secure_listener.local_addr().map_err(bind_secure)?;
    let secure_listener = limits.listener(secure_listener, "ads-tls", limits.xds);
    let bind_debug = |source| Error::BindDebug {
        address: args.debug_address,
        source,
    };
    let debug_listener = listen::bind(args.debug_address).map_err(bind_debug)?;
    let debug_address = debug_listener.local_addr().map_err(bind_debug)?;
    let debug_listener = limits.listener(debug_listener, "debug", limits.http);
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    let mut listeners: Vec<JoinHandle<()>> = Vec::new();
    check_webhook_flags(&args)?;
    // Bound now, served once the CA is up (its certificate may be the CA's).
    let webhook_listener = match args.webhook_enabled() {
        true => Some(webhook::bind(args.webhook_address)?),
        false => None,
    };

    // The mesh config file: read now (a bad one stops the start), then watched.
    let mesh = match &args.mesh_config {
        Some(path) => {
            let (telemetry, text) =
                mesh_config::load(path).map_err(|reason| Error::MeshConfig {
                    path: path.display().to_string(),
                    reason,
                })?;
            let watcher = mesh_config::watch(path.clone(), telemetry, text, mesh_config::POLL);
            tasks.push(watcher.task);
            watcher.telemetry
        }
        None => watch::channel(Arc::new(mesh_config::MeshTelemetry::defaults())).1,
    };
    let initial_mesh = mesh.borrow().clone();
    let (tracing, metrics) = (initial_mesh.tracing.clone(), initial_mesh.metrics.clone());
    let settings = MeshSettings {
        domain: args.domain.clone(),
        dns_refresh_rate: args.dns_refresh_rate,
        stream_idle_timeout: args.stream_idle_timeout,
        root_namespace: args.root_namespace.clone(),
        trust_domain: args.trust_domain.clone(),
        outbound_traffic_policy: args.outbound_traffic_policy.into(),
        protocol_detection_timeout: args.protocol_detection_timeout,
        access_log: model::MeshAccessLog {
            file: args.access_log_file.clone(),
            json: args.access_log_encoding == "JSON",
            format: args.access_log_format.clone(),
        },
        tracing,
        metrics,
    };
    xds::access_log::check_mesh_format(&settings.access_log)?;
    let mut local_stats = None;
    let mut snapshots = match (&args.config_dir, kube.clone()) {
        (Some(dir), _) => {
            let source = match LocalSource::start(dir.clone(), args.debounce) {
                Ok(source) => source,
                Err(err) => {
                    listeners.iter().for_each(|task| task.abort());
                    return Err(err.into());
                }
            };
            local_stats = Some(source.stats.clone());
            let (snapshots, forward) = local_snapshots(source.config);
            tasks.push(source.task);
            tasks.push(forward);
            snapshots
        }
        (None, None) => unreachable!("Kubernetes mode made its client first"),
        (None, Some(client)) => {
            let source = KubeSource::start(client, args.watch_namespace.clone(), args.debounce);
            tasks.push(source.task);
            source.snapshot
        }
    };

    let ca = match ca::start(&args, kube.clone()).await {
        Ok(ca) => ca,
        Err(err) => {
            listeners.iter().for_each(|task| task.abort());
            tasks.iter().for_each(|task| task.abort());
            return Err(err.into());
        }
    };
    tasks.extend(ca.tasks);

    // Registered on /metrics whether or not the webhooks are served (then they stay at zero).
    let webhook_metrics = Arc::new(webhook::metrics::WebhookMetrics::default());
    let webhook_address = match webhook_listener {
        Some(listener) => {
            let source = match (&args.webhook_cert, &args.webhook_key) {
                (Some(cert), Some(key)) => CertSource::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                    poll: webhook::tls::FILE_POLL,
                },
                _ => CertSource::Ca(ca.serving_key.clone()),
            };
            let certificate = match &source {
                CertSource::Ca(_) => "issued by the CA",
                CertSource::Files { .. } => "from files",
            };
            let tls = match webhook::tls::start(source) {
                Ok(tls) => tls,
                Err(err) => {
                    listeners.iter().for_each(|task| task.abort());
                    tasks.iter().for_each(|task| task.abort());
                    return Err(err.into());
                }
            };
            tasks.extend(tls.task);
            let address = listener.local_addr().map_err(|source| WebhookError::Bind {
                address: args.webhook_address,
                source,
            })?;
            let native_sidecars =
                injection::native_sidecars(args.native_sidecars, kube.as_ref()).await;
            listeners.push(tokio::spawn(webhook::serve(
                limits.listener(listener, "webhook", limits.http),
                tls.acceptor,
                limits.header_read_timeout,
                Arc::new(injection::config(&args, native_sidecars)),
                webhook_metrics.clone(),
            )));
            if let Some(client) = &kube {
                let targets: Vec<_> = (args.injector_webhook_config.iter().cloned())
                    .map(ca_bundle::Target::Mutating)
                    .chain(
                        (args.validator_webhook_config.iter().cloned())
                            .map(ca_bundle::Target::Validating),
                    )
                    .collect();
                tasks.extend(ca_bundle::spawn(client, &ca.ca, &targets));
            }
            info!(%address, certificate, "serving the admission webhooks (HTTPS: /validate, /inject)");
            Some(address)
        }
        None => {
            info!(
                "admission webhook disabled (neither --webhook-cert-from-ca nor --webhook-cert and --webhook-key)"
            );
            None
        }
    };

    // Serve /ready (503 until synced) and the debug pages while the source syncs. ADS
    // is served only once the first model is built, so that no proxy gets an empty config.
    let (generator_tx, generator_rx) = watch::channel(Arc::new(XdsGenerator::new(Arc::new(
        Model::empty(&settings),
    ))));
    let (readiness_tx, readiness_rx) =
        watch::channel(Readiness::starting(snapshots.borrow().unsynced.clone()));
    let ads = weft_xds::AdsServer::new(generator_rx.clone());
    let status = ads.clone();
    // istiod's names, without a prefix: Istio's control-plane dashboards read them as they are.
    let mut registry = prometheus_client::registry::Registry::default();
    ads.metrics().register(&mut registry);
    ca.service.register_metrics(&mut registry);
    webhook_metrics.register(&mut registry);
    let debug_state = Arc::new(debug::DebugState {
        syncz: Box::new(move || serde_json::to_value(status.status()).unwrap_or_default()),
        snapshot: snapshots.clone(),
        generator: generator_rx,
        readiness: readiness_rx,
        local_source: local_stats,
        ca: {
            let (ca_rx, stats) = (ca.ca.clone(), ca.service.stats());
            let settings = ca.service.settings().clone();
            Box::new(move || ca::describe(&ca_rx.borrow(), &settings, &stats))
        },
        metrics: Arc::new(registry),
    });
    listeners.push(tokio::spawn(debug::serve(
        debug_listener,
        debug_state,
        limits.header_read_timeout,
    )));
    info!(address = %debug_address, "serving debug HTTP");

    if args.config_dir.is_none() {
        // The Kubernetes source publishes its first snapshot once every watcher has listed
        // (or after its sync timeout, with the missing resources in `unsynced`).
        let _ = snapshots.changed().await;
    }
    // The key sets of RequestAuthentication jwksUris: the first fetches get a few seconds
    // before the first model, so that proxies do not start with empty key sets.
    let (mut jwks, jwks_task) = jwks::start(snapshots.clone(), jwks_fetcher, jwks_options);
    tasks.push(jwks_task);
    let _ = tokio::time::timeout(jwks::FIRST_FETCH_WAIT, jwks.changed()).await;
    let initial_jwks = jwks.borrow_and_update().clone();
    let initial_snapshot = snapshots.borrow_and_update().clone();
    let initial = Model::from_snapshot_with_jwks(&initial_snapshot, &settings, &initial_jwks);
    log_warnings(
        &ConfigSet::default(),
        &initial_snapshot.config,
        &[],
        &initial.warnings,
    );
    info!(
        services = initial.services.len(),
        virtual_services = initial.virtual_services.len(),
        destination_rules = initial.destination_rules.len(),
        "model built"
    );
    generator_tx.send_replace(Arc::new(XdsGenerator::new(Arc::new(initial))));
    mark_served(&readiness_tx, &initial_snapshot);

    tasks.push(tokio::spawn(own_model(
        snapshots,
        jwks,
        mesh,
        settings,
        generator_tx,
        readiness_tx,
        (initial_snapshot, initial_jwks, initial_mesh),
    )));
    info!(address = %xds_address, "serving ADS");

    info!(address = %secure_xds_address, "serving the CA and ADS over TLS");

    let (stop, stopped) = watch::channel(false);
    let handle = ads.clone();
    let keepalive = (args.xds_keepalive_interval, args.xds_keepalive_timeout);
    let secure_incoming = ca::server::incoming(secure_listener, ca.tls);
    let ca_service = weft_identity::ca_api::CertificateServer::new(Arc::new(ca.service));
    let server = tokio::spawn(async move {
        let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let plaintext = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(keepalive.0))
            .http2_keepalive_timeout(Some(keepalive.1))
            .add_service(ads.clone().into_service())
            .serve_with_incoming_shutdown(incoming, until_stopped(stopped.clone()));
        let secure = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(keepalive.0))
            .http2_keepalive_timeout(Some(keepalive.1))
            .add_service(ca_service)
            .add_service(
                weft_xds::AggregatedDiscoveryServiceServer::with_interceptor(
                    ads,
                    ca::server::require_peer,
                ),
            )
            .serve_with_incoming_shutdown(secure_incoming, until_stopped(stopped));
        let result = tokio::try_join!(plaintext, secure).map(|_| ());
        for task in &tasks {
            task.abort();
        }
        info!("weft-controller stopped");
        result.map_err(Error::from)
    });
    Ok(Controller {
        xds_address,
        secure_xds_address,
        debug_address,
        webhook_address,
        ads: handle,
        listeners,
        grace_period: args.shutdown_grace_period,
        stop,
        server,
    })
}

/// The Kubernetes client: `--kubeconfig` if given, else `kube::Config::infer`
/// (`KUBECONFIG`, `~/.kube/config`, then the in-cluster service account).
async fn kube_client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, Error> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|err| Error::KubeConfig(format!("{}: {err}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|err| Error::KubeConfig(format!("{}: {err}", path.display())))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|err| Error::KubeConfig(err.to_string()))?,
    };
    info!(cluster_url = %config.cluster_url, default_namespace = %config.default_namespace, "Kubernetes API server");
    kube::Client::try_from(config).map_err(|err| Error::KubeConfig(err.to_string()))
}

/// Local mode: each new config set of the directory becomes a snapshot.
fn local_snapshots(
    mut config: watch::Receiver<Arc<ConfigSet>>,
) -> (watch::Receiver<Arc<Snapshot>>, JoinHandle<()>) {
    let first = config.borrow_and_update().clone();
    let (tx, rx) = watch::channel(Arc::new(Snapshot::local(first)));
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = config.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
            }
            let current = config.borrow_and_update().clone();
            tx.send_replace(Arc::new(Snapshot::local(current)));
        }
    });
    (rx, task)
}

/// The one task that owns the model: rebuilds it on every snapshot and every new set of
/// fetched JWKS, and publishes a new generator when the model changed; then records in
/// `readiness` which snapshot the served model reflects. `previous` is what the served
/// model was built from.
#[allow(clippy::too_many_arguments)]
async fn own_model(
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    mut jwks: watch::Receiver<Arc<jwks::JwksSet>>,
    mut mesh: watch::Receiver<Arc<mesh_config::MeshTelemetry>>,
    mut settings: MeshSettings,
    generators: watch::Sender<Arc<XdsGenerator>>,
    readiness: watch::Sender<Readiness>,
    previous: (
        Arc<Snapshot>,
        Arc<jwks::JwksSet>,
        Arc<mesh_config::MeshTelemetry>,
    ),
) {
    // What the served model (and `settings`) was made from.
    let (mut previous, mut previous_jwks, mut previous_mesh) = previous;
    let (mut jwks_open, mut mesh_open) = (true, true);
    loop {
        // Compare with what the current model was built from, so that a change published
        // before this task first ran is not missed.
        let current = snapshots.borrow_and_update().clone();
        let current_jwks = jwks.borrow_and_update().clone();
        let current_mesh = mesh.borrow_and_update().clone();
        let mesh_changed = !Arc::ptr_eq(&current_mesh, &previous_mesh);
        if mesh_changed {
            settings.tracing = current_mesh.tracing.clone();
            settings.metrics = current_mesh.metrics.clone();
        }
        if !Arc::ptr_eq(&current, &previous)
            || !Arc::ptr_eq(&current_jwks, &previous_jwks)
            || mesh_changed
        {
            let model = Model::from_snapshot_with_jwks(&current, &settings, &current_jwks);
            let previous_model = generators.borrow().model.clone();
            log_warnings(
                &previous.config,
                &current.config,
                &previous_model.warnings,
                &model.warnings,
            );
            if *previous_model != model {
                info!(
                    services = model.services.len(),
                    virtual_services = model.virtual_services.len(),
                    destination_rules = model.destination_rules.len(),
                    "model rebuilt"
                );
                // A new snapshot (or mesh config) converges from its source's event; new
                // key sets from now.
                let changed_at = if !Arc::ptr_eq(&current, &previous) {
                    current.seen_at.0
                } else if mesh_changed {
                    current_mesh.seen_at.0
                } else {
                    None
                };
                generators.send_replace(Arc::new(XdsGenerator::for_change(
                    Arc::new(model),
                    changed_at,
                )));
            }
            // The served model is now the one built from `current` (or equal to it).
            mark_served(&readiness, &current);
            previous = current;
            previous_jwks = current_jwks;
            previous_mesh = current_mesh;
        }
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { return },
            changed = jwks.changed(), if jwks_open => jwks_open = changed.is_ok(),
            changed = mesh.changed(), if mesh_open => mesh_open = changed.is_ok(),
        }
    }
}

/// Records that the model built from `snapshot` is served; logs when that makes the
/// controller ready.
fn mark_served(readiness: &watch::Sender<Readiness>, snapshot: &Snapshot) {
    readiness.send_if_modified(|state| {
        let changed = state.served(&snapshot.unsynced);
        if changed && state.is_ready() {
            info!("ready: the config source has synced and its model is served");
        } else if changed {
            info!(waiting_for = ?state.waiting_for(), "not ready yet");
        }
        changed
    });
}

/// Logs each warning once per object version: when it is new, or its object changed.
fn log_warnings(previous: &ConfigSet, current: &ConfigSet, old: &[Warning], new: &[Warning]) {
    let old: BTreeSet<&Warning> = old.iter().collect();
    for warning in new {
        let changed = object_of(previous, &warning.object) != object_of(current, &warning.object);
        if changed || !old.contains(warning) {
            let source = current
                .objects
                .get(&warning.object)
                .map(|sourced| sourced.origin())
                .unwrap_or_default();
            warn!(source = %source, "{warning}");
        }
    }
}

fn object_of<'a>(set: &'a ConfigSet, key: &ObjectKey) -> Option<&'a weft_api::ConfigObject> {
    set.objects.get(key).map(|sourced| &sourced.object)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(err) => {
                    error!(error = %err, "cannot listen for SIGTERM; stopping on Ctrl-C only");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    info!("shutdown requested");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A Kubernetes-mode snapshot of the bookinfo config, with `unsynced` resources.
    fn snapshot(unsynced: &[&str]) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            config: Arc::new(testing::bookinfo_config()),
            registry: Some(Arc::default()),
            unsynced: unsynced.iter().map(ToString::to_string).collect(),
            seen_at: Default::default(),
        })
    }

    #[test]
    fn only_the_cas_own_certificate_gets_its_ca_bundle_written() {
        use clap::Parser as _;
        let parse = |flags: &[&str]| {
            let argv = std::iter::once("weft-controller").chain(flags.iter().copied());
            check_webhook_flags(&Args::try_parse_from(argv).expect("parses"))
        };
        assert!(parse(&["--webhook-cert-from-ca", "--injector-webhook-config=i"]).is_ok());
        assert!(parse(&["--webhook-cert=/c", "--webhook-key=/k"]).is_ok());
        for flags in [
            &["--injector-webhook-config=i"][..],
            &[
                "--webhook-cert=/c",
                "--webhook-key=/k",
                "--validator-webhook-config=v",
            ][..],
        ] {
            let err = parse(flags).expect_err("refused").to_string();
            assert!(
                err.contains("need --webhook-cert-from-ca"),
                "{flags:?}: {err}"
            );
        }
    }

    /// The task that owns the model, started from `first` as `run` leaves it: the senders of
    /// its inputs, the receivers of what it serves.
    struct ModelTask {
        snapshots: watch::Sender<Arc<Snapshot>>,
        mesh: watch::Sender<Arc<mesh_config::MeshTelemetry>>,
        _jwks: watch::Sender<Arc<jwks::JwksSet>>,
        served: watch::Receiver<Arc<XdsGenerator>>,
        readiness: watch::Receiver<Readiness>,
        task: tokio::task::JoinHandle<()>,
    }

    fn model_task(first: Arc<Snapshot>) -> ModelTask {
        let settings = MeshSettings::default();
        let (snapshots_tx, snapshots) = watch::channel(first.clone());
        let (generators, mut served) = watch::channel(Arc::new(XdsGenerator::new(Arc::new(
            Model::from_snapshot(&first, &settings),
        ))));
        served.borrow_and_update();
        let (readiness_tx, readiness) = watch::channel(Readiness::starting(first.unsynced.clone()));
        mark_served(&readiness_tx, &first);
        let (jwks_tx, jwks) = watch::channel(Arc::new(jwks::JwksSet::default()));
        let (mesh_tx, mesh) = watch::channel(Arc::new(mesh_config::MeshTelemetry::defaults()));
        let previous = (first, jwks.borrow().clone(), mesh.borrow().clone());
        let task = tokio::spawn(own_model(
            snapshots,
            jwks,
            mesh,
            settings,
            generators,
            readiness_tx,
            previous,
        ));
        ModelTask {
            snapshots: snapshots_tx,
            mesh: mesh_tx,
            _jwks: jwks_tx,
            served,
            readiness,
            task,
        }
    }

    /// Waits for the next served model.
    async fn next_model(served: &mut watch::Receiver<Arc<XdsGenerator>>) -> Arc<XdsGenerator> {
        tokio::time::timeout(Duration::from_secs(10), served.changed())
            .await
            .expect("a new model within 10s")
            .expect("the model task is alive");
        served.borrow_and_update().clone()
    }

    #[tokio::test]
    async fn ready_once_the_model_of_a_synced_snapshot_is_served() {
        // As `start` leaves things after a partial first snapshot (sync timeout).
        let mut t = model_task(snapshot(&["virtualservices"]));
        assert!(!t.readiness.borrow_and_update().is_ready());
        // The remaining list completes; the objects are the same, so the served model
        // does not change, but it now reflects a complete snapshot.
        t.snapshots.send_replace(snapshot(&[]));
        let ready = tokio::time::timeout(
            Duration::from_secs(10),
            t.readiness.wait_for(Readiness::is_ready),
        )
        .await
        .expect("ready within 10s")
        .map(|state| state.clone())
        .expect("the model task is alive");
        assert_eq!(ready.describe(), "ready\n");
        assert!(!t.served.has_changed().expect("the model task is alive"));
        t.task.abort();
    }

    /// The generator of a changed model carries when the source saw the change, so pushes
    /// converge from the source's event.
    #[tokio::test]
    async fn a_new_model_carries_the_time_its_change_was_seen() {
        let mut t = model_task(snapshot(&[]));
        let seen = std::time::Instant::now();
        let mut config = testing::bookinfo_config();
        config.objects.retain(|key, _| key.kind != "VirtualService");
        t.snapshots.send_replace(Arc::new(Snapshot {
            config: Arc::new(config),
            registry: Some(Arc::default()),
            unsynced: Vec::new(),
            seen_at: source::SeenAt(Some(seen)),
        }));
        assert_eq!(next_model(&mut t.served).await.changed_at, Some(seen));
        t.task.abort();
    }

    /// An edited mesh config rebuilds the model with it, converging from when it was seen.
    #[tokio::test]
    async fn a_mesh_config_change_rebuilds_the_model() {
        let mut t = model_task(snapshot(&[]));
        let seen = std::time::Instant::now();
        let mut edited = mesh_config::MeshTelemetry::defaults();
        edited.metrics.default_providers.clear();
        edited.seen_at = source::SeenAt(Some(seen));
        t.mesh.send_replace(Arc::new(edited));
        let generator = next_model(&mut t.served).await;
        assert!(generator.model.metrics.default_providers.is_empty());
        assert_eq!(generator.changed_at, Some(seen));
        t.task.abort();
    }
}
