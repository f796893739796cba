//! A real Kubernetes control plane for end-to-end tests: etcd, kube-apiserver and
//! optionally kube-controller-manager, built from source by `tests/k8s/build.sh` and run
//! on loopback. Never a mock.
//!
//! There is no kubelet, scheduler or kube-proxy here: Pods are API objects only, and a test
//! plays the kubelet by writing their status through the `pods/status` subresource, or
//! runs the test node ([`crate::node`]), which plays the kubelet and kube-proxy.
//! Service ClusterIPs come from `198.19.0.0/16` ([`SERVICE_CIDR`]); tests use
//! `198.18.0.0/16` for Pod IPs. Only the test node routes those addresses, for its bridge.
//!
//! Every cluster has its own temp dir (certs, kubeconfig, logs, etcd data) and its own
//! loopback ports, so tests run clusters in parallel. Everything is killed on drop, also
//! when a test panics; the processes' log tails are printed then. With `WEFT_K8S_KEEP=1`
//! the clusters' dirs (logs, etcd data) are kept.
//!
//! The first build of the binaries takes a long time (see `tests/k8s/build.sh`; run it
//! ahead to watch it). Missing tools make tests fail, never skip.
//!
//! Without the controller manager, nothing creates a namespace's `default`
//! ServiceAccount, and the ServiceAccount admission plugin rejects Pods whose account is
//! missing: create it, or start the cluster with `controller_manager: true`.

use std::{
    collections::HashSet,
    ffi::OsString,
    io::{BufRead, BufReader, Write},
    net::{Ipv4Addr, SocketAddrV4, TcpListener},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use tempfile::TempDir;

use crate::Process;

/// Paths of the control plane's binaries.
pub struct K8sBins {
    pub apiserver: PathBuf,
    pub controller_manager: PathBuf,
    pub kubectl: PathBuf,
    pub etcd: PathBuf,
    pub helm: PathBuf,
}

fn k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s")
}

/// Runs `tests/k8s/build.sh` once per test process (a no-op when its stamp matches) and
/// returns the binaries' paths. Panics with the build's output when it fails.
pub fn k8s_bins() -> &'static K8sBins {
    static BINS: OnceLock<K8sBins> = OnceLock::new();
    BINS.get_or_init(|| {
        let script = k8s_dir().join("build.sh");
        let output = run_build(&script, &[]);
        let dir = run_build(&script, &["--print-bin-dir"]);
        let dir = PathBuf::from(dir.trim());
        let bins = K8sBins {
            apiserver: dir.join("kube-apiserver"),
            controller_manager: dir.join("kube-controller-manager"),
            kubectl: dir.join("kubectl"),
            etcd: dir.join("etcd"),
            helm: dir.join("helm"),
        };
        for path in [
            &bins.apiserver,
            &bins.controller_manager,
            &bins.kubectl,
            &bins.etcd,
            &bins.helm,
        ] {
            assert!(
                path.is_file(),
                "{} missing after {}; its output:\n{output}",
                path.display(),
                script.display()
            );
        }
        bins
    })
}

/// Runs the build script, echoing its progress lines (not its compiler chatter) to the
/// real stderr as they come, since a first build takes many minutes. Returns its stdout
/// and stderr; panics with them when it fails.
fn run_build(script: &Path, args: &[&str]) -> String {
    let mut child = Command::new("bash")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stderr = child.stderr.take().expect("piped stderr");
    let errors = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let mut out = String::new();
    for line in BufReader::new(child.stdout.take().expect("piped stdout"))
        .lines()
        .map_while(Result::ok)
    {
        if line.starts_with("==>") || line.starts_with("    ") || line.starts_with("buil") {
            // Straight to the process's stderr: the test harness only captures the print
            // macros, and a silent ten-minute build looks like a hang.
            let _ = writeln!(std::io::stderr(), "[k8s build] {line}");
        }
        out.push_str(&line);
        out.push('\n');
    }
    let status = child.wait().expect("waiting for build.sh");
    let errors = errors.join().unwrap_or_default();
    assert!(
        status.success(),
        "{} {args:?} failed ({status}); stdout:\n{out}\nstderr:\n{errors}",
        script.display()
    );
    out
}

/// A TCP port on 127.0.0.1 that nobody listened on a moment ago and that this process
/// has not handed out before.
fn free_port() -> u16 {
    static TAKEN: parking_lot::Mutex<Option<HashSet<u16>>> = parking_lot::const_mutex(None);
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("binding a loopback port")
            .port();
        let mut taken = TAKEN.lock();
        if taken.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct KubeClusterOptions {
    /// Also run kube-controller-manager with the endpointslice, namespace,
    /// garbagecollector, serviceaccount, serviceaccount-token, replicaset, deployment and job
    /// controllers.
    pub controller_manager: bool,
}

/// The Services' ClusterIP range (`--service-cluster-ip-range`); the `kubernetes` Service
/// is its first address.
pub const SERVICE_CIDR: &str = "198.19.0.0/16";

/// How long the API server gets to become ready (2 shared cores, parallel tests).
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// etcd + kube-apiserver (+ kube-controller-manager) on loopback.
pub struct KubeCluster {
    /// kube-controller-manager, when asked for.
    controller_manager: Option<Process>,
    apiserver: Process,
    etcd: Process,
    apiserver_args: Vec<OsString>,
    restarts: u32,
    files: AtomicU32,
    /// The admin kubeconfig (client cert with `O=system:masters`).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// Certs, kubeconfigs, logs (`*.log`), etcd's data. Declared last: removed after the
    /// processes are gone.
    pub dir: TempDir,
}

impl KubeCluster {
    /// Starts a cluster and waits until the API server is ready (and, with the controller
    /// manager, until it has created `default/default`). Panics with the logs on failure.
    pub async fn start(options: KubeClusterOptions) -> Self {
        let bins = k8s_bins();
        let dir = tempfile::Builder::new()
            .prefix("weft-k8s-")
            .tempdir()
            .expect("creating the cluster's temp dir");
        let d = dir.path();
        let certs = Command::new("bash")
            .arg(k8s_dir().join("certs.sh"))
            .arg(d)
            .output()
            .expect("running tests/k8s/certs.sh");
        assert!(
            certs.status.success(),
            "tests/k8s/certs.sh failed: {}",
            String::from_utf8_lossy(&certs.stderr)
        );

        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = Process::spawn(
            "etcd",
            Command::new(&bins.etcd)
                .arg("--name=weft-test")
                .arg(arg("--data-dir=", &d.join("etcd")))
                .arg(format!("--listen-client-urls={etcd_url}"))
                .arg(format!("--advertise-client-urls={etcd_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster=weft-test={peer_url}"))
                .arg("--unsafe-no-fsync")
                .arg("--log-level=warn"),
            d,
        );

        let apiserver_args: Vec<OsString> = vec![
            format!("--etcd-servers={etcd_url}").into(),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}").into(),
            // The advertised address is loopback, which Endpoints may not hold.
            "--endpoint-reconciler-type=none".into(),
            arg("--cert-dir=", &d.join("apiserver-certs")),
            arg("--tls-cert-file=", &d.join("apiserver.crt")),
            arg("--tls-private-key-file=", &d.join("apiserver.key")),
            arg("--client-ca-file=", &d.join("ca.crt")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            arg("--service-account-key-file=", &d.join("sa.pub")),
            arg("--service-account-signing-key-file=", &d.join("sa.key")),
            format!("--service-cluster-ip-range={SERVICE_CIDR}").into(),
            "--authorization-mode=Node,RBAC".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
        ];
        let apiserver = Process::spawn(
            "kube-apiserver",
            Command::new(&bins.apiserver).args(&apiserver_args),
            d,
        );

        let server = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = d.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            kubeconfig_yaml(
                &server,
                &d.join("ca.crt"),
                &format!(
                    "client-certificate: {}\n    client-key: {}",
                    d.join("admin.crt").display(),
                    d.join("admin.key").display()
                ),
            ),
        )
        .expect("writing the kubeconfig");

        let mut cluster = Self {
            controller_manager: None,
            apiserver,
            etcd,
            apiserver_args,
            restarts: 0,
            files: AtomicU32::new(0),
            kubeconfig,
            server,
            dir,
        };
        cluster.wait_ready().await;

        if options.controller_manager {
            let d = cluster.dir.path();
            cluster.controller_manager = Some(Process::spawn(
                "kube-controller-manager",
                Command::new(&bins.controller_manager)
                    .arg(arg("--kubeconfig=", &cluster.kubeconfig))
                    .arg("--bind-address=127.0.0.1")
                    // No serving at all: no port to collide on.
                    .arg("--secure-port=0")
                    .arg("--leader-elect=false")
                    .arg(
                        "--controllers=endpointslice,namespace,garbagecollector,\
                         serviceaccount,serviceaccount-token,root-ca-cert-publisher,\
                         replicaset,deployment,job",
                    )
                    .arg("--use-service-account-credentials")
                    .arg(arg(
                        "--service-account-private-key-file=",
                        &d.join("sa.key"),
                    ))
                    .arg(arg("--root-ca-file=", &d.join("ca.crt"))),
                d,
            ));
            cluster.wait_for_default_service_account().await;
        }
        cluster
    }

    /// Polls `/readyz` until it says `ok`; panics with the logs when the API server or
    /// etcd dies or after [`READY_TIMEOUT`].
    async fn wait_ready(&mut self) {
        let client = self.client().await;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.etcd.assert_running();
            self.apiserver.assert_running();
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .expect("request");
            let last = match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return,
                Ok(body) => body,
                Err(e) => e.to_string(),
            };
            assert!(
                Instant::now() < deadline,
                "kube-apiserver at {} not ready after {READY_TIMEOUT:?}: {last}\n\
                 --- kube-apiserver log ---\n{}\n--- etcd log ---\n{}",
                self.server,
                crate::tail(&self.apiserver.log(), 60),
                crate::tail(&self.etcd.log(), 20),
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The serviceaccount controller creates every namespace's `default` account: once
    /// `default/default` exists, the controller manager is up and has synced.
    async fn wait_for_default_service_account(&mut self) {
        use k8s_openapi::api::core::v1::ServiceAccount;
        let accounts: kube::Api<ServiceAccount> =
            kube::Api::namespaced(self.client().await, "default");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(kcm) = self.controller_manager.as_mut() {
                kcm.assert_running();
            }
            if let Ok(Some(_)) = accounts.get_opt("default").await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kube-controller-manager did not create default/default in {READY_TIMEOUT:?}; \
                 its log:\n{}",
                self.controller_manager
                    .as_ref()
                    .map(|p| crate::tail(&p.log(), 60))
                    .unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            // kubectl's discovery cache, and helm's state: all inside the cluster's dir.
            .env("KUBECACHEDIR", self.dir.path().join("kube-cache"))
            .env("HELM_CACHE_HOME", self.dir.path().join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.path().join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.path().join("helm/data"))
            .stdin(Stdio::null());
        command
    }

    /// Runs kubectl against this cluster as admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.command(&k8s_bins().kubectl, args)
            .output()
            .expect("running kubectl")
    }

    /// Runs kubectl; panics with its stderr unless it succeeds. Returns its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl(args);
        assert!(
            output.status.success(),
            "kubectl {} failed ({}):\n{}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8(output.stdout).expect("kubectl printed UTF-8")
    }

    /// `kubectl apply` of `yaml`; panics with kubectl's words if it is refused.
    pub fn kubectl_apply_ok(&self, yaml: &str) {
        let out = self.kubectl_apply_stdin(yaml);
        assert!(
            out.status.success(),
            "kubectl apply refused:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `kubectl apply -f -` with `yaml` on stdin.
    pub fn kubectl_apply_stdin(&self, yaml: &str) -> Output {
        self.kubectl_stdin(&["apply", "-f", "-"], yaml)
    }

    /// Runs kubectl with `args` and `input` on stdin.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(&k8s_bins().kubectl, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl apply");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input.as_bytes())
            .expect("writing to kubectl's stdin");
        child.wait_with_output().expect("waiting for kubectl")
    }

    /// Runs helm against this cluster as admin, with its cache/config/data dirs in `dir`.
    pub fn helm(&self, args: &[&str]) -> Output {
        self.command(&k8s_bins().helm, args)
            .output()
            .expect("running helm")
    }

    /// An admin client (from [`Self::kubeconfig`]).
    pub async fn client(&self) -> kube::Client {
        client_for(&self.kubeconfig).await
    }

    /// Kills the API server (SIGKILL) and starts it again on the same port and etcd;
    /// waits until it is ready. Its new log is `kube-apiserver-restart-N.log`.
    pub async fn restart_apiserver(&mut self) {
        self.apiserver.kill();
        self.restarts += 1;
        self.apiserver = Process::spawn(
            &format!("kube-apiserver-restart-{}", self.restarts),
            Command::new(&k8s_bins().apiserver).args(&self.apiserver_args),
            self.dir.path(),
        );
        self.wait_ready().await;
    }

    /// The cluster CA's certificate (PEM): it signed the API server's serving cert and the
    /// admin client cert, and it is the root CA in every ServiceAccount token's secret.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ca.crt")).expect("reading ca.crt")
    }

    /// A fresh token for `namespace/service_account` (TokenRequest, `kubectl create
    /// token`, one hour). The account must exist.
    pub fn token_for(&self, namespace: &str, service_account: &str) -> String {
        self.kubectl_ok(&["create", "token", service_account, "-n", namespace])
            .trim()
            .to_string()
    }

    /// A kubeconfig that authenticates with `token` (for kubectl, or
    /// [`client_for`]).
    pub fn kubeconfig_for_token(&self, token: &str) -> PathBuf {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("kubeconfig-token-{n}"));
        std::fs::write(
            &path,
            kubeconfig_yaml(
                &self.server,
                &self.dir.path().join("ca.crt"),
                &format!("token: {token}"),
            ),
        )
        .expect("writing a token kubeconfig");
        path
    }

    /// Where the API server listens (`127.0.0.1:<port>`, from [`Self::server`]): what the
    /// `kubernetes` Service stands for.
    pub fn apiserver_addr(&self) -> SocketAddrV4 {
        self.server
            .strip_prefix("https://")
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("the API server's URL {} is https://IP:PORT", self.server))
    }

    /// The API server's log so far.
    pub fn apiserver_log(&self) -> String {
        self.apiserver.log()
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        // Clients first, store last. Each Process prints its log tail if panicking.
        if let Some(kcm) = self.controller_manager.as_mut() {
            kcm.kill();
        }
        self.apiserver.kill();
        self.etcd.kill();
        if std::env::var_os("WEFT_K8S_KEEP").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "--- cluster dir kept (WEFT_K8S_KEEP): {}",
                self.dir.path().display()
            );
        } else if std::thread::panicking() {
            eprintln!(
                "--- cluster dir (removed now; set WEFT_K8S_KEEP=1 to keep it): {}",
                self.dir.path().display()
            );
        }
    }
}

/// A client for the cluster in `kubeconfig` (its current context).
pub async fn client_for(kubeconfig: &Path) -> kube::Client {
    let config = kube::config::Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("reading {}: {e}", kubeconfig.display()));
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("loading {}: {e}", kubeconfig.display()));
    kube::Client::try_from(config)
        .unwrap_or_else(|e| panic!("a client for {}: {e}", kubeconfig.display()))
}

fn arg(flag: &str, path: &Path) -> OsString {
    let mut arg = OsString::from(flag);
    arg.push(path);
    arg
}

fn kubeconfig_yaml(server: &str, ca: &Path, user: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: weft-test
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: user
  user:
    {user}
contexts:
- name: weft-test
  context:
    cluster: weft-test
    user: user
current-context: weft-test
",
        ca = ca.display()
    )
}
