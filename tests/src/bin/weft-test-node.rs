//! `weft-test-node`: the end-to-end tests' node, by hand and as the containers' launcher.
//!
//! - `weft-test-node agent [--kubeconfig K]` runs the node agent against a cluster (for
//!   instance one from `tests/k8s/cluster.sh up`) until Ctrl-C, with the image table the
//!   tests use (`weft-proxy`, `weft-controller` and `weftctl` from this binary's directory);
//!   everything it created is removed when it stops.
//! - `weft-test-node launch <plan>` is how the agent starts a container inside its pod's
//!   namespaces (`weft_e2e::node::launch`); not for people.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use weft_e2e::Bins;
use weft_e2e::node::agent::{NodeAgent, NodeConfig};
use weft_e2e::node::images::ImageTable;
use weft_e2e::node::launch::{self, Plan};
use weft_e2e::node::net::Network;

#[derive(Parser)]
#[command(about = "The end-to-end tests' Kubernetes node: runs pods on this machine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node agent against a cluster until interrupted (needs root and iproute2).
    Agent {
        /// The cluster's kubeconfig.
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: PathBuf,
    },
    /// Start a container: mount its volumes, take its user, exec its program (run by the
    /// agent inside the pod's network namespace).
    Launch {
        /// The plan, as JSON.
        plan: String,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Launch { plan } => {
            let error = match serde_json::from_str::<Plan>(&plan) {
                Ok(plan) => launch::run(&plan).to_string(),
                Err(e) => format!("reading the plan: {e}"),
            };
            // Where the container's output goes: its log.
            eprintln!("weft-test-node launch: {error}");
            // What a runtime reports for a container that could not start.
            ExitCode::from(128)
        }
        Command::Agent { kubeconfig } => match agent(kubeconfig) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("weft-test-node: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn agent(kubeconfig: PathBuf) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("this binary's path")?;
    let dir = exe.parent().context("this binary's directory")?;
    let bins = Bins {
        controller: dir.join("weft-controller"),
        proxy: dir.join("weft-proxy"),
        weftctl: dir.join("weftctl"),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let config = kube::config::Kubeconfig::read_from(&kubeconfig)
            .with_context(|| format!("reading {}", kubeconfig.display()))?;
        let config = kube::Config::from_custom_kubeconfig(config, &Default::default()).await?;
        let client = kube::Client::try_from(config)?;
        let network = Arc::new(Network::create()?);
        let node = NodeConfig::new(ImageTable::weft(&bins), &exe);
        let agent = NodeAgent::start(client, network.clone(), node).await;
        println!(
            "node {} running pods on bridge {} ({}/24); container logs under {}; Ctrl-C stops",
            weft_e2e::node::agent::NODE_NAME,
            network.bridge(),
            network.gateway(),
            network.dir().join("logs").display(),
        );
        tokio::signal::ctrl_c().await?;
        drop(agent);
        Ok(())
    })
}
