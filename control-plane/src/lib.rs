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
use tokio::sync::watch;
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
}

/// Runs the controller until Ctrl-C / SIGTERM.
pub async fn run(args: Args) -> Result<(), Error> {
    run_until(args, shutdown_signal()).await
}

/// Runs the controller until `shutdown` completes.
pub async fn run_until(args: Args, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
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

    let initial = build(&config.borrow(), &args.domain);
    log_warnings(&ConfigSet::default(), &config.borrow(), &[], &initial.warnings);
    let (generator_tx, generator_rx) = watch::channel(Arc::new(XdsGenerator::new(Arc::new(initial))));
    let owner = tokio::spawn(own_model(config.clone(), args.domain.clone(), generator_tx));

    let ads = weft_xds::AdsServer::new(generator_rx.clone());
    let status = ads.clone();
    let incoming = tonic::transport::server::TcpIncoming::bind(args.xds_address).map_err(|source| Error::BindXds {
        address: args.xds_address,
        source,
    })?;
    let debug_listener = TcpListener::bind(args.debug_address)
        .await
        .map_err(|source| Error::BindDebug {
            address: args.debug_address,
            source,
        })?;
    let debug_state = Arc::new(debug::DebugState {
        syncz: Box::new(move || serde_json::to_value(status.status()).unwrap_or_default()),
        config,
        generator: generator_rx,
    });
    let debug_task = tokio::spawn(debug::serve(debug_listener, debug_state));
    info!(address = %args.xds_address, "serving ADS");
    info!(address = %args.debug_address, "serving debug HTTP");

    let result = tonic::transport::Server::builder()
        .add_service(ads.into_service())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    debug_task.abort();
    owner.abort();
    source.task.abort();
    info!("weft-controller stopped");
    result.map_err(Error::from)
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
) {
    let mut previous_config = config.borrow_and_update().clone();
    loop {
        if config.changed().await.is_err() {
            return;
        }
        let current = config.borrow_and_update().clone();
        let model = build(&current, &domain);
        let previous_model = generators.borrow().model.clone();
        log_warnings(&previous_config, &current, &previous_model.warnings, &model.warnings);
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
}

/// Logs each warning once per object version: when it is new, or its object changed.
fn log_warnings(previous: &ConfigSet, current: &ConfigSet, old: &[Warning], new: &[Warning]) {
    let old: BTreeSet<&Warning> = old.iter().collect();
    for warning in new {
        let changed = previous.objects.get(&warning.object) != current.objects.get(&warning.object);
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

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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
