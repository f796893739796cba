//! Weft's control plane: Istio config from a source, built into a [`model::Model`],
//! served as Envoy xDS over ADS by `weft-xds`.

pub mod args;
pub mod debug;
pub mod model;
pub mod source;
pub mod unsupported;
pub mod xds;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tracing::{error, info, warn};

pub use args::Args;
use model::{Model, Warning};
use source::ConfigSet;
use source::local::{LocalSource, LocalSourceError};
use xds::XdsGenerator;

/// Why the controller could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Source(#[from] LocalSourceError),
    #[error("cannot listen for xDS on {address}: {source}")]
    BindXds {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
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
    /// The address of the debug HTTP server.
    pub debug_address: SocketAddr,
    stop: oneshot::Sender<()>,
    server: JoinHandle<Result<(), Error>>,
}

impl Controller {
    /// Serves until `shutdown` completes (or the server fails), then stops gracefully.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let mut server = self.server;
        tokio::select! {
            result = &mut server => return result.map_err(Error::Task)?,
            () = shutdown => {}
        }
        let _ = self.stop.send(());
        server.await.map_err(Error::Task)?
    }

    /// Stops the controller and waits for it.
    pub async fn stop(self) -> Result<(), Error> {
        self.run_until(std::future::ready(())).await
    }
}

/// Loads the config directory, builds the first model, binds both servers and starts
/// serving in the background.
pub async fn start(args: Args) -> Result<Controller, Error> {
    info!(
        config_dir = %args.config_dir.display(),
        xds_address = %args.xds_address,
        debug_address = %args.debug_address,
        domain = %args.domain,
        debounce = ?args.debounce,
        log = %args.log,
        "starting weft-controller (local mode)"
    );
    let source = LocalSource::start(args.config_dir.clone(), args.debounce)?;
    let config = source.config.clone();

    let initial_config = config.borrow().clone();
    let initial = build(&initial_config, &args.domain);
    log_warnings(
        &ConfigSet::default(),
        &initial_config,
        &[],
        &initial.warnings,
    );
    info!(
        services = initial.services.len(),
        virtual_services = initial.virtual_services.len(),
        destination_rules = initial.destination_rules.len(),
        "model built"
    );
    let (generator_tx, generator_rx) =
        watch::channel(Arc::new(XdsGenerator::new(Arc::new(initial))));

    let incoming = TcpIncoming::bind(args.xds_address).map_err(|source| Error::BindXds {
        address: args.xds_address,
        source,
    })?;
    let xds_address = incoming.local_addr().map_err(|source| Error::BindXds {
        address: args.xds_address,
        source,
    })?;
    let debug_listener = TcpListener::bind(args.debug_address)
        .await
        .map_err(|source| Error::BindDebug {
            address: args.debug_address,
            source,
        })?;
    let debug_address = debug_listener
        .local_addr()
        .map_err(|source| Error::BindDebug {
            address: args.debug_address,
            source,
        })?;

    let owner = tokio::spawn(own_model(
        config.clone(),
        args.domain.clone(),
        generator_tx,
        initial_config,
    ));
    let ads = weft_xds::AdsServer::new(generator_rx.clone());
    let status = ads.clone();
    let debug_state = Arc::new(debug::DebugState {
        syncz: Box::new(move || serde_json::to_value(status.status()).unwrap_or_default()),
        config,
        generator: generator_rx,
    });
    let debug_task = tokio::spawn(debug::serve(debug_listener, debug_state));
    info!(address = %xds_address, "serving ADS");
    info!(address = %debug_address, "serving debug HTTP");

    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .add_service(ads.into_service())
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await;
        debug_task.abort();
        owner.abort();
        source.task.abort();
        info!("weft-controller stopped");
        result.map_err(Error::from)
    });
    Ok(Controller {
        xds_address,
        debug_address,
        stop,
        server,
    })
}

fn build(config: &ConfigSet, domain: &str) -> Model {
    Model::build(config, domain)
}

/// The one task that owns the model: rebuilds it on every config change and publishes
/// a new generator when the model changed.
async fn own_model(
    mut config: watch::Receiver<Arc<ConfigSet>>,
    domain: String,
    generators: watch::Sender<Arc<XdsGenerator>>,
    mut previous_config: Arc<ConfigSet>,
) {
    loop {
        // Compare with the set the current model was built from, so that a change
        // published before this task first ran is not missed.
        let current = config.borrow_and_update().clone();
        if !Arc::ptr_eq(&current, &previous_config) {
            let model = build(&current, &domain);
            let previous_model = generators.borrow().model.clone();
            log_warnings(
                &previous_config,
                &current,
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
                generators.send_replace(Arc::new(XdsGenerator::new(Arc::new(model))));
            }
            previous_config = current;
        }
        if config.changed().await.is_err() {
            return;
        }
    }
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
                .map(|sourced| format!("{} document {}", sourced.file.display(), sourced.index))
                .unwrap_or_default();
            warn!(source = %source, "{warning}");
        }
    }
}

fn object_of<'a>(
    set: &'a ConfigSet,
    key: &source::ObjectKey,
) -> Option<&'a weft_api::ConfigObject> {
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
