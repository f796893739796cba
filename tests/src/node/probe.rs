//! Container probes for the test node: HTTP GET, TCP socket and exec, with the kubelet's
//! timing (`initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`) and thresholds
//! (`successThreshold`, `failureThreshold`).
//!
//! Like the kubelet, the node probes from outside the pod: HTTP and TCP go from the host to the
//! pod's IP over the bridge; exec runs the command inside the container (its network and
//! mount namespaces, as its user: the caller's `exec_prefix`).

use std::net::Ipv4Addr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::time::Instant;

/// One probe of one container, and what its results add up to.
#[derive(Debug)]
pub struct Prober {
    probe: Probe,
    next: Instant,
    successes: i32,
    failures: i32,
    passing: bool,
}

impl Prober {
    /// A probe of a container started at `started`: first run after `initialDelaySeconds`;
    /// failing until its first success threshold is met, as the kubelet's readiness starts.
    pub fn new(probe: Probe, started: Instant) -> Self {
        let delay = seconds(probe.initial_delay_seconds, 0);
        Self {
            probe,
            next: started + delay,
            successes: 0,
            failures: 0,
            passing: false,
        }
    }

    /// Whether the probe currently passes.
    pub fn passing(&self) -> bool {
        self.passing
    }

    /// Whether it has failed `failureThreshold` times in a row: a liveness or startup probe's
    /// verdict that the container must be restarted.
    pub fn failed(&self) -> bool {
        self.failures >= self.probe.failure_threshold.unwrap_or(3).max(1)
    }

    /// Runs the probe if it is due; true when its verdict changed. An exec probe's command
    /// runs behind `exec_prefix` (what enters the container's namespaces as its user).
    pub async fn tick(
        &mut self,
        pod_ip: Ipv4Addr,
        exec_prefix: &[String],
        ports: &[ContainerPort],
    ) -> bool {
        let now = Instant::now();
        if now < self.next {
            return false;
        }
        self.next = now + seconds(self.probe.period_seconds, 10);
        let timeout = seconds(self.probe.timeout_seconds, 1);
        let ok = tokio::time::timeout(timeout, check(&self.probe, pod_ip, exec_prefix, ports))
            .await
            .unwrap_or(false);
        let before = self.passing;
        if ok {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= self.probe.success_threshold.unwrap_or(1).max(1) {
                self.passing = true;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= self.probe.failure_threshold.unwrap_or(3).max(1) {
                self.passing = false;
            }
        }
        before != self.passing
    }
}

fn seconds(value: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(value.and_then(|v| u64::try_from(v).ok()).unwrap_or(default))
}

/// A port of a probe: a number, or the name of one of the container's ports.
fn port(port: &IntOrString, ports: &[ContainerPort]) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// One run of the probe: true on success.
async fn check(
    probe: &Probe,
    pod_ip: Ipv4Addr,
    exec_prefix: &[String],
    ports: &[ContainerPort],
) -> bool {
    if let Some(http) = &probe.http_get {
        let Some(port) = port(&http.port, ports) else {
            return false;
        };
        let host = http.host.clone().unwrap_or_else(|| pod_ip.to_string());
        let path = http.path.clone().unwrap_or_else(|| "/".to_string());
        let scheme = http
            .scheme
            .as_deref()
            .unwrap_or("HTTP")
            .to_ascii_lowercase();
        let mut request = http::Request::get(format!("{scheme}://{host}:{port}{path}"))
            .header(http::header::USER_AGENT, "kube-probe/1.34");
        for header in http.http_headers.iter().flatten() {
            request = request.header(header.name.as_str(), header.value.as_str());
        }
        let Ok(request) = request.body(Empty::<Bytes>::new()) else {
            return false;
        };
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        // 2xx and 3xx pass, as the kubelet's HTTP prober (it does not follow redirects
        // off the pod either).
        return client
            .request(request)
            .await
            .is_ok_and(|response| (200..400).contains(&response.status().as_u16()));
    }
    if let Some(tcp) = &probe.tcp_socket {
        let Some(port) = port(&tcp.port, ports) else {
            return false;
        };
        let host = tcp.host.clone().unwrap_or_else(|| pod_ip.to_string());
        return tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .is_ok();
    }
    if let Some(exec) = &probe.exec {
        let command = exec.command.as_deref().unwrap_or_default();
        let Some((program, args)) = exec_prefix.split_first().filter(|_| !command.is_empty())
        else {
            return false;
        };
        return tokio::process::Command::new(program)
            .args(args)
            .args(command)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .status()
            .await
            .is_ok_and(|status| status.success());
    }
    // grpc probes are not supported by the test node: never passing says so loudly.
    false
}
