//! `weft-proxy` binary: parse flags, set up logging, build the runtime (`--concurrency` workers), run the proxy.

mod wait;

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use weft_proxy::logging::{Levels, LogControl};

fn main() -> anyhow::Result<()> {
    let args = weft_proxy::Args::parse();
    if let Some(weft_proxy::args::Command::Init(init)) = &args.command {
        // A short-lived init container: no runtime, no logging setup; its output is its log.
        return weft_proxy::capture::run(init).context("weft-proxy init");
    }
    if let Some(weft_proxy::args::Command::Wait(wait)) = &args.command {
        // A postStart hook: the same, and its output is what an operator sees when it fails.
        return wait::run(wait).context("weft-proxy wait");
    }
    // The filter sits in a reloadable layer: the admin's `/logging` changes it at run time.
    let levels = Levels::parse(&args.log).with_context(|| format!("--log {:?}", args.log))?;
    let filter = levels
        .filter()
        .with_context(|| format!("--log {:?}", args.log))?;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer())
        .init();
    let logs = LogControl::new(
        levels,
        Box::new(move |filter| handle.reload(filter).map_err(|e| e.to_string())),
    );
    tracing::info!(
        node_id = %args.node_id(),
        xds = %args.xds_address,
        namespace = %args.namespace,
        workload = %args.workload_name,
        instance_ip = %args.instance_ip,
        outbound_port = args.outbound_port,
        inbound_port = args.inbound_port,
        app_port = ?args.app_port,
        admin_port = args.admin_port,
        health_port = args.health_port,
        concurrency = args.concurrency,
        workers = args.workers(),
        drain_time_s = args.drain_time_s,
        "starting weft-proxy"
    );
    // One worker: a current-thread runtime (no work stealing, no cross-thread wake-ups), as an
    // Envoy worker is; more: the multi-thread scheduler with that many workers.
    let mut builder = if args.workers() == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.workers());
        b
    };
    let runtime = builder
        .thread_name("weft-worker")
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime
        .block_on(weft_proxy::run(args, Some(Arc::new(logs))))
        .context("weft-proxy failed")
}
