//! `weft-controller`: parses flags, sets up logging and runs the control plane.

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use weft_controller::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = EnvFilter::try_new(&args.log)
        .with_context(|| format!("invalid --log filter {:?}", args.log))?;
    tracing_subscriber::fmt().with_env_filter(filter).init();
    weft_controller::run(args)
        .await
        .context("weft-controller failed")
}
