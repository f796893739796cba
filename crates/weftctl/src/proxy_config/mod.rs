//! `weftctl proxy-config listeners|routes|clusters|endpoints|secret <proxy>`: the config a
//! proxy has applied, as istioctl's tables or `-o json|yaml`, read from its admin port's
//! `/config_dump`, `/clusters` and `/certs` (`--admin`, or in Kubernetes through the API
//! server's pod proxy); `log` reads and sets its log levels (`/logging`).

mod envoy;
mod log;
mod tables;

use std::time::{Duration, SystemTime};

use crate::remote::{self, ControllerArgs, KubeApi, Remote, RemoteError};
use crate::table::{self, Output};
pub use tables::*;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Listeners: one row per filter chain, with its address, port, match and destination.
    Listeners(Args),
    /// Routes: one row per route, with its route configuration, virtual host, domains, match
    /// and the VirtualService it came from.
    Routes(Args),
    /// Clusters: service FQDN, port, subset, direction, discovery type and the
    /// DestinationRule.
    Clusters(Args),
    /// Endpoints: address, health, outlier detection's verdict, cluster.
    Endpoints(Args),
    /// The workload certificate and the trust roots: status, validity, serial, dates.
    Secret(Args),
    /// The proxy's loggers and their levels; `--level` and `--reset` change them.
    Log(log::LogArgs),
}

/// Which proxy, and how to reach its admin (every `proxy-config` command).
#[derive(clap::Args, Debug)]
pub struct Target {
    /// The proxy: `<pod>[.<namespace>]` or its node id (Kubernetes). With `--admin` it may
    /// be left out.
    pub proxy: Option<String>,
    /// The proxy's admin address, `http://HOST:15000` (local mode, or a port-forward).
    /// Without it the pod is reached through the Kubernetes API server.
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
    /// The pod's namespace when <proxy> names none (default: the kubeconfig context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The proxy's admin port in its pod.
    #[arg(long, default_value_t = 15000)]
    pub admin_port: u16,
}

impl Target {
    /// The proxy's admin: `--admin`, else its pod through the Kubernetes API server.
    pub async fn admin(&self, kube: &remote::KubeArgs) -> Result<Remote, ConfigError> {
        if let Some(admin) = &self.admin {
            return Ok(Remote::direct(admin)?);
        }
        let proxy = self.proxy.as_deref().ok_or(ConfigError::NoProxy)?;
        let api = KubeApi::connect(kube, "--admin").await?;
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| api.default_namespace.clone());
        let (pod, namespace) = pod_of(proxy, &namespace);
        Ok(api.pod(&namespace, &pod, self.admin_port))
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Where the controller is: routes and clusters show the VirtualService and
    /// DestinationRule it used for each host (left out when it is not known: with `--admin`,
    /// give `--controller` for them).
    #[command(flatten)]
    pub controller: ControllerArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
    /// How long to wait for each answer.
    #[arg(long, default_value = "10s", value_parser = remote::parse_timeout)]
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("which proxy? give <pod>[.<namespace>] (Kubernetes), or --admin http://HOST:15000")]
    NoProxy,
    #[error("--level entry {0:?}: expected <level> or <logger>:<level>, e.g. http:debug")]
    BadLevel(String),
}

/// Which pod a proxy argument names: `<pod>.<namespace>`, Istio's node id
/// (`sidecar~<ip>~<pod>.<namespace>~…`), or `<pod>` in `namespace`.
pub fn pod_of(proxy: &str, namespace: &str) -> (String, String) {
    let name = match proxy.split('~').collect::<Vec<_>>().as_slice() {
        [_, _, name, _] => *name,
        _ => proxy,
    };
    // Namespaces have no dots; pod names may.
    match name.rsplit_once('.') {
        Some((pod, ns)) if !pod.is_empty() && !ns.is_empty() => (pod.to_string(), ns.to_string()),
        _ => (name.to_string(), namespace.to_string()),
    }
}

/// The controller's view of hosts (`/debug/configz`), from the first controller that answers
/// (every replica builds the same model): `--controller`, or in Kubernetes mode the one found
/// there. `None`, with a warning when it was looked for, when it cannot be had.
async fn policies(args: &Args) -> Option<Policies> {
    if args.target.admin.is_some() && args.controller.controller.is_none() {
        return None;
    }
    let warn = |error: &RemoteError| {
        eprintln!("weftctl: warning: no VirtualService and DestinationRule columns: {error}");
    };
    let controllers = match remote::controllers(&args.controller, args.timeout).await {
        Ok(controllers) => controllers,
        Err(error) => {
            warn(&error);
            return None;
        }
    };
    let mut last = None;
    for controller in controllers {
        match controller
            .remote
            .get_json::<serde_json::Value>("/debug/configz", args.timeout)
            .await
        {
            Ok(configz) => return Some(Policies::from_configz(&configz)),
            Err(error) => last = Some(error),
        }
    }
    if let Some(error) = last {
        warn(&error);
    }
    None
}

/// `weftctl proxy-config <what>`: prints the table or document.
pub async fn run(command: Command) -> Result<(), ConfigError> {
    let args = match &command {
        Command::Log(args) => return log::run(args).await,
        Command::Listeners(args)
        | Command::Routes(args)
        | Command::Clusters(args)
        | Command::Endpoints(args)
        | Command::Secret(args) => args,
    };
    let admin = args.target.admin(&args.controller.kube).await?;
    let (output, timeout) = (args.output, args.timeout);
    let envoy = |path: &'static str| admin.get_json::<serde_json::Value>(path, timeout);
    let dump = || async {
        let dump = envoy("/config_dump").await?;
        Ok::<_, RemoteError>(ConfigDump::from_envoy(&dump, None))
    };
    let text = match &command {
        Command::Listeners(_) => {
            let rows = listener_rows(&dump().await?);
            table::document(output, &rows).unwrap_or_else(|| listeners_table(&rows))
        }
        Command::Routes(_) => {
            let dump = dump().await?;
            let rows = route_rows(&dump, policies(args).await.as_ref());
            table::document(output, &rows).unwrap_or_else(|| routes_table(&rows))
        }
        Command::Clusters(_) => {
            let clusters = envoy("/clusters?format=json").await?;
            let dump = ConfigDump::from_envoy(&envoy("/config_dump").await?, Some(&clusters));
            let rows = cluster_rows(&dump, policies(args).await.as_ref());
            table::document(output, &rows).unwrap_or_else(|| clusters_table(&rows))
        }
        Command::Endpoints(_) => {
            let clusters = envoy("/clusters?format=json").await?;
            let rows = endpoint_rows(&ConfigDump::from_envoy(
                &serde_json::Value::Null,
                Some(&clusters),
            ));
            table::document(output, &rows).unwrap_or_else(|| endpoints_table(&rows))
        }
        Command::Log(_) => return Ok(()),
        Command::Secret(_) => {
            let certs: Certs = admin.get_json("/certs", timeout).await?;
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let report = secret_report(certs, now);
            table::document(output, &report).unwrap_or_else(|| secret_table(&report))
        }
    };
    print!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests;
