//! The container side of the test node: `weft-test-node launch <plan>` runs inside the pod's
//! network namespace and a mount namespace of its own (`ip netns exec` made both), mounts the
//! pod's volumes at the container's paths, takes the container's user and becomes the
//! container's program (exec: the agent's child is the program, as a container's PID 1 is).
//!
//! ```text
//!  agent ─► ip netns exec <pod> weft-test-node launch '<plan as JSON>'
//!             ├─ a tmpfs on the plan's scratch dir (seen in this mount namespace only)
//!             ├─ each volume mount, parents first:
//!             │    path missing? its nearest existing directory is replaced (here only) by a
//!             │    tmpfs copy of it made of bind mounts, where the path is then created
//!             │    └─ the volume's directory (or file, for a subPath) bound onto the path,
//!             │       read-only when the mount says so
//!             ├─ another user? the program is bound into the scratch dir, which that user
//!             │    can reach (the build's target dir may be under a 0700 home)
//!             └─ exec: program + args, the plan's environment, uid/gid, working dir
//! ```
//!
//! Nothing of this touches the host's filesystem: the copies live in tmpfs mounts that exist
//! in the container's mount namespace only, and are gone with its last process.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, mount, mount_bind, mount_bind_recursive, mount_remount};
use serde::{Deserialize, Serialize};

/// What to run, as the agent hands it to the launcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The whole environment (nothing of the launcher's is passed on).
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    /// `securityContext.runAsUser`; `None` runs as root, as the table's images do.
    pub user: Option<u32>,
    /// `securityContext.runAsGroup`; `None` is the user's id, as the kubelet's default group.
    pub group: Option<u32>,
    /// `workingDir`, else `/`.
    pub working_dir: Option<PathBuf>,
    /// A directory of the pod's (on the host) that the launcher mounts a tmpfs on.
    pub scratch: PathBuf,
}

/// A volume (or a file or directory in it) bound at a path of the container's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Why the launcher could not become the program.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mount path {0} is not absolute")]
    Relative(PathBuf),
    #[error("mount path {0}: the test node cannot create a directory at the top level")]
    TopLevel(PathBuf),
}

fn io<E: Into<std::io::Error>>(what: &'static str, path: &Path) -> impl FnOnce(E) -> LaunchError {
    let path = path.to_path_buf();
    move |source| LaunchError::Io {
        what,
        path,
        source: source.into(),
    }
}

/// Mounts, drops privileges and execs the program; returns only when that failed.
pub fn run(plan: &Plan) -> LaunchError {
    match prepare(plan) {
        Ok(program) => {
            let mut command = std::process::Command::new(&program);
            command
                .arg0(&plan.program)
                .args(&plan.args)
                .env_clear()
                .envs(plan.env.iter().map(|(k, v)| (k, v)))
                .current_dir(plan.working_dir.as_deref().unwrap_or(Path::new("/")));
            if let Some(user) = plan.user {
                // As root, `uid` also clears the supplementary groups.
                command.uid(user).gid(plan.group.unwrap_or(user));
            } else if let Some(group) = plan.group {
                command.gid(group);
            }
            io("executing", &program)(command.exec())
        }
        Err(e) => e,
    }
}

/// Does the mounts; the path to execute.
fn prepare(plan: &Plan) -> Result<PathBuf, LaunchError> {
    let scratch = &plan.scratch;
    std::fs::create_dir_all(scratch).map_err(io("creating", scratch))?;
    mount(
        "weft-scratch",
        scratch,
        "tmpfs",
        MountFlags::empty(),
        c"mode=755",
    )
    .map_err(io("mounting a tmpfs on", scratch))?;
    let mut layout = Layout {
        scratch: scratch.clone(),
        writable: BTreeSet::new(),
        copies: 0,
    };
    let mut mounts = plan.mounts.clone();
    // Parents first, so a mount inside another volume lands in it.
    mounts.sort_by_key(|m| m.target.components().count());
    for m in &mounts {
        if !m.target.is_absolute() {
            return Err(LaunchError::Relative(m.target.clone()));
        }
        let dir = m.source.is_dir();
        layout.ensure(&m.target, dir)?;
        mount_bind_recursive(&m.source, &m.target).map_err(io("binding onto", &m.target))?;
        if m.read_only {
            mount_remount(&m.target, MountFlags::BIND | MountFlags::RDONLY, "")
                .map_err(io("making read-only", &m.target))?;
        }
    }
    if plan.user.is_none_or(|u| u == 0) {
        return Ok(plan.program.clone());
    }
    let name = plan.program.file_name().unwrap_or_default();
    let bin = scratch.join("bin");
    std::fs::create_dir_all(&bin).map_err(io("creating", &bin))?;
    let reachable = bin.join(name);
    std::fs::File::create(&reachable).map_err(io("creating", &reachable))?;
    mount_bind(&plan.program, &reachable).map_err(io("binding the program onto", &reachable))?;
    Ok(reachable)
}

/// The mount namespace's directories the launcher may create paths in.
struct Layout {
    scratch: PathBuf,
    /// Directories on this namespace's tmpfs copies (not bind mounts of the host's): paths
    /// can be created below them without writing to the host.
    writable: BTreeSet<PathBuf>,
    copies: usize,
}

impl Layout {
    /// Makes `path` exist (a directory, or an empty file), writing only to tmpfs copies.
    fn ensure(&mut self, path: &Path, dir: bool) -> Result<(), LaunchError> {
        if path.exists() {
            return Ok(());
        }
        let mut existing = path.parent().unwrap_or(Path::new("/"));
        while !existing.exists() {
            existing = existing.parent().unwrap_or(Path::new("/"));
        }
        // Symlinks resolved (`/var/run` → `/run`).
        let real = existing.canonicalize().map_err(io("resolving", existing))?;
        if real == Path::new("/") {
            // A mount over `/` would not be seen: the process's root is the mount beneath.
            return Err(LaunchError::TopLevel(path.to_path_buf()));
        }
        if !self.writable.contains(&real) {
            self.copy(&real)?;
        }
        let rest = path.strip_prefix(existing).unwrap_or(path);
        let mut at = real;
        let components: Vec<_> = rest.components().collect();
        for (i, component) in components.iter().enumerate() {
            at.push(component);
            let last = i + 1 == components.len();
            if last && !dir {
                std::fs::File::create(&at).map_err(io("creating", &at))?;
            } else {
                std::fs::create_dir(&at).map_err(io("creating", &at))?;
                self.writable.insert(at.clone());
            }
        }
        Ok(())
    }

    /// Replaces `dir` (in this namespace) by a tmpfs holding the same entries: directories
    /// and files bound from the original, symlinks copied.
    fn copy(&mut self, dir: &Path) -> Result<(), LaunchError> {
        self.copies += 1;
        let staging = self.scratch.join(format!("copy-{}", self.copies));
        std::fs::create_dir(&staging).map_err(io("creating", &staging))?;
        let mode = std::fs::metadata(dir)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
            .unwrap_or(0o755);
        let options = std::ffi::CString::new(format!("mode={mode:o}")).unwrap_or_default();
        mount(
            "weft-copy",
            &staging,
            "tmpfs",
            MountFlags::empty(),
            options.as_c_str(),
        )
        .map_err(io("mounting a tmpfs on", &staging))?;
        for entry in std::fs::read_dir(dir).map_err(io("listing", dir))? {
            let entry = entry.map_err(io("listing", dir))?;
            let (from, to) = (entry.path(), staging.join(entry.file_name()));
            let kind = entry.file_type().map_err(io("inspecting", &from))?;
            if kind.is_symlink() {
                let link = std::fs::read_link(&from).map_err(io("reading", &from))?;
                std::os::unix::fs::symlink(link, &to).map_err(io("creating", &to))?;
            } else if kind.is_dir() {
                std::fs::create_dir(&to).map_err(io("creating", &to))?;
                mount_bind_recursive(&from, &to).map_err(io("binding onto", &to))?;
            } else {
                std::fs::File::create(&to).map_err(io("creating", &to))?;
                mount_bind(&from, &to).map_err(io("binding onto", &to))?;
            }
        }
        mount_bind_recursive(&staging, dir).map_err(io("binding a copy onto", dir))?;
        self.writable.insert(dir.to_path_buf());
        Ok(())
    }
}
