//! One container on the test node: started through the launcher in its pod's namespaces, its
//! probes (startup, then readiness and liveness), restarts with the kubelet's back-off, and
//! stopping it (SIGTERM, SIGKILL once its grace period is over).
//!
//! ```text
//!  start(): spec.rs (program, argv, env) + volume.rs (mounts) + securityContext
//!           ─► ip netns exec <pod> <launcher> launch <plan> (launch.rs), output to its log
//!           ─► lifecycle.postStart exec: run in its namespaces, with its environment; the
//!              pod's next containers start once it exits 0 (it failing stops the container)
//!  tick():  exited? ─► last state recorded, restart due after the back-off
//!           startup probe until it passes ─► readiness (Ready) and liveness (failed: SIGTERM)
//! ```
//!
//! The back-off is the kubelet's: the first restart at once, then `base`, doubling up to 30×
//! `base` (10 s to 5 min by default), reset after a run of 60× `base` without exiting.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container as Spec, PodSecurityContext};
use serde_json::json;

use super::launch::Plan;
use super::net::PodNet;
use super::probe::Prober;
use super::spec::{ImageTable, Objects, PodFields, StartError, launch};
use super::volume::Volumes;

/// Everything a container's start needs from its pod and node.
pub struct Context<'a> {
    pub fields: &'a PodFields,
    pub objects: &'a Objects,
    pub net: &'a PodNet,
    pub images: &'a ImageTable,
    pub volumes: &'a Volumes,
    pub pod_security: Option<&'a PodSecurityContext>,
    /// The `weft-test-node` binary (its `launch` command).
    pub launcher: &'a Path,
    /// Where the pod's containers' output goes: `<dir>/<container>.log`.
    pub logs: &'a Path,
    pub backoff: Duration,
}

/// How a container's last run ended.
#[derive(Debug, Clone)]
struct Terminated {
    exit_code: i32,
    started_at: String,
    finished_at: String,
}

/// A container of a pod, and what the node knows of it.
#[derive(Debug)]
pub struct Container {
    pub name: String,
    /// A native sidecar: an init container with `restartPolicy: Always`, kept running.
    pub sidecar: bool,
    /// An init container that exited 0, or a sidecar whose startup probe passed.
    pub completed: bool,
    /// Its exit code once it exited for good (not to be restarted).
    pub exit_code: Option<i32>,
    pub restarts: i32,
    /// Why it cannot start (an image without a program, a missing ConfigMap …).
    pub waiting: Option<StartError>,
    process: Option<Child>,
    started_at: String,
    /// When this run began, for the back-off's reset.
    started: Instant,
    last: Option<Terminated>,
    /// The next start may not happen before this: `delay` after the last exit. `backoff` is
    /// the delay after the next one.
    not_before: Option<Instant>,
    delay: Option<Duration>,
    backoff: Option<Duration>,
    /// SIGTERM sent at (liveness failure, pod stopping); SIGKILL follows after the grace.
    terminated_at: Option<Instant>,
    startup: Option<Prober>,
    readiness: Option<Prober>,
    liveness: Option<Prober>,
    /// How an exec probe enters this container (nsenter into its namespaces as its user).
    exec_prefix: Vec<String>,
    /// Its `postStart` exec hook: to start once the container runs its program, then while
    /// it runs.
    post_start: Option<PostStart>,
}

/// A `postStart` exec hook.
#[derive(Debug)]
enum PostStart {
    /// The command in the container's namespaces; started once the launcher has become the
    /// program (its mounts are in place then).
    Due {
        program: PathBuf,
        args: Vec<String>,
        env: Vec<(String, String)>,
        log: PathBuf,
        /// The container's program: the hook waits for the launcher to have become it.
        container_program: PathBuf,
    },
    Running(Child),
}

/// Where a container's `postStart` hook is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// None, or it exited 0: the next containers may start.
    Done,
    /// Still running: the kubelet starts the pod's next containers only after it.
    Running,
    /// It failed (the container is being stopped, as the kubelet's `FailedPostStartHook`).
    Failed(String),
}

impl Drop for Container {
    fn drop(&mut self) {
        let hook = match &mut self.post_start {
            Some(PostStart::Running(child)) => Some(child),
            _ => None,
        };
        for child in [self.process.as_mut(), hook].into_iter().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Container {
    pub fn new(spec: &Spec) -> Self {
        Self {
            name: spec.name.clone(),
            sidecar: spec.restart_policy.as_deref() == Some("Always"),
            completed: false,
            exit_code: None,
            restarts: 0,
            waiting: None,
            process: None,
            started_at: String::new(),
            started: Instant::now(),
            last: None,
            not_before: None,
            delay: None,
            backoff: None,
            terminated_at: None,
            startup: None,
            readiness: None,
            liveness: None,
            exec_prefix: Vec::new(),
            post_start: None,
        }
    }

    pub fn running(&self) -> bool {
        self.process.is_some()
    }

    /// Running, and past its startup probe.
    pub fn started(&self) -> bool {
        self.running() && self.startup.as_ref().is_none_or(Prober::passing)
    }

    /// Running, started, and its readiness probe (if any) passes.
    pub fn ready(&self) -> bool {
        self.started() && self.readiness.as_ref().is_none_or(Prober::passing)
    }

    /// Whether a start may happen now (not inside a back-off).
    pub fn may_start(&self) -> bool {
        self.not_before.is_none_or(|t| Instant::now() >= t)
    }

    /// Whether it is being stopped (SIGTERM sent).
    pub fn stopping(&self) -> bool {
        self.terminated_at.is_some()
    }

    /// Reaps the process if it exited: its exit code (the run is recorded as the last state
    /// and the back-off for the next start is set).
    pub fn poll_exit(&mut self) -> Option<i32> {
        let status = self.process.as_mut()?.try_wait().ok().flatten()?;
        self.process = None;
        self.terminated_at = None;
        let exit_code = status.code().unwrap_or_else(|| {
            // Killed by a signal: 128 + its number, as a container runtime reports it.
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(9)
        });
        self.last = Some(Terminated {
            exit_code,
            started_at: self.started_at.clone(),
            finished_at: now(),
        });
        Some(exit_code)
    }

    /// Makes the next start wait for the back-off (the first restart does not).
    pub fn back_off(&mut self, base: Duration) {
        if self.started.elapsed() >= base * 60 {
            self.backoff = None;
        }
        self.delay = self.backoff;
        self.not_before = self.delay.map(|d| Instant::now() + d);
        self.backoff = Some(self.backoff.map_or(base, |d| (d * 2).min(base * 30)));
    }

    /// Starts (or restarts) it from its spec; one that cannot start is left waiting with the
    /// kubelet's reason and tried again after `backoff`.
    pub fn start(&mut self, spec: &Spec, cx: &Context<'_>) {
        match self.spawn(spec, cx) {
            Ok(child) => {
                self.exec_prefix = exec_prefix(child.id(), spec, cx.pod_security);
                self.process = Some(child);
                self.waiting = None;
                self.started_at = now();
                self.started = Instant::now();
                self.not_before = None;
                let at = tokio::time::Instant::now();
                let prober = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
                    p.clone().map(|p| Prober::new(p, at))
                };
                self.startup = prober(&spec.startup_probe);
                self.readiness = prober(&spec.readiness_probe);
                self.liveness = prober(&spec.liveness_probe);
                self.post_start = self.start_post_start(spec, cx);
            }
            Err(e) => {
                self.waiting = Some(e);
                self.not_before = Some(Instant::now() + cx.backoff);
            }
        }
    }

    fn spawn(&self, spec: &Spec, cx: &Context<'_>) -> Result<Child, StartError> {
        let launch = launch(spec, cx.fields, cx.objects, cx.images)?;
        let mounts = cx.volumes.mounts(spec)?;
        let (user, group) = identity(spec, cx.pod_security)?;
        let plan = Plan {
            program: launch.program,
            args: launch.args,
            env: runtime_env(launch.env, &cx.fields.name),
            mounts,
            user,
            group,
            working_dir: spec.working_dir.clone().map(PathBuf::from),
            scratch: cx.net.dir.join("scratch").join(&self.name),
        };
        let plan = serde_json::to_string(&plan).map_err(|e| StartError {
            reason: "RunContainerError",
            message: e.to_string(),
        })?;
        let log_path = cx.logs.join(format!("{}.log", self.name));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .and_then(|f| Ok((f.try_clone()?, f)))
            .map_err(|e| StartError {
                reason: "RunContainerError",
                message: format!("{}: {e}", log_path.display()),
            })?;
        cx.net
            .command(cx.launcher)
            .arg("launch")
            .arg(plan)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(log.0)
            .stderr(log.1)
            .spawn()
            .map_err(|e| StartError {
                reason: "RunContainerError",
                message: format!("starting {}: {e}", cx.launcher.display()),
            })
    }

    /// The `postStart` exec hook, to run inside the container's namespaces as its user and
    /// with its environment. A command naming the image's program (by file name) runs that
    /// program, as the image's filesystem would have it; any other runs from the host's PATH.
    fn start_post_start(&self, spec: &Spec, cx: &Context<'_>) -> Option<PostStart> {
        let command = spec
            .lifecycle
            .as_ref()?
            .post_start
            .as_ref()?
            .exec
            .as_ref()?
            .command
            .clone()?;
        let (first, rest) = command.split_first()?;
        let launch = launch(spec, cx.fields, cx.objects, cx.images).ok()?;
        let image_program = launch
            .program
            .file_name()
            .is_some_and(|name| Path::new(first).file_name() == Some(name));
        let as_root =
            identity(spec, cx.pod_security).is_ok_and(|(user, _)| user.is_none_or(|u| u == 0));
        let program: PathBuf = match (image_program, as_root) {
            (true, true) => launch.program.clone(),
            // Where the launcher bound the program for a user who cannot reach the build's
            // directory (launch.rs), in the container's mount namespace the hook enters.
            (true, false) => cx
                .net
                .dir
                .join("scratch")
                .join(&self.name)
                .join("bin")
                .join(launch.program.file_name()?),
            (false, _) => first.into(),
        };
        Some(PostStart::Due {
            program,
            args: rest.to_vec(),
            env: runtime_env(launch.env, &cx.fields.name),
            log: cx.logs.join(format!("{}.post-start.log", self.name)),
            container_program: launch.program,
        })
    }

    /// Where its `postStart` hook is (started when due); a failed hook stops the container.
    pub fn post_start(&mut self) -> Hook {
        let pid = self.process.as_ref().map(Child::id);
        let running = self.running();
        match &mut self.post_start {
            None => Hook::Done,
            Some(PostStart::Due { .. }) if !running => {
                self.post_start = None;
                Hook::Done
            }
            Some(PostStart::Due {
                program: hook_program,
                args,
                env,
                log,
                container_program,
            }) => {
                // The launcher has become the container's program: its mounts are in place.
                let exe = pid.and_then(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok());
                if exe.is_none_or(|exe| exe.file_name() != container_program.file_name()) {
                    return Hook::Running;
                }
                let spawned = (|| {
                    let (nsenter, prefix) = self.exec_prefix.split_first()?;
                    let log = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(log)
                        .ok()?;
                    std::process::Command::new(nsenter)
                        .args(prefix)
                        .arg(&*hook_program)
                        .args(&*args)
                        .env_clear()
                        .envs(env.iter().cloned())
                        .stdin(Stdio::null())
                        .stdout(log.try_clone().ok()?)
                        .stderr(log)
                        .spawn()
                        .ok()
                })();
                match spawned {
                    Some(child) => {
                        self.post_start = Some(PostStart::Running(child));
                        Hook::Running
                    }
                    None => {
                        self.post_start = None;
                        self.terminate();
                        Hook::Failed(format!("postStart hook of {}: cannot start it", self.name))
                    }
                }
            }
            Some(PostStart::Running(hook)) => match hook.try_wait() {
                Ok(None) if running => Hook::Running,
                Ok(Some(status)) if status.success() => {
                    self.post_start = None;
                    Hook::Done
                }
                other => {
                    let _ = hook.kill();
                    let _ = hook.wait();
                    self.post_start = None;
                    self.terminate();
                    Hook::Failed(format!("postStart hook of {}: {other:?}", self.name))
                }
            },
        }
    }

    /// Runs the probes that are due. A startup probe holds the others back until it passes;
    /// a failed startup or liveness probe stops the container (it restarts as its policy says).
    pub async fn probe(&mut self, net: &PodNet, spec: &Spec) {
        if !self.running() || self.stopping() {
            return;
        }
        let ports = spec.ports.as_deref().unwrap_or_default();
        let prefix = &self.exec_prefix;
        if let Some(startup) = self.startup.as_mut().filter(|p| !p.passing()) {
            startup.tick(net.ip, prefix, ports).await;
            if startup.failed() {
                self.terminate();
            }
            return;
        }
        if let Some(readiness) = &mut self.readiness {
            readiness.tick(net.ip, prefix, ports).await;
        }
        if let Some(liveness) = &mut self.liveness {
            liveness.tick(net.ip, prefix, ports).await;
            if liveness.failed() {
                self.terminate();
            }
        }
    }

    /// Sends SIGTERM (once).
    pub fn terminate(&mut self) {
        if let Some(child) = &self.process
            && self.terminated_at.is_none()
        {
            signal("TERM", child.id());
            self.terminated_at = Some(Instant::now());
        }
    }

    /// SIGKILL when SIGTERM was sent `grace` ago and it still runs.
    pub fn enforce_grace(&mut self, grace: Duration) {
        if self.terminated_at.is_some_and(|t| t.elapsed() >= grace)
            && let Some(child) = &mut self.process
        {
            let _ = child.kill();
        }
    }

    /// Its `containerStatuses[]` entry.
    pub fn status(&self, pod: &str) -> serde_json::Value {
        let state = if let Some(e) = &self.waiting {
            json!({"waiting": {"reason": e.reason, "message": e.message}})
        } else if self.running() {
            json!({"running": {"startedAt": self.started_at}})
        } else if let (Some(code), Some(last)) = (self.exit_code, &self.last) {
            terminated(code, last)
        } else if let (true, false, Some(last)) = (self.completed, self.sidecar, &self.last) {
            terminated(0, last)
        } else if let Some(last) = &self.last {
            let wait = self.delay.unwrap_or_default().as_secs();
            json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!(
                "back-off {wait}s restarting failed container={} pod={pod} (last run exited with {})",
                self.name, last.exit_code)}})
        } else {
            json!({"waiting": {"reason": "PodInitializing"}})
        };
        let mut status = json!({
            "name": self.name, "ready": self.ready() || (self.completed && !self.sidecar),
            "started": self.started(), "restartCount": self.restarts,
            "state": state, "image": "", "imageID": "",
        });
        if let Some(last) = &self.last
            && (self.running() || self.exit_code.is_none())
        {
            status["lastState"] = terminated(last.exit_code, last);
        }
        status
    }
}

fn terminated(code: i32, run: &Terminated) -> serde_json::Value {
    let reason = if code == 0 { "Completed" } else { "Error" };
    json!({"terminated": {"exitCode": code, "reason": reason,
                          "startedAt": run.started_at, "finishedAt": run.finished_at}})
}

/// The user and group the container runs as: its `securityContext`, else the pod's; root
/// when neither names one (the table's images have no `USER`). `runAsNonRoot` with root is
/// refused, as the kubelet does.
fn identity(
    spec: &Spec,
    pod: Option<&PodSecurityContext>,
) -> Result<(Option<u32>, Option<u32>), StartError> {
    let own = spec.security_context.as_ref();
    let user = own
        .and_then(|s| s.run_as_user)
        .or(pod.and_then(|p| p.run_as_user));
    let group = own
        .and_then(|s| s.run_as_group)
        .or(pod.and_then(|p| p.run_as_group));
    let non_root = own
        .and_then(|s| s.run_as_non_root)
        .or(pod.and_then(|p| p.run_as_non_root))
        == Some(true);
    let id = |v: Option<i64>, what: &str| -> Result<Option<u32>, StartError> {
        v.map(|v| {
            u32::try_from(v).map_err(|_| StartError {
                reason: "CreateContainerConfigError",
                message: format!("{what} {v} is not a valid id"),
            })
        })
        .transpose()
    };
    let (user, group) = (id(user, "runAsUser")?, id(group, "runAsGroup")?);
    if non_root && user.unwrap_or(0) == 0 {
        return Err(StartError {
            reason: "CreateContainerConfigError",
            message: "container has runAsNonRoot and image will run as root".into(),
        });
    }
    Ok((user, group))
}

/// The environment with what a container runtime adds unless the spec sets it: `PATH` (an
/// image's default one) and `HOSTNAME` (the pod's name).
fn runtime_env(mut env: Vec<(String, String)>, pod: &str) -> Vec<(String, String)> {
    for (key, value) in [
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("HOSTNAME", pod),
    ] {
        if !env.iter().any(|(k, _)| k == key) {
            env.insert(0, (key.into(), value.into()));
        }
    }
    env
}

/// `nsenter` into the container's mount and network namespaces as its user, for exec probes.
fn exec_prefix(pid: u32, spec: &Spec, pod: Option<&PodSecurityContext>) -> Vec<String> {
    let mut prefix: Vec<String> = ["nsenter", "--target", &pid.to_string(), "--mount", "--net"]
        .map(String::from)
        .into();
    if let Ok((Some(user), group)) = identity(spec, pod) {
        prefix.push(format!("--setuid={user}"));
        prefix.push(format!("--setgid={}", group.unwrap_or(user)));
    }
    prefix.push("--".into());
    prefix
}

/// Sends a signal with `kill(1)` (the workspace forbids `unsafe`, so no direct `kill(2)`).
pub fn signal(name: &str, pid: u32) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// RFC 3339 UTC, whole seconds, as status timestamps are written.
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
