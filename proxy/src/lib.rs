//! weft-proxy: Weft's sidecar proxy. xDS config in, HTTP/1.1 and HTTP/2 traffic through.
//!
//! ```text
//!  AdsClient ─► ConfigStore (config/) ─watch─► listeners.rs ─► http/ (router ─► policy) ─► upstream/ (balancer ─► endpoint ─► pool)
//!                                       └────► admin.rs (/ready, /config_dump, /healthz/ready, /quitquitquit, /drain_listeners)
//!  SIGTERM │ /quitquitquit ─► drain.rs ─► listeners stop, connections close after their requests ─► exit 0
//! ```

pub mod admin;
pub mod args;
pub mod config;
pub mod drain;
pub mod error;
pub mod http;
pub mod limits;
pub mod listeners;
pub mod upstream;

use std::net::SocketAddr;

pub use args::Args;
pub use config::{ConfigStore, ProxyConfig};
pub use drain::Drain;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind the {what} server on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the proxy: admin and health servers, then the ADS client, until SIGTERM, Ctrl-C or
/// `POST /quitquitquit`; then drains and returns.
pub async fn run(args: Args) -> Result<(), StartError> {
    let limits = args.downstream_limits();
    tracing::info!(
        max_connections_per_listener = limits.max_connections_per_listener,
        admin_max_connections = limits.admin_max_connections,
        max_downstream_connections = limits.budget.total(),
        header_read_timeout = ?limits.header_read_timeout,
        "downstream limits"
    );
    let drain = Drain::new(args.drain_period());
    let quit = tokio_util::sync::CancellationToken::new();
    let store = ConfigStore::with_limits(drain.clone(), limits.clone());
    let rx = store.subscribe();
    for (what, port, kind) in [
        ("admin", args.admin_port, admin::Kind::Admin),
        ("health", args.health_port, admin::Kind::Health),
    ] {
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
        };
        tokio::spawn(admin::serve(
            listener,
            kind,
            rx.clone(),
            ctl,
            limits.header_read_timeout,
        ));
    }
    let client = weft_xds::AdsClient::new(
        weft_xds::ClientConfig::new(args.xds_address.clone(), args.node()),
        store,
    );
    let xds = tokio::spawn(client.run());
    tokio::select! {
        () = shutdown_signal() => {}
        () = quit.cancelled() => tracing::info!("POST /quitquitquit: shutting down"),
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
    Ok(())
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
