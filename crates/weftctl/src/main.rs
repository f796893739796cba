//! `weftctl`: Weft's command-line tool.

mod analyze;
mod crds;
mod demo;
mod demo_app;
mod describe;
mod kube_inject;
mod precheck;
mod proxy_config;
mod proxy_status;
mod remote;
mod table;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{CommandFactory, Parser, Subcommand, error::ErrorKind};

#[derive(Parser, Debug)]
#[command(
    name = "weftctl",
    version,
    about = "Weft service mesh command-line tool"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand, Debug)]
enum Commands {
    /// Run the local demo: control plane, three app versions with sidecars, live traffic
    /// shares while the routing changes. Exits 0 when the mesh behaved as configured.
    Demo {
        /// The config to start from.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/local"))]
        config_dir: PathBuf,
        /// Where weft-controller and weft-proxy are; by default they are built next to weftctl.
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// Serve the built-in demo HTTP app: by default it answers with its service name and
    /// version; `--role` makes it one of the apps of Istio's bookinfo sample instead.
    ///
    /// The bookinfo roles find each other as Istio's apps do, from the environment:
    /// DETAILS_HOSTNAME, REVIEWS_HOSTNAME, RATINGS_HOSTNAME (default details, reviews,
    /// ratings), SERVICES_DOMAIN (appended as .DOMAIN), DETAILS_SERVICE_PORT,
    /// REVIEWS_SERVICE_PORT, RATINGS_SERVICE_PORT (default 9080). reviews also reads
    /// ENABLE_RATINGS, STAR_COLOR, HOSTNAME and CLUSTER_NAME. With HTTP_PROXY=http://HOST:PORT
    /// their calls go through that proxy (a sidecar's outbound listener in explicit mode).
    ///
    /// Every role can misbehave for a fraction of its requests (independent draws, in this
    /// order: reset, hang, fail, delay; each flag also reads DEMO_<FLAG>, e.g.
    /// DEMO_FAIL_RATIO), and counts its requests by outcome: GET /__demo/stats answers them
    /// as JSON, POST /__demo/stats/reset zeroes them. echo's query parameters decide for one
    /// request: status=N, delay_ms=N, reset=0|1, hang=0|1, slow_body_ms=N.
    DemoApp {
        /// Address to listen on (IP:PORT).
        #[arg(long, value_parser = demo::parse_listen)]
        listen: SocketAddr,
        /// What the app does.
        #[arg(long, value_enum, default_value_t = demo_app::Role::Echo)]
        role: demo_app::Role,
        /// Service name the app reports (x-weft-service); required for `echo`, the role's
        /// name by default for the bookinfo roles.
        #[arg(long)]
        service: Option<String>,
        /// Version the app reports (header x-weft-version).
        #[arg(long)]
        version: String,
        /// Also listen here (IP:PORT) for a server-first TCP protocol: each connection is
        /// greeted with `<service> <version> ready` before the client sends anything (as MySQL
        /// or SMTP servers do), then its lines are echoed.
        #[arg(long, value_parser = demo::parse_listen)]
        banner_listen: Option<SocketAddr>,
        /// The faults the app injects.
        #[command(flatten)]
        faults: demo_app::Faults,
    },
    /// Add the sidecar to the Pods and workloads of a YAML file, as the injection webhook
    /// would (`istioctl kube-inject`); prints the result.
    KubeInject {
        /// The YAML file (`-` reads standard input).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// The namespace of documents that name none.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// The proxy image to inject (default: Weft's of this version).
        #[arg(long)]
        proxy_image: Option<String>,
        /// `true`: the proxy as a native sidecar (Kubernetes 1.29+); `false`: as the first
        /// container, the app held by its `postStart` hook (older clusters).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        native_sidecars: bool,
    },
    /// Whether every proxy has the config its controller sent it, per xDS type (istioctl's
    /// proxy-status): SYNCED, NOT SENT, or STALE with the reason (the proxy's NACK and its
    /// message, or no ACK yet) and since when. With <PROXY>: that proxy in detail.
    ///
    /// The controller is `--controller http://HOST:15014` (local mode), else found in
    /// Kubernetes (the kubeconfig) and asked through the API server: every ready pod of the
    /// Service weft-controller (namespace weft-system, else istio-system).
    ProxyStatus(proxy_status::Args),
    /// The config a proxy has applied, as tables (istioctl's proxy-config), and its log
    /// levels (`log`): from its admin (`--admin http://HOST:15000`, else its pod through the
    /// Kubernetes API server).
    ProxyConfig {
        #[command(subcommand)]
        what: proxy_config::Command,
    },
    /// Find problems in the mesh's config (istioctl analyze): in the cluster (the
    /// kubeconfig), in files laid over it (`-f`), or in files only (`--use-kube=false`,
    /// local mode). Each finding has Istio's message code (IST0101 …) or, where Istio has no
    /// check, Weft's (WEFT0001 …): docs/ANALYZE.md lists them. Exits 79 when a finding
    /// reaches --failure-threshold.
    Analyze(analyze::Args),
    /// The mesh config that applies to a pod (istioctl x describe pod): its Services and
    /// ports, its sidecar, the DestinationRule subsets selecting it, the VirtualServices
    /// routing to it, its mTLS mode, the AuthorizationPolicies selecting it and whether its
    /// proxy is SYNCED.
    Describe {
        #[command(subcommand)]
        what: describe::Command,
    },
    /// Experimental commands (istioctl x).
    X {
        #[command(subcommand)]
        what: XCommand,
    },
    /// Write the Istio CRDs generated from weft-api's types, one file per kind.
    Crds {
        /// Directories to write to (created if missing); repeat the flag for several. By
        /// default the repo's `crds/` and the Helm chart's `charts/weft/crds/`.
        #[arg(long, default_values = [
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds"),
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../charts/weft/crds"),
        ])]
        out: Vec<PathBuf>,
    },
}

/// `weftctl x …`.
#[derive(Subcommand, Debug)]
enum XCommand {
    /// Check the cluster before installing or upgrading Weft (istioctl x precheck): the
    /// Kubernetes version, the permissions the install needs, installed Istio CRDs, an
    /// existing control plane, sidecars of another version. Exits 79 on an Error.
    Precheck(precheck::Args),
}

/// `weftctl demo-app`: the bookinfo roles' environment is read here, once.
async fn demo_app_run(
    listen: SocketAddr,
    role: demo_app::Role,
    service: Option<String>,
    version: String,
    banner_listen: Option<SocketAddr>,
    faults: demo_app::Faults,
) -> anyhow::Result<()> {
    let config = match role {
        demo_app::Role::Echo => demo_app::Config::default(),
        _ => demo_app::Config::from_env()
            .map_err(|e| anyhow::anyhow!("demo-app --role {}: {e:#}", role.name()))?,
    };
    let service = service.unwrap_or_else(|| role.name().to_owned());
    let identity = demo_app::Identity { service, version };
    if let Some(addr) = banner_listen {
        let listener = demo_app::banner::bind(addr).await?;
        tokio::spawn(demo_app::banner::serve(listener, identity.clone()));
    }
    demo_app::run(
        listen,
        demo_app::App {
            role,
            identity,
            config,
            faults,
        },
    )
    .await
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Commands::DemoApp {
        role: demo_app::Role::Echo,
        service: None,
        ..
    } = &cli.command
    {
        Cli::command()
            .error(
                ErrorKind::MissingRequiredArgument,
                "demo-app --role echo needs --service <SERVICE>",
            )
            .exit();
    }
    if let Commands::DemoApp { faults, .. } = &cli.command
        && let Err(message) = faults.check()
    {
        Cli::command()
            .error(ErrorKind::MissingRequiredArgument, message)
            .exit();
    }
    if let Commands::KubeInject {
        file,
        namespace,
        proxy_image,
        native_sidecars,
    } = &cli.command
    {
        return match kube_inject::run(file, namespace, proxy_image.clone(), *native_sidecars) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("weftctl kube-inject: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Commands::Crds { out } = &cli.command {
        for dir in out {
            match crds::write(dir) {
                Ok(written) => {
                    for path in written {
                        println!("{}", path.display());
                    }
                }
                Err(error) => {
                    eprintln!("{error:#}");
                    return ExitCode::FAILURE;
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("weftctl: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // A command's own non-zero exit (analyze's findings), when it did not fail.
    let mut exit_code: Option<u8> = None;
    let result = runtime.block_on(async {
        match cli.command {
            Commands::Demo {
                config_dir,
                bin_dir,
            } => {
                demo::run(demo::Options {
                    bin_dir,
                    config_dir,
                })
                .await
            }
            Commands::DemoApp {
                listen,
                role,
                service,
                version,
                banner_listen,
                faults,
            } => demo_app_run(listen, role, service, version, banner_listen, faults).await,
            Commands::ProxyStatus(args) => proxy_status::run(args)
                .await
                .map_err(|e| anyhow::anyhow!("weftctl proxy-status: {e}")),
            Commands::ProxyConfig { what } => proxy_config::run(what)
                .await
                .map_err(|e| anyhow::anyhow!("weftctl proxy-config: {e}")),
            Commands::Analyze(args) => match analyze::run(args).await {
                Ok(false) => Ok(()),
                Ok(true) => {
                    exit_code = Some(analyze::EXIT_FOUND_ISSUES);
                    Ok(())
                }
                Err(error) => Err(anyhow::anyhow!("weftctl analyze: {error}")),
            },
            Commands::Describe { what } => describe::run(what)
                .await
                .map_err(|e| anyhow::anyhow!("weftctl describe: {e}")),
            Commands::X {
                what: XCommand::Precheck(args),
            } => match precheck::run(args).await {
                Ok(false) => Ok(()),
                Ok(true) => {
                    exit_code = Some(analyze::EXIT_FOUND_ISSUES);
                    Ok(())
                }
                Err(error) => Err(anyhow::anyhow!("weftctl x precheck: {error}")),
            },
            Commands::Crds { .. } | Commands::KubeInject { .. } => {
                unreachable!("handled before the runtime starts")
            }
        }
    });
    match result {
        Ok(()) => exit_code.map_or(ExitCode::SUCCESS, ExitCode::from),
        Err(error) => {
            eprintln!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
