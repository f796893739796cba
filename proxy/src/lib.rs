//! weft-proxy: Weft's sidecar proxy. xDS config in, HTTP/1.1 and h2c traffic through.
//!
//! ```text
//!  AdsClient ─► ConfigStore (config/) ─watch─► listeners.rs ─► http/ (router, forward) ─► balance.rs ─► upstream.rs pools
//!                                       └────► admin.rs (/ready, /config_dump, /healthz/ready)
//! ```

pub mod admin;
pub mod args;
pub mod balance;
pub mod config;
pub mod error;
pub mod http;
pub mod listeners;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

pub use args::Args;
pub use config::{ConfigStore, ProxyConfig};

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

/// Runs the proxy: admin and health servers, then the ADS client (forever, reconnecting).
pub async fn run(args: Args) -> Result<(), StartError> {
    let store = ConfigStore::new(Arc::new(upstream::Pools::default()));
    let rx = store.subscribe();
    for (what, port, kind) in [
        ("admin", args.admin_port, admin::Kind::Admin),
        ("health", args.health_port, admin::Kind::Health),
    ] {
        let addr = SocketAddr::new(args.instance_ip, port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { what, addr, source })?;
        tracing::info!(%addr, "{what} server listening");
        tokio::spawn(admin::serve(listener, kind, rx.clone()));
    }
    let client = weft_xds::AdsClient::new(
        weft_xds::ClientConfig::new(args.xds_address.clone(), args.node()),
        store,
    );
    tokio::select! {
        _ = client.run() => Ok(()),
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted; exiting");
            Ok(())
        }
    }
}
