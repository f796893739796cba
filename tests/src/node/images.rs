//! The test node's images: there is no container runtime here, so each image reference
//! stands for a program on this machine ([`ImageTable`]), and [`ImageTable::weft`] is the
//! table the end-to-end tests use: Weft's own images, bookinfo's, and shells.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::spec::StartError;
use crate::Bins;

/// What an image runs: a program, and the arguments that stand for the image's `ENTRYPOINT`
/// and `CMD`. The program is always the image's (there is no image filesystem to find another
/// in): a container's `command` replaces `entrypoint` and `default_args`, its `args` replace
/// `default_args`, as they replace `ENTRYPOINT` and `CMD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub program: PathBuf,
    /// Arguments always passed first (the image's `ENTRYPOINT` after the program).
    pub entrypoint: Vec<String>,
    /// Used when the container has neither `command` nor `args` (the image's `CMD`).
    pub default_args: Vec<String>,
}

/// Images by repository (the image reference without tag or digest, with Docker Hub's
/// defaults filled in: `busybox` is `docker.io/library/busybox`).
#[derive(Debug, Clone, Default)]
pub struct ImageTable {
    images: BTreeMap<String, Image>,
}

/// Weft's proxy image, as the chart and the injector name it.
pub const PROXY_IMAGE: &str = "ghcr.io/weft-mesh/weft-proxy";
/// Weft's controller image.
pub const CONTROLLER_IMAGE: &str = "ghcr.io/weft-mesh/weft-controller";
/// `weftctl demo-app` (its default role answers with its service name and version).
pub const DEMO_APP_IMAGE: &str = "docker.io/weft/demo-app";
/// A shell: `command: [sh, -c, …]` runs the host's `sh` (through env(1), as busybox would).
pub const SHELL_IMAGE: &str = "docker.io/library/busybox";

/// The Deployments of Istio's `samples/bookinfo/platform/kube/bookinfo.yaml`, one per
/// image of [`BOOKINFO`].
pub const BOOKINFO_DEPLOYMENTS: [&str; 6] = [
    "details-v1",
    "ratings-v1",
    "reviews-v1",
    "reviews-v2",
    "reviews-v3",
    "productpage-v1",
];

/// Istio's bookinfo images: repository, `demo-app` role and version.
const BOOKINFO: [(&str, &str, &str); 6] = [
    (
        "docker.io/istio/examples-bookinfo-productpage-v1",
        "productpage",
        "v1",
    ),
    (
        "docker.io/istio/examples-bookinfo-details-v1",
        "details",
        "v1",
    ),
    (
        "docker.io/istio/examples-bookinfo-ratings-v1",
        "ratings",
        "v1",
    ),
    (
        "docker.io/istio/examples-bookinfo-reviews-v1",
        "reviews",
        "v1",
    ),
    (
        "docker.io/istio/examples-bookinfo-reviews-v2",
        "reviews",
        "v2",
    ),
    (
        "docker.io/istio/examples-bookinfo-reviews-v3",
        "reviews",
        "v3",
    ),
];

impl ImageTable {
    /// The end-to-end tests' table: Weft's proxy and controller, `weftctl demo-app` as
    /// itself and in the role of each bookinfo image (listening on 0.0.0.0:9080 as they do),
    /// and shells.
    pub fn weft(bins: &Bins) -> Self {
        let mut table = Self::default();
        let plain = |program: &PathBuf| Image {
            program: program.clone(),
            entrypoint: Vec::new(),
            default_args: Vec::new(),
        };
        table.insert(PROXY_IMAGE, plain(&bins.proxy));
        table.insert(CONTROLLER_IMAGE, plain(&bins.controller));
        table.insert(
            DEMO_APP_IMAGE,
            Image {
                program: bins.weftctl.clone(),
                entrypoint: vec!["demo-app".into()],
                default_args: Vec::new(),
            },
        );
        for (repository, role, version) in BOOKINFO {
            table.insert(
                repository,
                Image {
                    program: bins.weftctl.clone(),
                    entrypoint: ["demo-app", "--role", role, "--version", version]
                        .map(String::from)
                        .into(),
                    default_args: vec!["--listen".into(), "0.0.0.0:9080".into()],
                },
            );
        }
        let shell = Image {
            program: "/usr/bin/env".into(),
            entrypoint: Vec::new(),
            default_args: vec!["sh".into()],
        };
        table.insert(SHELL_IMAGE, shell.clone());
        // Istio's samples' client (`samples/curl`): its entrypoint is curl.
        table.insert(
            "docker.io/curlimages/curl",
            Image {
                default_args: vec!["curl".into()],
                ..shell
            },
        );
        table
    }

    pub fn insert(&mut self, repository_name: &str, image: Image) {
        self.images.insert(repository(repository_name), image);
    }

    /// The program for `reference` (`registry/repo:tag` or `…@sha256:…`).
    pub fn resolve(&self, reference: &str) -> Result<&Image, StartError> {
        self.images
            .get(&repository(reference))
            .ok_or_else(|| StartError {
                reason: "ErrImagePull",
                message: format!(
                    "image {reference:?} is not in the test node's image table (known: {})",
                    self.images.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            })
    }
}

/// `istio/proxyv2:1.24@sha256:…` → `docker.io/istio/proxyv2`. A `:` after the last `/`
/// starts the tag; one before it is a registry's port. A first component without `.` or `:`
/// (and not `localhost`) is not a registry: Docker Hub's `docker.io` is, and a single name
/// is in its `library/`.
pub fn repository(reference: &str) -> String {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    let name_start = without_digest.rfind('/').map_or(0, |i| i + 1);
    let name = match without_digest[name_start..].find(':') {
        Some(colon) => &without_digest[..name_start + colon],
        None => without_digest,
    };
    match name.split_once('/') {
        None => format!("docker.io/library/{name}"),
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => name.into(),
        Some(_) => format!("docker.io/{name}"),
    }
}
